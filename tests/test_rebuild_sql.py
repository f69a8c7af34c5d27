"""The rebuild inside PostgreSQL (``MessageViews.rebuild``) against the catch-up.

Every row the SQL rebuild writes must be the one clearing the views and catching
up writes, column for column and bit for bit (floats compared by ``float.hex``, so
``-0.0`` is not ``0.0``), with the same count and tracking at the last
notification; where it can't promise that, it changes nothing and returns None.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ProgrammingError, StoredEvent
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from msgstate import (
    Message,
    MessageService,
    MsgStateError,
    ResendPolicy,
    generate_cipher_key,
    projections,
)
from msgstate.projections import APPLICATION_NAME, ViewChange
from tests import pg
from tests import strategies as mst
from tests.support import EPOCH, FakeClock, opened

POLICY = ResendPolicy(max_attempts=6)
BATCH = 10_000  # the catch-up's batch in a rebuild (as rebuild_projections reads)
START = EPOCH + timedelta(microseconds=123_457)  # odd microseconds from the start
TIMEOUT = 6012


def rows(service: MessageService) -> list[tuple[Any, ...]]:
    """``SELECT * FROM views ORDER BY id``, floats as their exact hex text."""
    views = service._views
    found = views._query(f"SELECT * FROM {views._table_sql()} ORDER BY id", {})
    return [tuple(v.hex() if isinstance(v, float) else v for v in row) for row in found]


def tracking(service: MessageService) -> int | None:
    result: int | None = service._views.max_tracking_id(APPLICATION_NAME)
    return result


def caught_up(service: MessageService) -> int:
    """The rebuild of today's service: clear, then catch up from the start."""
    service._views.clear(APPLICATION_NAME)
    return service.catch_up_projections(batch=BATCH)


def rebuilt(service: MessageService) -> int | None:
    return service._views.rebuild(
        service.recorder, service.mapper, projections.APPLICATION_NAME
    )


def assert_same_as_catch_up(service: MessageService) -> None:
    """Both rebuilds, on the same store: same count, rows and tracking."""
    expected_count = caught_up(service)
    expected_rows = rows(service)
    count = rebuilt(service)
    assert (expected_count, expected_rows) == (count, rows(service))
    assert service.recorder.max_notification_id() == tracking(service)


# -- command histories --------------------------------------------------------

WHICH = st.integers(0, 2)
RETRY_AFTERS = st.one_of(mst.retry_afters(), st.just(-0.0), st.just(0))
FAIL = st.one_of(
    st.tuples(st.just("fail"), WHICH, mst.error_codes(), RETRY_AFTERS),
    st.tuples(st.just("fail"), WHICH, st.just(TIMEOUT), RETRY_AFTERS),
)
RESEND = st.tuples(st.just("resend"), WHICH, st.sampled_from([None, True, False]))
CYCLE = st.tuples(  # a retryable failure, then its resend
    st.just("cycle"), WHICH, RETRY_AFTERS, st.sampled_from([None, True, False])
)
STEPS = st.one_of(
    FAIL,
    CYCLE,
    RESEND,
    CYCLE,
    st.tuples(st.just("deliver"), WHICH),
    st.tuples(st.just("expire"), WHICH),
    st.tuples(st.just("tick"), st.integers(1, 90_000_001)),  # microseconds
    st.tuples(st.just("forget"), WHICH),
    st.tuples(st.just("create"), st.integers(3, 4), st.booleans()),
)
"""Steps on three messages created first (and sometimes two more), often a
failure and its resend, so histories go through several attempts."""
OFFSETS = st.sampled_from([0, 330, -180, 840, -720, 45, -1])  # minutes from UTC
DIRECT_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("fail"), mst.error_codes(), RETRY_AFTERS),
        st.tuples(st.just("resend"), st.sampled_from([None, True, False])),
        st.tuples(st.just("deliver")),
    ),
    max_size=6,
)
"""What happens to a message saved as an aggregate, its times in a UTC offset."""


