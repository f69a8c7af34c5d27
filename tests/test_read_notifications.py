"""``msgstate.storage.read_notifications``: the read models' direct read of the
notification log answers exactly what ``recorder.select_notifications`` does.

Every field is compared (id, originator_id as a UUID, originator_version, topic,
state as bytes) on every kind of store, for a window at the start, in the middle,
cut short by the limit, at the end and past it; on PostgreSQL also in a schema of
its own beside another store. On SQLite and PostgreSQL the read is msgstate's own
query (plain tuples, not the recorder's mapping rows: the read models read
millions), so it must answer without ``select_notifications``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import Notification

from msgstate import MessageService
from msgstate.storage import read_notifications
from tests import pg
from tests.support import FakeClock, opened

#: (start, limit) windows over a log of TOTAL notifications.
TOTAL = 20
WINDOWS = [
    (1, 1),  # the first only
    (1, 1000),  # all of it
    (0, 1000),  # before the first id: all of it
    (1, TOTAL),  # exactly all of it
    (5, 4),  # the middle, cut short by the limit
    (7, TOTAL - 6),  # from the middle to exactly the end
    (9, 1000),  # from the middle, the limit larger than what is left
    (TOTAL, 5),  # the last only
    (TOTAL + 1, 10),  # past the end: nothing
    (TOTAL + 50, 10),  # far past the end: nothing
]


def url_for(kind: str, directory: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{directory / 'events.db'}"
    if kind == "sqlite-memory":
        return "sqlite:///:memory:"
    if kind == "postgres":
        return pg.fresh_url()
    raise ValueError(kind)


def fill(service: MessageService, clock: FakeClock, prefix: str = "m") -> None:
    """TOTAL notifications from five streams, interleaved, of several event kinds
    (so ids, versions, streams and topics do not follow one another)."""

    def create(i: int) -> None:
        service.create(
            f"{prefix}{i}", sender="alice", user_id=f"bob{i}", online_user_only=i == 2
        )
        clock.advance(1)

    for i in range(3):
        create(i)
    service.record_failure(f"{prefix}0", code=6012, retry_after=1.5)
    service.resend(f"{prefix}0")
    for i in (3, 4):
        create(i)
    for i in (3, 4, 1, 2):
        service.record_failure(f"{prefix}{i}", code=6012, retry_after=1.5)
        clock.advance(2)
    for i in (1, 3):
        service.resend(f"{prefix}{i}")
        clock.advance(1)
    for i in (4, 2):
        service.record_delivery(f"{prefix}{i}", seq=f"s{i}")
        clock.advance(1)
    for i in (0, 1, 3):
        service.record_failure(f"{prefix}{i}", code=6013)
        clock.advance(1)
    service.record_delivery(f"{prefix}1", seq="s1b")
    service.resend(f"{prefix}0")
    assert service.recorder.max_notification_id() == TOTAL


def expected(service: MessageService, start: int, limit: int) -> list[Notification]:
    return list(service.recorder.select_notifications(start=start, limit=limit))


def assert_same(got: Sequence[Notification], want: Sequence[Notification]) -> None:
    """The same notifications, field by field and of the same types."""
    assert isinstance(got, list)
    assert [n.id for n in got] == [n.id for n in want]
    for mine, theirs in zip(got, want, strict=True):
        assert type(mine) is Notification
        assert isinstance(mine.id, int)
        assert mine.id == theirs.id
        assert isinstance(mine.originator_id, UUID)
        assert mine.originator_id == theirs.originator_id
        assert isinstance(mine.originator_version, int)
        assert mine.originator_version == theirs.originator_version
        assert isinstance(mine.topic, str)
        assert mine.topic == theirs.topic
        assert type(mine.state) is bytes
        assert mine.state == bytes(theirs.state)
    assert list(got) == list(want)


@pytest.fixture(params=["memory", "sqlite", "sqlite-memory", "postgres"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MessageService]:
    clock = FakeClock()
    with opened(url_for(str(request.param), tmp_path), clock=clock) as service:
        fill(service, clock)
        yield service


def test_the_log_is_varied(filled: MessageService) -> None:
    """The fixture's log has what the comparisons need to tell fields apart."""
    log = expected(filled, 1, 1000)
    assert [n.id for n in log] == list(range(1, TOTAL + 1))
    assert len({n.originator_id for n in log}) == 5
    assert len({n.topic for n in log}) >= 4
    assert [n.originator_version for n in log] != sorted(
        n.originator_version for n in log
    )


