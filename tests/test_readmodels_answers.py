"""Exact answers of the read-model queries and of projection upkeep.

Argument checks word for word, default and largest limits, ``after`` paging,
answers the exact decision must correct (a row that is a millisecond early, a
stale row of an ``projections="external"`` service, a stream that vanished
between the read-model query and the load), ``projection_lag``, batched
``catch_up_projections`` counts, ``rebuild_projections`` and
``wait_for_projections`` (its text, limits and 10 ms poll).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageService,
    MessageStatus,
    ResendPolicy,
)
from msgstate.errors import ProjectionTimeout
from tests.conftest import backend_url
from tests.support import EPOCH, FakeClock

TIMEOUT, BLOCKED, ACK = 6012, 80001, 9520
LOCAL = ["memory", "sqlite"]
TAIL = "is the projection process running? [PROJECTION_TIMEOUT]"


def make(service: MessageService, msg_id: str, **kwargs: Any) -> None:
    service.create(msg_id, sender="alice", user_id="bob", **kwargs)


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def ids(items: list[Any]) -> list[str]:
    return [item.msg_id for item in items]


@pytest.fixture
def memory(clock: FakeClock) -> Iterator[MessageService]:
    service = MessageService.open("memory://", clock=clock)
    yield service
    service.close()


@pytest.fixture
def external(clock: FakeClock) -> Iterator[MessageService]:
    """A memory service whose queries never catch up on their own."""
    service = MessageService.open("memory://", clock=clock, projections="external")
    yield service
    service.close()


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(InvalidArgument) as caught:
        call()
    assert ErrorCode.INVALID_ARGUMENT is caught.value.code
    return str(caught.value)


def bounded(call: Callable[[], Any], seconds: float = 10.0) -> Any:
    """``call()`` in a thread; fails (instead of hanging) if it never returns."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    assert len(result) == 1
    return result[0]


# -- argument checks --


def test_now_must_be_an_aware_datetime(memory: MessageService) -> None:
    naive = datetime(2026, 1, 1)
    for query in (memory.due_resends, memory.stuck_sends, memory.dead_letters):
        assert (
            "now must be timezone-aware, got datetime.datetime(2026, 1, 1, 0, 0) "
            "[INVALID_ARGUMENT]"
        ) == refused(lambda q=query: q(naive))
        assert "now must be a datetime, got 'x' [INVALID_ARGUMENT]" == refused(
            lambda q=query: q("x")
        )
        assert [] == query(datetime(2026, 1, 1, 8, tzinfo=UTC))


def test_limit_is_an_int_from_1_to_100000(memory: MessageService) -> None:
    for query in (memory.due_resends, memory.stuck_sends, memory.dead_letters):
        for bad in (0, 100_001, -1):
            assert (
                f"limit must be between 1 and 100000, got {bad} [INVALID_ARGUMENT]"
                == refused(lambda q=query, b=bad: q(EPOCH, limit=b))
            )
        assert "limit must be an int, got True [INVALID_ARGUMENT]" == refused(
            lambda q=query: q(EPOCH, limit=True)
        )
        assert [] == query(EPOCH, limit=100_000)
        assert [] == query(EPOCH, limit=1)


def test_after_is_a_str_of_at_most_128_characters(memory: MessageService) -> None:
    assert "after must be a str, got 5 [INVALID_ARGUMENT]" == refused(
        lambda: memory.dead_letters(after=5)  # type: ignore[arg-type]
    )
    assert "after is 129 characters; at most 128 [INVALID_ARGUMENT]" == refused(
        lambda: memory.dead_letters(after="x" * 129)
    )
    assert (
        "after must not contain NUL characters, got 'a\\x00' [INVALID_ARGUMENT]"
        == refused(lambda: memory.dead_letters(after="a\x00"))
    )
    assert [] == memory.dead_letters(after="x" * 128)


def test_batch_is_an_int_from_1_to_1000000(memory: MessageService) -> None:
    make(memory, "m")
    for bad in (0, 1_000_001):
        assert (
            f"batch must be between 1 and 1000000, got {bad} [INVALID_ARGUMENT]"
            == refused(lambda b=bad: memory.catch_up_projections(batch=b))
        )
    assert 1 == memory.projection_lag()  # refused before reading anything
    assert 1 == memory.catch_up_projections(batch=1_000_000)