def run(service: MessageService, clock: FakeClock, prefix: str, steps: Any) -> None:
    """Perform ``steps`` through the service; refusals are part of the history.
    Each command is a second and a microsecond after the previous one."""
    for step in steps:
        name, *args = step
        if name == "cycle":
            which, retry_after, online = args
            run(service, clock, prefix, [("fail", which, TIMEOUT, retry_after)])
            run(service, clock, prefix, [("resend", which, online)])
            continue
        msg_id = f"{prefix}{args[0]}" if name != "tick" else ""
        try:
            if name == "create":
                service.create(
                    msg_id, sender="alice", user_id="bob", online_user_only=args[1]
                )
            elif name == "fail":
                service.record_failure(msg_id, code=args[1], retry_after=args[2])
            elif name == "resend":
                service.resend(msg_id, online_user_only=args[1])
            elif name == "deliver":
                service.record_delivery(msg_id, seq=f"s{args[0]}")
            elif name == "expire":
                attempt = service.get(msg_id).attempts
                service.expire_send(msg_id, attempt=attempt, actor="sweeper")
            elif name == "forget":
                service.forget(msg_id, actor="dpo", reason="asked")
            else:
                clock.advance(args[0] / 1e6)
        except MsgStateError:
            pass
        clock.advance(1.000001)


def save_direct(
    service: MessageService, msg_id: str, minutes: int, steps: Any, start: datetime
) -> None:
    """A message made and changed as an aggregate, its times in UTC+``minutes``
    (the service itself stores UTC), saved at once."""
    zone = timezone(timedelta(minutes=minutes))
    at = start.astimezone(zone)
    message = Message(
        msg_id=msg_id,
        sender="alice",
        user_id=None,
        group_id="g",
        elem_type=1,
        priority=0,
        online_user_only=minutes % 2 == 0,
        need_read_receipt=False,
        cloud_custom_data="",
        content="{}",
        at=at,
    )
    for number, (name, *args) in enumerate(steps):
        at += timedelta(seconds=7, microseconds=333_333)
        try:
            if name == "fail":
                message.record_failure(
                    code=args[0], desc="", attempt=None, retry_after=args[1], at=at
                )
            elif name == "resend":
                message.request_resend(
                    policy=POLICY,
                    now=at,
                    request_id=f"r{number}",
                    actor=None,
                    online_user_only=args[0],
                )
            else:
                message.record_delivery(seq="s", server_time=at, attempt=None, at=at)
        except MsgStateError:
            pass
    service.save(message)


@pytest.fixture
def store() -> Iterator[tuple[MessageService, FakeClock]]:
    """A forgettable store (so sealed creations and forgetting happen too)."""
    clock = FakeClock(START)
    with opened(pg.fresh_url(), policy=POLICY, clock=clock, forgettable=True) as s:
        yield s, clock


EXAMPLES = itertools.count()
FULL_HISTORY = [
    ("create", 0, True),
    ("fail", 0, TIMEOUT, -0.0),
    ("resend", 0, False),
    ("fail", 0, TIMEOUT, 2),
    ("resend", 0, None),
    ("deliver", 0),
    ("create", 1, False),
    ("fail", 1, 80001, -0.0),
    ("forget", 1),
    ("create", 2, False),
    ("tick", 61_000_001),
    ("expire", 2),
    ("resend", 2, True),
    ("create", 3, True),
    ("deliver", 3),
]


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(STEPS, min_size=5, max_size=40),
    direct=st.lists(st.tuples(OFFSETS, DIRECT_STEPS), max_size=3),
)
@example(
    steps=FULL_HISTORY,
    direct=[(330, [("fail", TIMEOUT, 1.5), ("resend", None), ("deliver",)])],
)
def test_the_sql_rebuild_writes_the_rows_the_catch_up_writes(
    store: tuple[MessageService, FakeClock], steps: Any, direct: Any
) -> None:
    """Random histories (every command, resends after failures and deliveries
    after resends, odd microseconds, -0.0, non-UTC offsets), on one store that
    keeps every earlier example's messages too."""
    service, clock = store
    prefix = f"e{next(EXAMPLES)}-"
    run(service, clock, prefix, [("create", i, i % 2 == 0) for i in range(3)])
    run(service, clock, prefix, steps)
    for number, (minutes, direct_steps) in enumerate(direct):
        save_direct(service, f"{prefix}d{number}", minutes, direct_steps, clock())
    assert_same_as_catch_up(service)


