"""Batches and the service's cache: what a batch reads, and when it reads again.

A batch takes cached messages without reading them and decides again on the store
only an answer that writes nothing; a message it read from the store stands for the
rest of the batch. These tests count the reads and watch another writer's changes.
"""

from __future__ import annotations

from typing import Any

import pytest

from msgstate import (
    ConcurrencyConflict,
    MessageArchived,
    MessageNotFound,
    MessageService,
    MessageStatus,
)
from tests.conftest import ServiceFactory
from tests.support import FakeClock

TIMEOUT = 6012

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def no_reads(service: MessageService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any read of one message, or of many, fail the test."""

    def read_one(msg_id: str) -> Any:
        raise AssertionError(f"read {msg_id} from the store")

    def read_many(msg_ids: Any) -> Any:
        if msg_ids:
            raise AssertionError(f"read {list(msg_ids)} from the store")
        return {}

    monkeypatch.setattr(service.messages, "find", read_one)
    monkeypatch.setattr(service.messages, "load_many", read_many)


def test_a_rerun_after_a_create_made_elsewhere_answers_without_another_conflict(
    make_service: ServiceFactory,
) -> None:
    """The lost save teaches the service that the id exists: the very next batch
    (no other read in between) answers with the stored message."""
    first, other = make_service(), make_service()
    existing = other.create("m1", sender="a", user_id="b")
    with pytest.raises(ConcurrencyConflict), first.batch() as batch:
        batch.create("m1", sender="a", user_id="b")
    with first.batch() as batch:
        assert existing == batch.create("m1", sender="a", user_id="b")


def test_prefetch_takes_cached_messages_without_reading(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prefetch of messages this service saved reads nothing."""
    service = make_service()
    for i in range(3):
        service.create(f"m{i}", sender="a", user_id="b")
    no_reads(service, monkeypatch)
    with service.batch() as batch:
        batch.prefetch(["m0", "m1", "m2"])
        assert 3 == len([batch.record_failure(f"m{i}", code=TIMEOUT) for i in range(3)])


def test_prefetch_goes_on_past_ids_the_batch_already_knows(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An id the batch holds (or knows absent) is skipped, not the end of the list:
    the ids after it are read by the prefetch, not one by one later."""
    first, other = make_service(), make_service()
    for i in (1, 2):
        other.create(f"m{i}", sender="a", user_id="b")
    with first.batch() as batch:
        batch.create("m0", sender="a", user_id="b")
        batch.prefetch(["nobody"])
        batch.prefetch(["m0", "nobody", "m1", "m2"])

        def read_one(msg_id: str) -> Any:
            raise AssertionError(f"read {msg_id} again")

        monkeypatch.setattr(first.messages, "find", read_one)
        for i in (1, 2):
            assert 2 == batch.record_failure(f"m{i}", code=TIMEOUT).version
        with pytest.raises(MessageNotFound):
            batch.record_failure("nobody", code=TIMEOUT)


def test_a_refusal_on_a_prefetched_stale_copy_is_decided_on_the_store(
    make_service: ServiceFactory,
) -> None:
    """A cached copy that prefetch hands over is judged like one a command takes."""
    first, other = make_service(), make_service()
    first.create("m1", sender="a", user_id="b")
    other.record_failure("m1", code=TIMEOUT)
    with first.batch() as batch:
        batch.prefetch(["m1"])
        resent = batch.resend("m1", request_id="r1")
    assert (MessageStatus.SENDING, 2, 3) == (
        resent.status,
        resent.attempts,
        resent.version,
    )


def test_a_message_read_from_the_store_stands_for_the_rest_of_the_batch(
    make_service: ServiceFactory,
) -> None:
    """Read once (uncached here), a message is not read again: another writer's
    later change is not seen inside the batch (and would fail its save)."""
    first, other = make_service(), make_service()
    other.create("m1", sender="a", user_id="b")
    with first.batch() as batch:
        before = batch.get("m1")
        other.record_failure("m1", code=TIMEOUT)
        assert before == batch.get("m1")


def test_a_cached_message_read_again_once_stands_for_the_rest_of_the_batch(
    make_service: ServiceFactory,
) -> None:
    """A cached copy is read again for the first answer that writes nothing, and
    that reading then stands: a later change by another writer is not seen."""
    first, other = make_service(), make_service()
    first.create("m1", sender="a", user_id="b")
    other.record_failure("m1", code=TIMEOUT)
    with first.batch() as batch:
        seen = batch.get("m1")
        other.resend("m1", request_id="elsewhere")
        assert seen == batch.get("m1")
    assert (MessageStatus.SEND_FAIL, 2) == (seen.status, seen.version)


def test_a_cached_message_gone_from_the_store_is_refused_by_name(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Any
) -> None:
    """batch.get of a cached message archived since: MessageArchived naming it."""
    service = make_service(clock=clock)
    service.create("done", sender="a", user_id="b")
    service.record_delivery("done", seq="1")
    copy = service.messages.cached("done")
    assert copy is not None
    service.create("newest", sender="a", user_id="b")  # the archive keeps it
    clock.advance(60)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    service.repository.cache.put(copy.id, copy)  # as a stale process would hold it
    with pytest.raises(MessageArchived, match="'done'"), service.batch() as batch:
        batch.get("done")
