"""The admin's command line. Each command takes ``--json`` (one JSON object on the last stdout line);
errors go to stderr, one line each, with exit status 2.

    python -m annotation create NAME --kind pair --media-root DIR [--videos GLOB --tracks GLOB
        --track-filter WORDS --candidates 4 | --manifest FILE.csv|.jsonl | --hub USER/DATASET]
        [--gold FILE] [--per-item 3] [--gold-rate 0.1] [--instructions TEXT | @FILE]
    python -m annotation create NAME --kind bgm --media-root DIR [--speech GLOB --music GLOB --per-speech 2]
    python -m annotation users [list | add NAME [--admin] [--password-stdin] [--hf HF_NAME] [--base-url URL]
        | remove NAME | invite NAME --base-url URL | lift-pause TASK NAME]
    python -m annotation export TASK --out DIR [--push-to-hub REPO]
    python -m annotation stats TASK
    python -m annotation serve [--host 127.0.0.1] [--port 7861]     # the labelling server alone

The database is ``--db URL``, else ``AVSTUDIO_DB_URL``, else SQLite under ``AVSTUDIO_DATA`` (``./data``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from annotation.errors import AnnotationError
from media.errors import AVStudioError


def _instructions(text: str | None) -> str:
    """The instructions given, read from a file for ``@FILE``; empty means the built-in ones."""
    if not text:
        return ""
    if text.startswith("@"):
        try:
            return Path(text[1:]).read_text(encoding="utf-8")
        except OSError as err:
            raise AnnotationError(f"cannot read the instructions file: {err.strerror}") from None
    return text


def _create(args, store) -> dict:
    from annotation.importer import create_task

    out = create_task(store, args.name, args.kind, media_root=args.media_root, hub=args.hub,
                      manifest=args.manifest, instructions=_instructions(args.instructions), per_item=args.per_item,
                      gold_rate=args.gold_rate, gold_threshold=args.gold_threshold, lease_s=args.lease_s,
                      min_play_s=args.min_play_s, max_seconds=args.max_seconds, videos=args.videos,
                      tracks=args.tracks, track_filter=args.track_filter, candidates=args.candidates,
                      speech=args.speech, music=args.music, per_speech=args.per_speech, gold=args.gold,
                      seed=args.seed)
    meta = out["task"]
    print(f"task {meta['name']}: {meta['n_items']} items ({out['gold']} gold), {len(out['refused'])} refused")
    for r in out["refused"]:
        print(f"  refused {r['path']}: {r['reason']}")
    return out


def _users(args, store) -> dict:
    action = args.action
    if action == "list":
        users = store.users()
        for u in users:
            print(f"{u['name']:<24} {u['role']:<10} {'active' if u['active'] else 'removed'}"
                  f"{'  hf:' + u['hf_username'] if u['hf_username'] else ''}")
        return {"users": users}
    if not args.name:
        raise AnnotationError(f"users {action} needs a NAME")
    if action == "add":
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        who = store.add_user(args.name, role="admin" if args.admin else "annotator", password=password,
                             hf_username=args.hf)
        out = {"name": who.name, "role": who.role}
        print(f"added {who.name} ({who.role})")
        if args.base_url:
            out["invite"] = _link(args.base_url, store.invite(who.name))
            print(f"invite link: {out['invite']}")
        return out
    if action == "remove":
        store.remove_user(args.name)
        print(f"removed {args.name}; their labels stay")
        return {"removed": args.name}
    if action == "invite":
        if not args.base_url:
            raise AnnotationError("give --base-url, the address annotators open (e.g. https://NAME.hf.space)")
        link = _link(args.base_url, store.invite(args.name))
        print(link)
        return {"name": args.name, "invite": link}
    if action == "lift-pause":
        if not args.task:
            raise AnnotationError("users lift-pause NAME needs --task TASK")
        store.lift_pause(args.task, args.name)
        print(f"lifted the pause of {args.name} on {args.task}")
        return {"lifted": args.name, "task": args.task}
    raise AnnotationError(f"unknown users action {action!r}")


def _link(base_url: str, secret: str) -> str:
    return f"{base_url.rstrip('/')}/annotate/invite/{secret}"


def _export(args, store) -> dict:
    from annotation.service import export_task

    summary = export_task(store, args.task, Path(args.out), push_to_hub=args.push_to_hub,
                          token=os.environ.get("HF_TOKEN"))
    print(json.dumps(summary, indent=1, default=str) if not args.json else f"exported {args.task}")
    return summary


def _stats(args, store) -> dict:
    from annotation.service import stats

    result = stats(store, args.task)
    if not args.json:
        t = result["task"]
        print(json.dumps(t, indent=1, default=str))
        for a in result["annotators"]:
            print(f"  {a['annotator']:<20} labels {a['n_labels']:>5}  gold acc {a['gold_accuracy']}  "
                  f"median {a['median_dwell_s']} s  {'PAUSED' if a['paused'] else ''}")
    return result


def _serve(args, store) -> dict:
    import uvicorn

    from annotation import backup
    from annotation.api import create_app

    store.backup = backup.start(store)  # with AVSTUDIO_BACKUP_REPO and HF_TOKEN set; off otherwise
    uvicorn.run(create_app(store), host=args.host, port=args.port, log_level="warning")
    return {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m annotation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="database URL (default: AVSTUDIO_DB_URL, or SQLite under AVSTUDIO_DATA)")
    sub = parser.add_subparsers(dest="command", required=True)

    create = sub.add_parser("create", help="create a task from a media folder, a manifest or a Hub dataset")
    create.add_argument("name")
    create.add_argument("--kind", choices=("pair", "bgm"), required=True)
    create.add_argument("--media-root", default=os.environ.get("AVSTUDIO_MEDIA"),
                        help="every media path must lie inside it (default: AVSTUDIO_MEDIA)")
    create.add_argument("--manifest", help="a .csv or .jsonl file, one item per row")
    create.add_argument("--hub", help="a Hub dataset id to import instead of a folder")
    create.add_argument("--videos", default="video/*", help="Pair: videos, a glob under the media root")
    create.add_argument("--tracks", default="music/**/*", help="Pair: the track library, a glob")
    create.add_argument("--track-filter", default="", help="Pair: words a library track's path must contain")
    create.add_argument("--candidates", type=int, default=4, help="Pair: tracks per video")
    create.add_argument("--speech", default="speech/*", help="BGM fit: speech files, a glob")
    create.add_argument("--music", default="music/**/*", help="BGM fit: music tracks, a glob")
    create.add_argument("--per-speech", type=int, default=2, help="BGM fit: tracks paired with each speech file")
    create.add_argument("--gold", help="a .csv/.jsonl of key,gold: items with known answers")
    create.add_argument("--per-item", type=int, default=3, help="annotators per item")
    create.add_argument("--gold-rate", type=float, default=0.1, help="share of assignments that are gold items")
    create.add_argument("--gold-threshold", type=float, default=0.6,
                        help="rolling gold accuracy below which an annotator is paused")
    create.add_argument("--lease-s", type=float, default=120.0, help="seconds an item stays assigned without "
                        "a heartbeat")
    create.add_argument("--min-play-s", type=float, default=8.0, help="BGM fit: seconds of play before rating")
    create.add_argument("--instructions", help="the instructions, or @FILE (default: built-in ones)")
    create.add_argument("--max-seconds", type=float, default=600.0, help="longest media file accepted")
    create.add_argument("--seed", type=int, default=0, help="seed of the candidate draw")
    create.set_defaults(run=_create)

    users = sub.add_parser("users", help="list, add, remove or invite annotators and admins")
    users.add_argument("action", nargs="?", default="list", choices=("list", "add", "remove", "invite",
                                                                     "lift-pause"))
    users.add_argument("name", nargs="?")
    users.add_argument("--admin", action="store_true", help="add as an admin")
    users.add_argument("--password-stdin", action="store_true", help="read a password from stdin")
    users.add_argument("--hf", help="the user's Hugging Face name, for sign-in on a Space")
    users.add_argument("--base-url", help="print an invite link for this address")
    users.add_argument("--task", help="lift-pause: the task")
    users.set_defaults(run=_users)

    export = sub.add_parser("export", help="export a task's labels as a Hugging Face dataset")
    export.add_argument("task")
    export.add_argument("--out", required=True, help="folder; the dataset goes to OUT/TASK")
    export.add_argument("--push-to-hub", help="also push to this dataset repo (HF_TOKEN in the environment)")
    export.set_defaults(run=_export)

    stats = sub.add_parser("stats", help="progress, agreement and annotators of a task")
    stats.add_argument("task")
    stats.set_defaults(run=_stats)

    serve = sub.add_parser("serve", help="run the labelling server alone (no models, no Gradio)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7861)
    serve.set_defaults(run=_serve)

    for command in (create, users, export, stats):
        command.add_argument("--json", action="store_true", help="one JSON object on the last stdout line")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from annotation.store import Store

        store = Store(args.db)
        result = args.run(args, store)
    except AVStudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SQLAlchemyError as err:  # a database that cannot be reached or opened
        print(f"error: the database failed: {str(err.orig if hasattr(err, 'orig') else err).splitlines()[0]}",
              file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, default=str))
    return 0
