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


def _rows(session, table: str, where=None) -> list[dict]:
    t = Base.metadata.tables[table]
    query = select(t).order_by(*t.primary_key.columns)
    if where is not None:
        query = query.where(where)
    return [dict(row._mapping) for row in session.execute(query)]


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
    """Write the whole store under ``folder``, every table from one snapshot (a read transaction, which on
    SQLite does not hold back writers), so that the dump's rows always refer to each other; returns the row
    count of each table."""
    folder = Path(folder)
    counts = {}
    with store.read() as session:
        tables = {table: None if table == "labels" else _rows(session, table) for table in TABLES}
        top = session.scalar(select(func.max(Label.id))) or 0
        for start in range(0, top + 1, CHUNK):
            rows = _rows(session, "labels", (Label.id >= start) & (Label.id < start + CHUNK))
            _write_jsonl(folder / "labels" / f"labels-{start:08d}.jsonl", rows)
    for table, rows in tables.items():
        if rows is not None:
            _write_jsonl(folder / f"{table}.jsonl", rows)
            counts[table] = len(rows)
    counts["labels"] = top
    hums = folder / "hums"
    hums.mkdir(parents=True, exist_ok=True)
    for hum in tables["hums"]:
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


def rebuild_mixes(store: Store) -> int:
    """Make again the BGM-fit mixes that are missing (they are derived from the media and not backed up);
    returns how many items were mixed."""
    from annotation.importer import prepare_mixes

    made = 0
    for task in store.tasks():
        if task["kind"] != "bgm":
            continue
        missing = [{"key": i["item_key"], "payload": dict(i["payload"])} for i in store.items(task["name"])
                   if not all((store.data / rel).is_file() for rel in i["payload"].get("prepared", {}).values())]
        if missing:
            prepare_mixes(task["name"], missing, Path(task["media_root"]), store.data)
            made += len(missing)
    return made


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
    scheduler, or None when backup is off (no ``AVSTUDIO_BACKUP_REPO`` or no ``HF_TOKEN``).

    Refuses (AnnotationError) a public repo (the backup holds password hashes and voice recordings), and a
    repo holding a backup that could not be restored: pushing then would overwrite it with an empty store.
    """
    config = settings()
    if config is None:
        return None
    repo, token, minutes = config
    from huggingface_hub import CommitScheduler, HfApi, snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = HfApi(token=token).repo_info(repo, repo_type="dataset")
    except RepositoryNotFoundError:
        info = None  # CommitScheduler creates it, private
    except Exception as err:  # noqa: BLE001 - offline, bad token: one line, and no backup over the unknown
        raise AnnotationError(f"cannot reach the backup repo {repo}: {err.__class__.__name__}") from None
    if info is not None and not info.private:
        raise AnnotationError(f"the backup repo {repo} is public; make it private (it holds password hashes "
                              "and recordings)")
    folder = store.data / "backup"
    if info is not None and is_empty(store):
        with tempfile.TemporaryDirectory() as tmp:
            snapshot_download(repo, repo_type="dataset", local_dir=tmp, token=token)
            if any(Path(tmp).rglob("*.jsonl")):
                try:
                    counts = restore(store, tmp)
                except Exception as err:  # noqa: BLE001 - any failure: stop rather than overwrite
                    raise AnnotationError(f"the backup in {repo} could not be restored ({err.__class__.__name__}"
                                          f": {str(err).splitlines()[0][:200]}); not starting, so as not to "
                                          "overwrite it") from None
                log.warning("label store restored from %s: %s", repo, counts)
    rebuild_mixes(store)

    class _Scheduler(CommitScheduler):
        def push_to_hub(self):
            with self.lock:
                dump(store, folder)
            return super().push_to_hub()

    folder.mkdir(parents=True, exist_ok=True)
    return _Scheduler(repo_id=repo, repo_type="dataset", folder_path=folder, every=minutes, token=token,
                      private=True)


__all__ = ["CHUNK", "dump", "is_empty", "restore", "settings", "start"]
