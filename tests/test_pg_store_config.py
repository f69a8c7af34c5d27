"""The PostgreSQL pool as msgstate configures it (docs/storage.md, "When the
database goes away"): each connection attempt gives up after ``connect_timeout``,
a failed reconnection after ``RECONNECT_WINDOW``, and a broken connection found by
the pre-ping check sends every idle one to be tested; snapshots and the
notification log go through msgstate's recorders too. (The outage itself, with a
server stopped and killed, is tests/test_faults.py.)"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from msgstate import MessageService
from msgstate import _pg_store as store
from msgstate._pg_store import (
    RECONNECT_WINDOW,
    PostgresStoreAggregateRecorder,
    PostgresStoreApplicationRecorder,
)
from tests import pg
from tests.test_unavailable import lost


def _pool(service: MessageService) -> Any:
    return service.recorder.datastore.pool  # type: ignore[attr-defined]


@pytest.fixture
def open_pg() -> Iterator[Any]:
    opened: list[MessageService] = []

    def open_with(options: str = "", **kwargs: Any) -> MessageService:
        service = MessageService.open(pg.fresh_url() + options, **kwargs)
        opened.append(service)
        return service

    yield open_with
    for service in opened:
        service.close()


@pytest.mark.parametrize(("options", "seconds"), [("", 5), ("&connect_timeout=1", 1)])
def test_connection_attempts_and_reconnection_give_up_in_time(
    open_pg: Any, options: str, seconds: int
) -> None:
    pool = _pool(open_pg(options))
    assert seconds == pool.kwargs["connect_timeout"]
    assert min(seconds, RECONNECT_WINDOW) == pool.reconnect_timeout == 0.5


def test_a_broken_connection_has_the_pool_test_every_idle_one(open_pg: Any) -> None:
    pool = _pool(open_pg())
    assert "_purging_check" in pool._check.__qualname__
    checked: list[str] = []

    class Pool:
        def check_connection(self, connection: object) -> None:
            checked.append("one")
            raise ConnectionError("broken")

        def check(self) -> None:
            checked.append("all")

    from msgstate._pg_store import _purging_check

    with pytest.raises(ConnectionError):
        _purging_check(Pool())(object())
    assert ["one", "all"] == checked


class Connection:
    """A stand-in connection (weak-referenceable, hashable)."""


class CountingPool:
    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.calls: list[str] = []

    def check_connection(self, connection: object) -> None:
        self.calls.append("one")
        if self.broken:
            raise ConnectionError("broken")

    def check(self) -> None:
        self.calls.append("all")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic clock _pg_store reads, set by the test."""
    now = [1000.0]
    monkeypatch.setattr(store.time, "monotonic", lambda: now[0])
    return now


def test_a_connection_back_within_the_window_is_handed_out_unchecked(
    clock: list[float],
) -> None:
    pool = CountingPool()
    returned: Any = weakref.WeakKeyDictionary()
    check = store._purging_check(pool, returned)
    mark = store._marking_reset(None, returned)
    connection = Connection()
    check(connection)  # never returned yet (a new connection): checked
    assert ["one"] == pool.calls
    mark(connection)
    clock[0] += store.PING_AFTER_IDLE - 0.001
    check(connection)
    assert ["one"] == pool.calls
    clock[0] += 0.001  # idle exactly the window: checked
    check(connection)
    assert ["one", "one"] == pool.calls


def test_an_idle_connection_found_broken_has_the_pool_test_every_one(
    clock: list[float],
) -> None:
    pool = CountingPool(broken=True)
    returned: Any = weakref.WeakKeyDictionary()
    connection = Connection()
    store._marking_reset(None, returned)(connection)
    clock[0] += 60
    with pytest.raises(ConnectionError):
        store._purging_check(pool, returned)(connection)
    assert ["one", "all"] == pool.calls


def test_the_marking_reset_keeps_a_reset_hook_already_set(clock: list[float]) -> None:
    seen: list[object] = []
    returned: Any = weakref.WeakKeyDictionary()
    connection = Connection()
    store._marking_reset(seen.append, returned)(connection)
    assert [connection] == seen
    assert {connection: 1000.0} == dict(returned)


def test_the_pool_marks_returns_and_skips_the_ping_while_busy(open_pg: Any) -> None:
    service = open_pg()
    pool = _pool(service)
    pings: list[object] = []
    real = pool.check_connection

    def counting(connection: Any) -> None:
        pings.append(connection)
        real(connection)

    pool.check_connection = counting
    service.create("busy", sender="u", user_id="v")  # a first ping, then none
    first = len(pings)
    for _ in range(5):
        service.get("busy")
    assert first == len(pings) <= 1


def test_a_lost_connection_has_the_pool_test_its_idle_ones_before_the_retry() -> None:
    pool = CountingPool()

    class Recorder:
        class datastore:  # noqa: N801 - the attribute eventsourcing names so
            pass

    Recorder.datastore.pool = pool  # type: ignore[attr-defined]
    script = [lost()]

    def op(recorder: object) -> str:
        pool.calls.append("op")
        if script:
            raise script.pop()
        return "ok"

    assert "ok" == store.call(op, Recorder())
    assert ["op", "all", "op"] == pool.calls


def test_snapshots_and_the_log_go_through_msgstates_recorders(open_pg: Any) -> None:
    service = open_pg(snapshot_every=2)
    assert isinstance(service.recorder, PostgresStoreApplicationRecorder)
    assert isinstance(service.snapshots.recorder, PostgresStoreAggregateRecorder)  # type: ignore[union-attr]
    service.create("m", sender="u", user_id="v")
    service.record_failure("m", code=6012)
    service.resend("m")
    service.record_failure("m", code=6012)
    reopened = open_pg_same(service)
    try:
        assert service.get("m") == reopened.get("m")
        assert 4 == reopened.recorder.max_notification_id()
        assert 4 == reopened.projection_lag()  # no read-model query ran yet
        assert 4 == reopened.catch_up_projections()
        assert 0 == reopened.projection_lag()
        snapshots = list(service.snapshots.get(service.stream_id("m")))  # type: ignore[union-attr]
        assert [2, 4] == [s.originator_version for s in snapshots]
    finally:
        reopened.close()


def open_pg_same(service: MessageService) -> MessageService:
    schema = service.recorder.datastore.schema  # type: ignore[attr-defined]
    return MessageService.open(f"{pg.BASE_URL}?schema={schema}", snapshot_every=2)