def test_a_full_history_gives_every_column(
    store: tuple[MessageService, FakeClock],
) -> None:
    """Every column set by the event that sets it last (the fold), exactly."""
    service, clock = store
    run(service, clock, "m", FULL_HISTORY)
    save_direct(
        service,
        "east",
        330,
        [("fail", TIMEOUT, 1.5), ("resend", True), ("fail", TIMEOUT, None)],
        clock(),
    )
    assert_same_as_catch_up(service)
    by_key = {
        row[1]: row
        for row in service._views._query(
            f"SELECT * FROM {service._views._table_sql()}", {}
        )
    }
    # Columns: id, msg_key, status, attempts, last_error_code, failed_at,
    # retry_after, jitter_u, created_at, online_user_only, updated_at.
    delivered, forgotten, resent, east = (
        by_key[b"m0"],
        by_key[b"m1"],
        by_key[b"m2"],
        by_key[b"east"],
    )
    assert (2, 3, TIMEOUT, 2.0, 0) == (*delivered[2:5], delivered[6], delivered[9])
    assert (3, 1, 80001, "-0x0.0p+0") == (*forgotten[2:5], forgotten[6].hex())
    assert (1, 2, 1015, None, 1) == (*resent[2:5], resent[6], resent[9])
    assert (3, 2, TIMEOUT, None) == (*east[2:5], east[6])
    assert east[5] == east[10] > east[8]  # failed_at is the last update


# -- tracking and what comes after --------------------------------------------


def test_events_after_the_rebuild_are_applied_by_the_next_catch_up(
    store: tuple[MessageService, FakeClock],
) -> None:
    service, clock = store
    run(service, clock, "m", FULL_HISTORY)
    last = service.recorder.max_notification_id()
    assert 14 == rebuilt(service)  # every message event up to the last
    assert last == tracking(service)
    run(service, clock, "m", [("create", 7, False), ("fail", 3, TIMEOUT, None)])
    run(service, clock, "m", [("fail", 7, TIMEOUT, 3), ("resend", 7, None)])
    assert 3 == service.catch_up_projections()  # m3 was delivered: no failure
    after = rows(service)
    caught_up(service)
    assert rows(service) == after


def test_an_empty_store_rebuilds_to_nothing(
    store: tuple[MessageService, FakeClock],
) -> None:
    service, _ = store
    assert (0, [], None) == (rebuilt(service), rows(service), tracking(service))


def test_the_rebuild_waits_for_a_catch_up_holding_the_tracking_row(
    store: tuple[MessageService, FakeClock],
) -> None:
    """It locks the tracking row first, as apply does: events recorded while it
    waits are part of the rebuild."""
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:3])
    service.catch_up_projections()
    table = sql.SQL("{0}.{1}").format(
        sql.Identifier(service._views.datastore.schema),
        sql.Identifier(service._views.tracking_table_name),
    )
    results: list[int | None] = []
    with psycopg.connect(pg.BASE_URL) as other:
        other.execute(
            sql.SQL("SELECT * FROM {0} WHERE application_name = %s FOR UPDATE").format(
                table
            ),
            (APPLICATION_NAME,),
        )
        worker = threading.Thread(target=lambda: results.append(rebuilt(service)))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive()
        assert [] == results
        run(service, clock, "m", [("create", 9, False)])
        other.rollback()
    worker.join(30)
    assert [4] == results
    assert service.recorder.max_notification_id() == tracking(service)


# -- when it falls back -------------------------------------------------------


def falls_back_at_once(
    service: MessageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQL rebuild returns None before it reads the store, and so leaves
    rows and tracking as they were."""
    before = (rows(service), tracking(service))

    def no_transaction(**kwargs: Any) -> None:
        raise AssertionError("the SQL rebuild began a transaction")

    with monkeypatch.context() as patched:
        patched.setattr(service._views.datastore, "transaction", no_transaction)
        assert rebuilt(service) is None
    assert before == (rows(service), tracking(service))


@pytest.mark.parametrize(
    "options",
    [{"cipher_key": generate_cipher_key()}, {"compress": True}],
    ids=["cipher", "compressed"],
)
def test_encrypted_or_compressed_stores_fall_back(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(START)
    with opened(pg.fresh_url(), clock=clock, **options) as service:
        run(service, clock, "m", FULL_HISTORY[:4])
        service.catch_up_projections()
        falls_back_at_once(service, monkeypatch)


def test_encrypted_message_keys_fall_back(
    store: tuple[MessageService, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Views that encrypt msg_key (whatever the events are)."""
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:4])
    service.catch_up_projections()
    with opened(pg.fresh_url(), cipher_key=generate_cipher_key()) as encrypted:
        monkeypatch.setattr(service._views, "cipher", encrypted.mapper.cipher)
        falls_back_at_once(service, monkeypatch)