def test_timeout_is_seconds_from_0_to_a_week(memory: MessageService) -> None:
    for bad in (-1, 604_801, 604_800.5):
        assert (
            f"timeout must be between 0 and 604800 s, got {bad!r} [INVALID_ARGUMENT]"
            == refused(lambda b=bad: memory.wait_for_projections(b))
        )
    assert "timeout must be a number of seconds, got '1' [INVALID_ARGUMENT]" == (
        refused(lambda: memory.wait_for_projections("1"))  # type: ignore[arg-type]
    )
    assert None is bounded(lambda: memory.wait_for_projections(604_800))
    assert None is bounded(lambda: memory.wait_for_projections(1_050.5))


# -- limits, paging, views --


def test_default_limit_is_100(memory: MessageService, clock: FakeClock) -> None:
    for i in range(101):
        make(memory, f"due{i:03}")
        memory.record_failure(f"due{i:03}", code=TIMEOUT)
        make(memory, f"dead{i:03}")
        memory.record_failure(f"dead{i:03}", code=BLOCKED)
        make(memory, f"stuck{i:03}")
    later = clock.advance(3600)
    assert 100 == len(memory.due_resends(later))
    assert 100 == len(memory.stuck_sends(later))
    dead = memory.dead_letters(later)
    assert [f"dead{i:03}" for i in range(100)] == ids(dead)
    assert 101 == len(memory.due_resends(later, limit=101))
    assert 101 == len(memory.stuck_sends(later, limit=101))
    assert 101 == len(memory.dead_letters(later, limit=101))
    assert 100 == len(memory.due_resends())
    assert 100 == len(memory.stuck_sends())
    assert 100 == len(memory.dead_letters())


