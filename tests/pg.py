"""A throw-away PostgreSQL server for the label store's tests and its load benchmark.

:func:`server` gives a :class:`Server` on which :meth:`Server.new_database` makes a fresh, empty database
(``CREATE DATABASE ... TEMPLATE template0``) and returns its SQLAlchemy URL (``postgresql+psycopg``).

* With ``AVSTUDIO_TEST_PG_URL`` set (``postgresql://user:pw@host:port/db``; the user needs CREATEDB), that
  server is used: databases named ``avs_test_<pid>_<n>`` are made on it and dropped again.
* Otherwise a cluster is made with ``initdb`` and run with ``pg_ctl`` in a temporary folder: a free port on
  127.0.0.1 and its unix socket in that folder (the URLs use the socket), trust authentication, no other
  clients. :meth:`Cluster.stop` stops it (immediate shutdown) and deletes the folder.

The binaries come from ``AVSTUDIO_PG_BIN`` (a folder holding ``initdb`` and ``pg_ctl``), else from ``PATH``,
else the newest ``/usr/lib/postgresql/*/bin`` (Debian and Ubuntu put them there, off ``PATH``).
``initdb`` refuses to run as root: as root the cluster's commands run as the ``postgres`` system user
(which the ``postgresql`` package creates; ``useradd --system postgres`` otherwise) and the temporary
folder is handed to that user.

:class:`PgUnavailable` says why no server could be had; the tests skip with that reason, or fail when
``AVSTUDIO_REQUIRE_PG`` is set (CI sets it).
"""
from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ENV_URL = "AVSTUDIO_TEST_PG_URL"
ENV_REQUIRE = "AVSTUDIO_REQUIRE_PG"
ENV_BIN = "AVSTUDIO_PG_BIN"
RUN_AS = "postgres"  # the system user that runs the cluster when we are root


class PgUnavailable(RuntimeError):
    """No PostgreSQL server could be had; the message says why and what to do."""


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (see the module docstring), or None."""
    candidates = []
    if os.environ.get(ENV_BIN):
        candidates.append(Path(os.environ[ENV_BIN]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(folder: str) -> tuple:
        name = Path(folder).parent.name
        return tuple(int(p) if p.isdigit() else 0 for p in name.split("."))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    candidates += [Path(p) for p in sorted(glob.glob("/usr/local/pgsql*/bin"))]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL with the psycopg (3) driver that the store uses."""
    for prefix in ("postgresql+psycopg2://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise PgUnavailable(f"{ENV_URL} must be a postgresql:// URL, not {url.split('://')[0]}://...")


class Server:
    """A PostgreSQL server on which to make and drop databases. ``admin_url``: a SQLAlchemy URL of a
    database on it that may run CREATE/DROP DATABASE."""

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self._names = itertools.count()
        self._engine = None

    def _admin(self):
        if self._engine is None:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            self._engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        return self._engine

    def url(self, database: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=database).render_as_string(hide_password=False)

    def new_database(self, prefix: str = "avs_test") -> str:
        """A fresh, empty database (from template0); returns its URL."""
        from sqlalchemy import text

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with self._admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\''))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`new_database` (closing any connection still open on it)."""
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        with self._admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class Cluster(Server):
    """A cluster of its own in a temporary folder (``initdb`` + ``pg_ctl``), listening on a free port and a
    unix socket in that folder. ``durable=False`` turns off fsync (fine for tests: nothing must survive a
    crash of the machine); the benchmark keeps it on, like a real server."""

    def __init__(self, bindir: Path | None = None, *, durable: bool = False, max_connections: int = 200):
        bindir = bindir or find_bindir()
        if bindir is None:
            raise PgUnavailable(
                "PostgreSQL binaries (initdb, pg_ctl) not found: install the postgresql package, put its bin "
                f"folder on PATH or in {ENV_BIN}, or point {ENV_URL} at a running server")
        self.bindir = Path(bindir)
        self.user = None
        if os.geteuid() == 0:
            import pwd

            try:
                self.user = pwd.getpwnam(RUN_AS)
            except KeyError:
                raise PgUnavailable(f"running as root, and initdb refuses root: create a {RUN_AS!r} system user "
                                    f"(useradd --system {RUN_AS}) or set {ENV_URL}") from None
        self.dir = Path(tempfile.mkdtemp(prefix="avs-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self._running = False
        if self.user is not None:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.dir, 0o755)  # the socket inside must be reachable by the tests' user
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--no-locale", "--no-sync", "--no-instructions")
            options = [f"-p {self.port}", f"-k {self.dir}", "-c listen_addresses=127.0.0.1",
                       f"-c max_connections={max_connections}", "-c shared_buffers=64MB"]
            if not durable:
                options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log),
                      "-o", " ".join(options))
            self._running = True
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        super().__init__(f"postgresql+psycopg://postgres@/postgres?host={self.dir}&port={self.port}")

    def _run(self, tool: str, *args: str) -> None:
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        out = subprocess.run([str(self.bindir / tool), *args], check=False, cwd=self.dir, capture_output=True,
                             text=True, timeout=120, **kwargs)
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.is_file() else ""
            raise PgUnavailable(f"{tool} failed (exit {out.returncode}): {out.stderr.strip()[-2000:]}\n{log}")

    def stop(self) -> None:
        super().stop()
        if self._running:
            self._running = False
            try:
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30")
            except (PgUnavailable, subprocess.SubprocessError):
                pass
        if self.dir.exists():
            for _ in range(3):
                shutil.rmtree(self.dir, ignore_errors=True)
                if not self.dir.exists():
                    break
                time.sleep(0.2)


def server(*, durable: bool = False) -> Server:
    """``AVSTUDIO_TEST_PG_URL``'s server, else a fresh :class:`Cluster`; :class:`PgUnavailable` when neither."""
    url = os.environ.get(ENV_URL)
    if url:
        srv = Server(_sqlalchemy_url(url))
        try:
            from sqlalchemy import text

            with srv._admin().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as err:  # any failure to reach it is reported as such
            raise PgUnavailable(f"cannot reach {ENV_URL}: {err}") from err
        return srv
    return Cluster(durable=durable)


def required() -> bool:
    return bool(os.environ.get(ENV_REQUIRE))
