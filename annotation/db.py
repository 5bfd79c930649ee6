"""The label store's tables (SQLAlchemy 2) and its engine.

Labels are append-only: a revision, an undo or a skip is a new row, and nothing is ever updated or deleted
in ``labels``. Leases (``leases``) are the only rows whose state changes. Times are UTC seconds since the
epoch (floats), which SQLite and PostgreSQL store alike. The schema is created and changed by the Alembic
migrations in ``annotation/migrations`` (:func:`migrate`), never by ``create_all``.

The embedded default is a SQLite file in WAL mode under ``AVSTUDIO_DATA`` (default ``./data``). Any other
database is given by URL in ``AVSTUDIO_DB_URL`` (for PostgreSQL: ``postgresql+psycopg://user@host/db``).
"""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Base(DeclarativeBase):
    pass


class User(Base):
    """An annotator or an admin. Removing one sets ``active`` false; their labels stay."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="annotator")  # "annotator" | "admin"
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)  # scrypt, see auth.py
    hf_username: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float)


class Token(Base):
    """A session, an invite link or a one-time sign-in code; only the SHA-256 of the secret is stored."""

    __tablename__ = "tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # "session" | "invite" | "code"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Task(Base):
    """A labelling task: its kind, instructions and the rules of assignment."""

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "pair" | "bgm"
    instructions: Mapped[str] = mapped_column(Text, default="")
    per_item: Mapped[int] = mapped_column(Integer, default=3)  # annotators per item
    gold_rate: Mapped[float] = mapped_column(Float, default=0.1)  # share of assignments that are gold items
    gold_threshold: Mapped[float] = mapped_column(Float, default=0.6)  # rolling gold accuracy that pauses
    lease_s: Mapped[float] = mapped_column(Float, default=120.0)  # a lease lapses this long after a heartbeat
    min_play_s: Mapped[float] = mapped_column(Float, default=0.0)  # BGM fit: play time before rating unlocks
    media_root: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text, default="")  # the folder, manifest or Hub id it came from
    created_at: Mapped[float] = mapped_column(Float)


class Item(Base):
    """One thing to label: a video and its candidate tracks, or a speech segment and a BGM track.

    ``payload`` holds media paths relative to the task's media root (and, for BGM fit, the prepared mix
    and its gains). A gold item has a known ``gold_answer`` and is never announced as such.
    """

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("task_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict] = mapped_column(JSON)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_answer: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {"value": ...}
    created_at: Mapped[float] = mapped_column(Float)


class Lease(Base):
    """An item assigned to one annotator until ``expires_at``; each heartbeat moves that on. A lease whose
    time has passed no longer counts, so an abandoned item goes back to the pool without any sweeper."""

    __tablename__ = "leases"
    __table_args__ = (Index("ix_leases_task_user_state", "task_id", "user_id", "state"),
                      Index("ix_leases_item_state", "item_id", "state"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(16), default="open")  # "open" | "done" | "released"
    presentation: Mapped[dict] = mapped_column(JSON)  # candidate order shown, gains heard
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class Label(Base):
    """One append-only row per submit: a label, a skip, a revision (``revises`` names the row it replaces)
    or an undo (``revises`` names the row it takes back). ``client_id`` is made by the client, so that a
    retried submit is stored once."""

    __tablename__ = "labels"
    __table_args__ = (Index("ix_labels_task_item", "task_id", "item_id"),
                      Index("ix_labels_task_user", "task_id", "user_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    lease_id: Mapped[int | None] = mapped_column(ForeignKey("leases.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # "label" | "skip" | "undo"
    value: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {"value": ...}
    tags: Mapped[list] = mapped_column(JSON, default=list)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)  # a skip's reason
    dwell_ms: Mapped[int] = mapped_column(Integer, default=0)
    presentation: Mapped[dict] = mapped_column(JSON, default=dict)
    hum_sha256: Mapped[str | None] = mapped_column(ForeignKey("hums.sha256"), nullable=True)
    revises: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), nullable=True)
    app_version: Mapped[str] = mapped_column(String(64), default="")
    client_time: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class Hum(Base):
    """A recorded hum, stored by content hash under ``<data>/hums/``."""

    __tablename__ = "hums"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ext: Mapped[str] = mapped_column(String(8))
    size: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float)


class Pause(Base):
    """An annotator paused on a task: their rolling gold accuracy fell below the task's threshold. Their
    labels leave the export until an admin lifts the pause."""

    __tablename__ = "pauses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    lifted_at: Mapped[float | None] = mapped_column(Float, nullable=True)


def data_dir() -> Path:
    """``AVSTUDIO_DATA`` (default ``./data``): the SQLite file, hums and prepared mixes."""
    return Path(os.environ.get("AVSTUDIO_DATA") or "data").resolve()


def default_url() -> str:
    """``AVSTUDIO_DB_URL``, or the SQLite file ``<data>/annotation.db``."""
    url = os.environ.get("AVSTUDIO_DB_URL")
    if url:
        return url
    return f"sqlite:///{data_dir() / 'annotation.db'}"


def make_engine(url: str | None = None, *, read_only: bool = False) -> Engine:
    """An engine for ``url`` (default :func:`default_url`).

    SQLite gets WAL mode, full fsync on commit (a label acknowledged to a client survives a killed server),
    a 30 s busy timeout and ``BEGIN IMMEDIATE`` transactions, so that two writers never both read the same
    free slot before either writes (SQLAlchemy's documented recipe for pysqlite transactions). With
    ``read_only`` (SQLite only) transactions start with a plain ``BEGIN``: WAL readers run beside the writer.
    """
    url = url or default_url()
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            cursor = dbapi_connection.cursor()
            pragmas = ["journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000", "foreign_keys=ON"]
            for pragma in pragmas + (["query_only=ON"] if read_only else []):
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection):
            connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creating it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