@pytest.mark.parametrize("backend", LOCAL)
def test_dead_letters_page_after_a_msg_id(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    service = MessageService.open(backend_url(backend, tmp_path), clock=clock)
    for msg_id in ("a", "b", "c", "d"):
        make(service, msg_id)
        service.record_failure(msg_id, code=BLOCKED)
    assert ["c", "d"] == ids(service.dead_letters(after="b"))
    assert ["c"] == ids(service.dead_letters(after="b", limit=1))
    assert ["a", "b", "c", "d"] == ids(service.dead_letters(after=""))
    assert [] == service.dead_letters(after="d")
    letter = service.dead_letters(after="c")[0]
    assert ("d", ErrorCode.NOT_RETRYABLE) == (letter.msg_id, letter.code)
    assert service.get("d") == letter.view
    assert (
        "error 80001 of message 'd' is permanent; resending the same message "
        "cannot succeed"
    ) == letter.desc


def test_stuck_view_is_the_message_view(
    memory: MessageService, clock: FakeClock
) -> None:
    """A resent message (with a classified last error) comes back in full."""
    make(memory, "m")
    memory.record_failure("m", code=ACK)
    clock.advance(10)
    memory.resend("m")
    clock.advance(60)
    [view] = memory.stuck_sends()
    assert memory.get("m") == view
    assert (MessageStatus.SENDING, 2, ACK, at(10)) == (
        view.status,
        view.attempts,
        view.last_error_code,
        view.updated_at,
    )
    assert view.maybe_delivered


# -- the exact decision corrects the rows --


@pytest.mark.parametrize("backend", LOCAL)
def test_a_resend_a_millisecond_early_is_not_due(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    """The rows find it (they allow a millisecond of slack); the exact
    next_retry_at leaves it out until it is reached."""
    service = MessageService.open(backend_url(backend, tmp_path), clock=clock)
    make(service, "m")
    service.record_failure("m", code=TIMEOUT)
    due_at = service.get("m").next_retry_at
    assert at(1) == due_at
    assert [] == service.due_resends(due_at - timedelta(microseconds=500))
    assert [] == service.due_resends(due_at - timedelta(microseconds=1))
    assert ["m"] == ids(service.due_resends(due_at))


def test_a_stale_sending_row_is_not_stuck(
    external: MessageService, clock: FakeClock
) -> None:
    """An external service's row still says SENDING; the message failed."""
    make(external, "m")
    assert 1 == external.catch_up_projections()
    clock.advance(1)
    external.record_failure("m", code=TIMEOUT)
    assert 1 == external.projection_lag()
    assert [] == external.stuck_sends(at(100))
    assert 1 == external.projection_lag()  # asking did not catch up
    assert [] == external.due_resends(at(100))  # the row is not failed yet
    assert 1 == external.projection_lag()  # nor did this catch up
    assert 1 == external.catch_up_projections()
    assert ["m"] == ids(external.due_resends(at(100)))


def test_a_stale_late_row_still_finds_a_stuck_send(
    external: MessageService, clock: FakeClock
) -> None:
    """The rows are asked only for sends started timeout before now: a stale
    row (started at 100 s) hides the current send (started at 5 s, the clock
    having gone back) until caught up."""
    clock.now = at(100)
    make(external, "m")
    assert 1 == external.catch_up_projections()
    clock.now = at(0)
    external.record_failure("m", code=TIMEOUT)
    clock.now = at(5)
    external.resend("m")
    assert [] == external.stuck_sends(at(65))
    assert 2 == external.catch_up_projections()
    assert ["m"] == ids(external.stuck_sends(at(65)))
    assert at(5) == external.stuck_sends(at(65))[0].updated_at


def test_stale_dead_rows_are_checked_by_the_exact_decision(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A row says dead (an ack timeout this policy won't resend); another
    service, resending ambiguous errors, has resent and failed it since: the
    external reader's exact decision says too early, then resend."""
    url = backend_url("sqlite", tmp_path)
    writer = MessageService.open(url, clock=clock)
    strict = ResendPolicy(resend_ambiguous=False, enforce_backoff=True)
    reader = MessageService.open(
        url, clock=clock, policy=strict, projections="external"
    )
    make(writer, "m")
    writer.record_failure("m", code=ACK)
    assert 2 == reader.catch_up_projections()
    assert [("m", ErrorCode.NOT_RETRYABLE)] == [
        (d.msg_id, d.code) for d in reader.dead_letters(at(0))
    ]
    clock.advance(10)
    writer.resend("m")
    writer.record_failure("m", code=TIMEOUT)
    assert 2 == reader.projection_lag()
    assert [] == reader.dead_letters(at(10))  # too early under strict
    assert [] == reader.dead_letters(at(1000))  # allowed under strict
    assert 2 == reader.projection_lag()
    assert 2 == reader.catch_up_projections()
    assert [] == reader.dead_letters(at(1000))
    assert ["m"] == ids(reader.due_resends(at(1000)))


def _drop_first_loaded(
    service: MessageService, monkeypatch: pytest.MonkeyPatch
) -> list[Any]:
    """As if another process archived the first stream the read model named,
    between the read-model query and the load."""
    dropped: list[Any] = []
    original = service.messages.load_streams

    def load_streams(ids: Any) -> Any:
        found = original(ids)
        if ids:
            dropped.append(ids[0])
            found.pop(ids[0], None)
        return found

    monkeypatch.setattr(service.messages, "load_streams", load_streams)
    return dropped


def test_a_vanished_stream_is_skipped_not_the_rest(
    memory: MessageService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for msg_id in ("d1", "d2", "d3"):
        make(memory, msg_id)
        memory.record_failure(msg_id, code=TIMEOUT)
        clock.advance(1)
    for msg_id in ("x1", "x2", "x3"):
        make(memory, msg_id)
        memory.record_failure(msg_id, code=BLOCKED)
    for msg_id in ("s1", "s2", "s3"):
        make(memory, msg_id)
        clock.advance(1)
    clock.advance(3600)
    assert ["d1", "d2", "d3"] == ids(memory.due_resends())
    assert ["s1", "s2", "s3"] == ids(memory.stuck_sends())
    assert ["x1", "x2", "x3"] == ids(memory.dead_letters())
    dropped = _drop_first_loaded(memory, monkeypatch)
    assert ["d2", "d3"] == ids(memory.due_resends())
    assert ["s2", "s3"] == ids(memory.stuck_sends())
    assert ["x2", "x3"] == ids(memory.dead_letters())
    assert 3 == len(dropped)


# -- lag, catch up, rebuild --


@pytest.mark.parametrize("backend", LOCAL)
def test_projection_lag_counts_unapplied_notifications(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    service = MessageService.open(backend_url(backend, tmp_path), clock=clock)
    assert 0 == service.projection_lag()
    make(service, "m1")
    make(service, "m2")
    service.record_failure("m1", code=TIMEOUT)
    assert 3 == service.projection_lag()
    assert 3 == service.projection_lag()  # asking does not catch up
    assert {MessageStatus.SENDING: 1, MessageStatus.SEND_FAIL: 1} == {
        status: n for status, n in service.status_counts().items() if n
    }
    assert 0 == service.projection_lag()  # the query caught up
    make(service, "m3")
    assert 1 == service.projection_lag()
    assert {TIMEOUT: 1} == service.counts_by_error_code()
    assert 0 == service.projection_lag()


def test_catch_up_applies_batches_and_counts_them_all(
    external: MessageService,
) -> None:
    """Memory only: a wrong start would loop for ever, and the thread that
    bounds it must not outlive a SQLite connection."""
    service = external
    for i in range(5):
        make(service, f"m{i}")
    assert 5 == service.projection_lag()
    assert 5 == bounded(lambda: service.catch_up_projections(batch=2))
    assert 0 == service.projection_lag()
    assert 0 == bounded(lambda: service.catch_up_projections(batch=1))
    for i in range(4):
        service.record_failure(f"m{i}", code=TIMEOUT)
    assert 4 == bounded(lambda: service.catch_up_projections(batch=2))
    assert 0 == bounded(lambda: service.catch_up_projections(batch=2))
    service.record_failure("m4", code=BLOCKED)
    assert 1 == bounded(lambda: service.catch_up_projections(batch=1))
    assert {TIMEOUT: 4, BLOCKED: 1} == service.counts_by_error_code()
    assert 10 == bounded(lambda: service.rebuild_projections())


@pytest.mark.parametrize("backend", LOCAL)
def test_rebuild_clears_then_replays_everything(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    service = MessageService.open(
        backend_url(backend, tmp_path), clock=clock, projections="external"
    )
    assert 0 == service.rebuild_projections()
    make(service, "a")
    service.record_failure("a", code=BLOCKED)
    make(service, "b")
    assert 3 == service.projection_lag()
    assert [] == service.dead_letters()
    assert 3 == service.rebuild_projections()
    assert 0 == service.projection_lag()
    assert ["a"] == ids(service.dead_letters())
    assert 1 == service.status_counts()[MessageStatus.SENDING]
    assert 3 == service.rebuild_projections()
    assert 0 == service.catch_up_projections()


def test_postgres_rebuild_tracks_what_it_applied(clock: FakeClock) -> None:
    """Inside PostgreSQL, too: the count, and tracking at the last notification."""
    from tests import pg

    service = MessageService.open(pg.fresh_url(), clock=clock, projections="external")
    make(service, "a")
    service.record_failure("a", code=BLOCKED)
    make(service, "b")
    assert 3 == service.projection_lag()
    assert 3 == service.rebuild_projections()
    assert 0 == service.projection_lag()
    assert 0 == service.catch_up_projections()
    assert ["a"] == ids(service.dead_letters())
    assert {BLOCKED: 1} == service.counts_by_error_code()
    assert 3 == service.rebuild_projections()


# -- wait --


def test_wait_returns_at_once_when_current(
    memory: MessageService, clock: FakeClock
) -> None:
    assert None is memory.wait_for_projections(0)  # nothing recorded yet
    make(memory, "m")
    memory.catch_up_projections()
    assert None is bounded(lambda: memory.wait_for_projections(0))
    assert None is bounded(lambda: memory.wait_for_projections(0.0))


def test_wait_times_out_with_the_target_and_the_timeout(
    external: MessageService,
) -> None:
    make(external, "m1")
    make(external, "m2")
    with pytest.raises(ProjectionTimeout) as caught:
        external.wait_for_projections(0.05)
    assert ErrorCode.PROJECTION_TIMEOUT is caught.value.code
    assert f"read models did not reach notification 2 within 0.05 s; {TAIL}" == str(
        caught.value
    )
    with pytest.raises(ProjectionTimeout) as caught:
        external.wait_for_projections(0)
    assert f"read models did not reach notification 2 within 0.0 s; {TAIL}" == str(
        caught.value
    )


def test_wait_defaults_to_10_s_polling_every_10_ms(
    external: MessageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fake monotonic clock that moves only while asleep."""
    make(external, "m")
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with monkeypatch.context() as patch:
        patch.setattr(time, "monotonic", lambda: now[0])
        patch.setattr(time, "sleep", sleep)
        with pytest.raises(ProjectionTimeout) as caught:
            external.wait_for_projections()
    assert f"read models did not reach notification 1 within 10.0 s; {TAIL}" == str(
        caught.value
    )
    assert {0.01} == set(sleeps)
    assert 1000 <= len(sleeps) <= 1001
    assert 1010.0 <= now[0] < 1010.02


def test_wait_sees_a_catch_up_within_a_poll(external: MessageService) -> None:
    """Another thread catches up after 50 ms; the wait ends soon after."""
    make(external, "m")
    timer = threading.Timer(0.05, external.catch_up_projections)
    started = time.monotonic()
    timer.start()
    try:
        assert None is external.wait_for_projections(5)
        elapsed = time.monotonic() - started
    finally:
        timer.join()
    assert 0.05 <= elapsed < 0.6
    assert 0 == external.projection_lag()


@pytest.mark.parametrize("then", ["delivered", "resent"])
def test_a_stale_dead_row_of_a_message_no_longer_failed_is_not_a_dead_letter(
    tmp_path: Path, clock: FakeClock, then: str
) -> None:
    """Dead letters are messages in SEND_FAIL: one delivered (or being resent)
    since the row was written is left out, not reported as ALREADY_DELIVERED
    (or SEND_IN_PROGRESS)."""
    url = backend_url("sqlite", tmp_path)
    writer = MessageService.open(url, clock=clock)
    strict = ResendPolicy(resend_ambiguous=False)  # an ack timeout is dead here
    reader = MessageService.open(
        url, clock=clock, policy=strict, projections="external"
    )
    try:
        for msg_id in ("a", "m"):  # "a" pages first
            make(writer, msg_id)
            writer.record_failure(msg_id, code=ACK)
        assert 4 == reader.catch_up_projections()
        assert ["a", "m"] == ids(reader.dead_letters(at(0)))
        clock.advance(10)
        if then == "delivered":
            writer.record_delivery("a", seq="1")
        else:
            writer.resend("a")
        assert ["m"] == ids(reader.dead_letters(at(10)))  # the rest still listed
        assert 1 == reader.projection_lag()  # still the stale row
    finally:
        writer.close()
        reader.close()


@pytest.mark.parametrize("backend", LOCAL)
def test_a_stuck_send_in_a_forgettable_store_shows_its_personal_fields(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    service = MessageService.open(
        backend_url(backend, tmp_path), clock=clock, forgettable=True
    )
    try:
        make(service, "m")
        clock.advance(60)
        [view] = service.stuck_sends()
        assert service.get("m") == view
        assert ("alice", "bob") == (view.sender, view.user_id)
    finally:
        service.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_dead_letters_page_of_stale_rows_is_not_the_end(
    backend: str, tmp_path: Path
) -> None:
    """Rows gone stale (delivered since the read model saw them) are skipped,
    and the page reads on: a short page means the end, never a stale stretch."""
    url = backend_url(backend, tmp_path)
    service = MessageService.open(url, projections="external", clock=FakeClock())
    ids = [f"d{i}" for i in range(6)]
    for msg_id in ids:
        service.create(msg_id, sender="s", user_id="u")
        service.record_failure(msg_id, code=80001)  # never resent: dead
    service.catch_up_projections()
    for msg_id in ids[:3]:  # late deliveries the read model has not seen
        service.record_delivery(msg_id, seq="1")
    first = [d.msg_id for d in service.dead_letters(limit=3)]
    rest = [d.msg_id for d in service.dead_letters(limit=3, after=ids[2])]
    service.close()
    assert ids[3:] == first
    assert ids[3:] == rest
