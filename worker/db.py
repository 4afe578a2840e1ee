"""Engine, sessions and migrations. SQLite (WAL) by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import create_engine

from worker.errors import DatabaseUnavailable

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes writers queue up
    # instead of failing when several worker threads and processes commit at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """Create an engine for ``url`` with the settings each backend needs."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


class WriterLock:
    """One writer at a time into a SQLite database, across the threads and processes of a host.

    SQLite lets one transaction write at a time, and its busy handler polls: a writer that
    finds the database locked sleeps 1, 2, 5, 10 ms… before it looks again, while the
    transaction it waits for takes a fraction of a millisecond. A lock file held with flock(2)
    wakes the next writer as soon as the last one commits. Writers that do not take this lock
    (rare ones: the web app, a sweep) still queue in the busy handler as before.
    """

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._path = (
            Path(database + ".writer")
            if database and database != ":memory:" and fcntl is not None
            else None
        )
        self._thread_lock = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block."""
        with self._thread_lock:
            if self._path is None:
                yield
                return
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the lock file."""
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; running it again changes nothing."""
    try:
        command.upgrade(_alembic_config(engine), "head")
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        raise DatabaseUnavailable(f"cannot migrate the database: {reason}") from exc


def is_migrated(engine: Engine) -> bool:
    """True when the schema exists (``newsletter init`` has run)."""
    try:
        return inspect(engine).has_table("edition")
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot reach the database: {exc}") from exc
