"""Answers of the SQL rebuild (``PostgresMessageViews.rebuild``) at its edges.

Which recorders and tracking it works with, the notification ids it can hold
exactly, the topics and states it refuses (``None``, nothing changed), the
diagnostic its query raises for a state it can't read, and a forgetting whose
attempt is its own. Rows are compared with the catch-up's, as in
``tests/test_rebuild_sql.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.popo import POPOApplicationRecorder
from psycopg import sql

from msgstate import Message, MessageService
from msgstate._pg_views import rows_query
from msgstate.projections import APPLICATION_NAME, plain_kinds
from tests import pg
from tests.support import FakeClock, opened
from tests.test_rebuild_sql import (
    CREATED,
    CREATED_STATE,
    FULL_HISTORY,
    POLICY,
    START,
    assert_same_as_catch_up,
    rebuilt,
    rows,
    run,
    tracking,
)

FAILED = "msgstate.domain:Message.SendFailed"
RESENT = "msgstate.domain:Message.ResendRequested"
FORGOTTEN = "msgstate.domain:Message.Forgotten"
EXACT = 2**53  # the largest notification id the rebuild's float8 arrays hold


@pytest.fixture
def store() -> Iterator[tuple[MessageService, FakeClock]]:
    clock = FakeClock(START)
    with opened(pg.fresh_url(), policy=POLICY, clock=clock, forgettable=True) as s:
        yield s, clock


def write(
    service: MessageService, originator: UUID, version: int, topic: str, state: Any
) -> int:
    """A stored event as another writer could have stored it; its notification id."""
    service.recorder.insert_events(
        [
            StoredEvent(
                originator_id=originator,
                originator_version=version,
                topic=topic,
                state=service.mapper.transcoder.encode(state),
            )
        ]
    )
    last = service.recorder.max_notification_id()
    assert last is not None
    return last


def views(service: MessageService) -> Any:
    """The PostgreSQL views (typed loosely: their own attributes are read)."""
    return service._views


def recorder(service: MessageService) -> Any:
    return service.recorder


def before(service: MessageService) -> tuple[Any, ...]:
    return (rows(service), tracking(service))


def no_transaction(**kwargs: Any) -> None:
    raise AssertionError("the SQL rebuild began a transaction")


def history(service: MessageService, clock: FakeClock) -> tuple[Any, ...]:
    """A few messages, caught up: rows and tracking to keep."""
    run(service, clock, "m", FULL_HISTORY[:6])
    service.catch_up_projections()
    seen = before(service)
    assert seen[0]
    assert seen[1]
    return seen


# -- which recorders and tracking ----------------------------------------------


def test_a_recorder_of_another_store_falls_back_at_once(
    store: tuple[MessageService, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL recorder of another datastore (another schema): None, before
    any transaction, whatever that store holds."""
    service, clock = store
    seen = history(service, clock)
    with opened(pg.fresh_url(), policy=POLICY, clock=clock) as other:
        run(other, clock, "o", FULL_HISTORY[:3])
        with monkeypatch.context() as patched:
            patched.setattr(views(service).datastore, "transaction", no_transaction)
            answer = service._views.rebuild(
                other.recorder, other.mapper, APPLICATION_NAME
            )
        assert answer is None
    assert seen == before(service)


def test_a_recorder_of_another_kind_falls_back(
    store: tuple[MessageService, FakeClock],
) -> None:
    """Not a PostgreSQL recorder (it has no datastore at all): None."""
    service, clock = store
    seen = history(service, clock)
    answer = service._views.rebuild(
        POPOApplicationRecorder(), service.mapper, APPLICATION_NAME
    )
    assert answer is None
    assert seen == before(service)


def test_tracking_of_many_rows_per_application_falls_back_at_once(
    store: tuple[MessageService, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A datastore without single-row tracking: None, before any transaction."""
    service, clock = store
    seen = history(service, clock)
    with monkeypatch.context() as patched:
        patched.setattr(views(service).datastore, "single_row_tracking", False)
        patched.setattr(views(service).datastore, "transaction", no_transaction)
        assert rebuilt(service) is None
    assert seen == before(service)


# -- notification ids -----------------------------------------------------------


def jump_ids(service: MessageService, next_id: int) -> None:
    """The next event stored gets notification id ``next_id``."""
    with views(service).datastore.transaction(commit=True) as curs:
        curs.execute(
            "SELECT setval(pg_get_serial_sequence(format('%%I.%%I', %s::text, "
            "%s::text), 'notification_id'), %s)",
            (
                recorder(service).datastore.schema,
                recorder(service).events_table_name,
                next_id - 1,
            ),
        )


def test_a_last_notification_id_of_exactly_2_53_is_rebuilt(
    store: tuple[MessageService, FakeClock],
) -> None:
    """float8 holds 2**53 exactly: the rows are the catch-up's."""
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:5])
    jump_ids(service, EXACT)
    run(service, clock, "m", [("deliver", 0)])
    assert EXACT == service.recorder.max_notification_id()
    assert_same_as_catch_up(service)
    assert 6 == rebuilt(service)
    assert EXACT == tracking(service)
    assert [2] == [row[2] for row in rows(service)]  # delivered


