"""Creating a store's tables once, however many processes open it at the same moment.

eventsourcing's recorders run their ``CREATE`` statements at every open; processes
opening one store together then race (PostgreSQL: ``tuple concurrently updated``
on ``CREATE OR REPLACE FUNCTION``, duplicate composite types; both backends: the
tracking table's ``__migration__`` row). msgstate opens its recorders with
``CREATE_TABLE=n`` and calls :func:`ensure_tables` instead, which

* reads the fingerprints (SHA-256 of each recorder's ``CREATE`` statements) kept in
  the table ``msgstate_schema``; when every one matches, the store is current and
  nothing else happens: an existing store's open runs no DDL at all;
* otherwise takes the store's DDL lock (PostgreSQL: ``pg_advisory_xact_lock`` keyed
  on the schema; SQLite: ``BEGIN IMMEDIATE``), checks again (another process may
  have just finished), and runs eventsourcing's own statements, through the
  recorders' ``_create_table`` hooks, in that one transaction with the new
  fingerprints: all of it commits, or none of it.

A new ``CREATE`` statement in a later version changes its recorder's fingerprint,
so stores made before it get it on their next open (once, under the lock).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.persistence import Recorder
from eventsourcing.sqlite import SQLiteRecorder, SQLiteTrackingRecorder

__all__ = ["DDL_LOCK_TIMEOUT", "SCHEMA_TABLE", "ensure_tables", "fingerprints"]

SCHEMA_TABLE = "msgstate_schema"
"""The table (beside the events) that records which statements a store has run."""

DDL_LOCK_TIMEOUT = 60
"""Seconds an open waits for another process's DDL to finish before failing."""


def _statements(recorder: Recorder) -> list[str]:
    if isinstance(recorder, SQLiteRecorder):
        return list(recorder.create_table_statements)
    return [s.as_string() for s in getattr(recorder, "sql_create_statements", [])]


def _key(recorder: Recorder) -> str:
    for name in ("events_table_name", "views_table", "table", "tracking_table_name"):
        value = getattr(recorder, name, None)
        if isinstance(value, str) and value:
            return value
    return type(recorder).__name__


def fingerprints(recorders: Sequence[Recorder]) -> dict[str, str]:
    """Each recorder's table name -> SHA-256 of its ``CREATE`` statements."""
    found: dict[str, str] = {}
    for recorder in recorders:
        digest = hashlib.sha256()
        for statement in _statements(recorder):
            digest.update(statement.encode())
            digest.update(b"\x00")
        found[_key(recorder)] = digest.hexdigest()
    return found


def ensure_tables(recorders: Sequence[Recorder]) -> bool:
    """Create the recorders' tables unless the store has them; True if DDL ran.

    Safe with any number of processes opening the same store at once. Recorders
    that keep no tables (memory) are left alone.
    """
    if not recorders:
        return False
    first = recorders[0]
    if isinstance(first, SQLiteRecorder):
        return _ensure_sqlite(first.datastore, recorders)
    if hasattr(first, "sql_create_statements"):
        return _ensure_postgres(getattr(first, "datastore"), recorders)  # noqa: B009
    return False


def _is_current(stored: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(stored.get(name) == value for name, value in wanted.items())


# -- SQLite --


def _sqlite_stored(cursor: Any) -> dict[str, str]:
    cursor.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        [SCHEMA_TABLE],
    )
    if cursor.fetchone() is None:
        return {}
    cursor.execute(f"SELECT name, fingerprint FROM {SCHEMA_TABLE}")
    return {str(row[0]): str(row[1]) for row in cursor.fetchall()}


def _ensure_sqlite(datastore: Any, recorders: Sequence[Recorder]) -> bool:
    wanted = fingerprints(recorders)
    with datastore.transaction(commit=False) as cursor:
        if _is_current(_sqlite_stored(cursor), wanted):
            return False
    with datastore.get_connection(commit=True) as connection:
        cursor = connection.cursor()
        # The write lock first: concurrent openers queue here (up to the
        # connection's busy timeout), then find the work done.
        cursor.execute("BEGIN IMMEDIATE")
        try:
            if _is_current(_sqlite_stored(cursor), wanted):
                connection.rollback()
                return False
            for recorder in recorders:
                if isinstance(recorder, SQLiteTrackingRecorder):
                    _sqlite_tracking_state(recorder, cursor)
                recorder._create_table(cursor)  # type: ignore[attr-defined]
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} "
                "(name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)"
            )
            cursor.executemany(
                f"INSERT INTO {SCHEMA_TABLE} VALUES (?, ?) ON CONFLICT (name) "
                "DO UPDATE SET fingerprint = excluded.fingerprint",
                list(wanted.items()),
            )
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
    return True


