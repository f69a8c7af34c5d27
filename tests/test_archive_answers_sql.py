"""The archive's stores, answer by answer: the memory store's recorder (its
notification log read across the gaps deleted streams leave, the positions of a
stream, removing a stream, the refusal of an archived stream's events), the
memory store's archive with snapshots and its refusal of a foreign recorder, and
the SQLite store's guard message, its snapshot clean-up and its rule for the
newest event of the log."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from msgstate import Message, MessageArchived, MessageService
from msgstate.archive import ArchivingPOPORecorder, archived_file
from tests.conftest import ServiceFactory, backend_url
from tests.support import FakeClock
from tests.test_archive import POLICY, make_messages, raw

A, B, C = UUID(int=1), UUID(int=2), UUID(int=3)


def event(aid: UUID, version: int, topic: str) -> StoredEvent:
    return StoredEvent(
        originator_id=aid,
        originator_version=version,
        topic=topic,
        state=f"{aid.int}/{version}".encode(),
    )


@pytest.fixture
def recorder() -> ArchivingPOPORecorder:
    """A log of five notifications: A's two events (1, 2, topic "a"), B's two
    (3, 4, topic "b", then removed: gaps) and C's one (5, topic "c")."""
    log = ArchivingPOPORecorder()
    log.insert_events([event(A, 1, "a"), event(A, 2, "a")])
    log.insert_events([event(B, 1, "b"), event(B, 2, "b")])
    log.insert_events([event(C, 1, "c")])
    log.remove(B)
    return log


def notification_ids(notifications: Any) -> list[int]:
    return [n.id for n in notifications]


def test_notifications_from_the_start_skip_the_gaps_and_carry_their_events(
    recorder: ArchivingPOPORecorder,
) -> None:
    """No start means from the first; each notification is its event's."""
    expected = [
        (1, A, 1, "a", b"1/1"),
        (2, A, 2, "a", b"1/2"),
        (5, C, 1, "c", b"3/1"),
    ]

    notifications = recorder.select_notifications(None, 10)

    assert expected == [
        (n.id, n.originator_id, n.originator_version, n.topic, n.state)
        for n in notifications
    ]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"start": 2, "limit": 10}, [2, 5]),
        ({"start": 1, "limit": 10, "inclusive_of_start": False}, [2, 5]),
        ({"start": 2, "limit": 10, "inclusive_of_start": False}, [5]),
        ({"start": 1, "limit": 10, "stop": 2}, [1, 2]),
        ({"start": 1, "limit": 10, "stop": 4}, [1, 2]),
        ({"start": 1, "limit": 2}, [1, 2]),
        ({"start": 1, "limit": 10, "topics": ["c"]}, [5]),
        ({"start": 1, "limit": 10, "topics": ["a", "c"]}, [1, 2, 5]),
    ],
    ids=[
        "start",
        "after-start",
        "after-start-2",
        "stop",
        "stop-in-gap",
        "limit",
        "topic",
        "topics",
    ],
)
def test_notifications_honour_start_stop_limit_and_topics(
    recorder: ArchivingPOPORecorder, arguments: dict[str, Any], expected: list[int]
) -> None:
    """The ids eventsourcing's select_notifications would give, minus the gaps."""
    assert expected == notification_ids(recorder.select_notifications(**arguments))


def test_a_stream_s_positions_are_its_notification_ids(
    recorder: ArchivingPOPORecorder,
) -> None:
    """positions() pairs each event with the notification id it was read as."""
    assert [(5, event(C, 1, "c"))] == recorder.positions(C)


def test_removing_a_stream_the_log_does_not_hold_changes_nothing(
    recorder: ArchivingPOPORecorder,
) -> None:
    """remove() of an unknown (or already removed) stream is a no-op."""
    recorder.remove(UUID(int=99))
    recorder.remove(B)

    assert [1, 2, 5] == notification_ids(recorder.select_notifications(None, 10))


def test_the_memory_recorder_refuses_an_archived_stream_by_name(
    clock: FakeClock, tmp_path: Path
) -> None:
    """A new event of an archived stream fails with an IntegrityError naming it."""
    service = MessageService.open("memory://", policy=POLICY, clock=clock)
    make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    aid = Message.create_id("permanent")

    with pytest.raises(IntegrityError) as caught:
        service.recorder.insert_events([event(aid, 3, "t")])

    assert f"msgstate: stream {aid} was archived" == str(caught.value)