def test_a_last_notification_id_past_2_53_falls_back(
    store: tuple[MessageService, FakeClock],
) -> None:
    service, clock = store
    seen = history(service, clock)
    jump_ids(service, EXACT + 1)
    run(service, clock, "m", [("create", 5, False)])
    assert EXACT + 1 == service.recorder.max_notification_id()
    assert rebuilt(service) is None
    assert seen == before(service)


# -- topics and states it refuses -------------------------------------------------


def test_a_topic_naming_something_other_than_a_class_falls_back(
    store: tuple[MessageService, FakeClock],
) -> None:
    """A topic that resolves to a function: the catch-up would fail on it."""
    service, clock = store
    seen = history(service, clock)
    write(service, Message.create_id("odd"), 1, "msgstate.policy:jitter_unit", {})
    assert rebuilt(service) is None
    assert seen == before(service)


BAD_STATES: dict[str, tuple[str, dict[str, Any]]] = {
    "msg_id": (CREATED, {"msg_id": 7}),
    "online_user_only": (CREATED, {"online_user_only": 1}),
    "at": (CREATED, {"at": {"_type_": "datetime_iso", "_data_": "2026-01-01"}}),
    "code": (FAILED, {"code": "6012"}),
    "retry_after": (FAILED, {"retry_after": "soon"}),
    "attempt": (RESENT, {"attempt": "2"}),
}


def bad_state(clock: FakeClock, topic: str, changes: dict[str, Any]) -> Any:
    if topic == CREATED:
        return {**CREATED_STATE, "timestamp": clock(), "at": clock(), **changes}
    if topic == FAILED:
        good = {"attempt": 1, "code": 6012, "desc": "", "retry_after": 1.5}
    else:
        good = {"attempt": 2, "request_id": "r", "actor": None}
        good["online_user_only"] = True
    return {**good, "timestamp": clock(), "at": clock(), **changes}


@pytest.mark.parametrize("field", sorted(BAD_STATES))
def test_a_field_of_another_json_type_falls_back_and_is_named(
    store: tuple[MessageService, FakeClock], field: str
) -> None:
    """The rebuild returns None with nothing changed; its query, run alone, raises
    a data error naming the field and the notification."""
    service, clock = store
    seen = history(service, clock)
    topic, changes = BAD_STATES[field]
    odd = Message.create_id("odd")
    version = 1
    if topic != CREATED:
        write(service, odd, 1, CREATED, bad_state(clock, CREATED, {}))
        version = 2
    nid = write(service, odd, version, topic, bad_state(clock, topic, changes))
    assert rebuilt(service) is None
    assert seen == before(service)
    events = sql.SQL("{0}.{1}").format(
        sql.Identifier(recorder(service).datastore.schema),
        sql.Identifier(recorder(service).events_table_name),
    )
    query = rows_query(events, plain_kinds(), sql.Literal(nid))
    expected = re.escape(f'"msgstate: unexpected {field} in notification {nid}"')
    with (
        psycopg.connect(pg.BASE_URL) as connection,
        pytest.raises(psycopg.DataError, match=expected),
    ):
        connection.execute(query)


# -- a forgetting's own attempt -----------------------------------------------------


def test_a_forgetting_sets_attempts_from_its_own_attempt(
    store: tuple[MessageService, FakeClock],
) -> None:
    """The catch-up writes a Forgotten event's attempt as the row's attempts
    (after the creation and after a resend): so does the SQL."""
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:3])  # m0: created, failed, resent
    odd = Message.create_id("odd")
    write(service, odd, 1, CREATED, bad_state(clock, CREATED, {}))
    forgotten = {"actor": "dpo", "reason": "asked", "timestamp": clock(), "at": clock()}
    write(service, odd, 2, FORGOTTEN, {**forgotten, "attempt": 5})
    m0 = Message.create_id("m0")
    write(service, m0, 4, FORGOTTEN, {**forgotten, "attempt": 7})
    assert_same_as_catch_up(service)
    attempts = {
        row[0]: row[3]
        for row in views(service)._query(
            f"SELECT * FROM {views(service)._table_sql()}", {}
        )
    }
    assert {odd: 5, m0: 7} == attempts
