"""Archiving on PostgreSQL: what the store holds and answers around an archive.

Closes mutation-testing gaps in ``msgstate.archive._PostgresStore``: the guard
trigger and function (their names, the message they refuse with, no DDL once they
exist), snapshots deleted by a service opened without snapshots, the answer for an
unknown id before any archive, and an archive that finds the read models dropped.
Catalogue and table rows are read with a separate psycopg connection, as another
program would see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from msgstate import Message, MessageNotFound, MessageService
from msgstate.projections import APPLICATION_NAME
from tests import pg
from tests.conftest import backend_url
from tests.support import FakeClock
from tests.test_archive import POLICY, archived_ids, make_messages, raw

GUARD_MESSAGE = "msgstate: this message was archived; restore it first"


def open_pg(tmp_path: Path, clock: FakeClock, **options: Any) -> MessageService:
    """A service on a fresh PostgreSQL schema."""
    url = backend_url("postgres", tmp_path)
    return MessageService.open(url, policy=POLICY, clock=clock, **options)


def query(statement: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of one statement, on a connection of its own (committed)."""
    with psycopg.connect(pg.BASE_URL) as connection:
        return [tuple(row) for row in connection.execute(statement, params)]


def events_name(service: MessageService) -> str:
    """The events table's quoted, schema-qualified name (for to_regclass)."""
    recorder: Any = service.recorder
    return f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'


def guard_rows(service: MessageService) -> list[tuple[Any, ...]]:
    """The user triggers on the events table: trigger, function schema and name."""
    events = events_name(service)
    return query(
        "SELECT t.tgname, n.nspname, p.proname FROM pg_trigger t "
        "JOIN pg_proc p ON p.oid = t.tgfoid "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE t.tgrelid = to_regclass(%s) AND NOT t.tgisinternal ORDER BY 1",
        (events,),
    )


def guard_versions(service: MessageService) -> list[tuple[Any, ...]]:
    """The row versions (xmin) of the guard's trigger and function in the catalogue:
    any DDL that replaces either gives it a new one."""
    events = events_name(service)
    return query(
        "SELECT t.xmin::text, p.xmin::text FROM pg_trigger t "
        "JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgrelid = to_regclass(%s) AND NOT t.tgisinternal",
        (events,),
    )


def test_an_unknown_id_on_a_store_never_archived_is_plainly_not_found(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Before the first archive there is no archived table: looking an id up in it
    answers "not archived", so the id is plainly not found."""
    service = open_pg(tmp_path, clock)
    try:
        with pytest.raises(MessageNotFound) as caught:
            service.get("never-created")

        assert (type(caught.value), str(caught.value)) == (
            MessageNotFound,
            "message 'never-created' not found [MESSAGE_NOT_FOUND]",
        )
    finally:
        service.close()


def test_the_guard_is_a_trigger_and_function_named_msgstate_archived_guard(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The first archive adds one trigger on the events table, named as SQLite's
    (msgstate_archived_guard), running the function of that name in the store's
    schema."""
    service = open_pg(tmp_path, clock)
    try:
        make_messages(service, clock)
        clock.advance(3600)
        assert guard_rows(service) == []

        service.archive(before=clock(), to=tmp_path / "a.jsonl")

        schema = service.recorder.datastore.schema
        assert guard_rows(service) == [
            ("msgstate_archived_guard", schema, "msgstate_archived_guard")
        ]
    finally:
        service.close()


def test_another_program_inserting_into_an_archived_stream_gets_the_guard_message(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A raw INSERT of an event for an archived stream fails with unique_violation
    and msgstate's message (the same text as SQLite's guard)."""
    service = open_pg(tmp_path, clock)
    try:
        make_messages(service, clock)
        clock.advance(3600)
        service.archive(before=clock(), to=tmp_path / "a.jsonl")
        events = SQL("{0}.{1}").format(
            Identifier(service.recorder.datastore.schema),
            Identifier(service.recorder.events_table_name),
        )

        with pytest.raises(psycopg.errors.UniqueViolation) as caught:
            query(
                SQL(
                    "INSERT INTO {0} (originator_id, originator_version, topic, "
                    "state) VALUES (%s, 9, 'late', '')"
                ).format(events),
                (Message.create_id("permanent"),),
            )

        assert caught.value.diag.message_primary == GUARD_MESSAGE
        assert raw(service, "permanent") == []
    finally:
        service.close()


def test_archiving_again_does_no_ddl_once_the_guard_exists(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Later archives (and restores) find the archived table and leave the guard's
    trigger and function as they are: their catalogue rows are not rewritten."""
    service = open_pg(tmp_path, clock)
    try:
        make_messages(service, clock)
        clock.advance(3600)
        service.archive(before=clock(), to=tmp_path / "a.jsonl")
        first = guard_versions(service)

        service.restore(tmp_path / "a.jsonl")
        service.archive(before=clock(), to=tmp_path / "b.jsonl")

        assert len(first) == 1
        assert guard_versions(service) == first
    finally:
        service.close()


def test_a_service_without_snapshots_deletes_the_archived_streams_snapshots(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Snapshots taken by a service opened with snapshot_every are deleted by an
    archive run from a service opened without it (the default snapshots table)."""
    url = backend_url("postgres", tmp_path)
    writer = MessageService.open(url, policy=POLICY, clock=clock, snapshot_every=2)
    kinds = make_messages(writer, clock)
    gone = [Message.create_id(m) for m in archived_ids(kinds, ("delivered", "dead"))]
    assert writer.snapshots is not None
    assert list(writer.snapshots.get(Message.create_id("delivered-0"))) != []
    writer.close()
    clock.advance(3600)
    archiver = MessageService.open(url, policy=POLICY, clock=clock)
    archiver.archive(before=clock(), to=tmp_path / "a.jsonl")
    archiver.close()
    reader = MessageService.open(url, policy=POLICY, clock=clock, snapshot_every=2)
    try:
        assert reader.snapshots is not None

        left = {aid: list(reader.snapshots.get(aid)) for aid in gone}

        assert left == {aid: [] for aid in gone}
    finally:
        reader.close()


def test_an_archive_that_finds_the_read_models_dropped_keeps_every_message(
    tmp_path: Path, clock: FakeClock
) -> None:
    """The read models (and their tracking row) are dropped between writing and
    deleting, as a rebuild elsewhere does: nothing is in the read models, so every
    message stays in the store, kept as "not yet in the read models"."""
    service = open_pg(tmp_path, clock)
    try:
        kinds = make_messages(service, clock)
        before_raw = {m: raw(service, m) for m in kinds}
        clock.advance(3600)
        dropped: list[bool] = []

        def drop_read_models(phase: str, done: int, total: int) -> None:
            if phase == "verify" and done == total and not dropped:
                dropped.append(True)
                service._views.clear(APPLICATION_NAME)

        report = service.archive(
            before=clock(), to=tmp_path / "a.jsonl", progress=drop_read_models
        )

        finished = len(archived_ids(kinds, ("delivered", "dead")))
        assert (report.archived, report.kept) == (
            0,
            {"not yet in the read models": finished},
        )
        assert {m: raw(service, m) for m in kinds} == before_raw
    finally:
        service.close()
