"""The PostgreSQL pool as msgstate configures it (docs/storage.md, "When the
database goes away"): each connection attempt gives up after ``connect_timeout``,
a failed reconnection after ``RECONNECT_WINDOW``, and a broken connection found by
the pre-ping check sends every idle one to be tested; snapshots and the
notification log go through msgstate's recorders too. (The outage itself, with a
server stopped and killed, is tests/test_faults.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from msgstate import MessageService
from msgstate._pg_store import (
    RECONNECT_WINDOW,
    PostgresStoreAggregateRecorder,
    PostgresStoreApplicationRecorder,
)
from tests import pg


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
