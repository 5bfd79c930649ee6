"""What the API, the Admin tab and the CLI share on top of the store: hum uploads, review figures and
export (with the hum-vs-track check on Pair labels)."""
from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path

from annotation import review
from annotation.errors import AnnotationError, TooLarge
from annotation.store import Store, UserInfo
from media.errors import AVStudioError

HUM_MAX_BYTES = 5_000_000  # about five minutes of Opus; a hum is 30 s at most


@lru_cache(maxsize=1)
def store() -> Store:
    """The process's store (``AVSTUDIO_DB_URL`` or SQLite under ``AVSTUDIO_DATA``), opened and migrated once,
    and backed up to the Hub when ``AVSTUDIO_BACKUP_REPO`` and ``HF_TOKEN`` are set (:mod:`annotation.backup`)."""
    from sqlalchemy.exc import SQLAlchemyError

    from annotation import backup

    try:
        opened = Store()
    except SQLAlchemyError as err:  # a database URL that cannot be reached or opened: one line at start-up
        reason = str(getattr(err, "orig", None) or err).splitlines()[0]
        raise AnnotationError(f"cannot open the label store (AVSTUDIO_DB_URL / AVSTUDIO_DATA): {reason}") from None
    opened.backup = backup.start(opened)
    return opened


async def read_limited(stream: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """An upload's body, refused as soon as it passes ``max_bytes`` (a huge upload is never held whole)."""
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"the upload is over {max_bytes / 1e6:.0f} MB; a hum is 30 s at most")
        chunks.append(chunk)
    return b"".join(chunks)


def store_hum(store: Store, who: UserInfo, data: bytes) -> dict:
    """Check a recorded hum (size, decoding, length, silence, clipping) and store it by content hash."""
    from annotation.checks import check_hum

    check = check_hum(data, max_bytes=HUM_MAX_BYTES)
    return store.add_hum(who, data, check)


def hum_flags(labels: list[dict], items: list[dict]) -> dict[int, tuple[bool, dict]]:
    """label_id -> (flag, scores) for Pair labels that carry a hum and chose a track: flagged when the hum
    matches the chosen track worst of the tracks shown (:func:`annotation.checks.hum_disagrees`)."""
    from annotation.checks import hum_profile, profiles_disagree, track_profile
    from media.io import read_audio

    roots = {item["item_id"]: Path(item["media_root"]) for item in items}
    cache: dict[Path, object] = {}

    def profile(path: Path, hum: bool):
        """Each hum and each track decoded and analysed once, however many labels show it."""
        if path not in cache:
            audio = read_audio(path, sr=16000, end=30.0)  # the check looks at 30 s at most
            cache[path] = hum_profile(audio, 16000) if hum else track_profile(audio, 16000)
        return cache[path]

    out = {}
    for row in labels:
        if row["kind"] != "pair" or not row.get("hum_path") or row["value"] is None:
            continue
        root = roots[row["item_id"]]
        try:
            others = [profile(root / p, False) for p in row["presentation"].get("order", []) if p != row["value"]]
            out[row["label_id"]] = profiles_disagree(profile(Path(row["hum_path"]), True),
                                                     profile(root / row["value"], False), others)
        except AVStudioError:  # a file gone or unreadable: this label goes unchecked, the export goes on
            continue
    return out


def stats(store: Store, task: str) -> dict:
    """Progress, agreement, per-annotator figures and the adjudication queue of one task."""
    meta = store.task(task)
    labels, items, paused = store.labels(task), store.items(task), store.paused(task)
    aggregates = review.aggregate(labels, items, meta["kind"])
    return {"task": review.task_stats(meta, labels, items, set(paused)),
            "annotators": review.annotator_stats(labels, paused=set(paused)),
            "paused": paused,
            "adjudication": review.adjudication_queue(aggregates),
            "aggregates": aggregates}


def export_task(store: Store, task: str, out_dir: str | Path, *, push_to_hub: str | None = None,
                token: str | None = None) -> dict:
    """Export one task as a Hugging Face DatasetDict under ``out_dir/<task>`` (and to the Hub with
    ``push_to_hub``); paused annotators' labels are left out."""
    from annotation.export import export

    meta = store.task(task)
    labels, items, paused = store.labels(task), store.items(task), store.paused(task)
    if meta["kind"] == "pair":
        flags = hum_flags(labels, items)
        for row in labels:
            row["hum_flag"] = flags[row["label_id"]][0] if row["label_id"] in flags else None
    return export(meta, labels, items, set(paused), Path(out_dir), push_to_hub=push_to_hub, token=token)