def test_the_sqlite_guard_refuses_an_archived_stream_with_its_message(
    clock: FakeClock, tmp_path: Path
) -> None:
    """The trigger's refusal says what happened and what to do."""
    service = MessageService.open(
        backend_url("sqlite", tmp_path), policy=POLICY, clock=clock
    )
    make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    aid = Message.create_id("permanent")

    with pytest.raises(IntegrityError) as caught:
        service.recorder.insert_events([event(aid, 3, "t")])

    assert "msgstate: this message was archived; restore it first" == str(caught.value)


def test_a_memory_archive_deletes_messages_that_have_no_snapshot(
    clock: FakeClock, tmp_path: Path
) -> None:
    """With snapshots every 100 events, no message here has one: all archived."""
    service = MessageService.open(
        "memory://", policy=POLICY, clock=clock, snapshot_every=100
    )
    kinds = make_messages(service, clock)
    clock.advance(3600)

    report = service.archive(before=clock(), to=tmp_path / "a.jsonl")

    finished = sorted(m for m, k in kinds.items() if k in ("delivered", "dead"))
    assert (6, {}, finished) == (
        report.archived,
        report.kept,
        sorted(m for m in kinds if raw(service, m) == []),
    )


class _PlainMemoryService(MessageService):
    """A memory store whose recorder cannot delete (eventsourcing's own)."""

    def construct_recorder(self) -> Any:
        return POPOApplicationRecorder()


def test_a_memory_store_without_the_archiving_recorder_is_refused(
    clock: FakeClock,
) -> None:
    """Archive operations on such a store name the cause."""
    service = _PlainMemoryService.open("memory://", clock=clock)

    with pytest.raises(TypeError) as caught:
        archived_file(service, Message.create_id("m"))

    assert "the memory store was not opened by MessageService" == str(caught.value)


def test_an_archive_without_snapshots_also_deletes_the_stored_snapshots(
    clock: FakeClock, tmp_path: Path
) -> None:
    """A service opened without snapshot_every archives a store another service
    wrote snapshots to: a snapshotting service then finds the message archived,
    not resurrected from its old snapshot."""
    url = backend_url("sqlite", tmp_path)
    writer = MessageService.open(url, policy=POLICY, clock=clock, snapshot_every=2)
    make_messages(writer, clock)
    writer.close()
    clock.advance(3600)
    archiver = MessageService.open(url, policy=POLICY, clock=clock)
    archiver.archive(before=clock(), to=tmp_path / "a.jsonl")
    archiver.close()
    reader = MessageService.open(url, policy=POLICY, clock=clock, snapshot_every=2)

    with pytest.raises(MessageArchived) as caught:
        reader.get("permanent")

    assert "a.jsonl" == caught.value.archive_file


def test_an_archive_without_snapshots_leaves_only_unarchived_snapshots(
    clock: FakeClock, tmp_path: Path
) -> None:
    """The snapshots table keeps the rows of the messages left in the store."""
    url = backend_url("sqlite", tmp_path)
    writer = MessageService.open(url, policy=POLICY, clock=clock, snapshot_every=2)
    make_messages(writer, clock)
    writer.close()
    clock.advance(3600)
    archiver = MessageService.open(url, policy=POLICY, clock=clock)
    archiver.archive(before=clock(), to=tmp_path / "a.jsonl")
    archiver.close()

    with sqlite3.connect(tmp_path / "msgstate.db") as db:
        left = {
            row[0] for row in db.execute("SELECT originator_id FROM stored_snapshots")
        }

    assert {Message.create_id("retryable").hex} == left


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_keeps_a_finished_message_holding_the_newest_event(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    """Deleting the newest event would let SQLite reuse its notification id."""
    service = make_service(POLICY)
    service.create("only", sender="s", user_id="u")
    service.record_delivery("only", seq="1")
    clock.advance(60)

    report = service.archive(before=clock(), to=tmp_path / "a.jsonl")

    assert (0, {"holds the newest event": 1}, 2) == (
        report.archived,
        report.kept,
        len(raw(service, "only")),
    )
