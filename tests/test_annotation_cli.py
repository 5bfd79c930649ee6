"""The admin's command line (python -m annotation), the importer's refusals, the Hub backup's dump and
restore, and the export read back by annotation.load_labels."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from annotation import backup, load_labels
from annotation.cli import main
from annotation.importer import build_items
from annotation.store import Store

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, db: str, *argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, dict | None, str]:
    if stdin is not None:
        import io

        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    status = main(["--db", db, *argv])
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return status, (json.loads(last) if "--json" in argv and status == 0 else None), err


@pytest.fixture
def db(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("AVSTUDIO_DATA", str(tmp_path / "data"))
    return f"sqlite:///{tmp_path / 'labels.db'}"


@pytest.fixture
def media_root(media, tmp_path) -> Path:
    """A small media root: 3 real videos, 4 real tracks, 2 real speech files, plus broken files."""
    root = tmp_path / "media"
    for folder, names in {"video": sorted((media / "video").glob("*.mp4"))[:3],
                          "music": sorted((media / "music").glob("*.flac"))[:4],
                          "speech": sorted((media / "speech").glob("*.wav"))[:2]}.items():
        (root / folder).mkdir(parents=True)
        for path in names:
            shutil.copyfile(path, root / folder / path.name)
    good = min((media / "video").glob("*.mp4")).read_bytes()
    (root / "video" / "zz_truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "music" / "zz_not_audio.flac").write_bytes(b"this is not a flac file")
    outside = tmp_path / "outside.flac"
    shutil.copyfile(min((media / "music").glob("*.flac")), outside)
    os.symlink(outside, root / "music" / "zz_outside.flac")
    return root


def test_users_add_list_remove_and_invite(capsys, db, monkeypatch):
    status, out, _ = run_cli(capsys, db, "users", "add", "ann", "--password-stdin", "--json",
                             stdin="long-password\n", monkeypatch=monkeypatch)
    assert status == 0 and out == {"name": "ann", "role": "annotator"}
    status, out, _ = run_cli(capsys, db, "users", "add", "boss", "--admin", "--base-url", "https://x.hf.space",
                             "--json")
    assert status == 0 and out["invite"].startswith("https://x.hf.space/annotate/invite/")
    store = Store(db)
    assert store.session_user(store.login_password("ann", "long-password")).name == "ann"
    assert store.session_user(store.login_token(out["invite"].rsplit("/", 1)[1])).role == "admin"
    assert "long-password" not in (Path(db.split("///")[1]).read_bytes().decode("latin-1"))
    status, out, _ = run_cli(capsys, db, "users", "list", "--json")
    assert {u["name"] for u in out["users"]} == {"ann", "boss"}
    status, _, err = run_cli(capsys, db, "users", "invite", "ann")
    assert status == 2 and "--base-url" in err
    assert run_cli(capsys, db, "users", "remove", "ann")[0] == 0
    assert [u["active"] for u in Store(db).users() if u["name"] == "ann"] == [False]
    status, _, err = run_cli(capsys, db, "users", "remove", "nobody")
    assert status == 2 and "no user named 'nobody'" in err


def test_create_refuses_bad_files_each_with_its_reason(capsys, db, media_root):
    status, out, err = run_cli(capsys, db, "create", "pairs", "--kind", "pair", "--media-root", str(media_root),
                               "--candidates", "3", "--json")
    assert status == 0, err
    reasons = {r["path"]: r["reason"] for r in out["refused"]}
    assert set(reasons) == {"video/zz_truncated.mp4", "music/zz_not_audio.flac", "music/zz_outside.flac"}
    assert "truncated" in reasons["video/zz_truncated.mp4"] or "decode" in reasons["video/zz_truncated.mp4"]
    assert "outside the media root" in reasons["music/zz_outside.flac"]
    assert out["task"]["n_items"] == 3
    items = Store(db).items("pairs")
    assert all(len(i["payload"]["candidates"]) == 3 and "zz_" not in " ".join(i["payload"]["candidates"])
               for i in items)
    status, _, err = run_cli(capsys, db, "create", "pairs", "--kind", "pair", "--media-root", str(media_root))
    assert status == 2 and "exists already" in err


def test_manifest_paths_outside_the_root_and_gold(tmp_path, media_root):
    tracks = sorted(p.relative_to(media_root).as_posix() for p in (media_root / "music").glob("*.flac")
                    if not p.name.startswith("zz_"))
    videos = sorted(p.relative_to(media_root).as_posix() for p in (media_root / "video").glob("*.mp4")
                    if not p.name.startswith("zz_"))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(row) for row in [
        {"key": "a", "video": videos[0], "candidates": tracks[:3], "gold": tracks[1]},
        {"key": "b", "video": "../outside.mp4", "candidates": tracks[:2]},
        {"key": "c", "video": videos[1], "candidates": tracks[:2], "gold": "none"},
        {"key": "d", "video": videos[2], "candidates": tracks[:2], "gold": "music/not_a_candidate.flac"},
        ["not", "an", "object"],
        {"key": "f", "video": videos[2], "candidates": "[not json"},
        {"key": "../../escape", "video": videos[2], "candidates": tracks[:2]},
    ]))
    result = build_items("pair", media_root, manifest=manifest)
    assert [i["key"] for i in result.items] == ["a", "c"]
    assert result.items[0]["gold"] == tracks[1] and result.items[1]["gold"] is None
    reasons = {r.path: r.reason for r in result.refusals}
    assert "outside the media root" in reasons["../outside.mp4"]
    assert "not one of the item's candidates" in reasons["manifest row 4"]
    assert "object" in reasons["manifest row 5"] and "wrong type" in reasons["manifest row 6"]
    assert "may hold only" in reasons["manifest row 7"]


def test_bgm_task_prepares_ducked_mixes_and_logs_gains(capsys, db, media_root, tmp_path):
    status, _out, err = run_cli(capsys, db, "create", "fit", "--kind", "bgm", "--media-root", str(media_root),
                               "--per-speech", "1", "--min-play-s", "3", "--json")
    assert status == 0, err
    store = Store(db)
    items = store.items("fit")
    assert len(items) == 2
    for item in items:
        gains = item["payload"]["gains"]
        assert gains["duck_db"] < 0 and "bgm_gain_db" in gains and "speech_gain_db" in gains
        for rel in item["payload"]["prepared"].values():
            assert (tmp_path / "data" / rel).is_file()
    alice = store.add_user("alice")
    lease = store.next_item(alice, "fit")
    with pytest.raises(Exception, match="at least 3 s"):
        store.submit(alice, lease["lease_id"], "early-rating-1", rating=4, played_ms=500)
    store.submit(alice, lease["lease_id"], "rating-0001", rating=4, tags=["mood"], played_ms=3500)
    row = store.labels("fit")[0]
    assert row["presentation"]["gains"] == next(i for i in items if i["item_key"] == row["item_key"])["payload"]["gains"]
    # the mixes are derived files (not in the Hub backup): after a restart without them they are made again
    mixes = [tmp_path / "data" / rel for i in items for rel in i["payload"]["prepared"].values()]
    for path in mixes:
        path.unlink()
    assert backup.rebuild_mixes(store) == 2 and all(path.is_file() for path in mixes)


def test_stats_export_and_load_labels_round_trip(capsys, db, media_root, tmp_path):
    assert run_cli(capsys, db, "create", "pairs", "--kind", "pair", "--media-root", str(media_root),
                   "--candidates", "2", "--per-item", "2", "--gold-rate", "0")[0] == 0
    store = Store(db)
    users = [store.add_user(name) for name in ("u1", "u2")]
    for n, who in enumerate(users):
        while (lease := store.next_item(who, "pairs")) is not None:
            store.submit(who, lease["lease_id"], f"{who.name}-label-{lease['lease_id']}", choice=n % 2)
    status, out, _ = run_cli(capsys, db, "stats", "pairs", "--json")
    assert status == 0 and out["task"]["n_labels"] == 6
    status, out, err = run_cli(capsys, db, "export", "pairs", "--out", str(tmp_path / "export"), "--json")
    assert status == 0, err
    data = load_labels(tmp_path / "export", "pairs")
    stored = sorted((r["item_key"], r["annotator"], r["value"]) for r in store.labels("pairs"))
    loaded = sorted((r["item_key"], r["annotator"], r["value"] or None) for r in data["labels"])
    assert loaded == stored
    assert len(data["items"]) == 3 and set(data["items"]["n"]) == {2}


def test_backup_dump_restore_round_trip(tmp_path):
    source = Store(f"sqlite:///{tmp_path / 'a.db'}", data=tmp_path / "a")
    items = [{"key": f"k{i}", "payload": {"video": f"v{i}.mp4", "candidates": ["a.flac", "b.flac"]}} for i in range(4)]
    source.create_task("t", "pair", items, media_root=tmp_path)
    who = source.add_user("ann", password="password1")
    for n in range(3):
        lease = source.next_item(who, "t")
        source.submit(who, lease["lease_id"], f"client-{n:04d}", choice=n % 2)
    source.undo(who, "t", "client-undo-1")
    counts = backup.dump(source, tmp_path / "backup")
    assert counts["labels"] == 4 and (tmp_path / "backup" / "labels" / "labels-00000000.jsonl").is_file()
    target = Store(f"sqlite:///{tmp_path / 'b.db'}", data=tmp_path / "b")
    assert backup.restore(target, tmp_path / "backup")["labels"] == 4
    assert target.labels("t", history=True) == source.labels("t", history=True)
    assert target.session_user(target.login_password("ann", "password1")).name == "ann"
    with pytest.raises(Exception, match="not empty"):
        backup.restore(target, tmp_path / "backup")
    lease = target.next_item(target.add_user("bob"), "t")  # new rows get new ids after a restore
    assert lease["lease_id"] > max(r["label_id"] for r in source.labels("t", history=True)) - 10


def test_backup_is_off_without_a_token(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("AVSTUDIO_BACKUP_REPO", "someone/labels")
    assert backup.settings() is None
    assert backup.start(Store(f"sqlite:///{tmp_path / 'c.db'}", data=tmp_path)) is None


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    env = {**os.environ, "AVSTUDIO_DATA": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "annotation", "stats", "nothing-here"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: no task named 'nothing-here'"
    proc = subprocess.run([sys.executable, "-m", "annotation", "--db", "postgresql+psycopg://nobody@127.0.0.1:1/x",
                           "users"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: the database failed") and "Traceback" not in proc.stderr


def test_export_carries_the_hum_and_flags_hums_that_disagree(capsys, db, media_root, media, tmp_path):
    from annotation.checks import check_hum

    assert run_cli(capsys, db, "create", "pairs", "--kind", "pair", "--media-root", str(media_root),
                   "--candidates", "3", "--per-item", "1", "--gold-rate", "0")[0] == 0
    store = Store(db)
    who = store.add_user("hummer")
    data = min((media / "hum").glob("*.wav")).read_bytes()
    hum = store.add_hum(who, data, check_hum(data))
    assert store.hum_path(hum["sha256"]).read_bytes() == data  # stored by content hash
    lease = store.next_item(who, "pairs")
    store.submit(who, lease["lease_id"], "hum-label-0001", choice=0, hum_sha256=hum["sha256"])
    with pytest.raises(Exception, match="not uploaded"):
        store.submit(who, store.next_item(who, "pairs")["lease_id"], "hum-label-0002", choice=0,
                     hum_sha256="0" * 64)
    status, _, err = run_cli(capsys, db, "export", "pairs", "--out", str(tmp_path / "export"), "--json")
    assert status == 0, err
    row = load_labels(tmp_path / "export", "pairs")["labels"][0]
    assert isinstance(row["hum_flag"], bool)
    assert row["sample_audio"]["bytes"] == data
