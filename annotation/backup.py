"""Backing the label store up to a Hub dataset repo, for a Space, whose disk does not persist.

Every few minutes the store is written out as JSON Lines under ``<data>/backup/`` and a
``huggingface_hub.CommitScheduler`` pushes what changed. Labels are append-only, so they go in chunks of
``CHUNK`` rows by id (``labels/labels-00000000.jsonl``, ...): only the newest chunk changes between pushes.
The other tables are small and written whole; hums are copied by content hash. At start, an empty store is
restored from the repo.

Configured from the environment and off unless both are set:

* ``AVSTUDIO_BACKUP_REPO``: the dataset repo id (created private if missing);
* ``HF_TOKEN``: a token that may write to it;
* ``AVSTUDIO_BACKUP_MINUTES``: minutes between pushes (default 5).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from sqlalchemy import func, insert, select, text

from annotation.db import Base, Label
from annotation.errors import AnnotationError
from annotation.store import Store

CHUNK = 10_000
# parents before children, so that foreign keys hold while restoring
TABLES = ("users", "tokens", "tasks", "items", "hums", "leases", "labels", "pauses")
log = logging.getLogger(__name__)


def _rows(store: Store, table: str, where=None) -> list[dict]:
    t = Base.metadata.tables[table]
    query = select(t).order_by(*t.primary_key.columns)
    if where is not None:
        query = query.where(where)
    with store.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` atomically, and only when the content changed (so the scheduler sees no change)."""
    data = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    if path.exists() and path.read_text() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(data)
    tmp.replace(path)


def dump(store: Store, folder: str | Path) -> dict[str, int]:
    """Write the whole store under ``folder``; returns the row count of each table."""
    folder = Path(folder)
    counts = {}
    for table in TABLES:
        if table == "labels":
            with store.engine.connect() as conn:
                top = conn.scalar(select(func.max(Label.id))) or 0
            for start in range(0, top + 1, CHUNK):
                rows = _rows(store, "labels", (Label.id >= start) & (Label.id < start + CHUNK))
                _write_jsonl(folder / "labels" / f"labels-{start:08d}.jsonl", rows)
            counts[table] = top
            continue
        rows = _rows(store, table)
        _write_jsonl(folder / f"{table}.jsonl", rows)
        counts[table] = len(rows)
    hums = folder / "hums"
    hums.mkdir(parents=True, exist_ok=True)
    for hum in _rows(store, "hums"):
        name = f"{hum['sha256']}.{hum['ext']}"
        source = store.data / "hums" / name
        if source.exists() and not (hums / name).exists():
            shutil.copyfile(source, hums / name)
    return counts


def is_empty(store: Store) -> bool:
    with store.engine.connect() as conn:
        return not any(conn.scalar(select(func.count()).select_from(Base.metadata.tables[t])) for t in TABLES)


def restore(store: Store, folder: str | Path) -> dict[str, int]:
    """Load a :func:`dump` into an empty store (ids kept); returns the row count of each table."""
    folder = Path(folder)
    if not is_empty(store):
        raise AnnotationError("the store is not empty; restore only into a new database")
    counts = {}
    with store.engine.begin() as conn:
        for table in TABLES:
            files = sorted((folder / "labels").glob("labels-*.jsonl")) if table == "labels" \
                else [folder / f"{table}.jsonl"]
            rows = [json.loads(line) for path in files if path.exists()
                    for line in path.read_text().splitlines() if line.strip()]
            if rows:
                conn.execute(insert(Base.metadata.tables[table]), rows)
            counts[table] = len(rows)
        if conn.dialect.name == "postgresql":  # restored ids: move each sequence past them
            for table in ("users", "tasks", "items", "leases", "labels", "pauses"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))
    hums = folder / "hums"
    if hums.is_dir():
        (store.data / "hums").mkdir(parents=True, exist_ok=True)
        for path in hums.iterdir():
            target = store.data / "hums" / path.name
            if not target.exists():
                shutil.copyfile(path, target)
    return counts


def settings() -> tuple[str, str, float] | None:
    """(repo, token, minutes), or None when backup is off."""
    repo, token = os.environ.get("AVSTUDIO_BACKUP_REPO"), os.environ.get("HF_TOKEN")
    if not repo or not token:
        return None
    try:
        minutes = float(os.environ.get("AVSTUDIO_BACKUP_MINUTES", "5"))
    except ValueError:
        raise AnnotationError("AVSTUDIO_BACKUP_MINUTES is not a number") from None
    if minutes <= 0:
        raise AnnotationError("AVSTUDIO_BACKUP_MINUTES must be above 0")
    return repo, token, minutes


def start(store: Store):
    """Restore an empty store from the backup repo, then push a backup every few minutes. Returns the
    scheduler, or None when backup is off (no ``AVSTUDIO_BACKUP_REPO`` or no ``HF_TOKEN``)."""
    config = settings()
    if config is None:
        return None
    repo, token, minutes = config
    from huggingface_hub import CommitScheduler, snapshot_download

    folder = store.data / "backup"
    if is_empty(store):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                snapshot_download(repo, repo_type="dataset", local_dir=tmp, token=token)
                counts = restore(store, tmp)
                log.warning("label store restored from %s: %s", repo, counts)
            except Exception as err:  # noqa: BLE001 - a new repo has nothing to restore; say so and go on
                log.warning("nothing restored from %s (%s)", repo, err.__class__.__name__)

    class _Scheduler(CommitScheduler):
        def push_to_hub(self):
            with self.lock:
                dump(store, folder)
            return super().push_to_hub()

    folder.mkdir(parents=True, exist_ok=True)
    return _Scheduler(repo_id=repo, repo_type="dataset", folder_path=folder, every=minutes, token=token,
                      private=True)


__all__ = ["CHUNK", "dump", "is_empty", "restore", "settings", "start"]
