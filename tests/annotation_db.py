"""Fixtures of the label store's tests: every store test runs on SQLite and on PostgreSQL.

``pg_server`` is one PostgreSQL server for the session (see :mod:`tests.pg`: ``AVSTUDIO_TEST_PG_URL``'s, or
a throw-away cluster stopped when the session ends); it skips the PostgreSQL tests with the reason when no
server can be had, and fails them when ``AVSTUDIO_REQUIRE_PG`` is set. ``db_url`` is a fresh database per
test: a SQLite file in the test's temporary folder, or a new PostgreSQL database (dropped afterwards).
``store`` is a migrated :class:`annotation.store.Store` on it.

Test modules load them with ``pytest_plugins = ["tests.annotation_db"]``.
"""
from __future__ import annotations

import pytest

from tests import pg

DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server():
    try:
        server = pg.server()
    except pg.PgUnavailable as err:
        if pg.required():
            pytest.fail(f"PostgreSQL required ({pg.ENV_REQUIRE} is set) but unavailable: {err}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {err}")
    yield server
    server.stop()


@pytest.fixture(params=DATABASES)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'labels.db'}"
        return
    server = request.getfixturevalue("pg_server")
    url = server.new_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def store(db_url, tmp_path):
    from annotation.store import Store

    s = Store(db_url, data=tmp_path / "data")
    yield s
    s.close()