@pytest.mark.parametrize(("start", "limit"), WINDOWS)
def test_every_window_equals_select_notifications(
    filled: MessageService, start: int, limit: int
) -> None:
    """Each window answers what the recorder's own read does, field by field."""
    want = expected(filled, start, limit)
    got = read_notifications(filled.recorder, start, limit)
    assert_same(got, want)
    assert len(got) == max(0, min(limit, TOTAL + 1 - max(start, 1)))


@pytest.mark.parametrize("kind", ["sqlite", "sqlite-memory", "postgres"])
def test_sql_stores_read_without_select_notifications(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite and PostgreSQL the read is msgstate's own query: it answers the
    same with the recorder's select_notifications out of the way."""
    clock = FakeClock()
    with opened(url_for(kind, tmp_path), clock=clock) as service:
        fill(service, clock)
        wanted = {w: expected(service, *w) for w in WINDOWS}

        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("read_notifications used select_notifications")

        monkeypatch.setattr(service.recorder, "select_notifications", refuse)
        for (start, limit), want in wanted.items():
            assert_same(read_notifications(service.recorder, start, limit), want)


def test_postgres_stores_in_their_own_schemas() -> None:
    """Two PostgreSQL stores in one database, each in a schema of its own (not
    public): each read answers its own store's log, not the other's."""
    clock = FakeClock()
    first_url, second_url = pg.fresh_url(), pg.fresh_url()
    assert "schema=" in first_url
    assert "schema=public" not in first_url
    with (
        opened(first_url, clock=clock) as first,
        opened(second_url, clock=clock) as second,
    ):
        fill(first, clock, "a")
        second.create("b0", sender="carol", user_id="dave")
        second.record_failure("b0", code=6012)
        for start, limit in WINDOWS:
            assert_same(
                read_notifications(first.recorder, start, limit),
                expected(first, start, limit),
            )
            assert_same(
                read_notifications(second.recorder, start, limit),
                expected(second, start, limit),
            )
        assert len(read_notifications(second.recorder, 1, 1000)) == 2
        assert read_notifications(first.recorder, 1, 1000) != read_notifications(
            second.recorder, 1, 1000
        )


class OpenWrite:
    """Another thread's write transaction on a SQLite store, left open: it adds a
    copy of the first event (as version 101 of its stream) and commits when told,
    or after ``hold`` seconds."""

    def __init__(self, service: MessageService, hold: float) -> None:
        self.recorder: Any = service.recorder
        self.hold = hold
        self.written = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._write)

    def _write(self) -> None:
        table = self.recorder.events_table_name
        with self.recorder.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {table} (originator_id, originator_version, topic, state)"
                f" SELECT originator_id, originator_version + 100, topic, state"
                f" FROM {table} WHERE rowid = 1"
            )
            self.written.set()
            self.release.wait(self.hold)

    def __enter__(self) -> OpenWrite:
        self.thread.start()
        assert self.written.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


def test_sqlite_file_read_does_not_wait_for_an_open_write(tmp_path: Path) -> None:
    """A file store (WAL): a read while another connection's write is open answers
    at once, with the committed log only, as select_notifications does; the
    write's event is read once it commits."""
    clock = FakeClock()
    with opened(url_for("sqlite", tmp_path), clock=clock) as service:
        fill(service, clock)
        with OpenWrite(service, hold=3.0) as write:
            got = read_notifications(service.recorder, 1, 1000)
            assert write.thread.is_alive()  # answered before the write ended
            assert_same(got, expected(service, 1, 1000))
            assert len(got) == TOTAL
        got = read_notifications(service.recorder, 1, 1000)
        assert_same(got, expected(service, 1, 1000))
        assert len(got) == TOTAL + 1
        assert got[-1].originator_version == got[0].originator_version + 100


def test_sqlite_memory_read_waits_for_an_open_write() -> None:
    """An in-memory store (``sqlite:///:memory:``, shared by its connections): a
    read while another connection's write is open waits for it to commit, then
    answers with its event, instead of failing with 'table is locked'."""
    clock = FakeClock()
    with opened(url_for("sqlite-memory", Path()), clock=clock) as service:
        fill(service, clock)
        with OpenWrite(service, hold=0.3):
            got = read_notifications(service.recorder, 1, 1000)
        assert_same(got, expected(service, 1, 1000))
        assert len(got) == TOTAL + 1
