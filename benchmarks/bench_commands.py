"""Command throughput: msgstate against the code a user would otherwise write.

Every contender sends its own fresh messages through the same four steps —
create, a failure (code 6012), a resend, the delivery — on a fresh store of one
backend, and reports commands per second:

* ``msgstate``: ``MessageService`` commands, one transaction each;
* ``handwritten``: ``bench_core.HandMessage``/``HandApp`` (plain eventsourcing
  ``Application`` and ``Aggregate`` with ``@event`` methods, default settings),
  one transaction each;
* ``plain_sql``: a mutable ``messages`` status row updated with the database
  driver alone (sqlite3 / psycopg), one transaction per command; not auditable,
  and not available on the memory backend;
* ``msgstate_batch_<N>``: the same commands in batches of N, one transaction per
  batch (``service.batch()`` with ``prefetch`` for creates and resends,
  ``record_failures`` and ``record_deliveries``, which prefetch themselves);
* ``msgstate_loop_<N>``: the same commands in batches of N written as a plain
  loop (``with service.batch()`` and one call per message, no ``prefetch``);
* ``handwritten_memory_<N>``: the strongest hand-written peer: ``HandApp`` with
  every aggregate it made held in a dict (no repository read at all) and one
  ``app.save(*aggregates)`` per N commands;
* ``handwritten_batch_<N>``: ``HandApp`` with ``AGGREGATE_CACHE_MAXSIZE`` set,
  reading each aggregate through its cache (fast-forward), and one
  ``app.save(*aggregates)`` per N commands.

Used by ``benchmarks/run.py``; each runner does a short untimed warm-up first.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import uuid4

from benchmarks.bench_core import HandApp, HandMessage
from msgstate import MessageService

BACKENDS = ("memory", "sqlite", "postgres")
SCHEMA_PREFIX = "t_msgstate_bench_"
WARMUP = 5
"""Messages sent through each contender, untimed, before its clock starts."""

HAND_CACHE_SIZE = 10_000
"""AGGREGATE_CACHE_MAXSIZE of the hand-written batch app (msgstate's default)."""


# -- stores --


@dataclass
class Store:
    """One fresh, empty store of a backend, for one contender's run."""

    backend: str
    path: Path | None = None  # SQLite file
    postgres: str = ""  # base URL, without ?schema=
    schema: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The msgstate URL of this store."""
        if self.backend == "memory":
            return "memory://"
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        return f"{self.postgres}?schema={self.schema}"

    def hand_env(self, **extra: str) -> dict[str, str]:
        """eventsourcing settings for ``HandApp`` on this store (defaults otherwise)."""
        if self.backend == "memory":
            env = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        elif self.backend == "sqlite":
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.path),
            }
        else:
            parts = urlsplit(self.postgres)
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_HOST": parts.hostname or "127.0.0.1",
                "POSTGRES_PORT": str(parts.port or 5432),
                "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")),
                "POSTGRES_USER": unquote(parts.username or ""),
                "POSTGRES_PASSWORD": unquote(parts.password or ""),
                "POSTGRES_SCHEMA": self.schema,
            }
        return {**env, **extra}


@contextlib.contextmanager
def fresh_store(backend: str, directory: Path, postgres: str) -> Iterator[Store]:
    """A new store; its SQLite files or PostgreSQL schema are removed afterwards."""
    if backend == "memory":
        yield Store("memory")
    elif backend == "sqlite":
        path = directory / f"bench-{uuid4().hex[:12]}.db"
        try:
            yield Store("sqlite", path=path)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    elif backend == "postgres":
        schema = f"{SCHEMA_PREFIX}{uuid4().hex[:12]}"
        _postgres_execute(postgres, f'CREATE SCHEMA "{schema}"')
        try:
            yield Store("postgres", postgres=postgres, schema=schema)
        finally:
            _postgres_execute(postgres, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    else:
        raise ValueError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")


def _postgres_execute(base: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(statement)


def postgres_problem(base: str) -> str | None:
    """Why PostgreSQL at ``base`` cannot be used, or None."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'msgstate[postgres]')"
    try:
        with psycopg.connect(base, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL at {base} is unreachable: {' '.join(str(error).split())}"
    return None


# -- one command per transaction --


def _ids(tag: str, n: int) -> list[str]:
    return [f"{tag}-{i}" for i in range(n)]


def _timed(work: Callable[[], None], commands: int) -> float:
    start = time.perf_counter()
    work()
    return commands / (time.perf_counter() - start)


def msgstate_single(store: Store, n: int, warmup: int = WARMUP) -> float:
    """msgstate: four commands per message, each its own transaction."""
    service = MessageService.open(store.url)
    try:

        def lifecycle(ids: Sequence[str]) -> None:
            for msg_id in ids:
                service.create(msg_id, sender="alice", user_id="bob")
                service.record_failure(msg_id, code=6012)
                service.resend(msg_id, request_id="r")
                service.record_delivery(msg_id, seq="1")

        lifecycle(_ids("warm", warmup))
        ids = _ids("m", n)
        return _timed(lambda: lifecycle(ids), 4 * n)
    finally:
        service.close()


def handwritten_single(store: Store, n: int, warmup: int = WARMUP) -> float:
    """The hand-written eventsourcing aggregate: the same four, one transaction each."""
    app = HandApp(env=store.hand_env())
    try:

        def lifecycle(ids: Sequence[str]) -> None:
            for msg_id in ids:
                app.create(msg_id)
                app.fail(msg_id)
                app.resend(msg_id)
                app.deliver(msg_id)

        lifecycle(_ids("warm", warmup))
        ids = _ids("m", n)
        return _timed(lambda: lifecycle(ids), 4 * n)
    finally:
        app.close()


_PLAIN_TABLE = (
    "CREATE TABLE {table} (msg_id TEXT PRIMARY KEY, status INTEGER NOT NULL, "
    "attempts INTEGER NOT NULL, last_error_code INTEGER, updated_at {time} NOT NULL)"
)
_PLAIN_STEPS = (
    "INSERT INTO {table} (msg_id, status, attempts, last_error_code, updated_at) "
    "VALUES ({p}, 1, 1, NULL, {p})",
    "UPDATE {table} SET status = 3, last_error_code = 6012, updated_at = {p} "
    "WHERE msg_id = {p} AND status = 1",
    "UPDATE {table} SET status = 1, attempts = attempts + 1, updated_at = {p} "
    "WHERE msg_id = {p} AND status = 3",
    "UPDATE {table} SET status = 2, updated_at = {p} WHERE msg_id = {p} AND status = 1",
)


def plain_sql_single(store: Store, n: int, warmup: int = WARMUP) -> float:
    """A mutable status row, updated with the driver alone, one transaction each.

    SQLite runs in WAL mode with default synchronous, as eventsourcing's recorder
    does; PostgreSQL uses one psycopg connection (statements prepared by psycopg
    after a few uses, as any psycopg program gets).
    """
    if store.backend == "memory":
        raise ValueError("plain SQL needs a database")
    if store.backend == "sqlite":
        connection: Any = sqlite3.connect(store.path)  # implicit BEGIN before DML
        connection.execute("PRAGMA journal_mode=WAL")
        table, p, kind = "messages", "?", "TEXT"

        def now() -> Any:
            return datetime.now(UTC).isoformat()
    else:
        import psycopg

        connection = psycopg.connect(store.postgres)
        table, p, kind = f'"{store.schema}".messages', "%s", "TIMESTAMPTZ"

        def now() -> Any:
            return datetime.now(UTC)

    insert, fail, resend, deliver = (s.format(table=table, p=p) for s in _PLAIN_STEPS)
    try:
        connection.execute(_PLAIN_TABLE.format(table=table, time=kind))
        connection.commit()

        def lifecycle(ids: Sequence[str]) -> None:
            for msg_id in ids:
                connection.execute(insert, (msg_id, now()))
                connection.commit()
                connection.execute(fail, (now(), msg_id))
                connection.commit()
                connection.execute(resend, (now(), msg_id))
                connection.commit()
                connection.execute(deliver, (now(), msg_id))
                connection.commit()

        lifecycle(_ids("warm", warmup))
        ids = _ids("m", n)
        return _timed(lambda: lifecycle(ids), 4 * n)
    finally:
        connection.close()


# -- batches --


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def msgstate_batch(store: Store, n: int, size: int, warmup: int = WARMUP) -> float:
    """msgstate: creates, failures, resends, deliveries, ``size`` per transaction."""
    service = MessageService.open(store.url)
    try:

        def phases(ids: Sequence[str]) -> None:
            for chunk in _chunks(ids, size):
                with service.batch() as batch:
                    batch.prefetch(chunk)  # one query finds none exist yet
                    for msg_id in chunk:
                        batch.create(msg_id, sender="alice", user_id="bob")
            for chunk in _chunks(ids, size):
                outcomes = service.record_failures(
                    [{"msg_id": m, "code": 6012} for m in chunk]
                )
                _check(outcomes)
            for chunk in _chunks(ids, size):
                with service.batch() as batch:
                    batch.prefetch(chunk)
                    for msg_id in chunk:
                        batch.resend(msg_id, request_id="r")
            for chunk in _chunks(ids, size):
                _check(
                    service.record_deliveries(
                        [{"msg_id": m, "seq": "1"} for m in chunk]
                    )
                )

        phases(_ids("warm", warmup))
        ids = _ids("m", n)
        return _timed(lambda: phases(ids), 4 * n)
    finally:
        service.close()


def _check(outcomes: Sequence[Any]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome


def handwritten_batch(store: Store, n: int, size: int, warmup: int = WARMUP) -> float:
    """HandApp with cached aggregates: the same commands, one save per ``size``."""
    app = HandApp(env=store.hand_env(AGGREGATE_CACHE_MAXSIZE=str(HAND_CACHE_SIZE)))
    changes: list[Callable[[HandMessage], None]] = [
        lambda m: m.fail(m.attempts, 6012, datetime.now(UTC)),
        lambda m: m.resend(m.attempts + 1, "r", datetime.now(UTC)),
        lambda m: m.deliver(m.attempts, "1", datetime.now(UTC)),
    ]
    try:

        def phases(ids: Sequence[str]) -> None:
            for chunk in _chunks(ids, size):
                app.save(
                    *[HandMessage(m, "alice", "bob", datetime.now(UTC)) for m in chunk]
                )
            for change in changes:
                for chunk in _chunks(ids, size):
                    aggregates = []
                    for msg_id in chunk:
                        message = app.repository.get(HandMessage.create_id(msg_id))
                        change(message)
                        aggregates.append(message)
                    app.save(*aggregates)

        phases(_ids("warm", warmup))
        ids = _ids("m", n)
        return _timed(lambda: phases(ids), 4 * n)
    finally:
        app.close()


def msgstate_batch_loop(store: Store, n: int, size: int, warmup: int = WARMUP) -> float:
    """msgstate batches of ``size`` written as a plain loop: no ``prefetch``.

    What a user writes first: ``with service.batch() as batch:`` and one command
    per message inside it, for creates, failures, resends and deliveries alike.
    """
    service = MessageService.open(store.url)
    try:

        def phases(ids: Sequence[str]) -> None:
            for chunk in _chunks(ids, size):
                with service.batch() as batch:
                    for msg_id in chunk:
                        batch.create(msg_id, sender="alice", user_id="bob")
            for chunk in _chunks(ids, size):
                with service.batch() as batch:
                    for msg_id in chunk:
                        batch.record_failure(msg_id, code=6012)
            for chunk in _chunks(ids, size):
                with service.batch() as batch:
                    for msg_id in chunk:
                        batch.resend(msg_id, request_id="r")
            for chunk in _chunks(ids, size):
                with service.batch() as batch:
                    for msg_id in chunk:
                        batch.record_delivery(msg_id, seq="1")

        phases(_ids("warm", warmup))
        ids = _ids("m", n)
        return _timed(lambda: phases(ids), 4 * n)
    finally:
        service.close()


def handwritten_batch_memory(
    store: Store, n: int, size: int, warmup: int = WARMUP
) -> float:
    """The strongest hand-written eventsourcing batch: aggregates kept in memory.

    ``HandApp`` with its defaults; the program holds every aggregate it made in a
    dict (no repository read at all) and saves each chunk's ``size`` changed
    aggregates with one ``app.save(*aggregates)``.
    """
    app = HandApp(env=store.hand_env())
    changes: list[Callable[[HandMessage], None]] = [
        lambda m: m.fail(m.attempts, 6012, datetime.now(UTC)),
        lambda m: m.resend(m.attempts + 1, "r", datetime.now(UTC)),
        lambda m: m.deliver(m.attempts, "1", datetime.now(UTC)),
    ]
    try:

        def phases(ids: Sequence[str]) -> None:
            held: dict[str, HandMessage] = {}
            for chunk in _chunks(ids, size):
                made = [
                    HandMessage(m, "alice", "bob", datetime.now(UTC)) for m in chunk
                ]
                app.save(*made)
                held.update(zip(chunk, made, strict=True))
            for change in changes:
                for chunk in _chunks(ids, size):
                    aggregates = [held[msg_id] for msg_id in chunk]
                    for message in aggregates:
                        change(message)
                    app.save(*aggregates)

        phases(_ids("warm", warmup))
        ids = _ids("m", n)
        return _timed(lambda: phases(ids), 4 * n)
    finally:
        app.close()
