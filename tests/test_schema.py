"""The store's tables are created once, and an existing store's open runs no DDL.

(Many processes opening at once: tests/test_concurrent_open.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eventsourcing.postgres import PostgresRecorder
from eventsourcing.sqlite import SQLiteRecorder

from msgstate import MessageService
from msgstate._schema import SCHEMA_TABLE, ensure_tables, fingerprints
from tests.conftest import backend_url

DDL_BACKENDS = ["sqlite", "postgres"]


def _execute(service: MessageService, statement: str) -> None:
    datastore: Any = service.recorder.datastore  # type: ignore[attr-defined]
    with datastore.transaction(commit=True) as cursor:
        cursor.execute(statement)


def _qualified(service: MessageService, table: str) -> str:
    schema = getattr(service.recorder.datastore, "schema", None)  # type: ignore[attr-defined]
    return f"{schema}.{table}" if schema else table


@pytest.mark.parametrize("backend", DDL_BACKENDS)
def test_a_new_store_runs_its_ddl_once(
    backend: str, tmp_path: Path, ddl_calls: list[str]
) -> None:
    url = backend_url(backend, tmp_path)
    MessageService.open(url).close()
    assert 2 == len(ddl_calls)  # the events recorder and the read model
    ddl_calls.clear()
    service = MessageService.open(url)
    service.create("m", sender="s", user_id="u")
    assert [] == ddl_calls
    service.close()


@pytest.mark.parametrize("backend", DDL_BACKENDS)
def test_an_existing_store_opens_without_any_ddl(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = backend_url(backend, tmp_path)
    MessageService.open(url).close()

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("DDL ran on an existing store")

    for cls in (SQLiteRecorder, PostgresRecorder):
        monkeypatch.setattr(cls, "_create_table", refuse)
        monkeypatch.setattr(cls, "create_table", refuse)
    service = MessageService.open(url)
    assert "m" == service.create("m", sender="s", user_id="u").msg_id
    service.close()


def test_an_existing_postgres_store_keeps_its_catalog_rows_untouched(
    tmp_path: Path,
) -> None:
    """No CREATE OR REPLACE FUNCTION at open: the function's catalog row stays."""
    url = backend_url("postgres", tmp_path)
    service = MessageService.open(url)
    schema = service.recorder.datastore.schema  # type: ignore[attr-defined]
    query = (
        "SELECT p.xmin::text AS x FROM pg_proc p JOIN pg_namespace n "
        "ON n.oid = p.pronamespace WHERE n.nspname = %s"
    )

    def catalog() -> list[str]:
        datastore: Any = service.recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=False) as cursor:
            cursor.execute(query, (schema,))
            return sorted(row["x"] for row in cursor.fetchall())

    before = catalog()
    assert before  # the insert function exists
    MessageService.open(url).close()
    assert before == catalog()
    service.close()


@pytest.mark.parametrize("backend", DDL_BACKENDS)
def test_a_store_from_before_gets_its_fingerprints_on_the_next_open(
    backend: str, tmp_path: Path, ddl_calls: list[str]
) -> None:
    url = backend_url(backend, tmp_path)
    service = MessageService.open(url)
    service.create("m", sender="s", user_id="u")
    _execute(service, f"DROP TABLE {_qualified(service, SCHEMA_TABLE)}")
    service.close()
    ddl_calls.clear()
    again = MessageService.open(url)
    assert 2 == len(ddl_calls)
    assert "m" == again.get("m").msg_id
    again.close()
    ddl_calls.clear()
    MessageService.open(url).close()
    assert [] == ddl_calls


@pytest.mark.parametrize("backend", DDL_BACKENDS)
def test_a_changed_statement_reruns_only_under_the_lock_once(
    backend: str, tmp_path: Path, ddl_calls: list[str]
) -> None:
    url = backend_url(backend, tmp_path)
    service = MessageService.open(url)
    table = _qualified(service, SCHEMA_TABLE)
    _execute(service, f"UPDATE {table} SET fingerprint = 'older'")
    service.close()
    ddl_calls.clear()
    MessageService.open(url).close()
    assert 2 == len(ddl_calls)
    ddl_calls.clear()
    MessageService.open(url).close()
    assert [] == ddl_calls


def test_create_tables_false_runs_no_ddl(tmp_path: Path, ddl_calls: list[str]) -> None:
    url = backend_url("sqlite", tmp_path)
    MessageService.open(url).close()
    ddl_calls.clear()
    MessageService.open(url, create_tables=False).close()
    assert [] == ddl_calls


def test_snapshots_add_their_table_without_disturbing_the_others(
    tmp_path: Path, ddl_calls: list[str]
) -> None:
    url = backend_url("sqlite", tmp_path)
    MessageService.open(url).close()
    ddl_calls.clear()
    service = MessageService.open(url, snapshot_every=2)
    service.create("m", sender="s", user_id="u")
    assert 3 == len(ddl_calls)  # events, snapshots, views: one transaction
    service.close()
    ddl_calls.clear()
    MessageService.open(url).close()
    MessageService.open(url, snapshot_every=2).close()
    assert [] == ddl_calls


def test_memory_stores_have_no_ddl() -> None:
    service = MessageService.open("memory://")
    assert ensure_tables([service.recorder]) is False
    assert {} != fingerprints([service.recorder])
    service.close()


def test_fingerprints_name_each_table_and_hash_its_statements(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    service = MessageService.open(url, snapshot_every=2)
    found = fingerprints(service._table_recorders())
    assert ["stored_events", "stored_snapshots", "msgstate_views"] == list(found)
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in found.values())
    assert len(set(found.values())) == 3
    views = service._table_recorders()[-1]
    before = fingerprints([views])
    views.create_table_statements.append("CREATE INDEX IF NOT EXISTS x ON y (z)")
    assert before != fingerprints([views])
    service.close()


def test_statement_boundaries_count_in_a_fingerprint() -> None:
    class Split:
        table = "t"

        def __init__(self) -> None:
            self.sql_create_statements: list[Any] = []

    class Text:
        def __init__(self, text: str) -> None:
            self.text = text

        def as_string(self) -> str:
            return self.text

    one, two = Split(), Split()
    one.sql_create_statements = [Text("ab"), Text("c")]
    two.sql_create_statements = [Text("a"), Text("bc")]
    assert fingerprints([one]) != fingerprints([two])  # type: ignore[list-item]
    assert ["t"] == list(fingerprints([one]))  # type: ignore[list-item]


def test_a_recorder_without_a_table_name_is_keyed_by_its_class() -> None:
    class Nameless:
        def __init__(self) -> None:
            self.sql_create_statements: list[Any] = []

    assert ["Nameless"] == list(fingerprints([Nameless()]))  # type: ignore[list-item]


def test_ensure_tables_says_whether_ddl_ran(tmp_path: Path) -> None:
    url = backend_url("sqlite", tmp_path)
    service = MessageService.open(url)
    recorders = service._table_recorders()
    assert ensure_tables(recorders) is False
    _execute(service, f"DROP TABLE {SCHEMA_TABLE}")
    assert ensure_tables(recorders) is True
    assert ensure_tables(recorders) is False
    assert ensure_tables([]) is False
    service.create("m", sender="s", user_id="u")
    assert 1 == sum(service.status_counts().values())
    service.close()
