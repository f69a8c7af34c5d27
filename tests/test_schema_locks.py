"""How openers meet at the DDL: a current store opens without waiting for anyone's
DDL lock; openers of a new store queue behind the lock (PostgreSQL: an advisory
lock per schema; SQLite: the write lock) and exactly one of them runs the DDL;
ensure_tables says whether it ran; the fingerprints stored are named per table and
fixed (a changed hash would rerun every store's DDL once)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from msgstate import MessageService
from msgstate._schema import SCHEMA_TABLE, _lock_key, ensure_tables, fingerprints
from tests import pg
from tests.conftest import backend_url

HOLD = 0.5
"""Seconds the test holds the lock before letting the openers through."""


def _schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


class HeldLock:
    """The store's DDL lock, held from another connection until released."""

    def __init__(self, backend: str, url: str, path: Path | None) -> None:
        self.backend = backend
        if backend == "postgres":
            import psycopg

            self.connection: Any = psycopg.connect(pg.BASE_URL, autocommit=True)
            self.connection.execute(
                "SELECT pg_advisory_lock(%s)", (_lock_key(_schema_of(url)),)
            )
        else:
            assert path is not None
            self.connection = sqlite3.connect(path, isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.backend == "postgres":
            self.connection.execute("SELECT pg_advisory_unlock_all()")
        else:
            self.connection.execute("ROLLBACK")
        self.connection.close()


def _url(backend: str, tmp_path: Path) -> tuple[str, Path | None]:
    url = backend_url(backend, tmp_path)
    if backend == "sqlite":
        return url, Path(url.removeprefix("sqlite:///").split("?")[0])
    return url, None


def test_postgres_ensure_tables_says_whether_ddl_ran(tmp_path: Path) -> None:
    service = MessageService.open(backend_url("postgres", tmp_path))
    try:
        recorders = service._table_recorders()
        assert ensure_tables(recorders) is False
        schema = service.recorder.datastore.schema  # type: ignore[attr-defined]
        datastore: Any = service.recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(f'DROP TABLE "{schema}".{SCHEMA_TABLE}')
        assert ensure_tables(recorders) is True
        assert ensure_tables(recorders) is False
    finally:
        service.close()


def test_a_current_postgres_store_opens_without_waiting_for_the_ddl_lock(
    tmp_path: Path,
) -> None:
    url, path = _url("postgres", tmp_path)
    MessageService.open(url).close()
    held = HeldLock("postgres", url, path)
    try:
        started = time.monotonic()
        service = MessageService.open(url)
        took = time.monotonic() - started
        service.create("m", sender="u", user_id="v")
        service.close()
    finally:
        held.release()
    assert took < 5.0  # the lock waits up to DDL_LOCK_TIMEOUT (60 s)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_openers_of_a_new_store_queue_and_one_runs_the_ddl(
    backend: str, tmp_path: Path, ddl_calls: list[str]
) -> None:
    url, path = _url(backend, tmp_path)
    if path is not None:
        sqlite3.connect(path).close()  # the file exists, with no tables yet
    services: list[MessageService] = []
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            services.append(MessageService.open(url))
        except BaseException as error:  # reported below
            errors.append(error)

    held = HeldLock(backend, url, path)
    threads = [threading.Thread(target=open_store) for _ in range(2)]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        time.sleep(HOLD)
        assert [] == services  # both wait behind the lock
    finally:
        held.release()
    for thread in threads:
        thread.join(30)
    waited = time.monotonic() - started
    try:
        assert [] == errors
        assert 2 == len(services)
        assert 2 == len(ddl_calls)  # one opener's DDL: the events and the views
        assert waited >= HOLD
        services[0].create("m", sender="u", user_id="v")
        assert "m" == services[1].get("m").msg_id
    finally:
        for service in services:
            service.close()


def test_postgres_fingerprints_are_named_per_table(tmp_path: Path) -> None:
    service = MessageService.open(backend_url("postgres", tmp_path))
    try:
        names = list(fingerprints(service._table_recorders()))
        assert ["msgstate_events", "msgstate_views"] == names
    finally:
        service.close()


def test_a_fingerprint_is_fixed() -> None:
    """The stored fingerprints must not change between releases for the same
    statements: a changed hash reruns every existing store's DDL once."""

    class Recorder:
        table = "t"

        def __init__(self, *texts: str) -> None:
            self.sql_create_statements = [Text(text) for text in texts]

    class Text:
        def __init__(self, text: str) -> None:
            self.text = text

        def as_string(self) -> str:
            return self.text

    assert {
        "t": "629c2f14f654f026086f2aefe1855533d0897f49df86a19073be17b237361b09"
    } == fingerprints([Recorder("ab", "c")])  # type: ignore[list-item]