def test_an_event_class_with_upcasters_falls_back(
    store: tuple[MessageService, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:4])
    service.catch_up_projections()
    monkeypatch.setattr(Message.SendFailed, "class_version", 2, raising=False)
    falls_back_at_once(service, monkeypatch)


def unchanged_and_none(service: MessageService) -> None:
    """The SQL rebuild returns None and leaves rows and tracking as they were."""
    before = (rows(service), tracking(service))
    assert rebuilt(service) is None
    assert before == (rows(service), tracking(service))


def write(service: MessageService, topic: str, state: dict[str, Any]) -> None:
    """A stored event as another writer could have stored it."""
    service.recorder.insert_events(
        [
            StoredEvent(
                originator_id=Message.create_id("odd"),
                originator_version=state.pop("version", 1),
                topic=topic,
                state=service.mapper.transcoder.encode(state),
            )
        ]
    )


CREATED = "msgstate.domain:Message.Created"
CREATED_STATE = {
    "originator_topic": "msgstate.domain:Message",
    "msg_id": "odd",
    "sender": "a",
    "user_id": "b",
    "group_id": None,
    "elem_type": 1,
    "priority": 0,
    "online_user_only": False,
    "need_read_receipt": False,
    "cloud_custom_data": "",
    "content": "{}",
}


class LateFailure(Message.SendFailed):
    """A message event of a topic the SQL doesn't know (the catch-up applies it)."""


@pytest.mark.parametrize(
    "changes",
    [
        {"at": datetime(2026, 1, 1, 8, 0, 0, 5)},  # naive: Python's local time
        {"online_user_only": 1},
        {"msg_id": 7},
        {"at": {"_type_": "date_iso", "_data_": "2026-01-01"}},
        {"at": datetime(2026, 1, 1, tzinfo=timezone(timedelta(seconds=30)))},
        {"topic": f"{__name__}:LateFailure"},
        {"topic": "nowhere.at_all:Thing"},
    ],
    ids=["naive", "int-flag", "int-id", "other-tag", "second-offset", "sub", "lost"],
)
def test_states_or_topics_the_sql_cannot_read_exactly_fall_back(
    store: tuple[MessageService, FakeClock], changes: dict[str, Any]
) -> None:
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:4])
    service.catch_up_projections()
    state = {**CREATED_STATE, "timestamp": clock(), "at": clock(), **changes}
    write(service, state.pop("topic", CREATED), state)
    unchanged_and_none(service)


def test_a_resend_with_a_float_attempt_falls_back(
    store: tuple[MessageService, FakeClock],
) -> None:
    """JSON 2.0 is a float to Python: not an integer the SQL may read."""
    service, clock = store
    write(service, CREATED, {**CREATED_STATE, "timestamp": clock(), "at": clock()})
    resent = {
        "version": 2,
        "timestamp": clock(),
        "attempt": 2.0,
        "request_id": "r",
        "actor": None,
        "online_user_only": True,
        "at": clock(),
    }
    write(service, "msgstate.domain:Message.ResendRequested", resent)
    unchanged_and_none(service)


class Note(Aggregate):
    """Another aggregate recorded in the same store."""

    @event("Written")
    def write(self, text: str) -> None:
        self.text = text


def test_events_of_other_aggregates_are_ignored(
    store: tuple[MessageService, FakeClock],
) -> None:
    """Not counted, not in a row; tracking still reaches them (the last)."""
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:4])
    note = Note()
    note.write("hello")
    service.recorder.insert_events(
        [service.mapper.to_stored_event(e) for e in note.collect_events()]
    )
    assert_same_as_catch_up(service)
    assert 4 == rebuilt(service)


def test_database_errors_surface_as_apply_raises_them(
    store: tuple[MessageService, FakeClock],
) -> None:
    """eventsourcing's own error classes, for the service to translate."""
    service, clock = store
    run(service, clock, "m", FULL_HISTORY[:2])
    views = service._views
    with views.datastore.transaction(commit=True) as curs:
        curs.execute(sql.SQL("DROP TABLE {0}").format(views.qualified))
    change = ViewChange(99, Message.create_id("x"), {"status": 1})
    with pytest.raises(ProgrammingError, match="does not exist"):
        views.apply([change], APPLICATION_NAME)
    with pytest.raises(ProgrammingError, match="does not exist"):
        rebuilt(service)
