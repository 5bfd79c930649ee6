"""Alembic environment of the label store. :func:`annotation.db.migrate` passes an open connection in
``config.attributes["connection"]``; the ``alembic`` command line uses ``AVSTUDIO_DB_URL`` (or the default
SQLite file) instead."""
from __future__ import annotations

from alembic import context

from annotation.db import Base, make_engine

target_metadata = Base.metadata


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    with make_engine().connect() as conn:
        run(conn)
        conn.commit()