def _sqlite_tracking_state(recorder: SQLiteTrackingRecorder, cursor: Any) -> None:
    """What eventsourcing's ``create_table`` learns before ``_create_table``."""
    cursor.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", ["tracking"]
    )
    exists = cursor.fetchone() is not None
    recorder.tracking_table_exists = exists
    previous = (
        recorder._max_tracking_id(recorder.table_migration_identifier, cursor)
        if exists
        else None
    )
    recorder.tracking_migration_previous = previous
    recorder.tracking_migration_current = previous


# -- PostgreSQL --


def _lock_key(schema: str) -> int:
    """A signed 64-bit advisory-lock key for the schema's DDL."""
    digest = hashlib.sha256(f"msgstate-ddl:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _pg_stored(cursor: Any, schema: str) -> dict[str, str]:
    from psycopg.sql import SQL, Identifier

    cursor.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s",
        (schema, SCHEMA_TABLE),
    )
    if cursor.fetchone() is None:
        return {}
    cursor.execute(
        SQL("SELECT name, fingerprint FROM {0}.{1}").format(
            Identifier(schema), Identifier(SCHEMA_TABLE)
        )
    )
    return {str(row["name"]): str(row["fingerprint"]) for row in cursor.fetchall()}


def _ensure_postgres(datastore: Any, recorders: Sequence[Recorder]) -> bool:
    from eventsourcing.postgres import PostgresTrackingRecorder
    from psycopg.errors import DuplicateObject
    from psycopg.sql import SQL, Identifier

    schema: str = datastore.schema
    wanted = fingerprints(recorders)
    ran = False
    with datastore.transaction(commit=False) as cursor:
        current = _is_current(_pg_stored(cursor, schema), wanted)
    if not current:
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(
                SQL("SET LOCAL lock_timeout = '{0}s'").format(DDL_LOCK_TIMEOUT)
            )
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),))
            if not _is_current(_pg_stored(cursor, schema), wanted):
                connection = cursor.connection
                for recorder in recorders:
                    for statement in recorder.sql_create_statements:  # type: ignore[attr-defined]
                        if "CREATE TYPE" in statement.as_string():
                            # No IF NOT EXISTS for types: a savepoint absorbs it.
                            with (
                                contextlib.suppress(DuplicateObject),
                                connection.transaction(),
                            ):
                                cursor.execute(statement, prepare=False)
                for recorder in recorders:
                    if isinstance(recorder, PostgresTrackingRecorder):
                        _pg_tracking_state(recorder, cursor, schema)
                    recorder._create_table(cursor)  # type: ignore[attr-defined]
                table = SQL("{0}.{1}").format(
                    Identifier(schema), Identifier(SCHEMA_TABLE)
                )
                cursor.execute(
                    SQL(
                        "CREATE TABLE IF NOT EXISTS {0} "
                        "(name text PRIMARY KEY, fingerprint text NOT NULL)"
                    ).format(table)
                )
                cursor.executemany(
                    SQL(
                        "INSERT INTO {0} VALUES (%s, %s) ON CONFLICT (name) "
                        "DO UPDATE SET fingerprint = excluded.fingerprint"
                    ).format(table),
                    list(wanted.items()),
                )
                ran = True
    # Composite types made by whichever process ran the DDL.
    datastore.register_type_adapters()
    return ran


def _pg_tracking_state(recorder: Any, cursor: Any, schema: str) -> None:
    """What eventsourcing's ``create_table`` learns before ``_create_table``."""
    cursor.execute(
        "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s AND tablename = %s",
        (schema, recorder.tracking_table_name),
    )
    exists = cursor.fetchone() is not None
    recorder.tracking_table_exists = exists
    previous = (
        recorder._max_tracking_id(recorder.table_migration_identifier, cursor)
        if exists
        else None
    )
    recorder.tracking_migration_previous = previous
    recorder.tracking_migration_current = previous
