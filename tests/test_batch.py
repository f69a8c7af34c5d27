"""Batches: decided one by one, saved in one transaction or not at all."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate import (
    Batch,
    ConcurrencyConflict,
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    MessageStatus,
    MsgStateError,
    ResendPolicy,
    ResendRefused,
    StorageError,
)
from tests.conftest import ServiceFactory, backend_url
from tests.strategies import COMMANDS, POLICIES
from tests.support import FakeClock, opened

TIMEOUT = 6012


def events_stored(service: MessageService) -> int:
    return len(list(service.export_history()))


def test_batch_saves_everything_in_one_save(service: MessageService) -> None:
    """Every accepted change of the block is saved by a single save call."""
    saves: list[int] = []
    original = service.save

    def counting_save(*objs: Any, **kwargs: Any) -> Any:
        saves.append(len(objs))
        return original(*objs, **kwargs)

    service.save = counting_save  # type: ignore[method-assign]
    with service.batch() as batch:
        for i in range(5):
            batch.create(f"m{i}", sender="a", user_id="b")
            batch.record_failure(f"m{i}", code=TIMEOUT)
        assert 0 == events_stored(service)
        assert 10 == batch.pending
    assert [5] == saves
    assert 10 == events_stored(service)


def test_later_calls_see_earlier_ones(service: MessageService) -> None:
    """Within a batch, create -> fail -> resend -> deliver follow each other."""
    with service.batch() as batch:
        batch.create("m1", sender="a", user_id="b")
        batch.record_failure("m1", code=TIMEOUT)
        resent = batch.resend("m1", request_id="r1")
        again = batch.resend("m1", request_id="r1")  # same request: no-op
        delivered = batch.record_delivery("m1", seq="7")
    assert (2, 3, 3) == (resent.attempts, resent.version, again.version)
    assert (MessageStatus.SEND_SUCC, 4) == (delivered.status, delivered.version)
    assert service.get("m1") == delivered


def test_refusal_is_raised_at_once_and_others_still_save(
    service: MessageService,
) -> None:
    """A refused call raises inside the block; the other calls are saved."""
    service.create("sending", sender="a", user_id="b")
    with service.batch() as batch:
        batch.create("m1", sender="a", user_id="b")
        with pytest.raises(ResendRefused) as info:
            batch.resend("sending")
        with pytest.raises(MessageNotFound):
            batch.record_delivery("nope", seq="1")
    assert ErrorCode.SEND_IN_PROGRESS == info.value.code
    assert "m1" == service.get("m1").msg_id
    assert 1 == service.get("sending").version


def test_exception_in_block_saves_nothing(service: MessageService) -> None:
    """If the block raises, no change of the batch is saved."""
    with pytest.raises(RuntimeError), service.batch() as batch:
        batch.create("m1", sender="a", user_id="b")
        raise RuntimeError("boom")
    assert 0 == events_stored(service)


def test_lost_race_raises_conflict_and_saves_nothing(
    make_service: ServiceFactory, backend: str
) -> None:
    """Another writer changing a batch message first: ConcurrencyConflict, no save."""
    first = make_service()
    first.create("m1", sender="a", user_id="b")
    other = first if backend == "memory" else make_service()
    with pytest.raises(ConcurrencyConflict), first.batch() as batch:
        batch.create("m2", sender="a", user_id="b")
        batch.record_failure("m1", code=TIMEOUT)
        other.record_delivery("m1", seq="1")  # wins the race for m1
    assert MessageStatus.SEND_SUCC == first.get("m1").status
    with pytest.raises(MessageNotFound):
        first.get("m2")


def test_failed_save_leaves_no_trace(service: MessageService) -> None:
    """A storage failure while saving the batch stores none of its events."""

    def broken_save(*objs: Any, **kwargs: Any) -> Any:
        raise StorageError("disk full (simulated)")

    original = service.save
    service.save = broken_save  # type: ignore[method-assign]
    with pytest.raises(StorageError), service.batch() as batch:
        batch.create("m1", sender="a", user_id="b")
    service.save = original  # type: ignore[method-assign]
    assert 0 == events_stored(service)
    with pytest.raises(MessageNotFound):
        service.get("m1")


def test_batch_is_used_once_inside_its_block(service: MessageService) -> None:
    """Calls outside the with-block, or a second with, are refused."""
    batch = service.batch()
    assert isinstance(batch, Batch)
    with pytest.raises(InvalidArgument):
        batch.create("m1", sender="a", user_id="b")
    with batch:
        pass
    with pytest.raises(InvalidArgument), batch:
        pass


def test_record_deliveries_one_outcome_per_item(service: MessageService) -> None:
    """Each item gets its view or its error; refusals don't drop the others."""
    for i in range(3):
        service.create(f"m{i}", sender="a", user_id="b")
    service.record_delivery("m2", seq="old")
    outcomes = service.record_deliveries(
        [
            {"msg_id": "m0", "seq": "1"},
            {"msg_id": "missing", "seq": "2"},
            {"msg_id": "m1", "seq": "3"},
            {"msg_id": "m2", "seq": "different"},
            {"msg_id": "m1"},
        ]
    )
    kinds = [
        o.status.name if not isinstance(o, MsgStateError) else o.code.name
        for o in outcomes
    ]
    expected = [
        "SEND_SUCC",
        "MESSAGE_NOT_FOUND",
        "SEND_SUCC",
        "ALREADY_DELIVERED",
        "INVALID_ARGUMENT",
    ]
    assert expected == kinds
    assert MessageStatus.SEND_SUCC == service.get("m1").status


def test_record_failures(service: MessageService) -> None:
    """record_failures records each failure and reports bad items as errors."""
    service.create("m1", sender="a", user_id="b")
    service.create("m2", sender="a", user_id="b")
    outcomes = service.record_failures(
        [{"msg_id": "m1", "code": TIMEOUT}, {"msg_id": "m2", "code": 0}]
    )
    assert MessageStatus.SEND_FAIL == outcomes[0].status  # type: ignore[union-attr]
    assert isinstance(outcomes[1], InvalidArgument)


def run(target: Any, commands: list[Any]) -> None:
    """Apply the commands to a service or a batch (the same method names)."""
    for name, which, code, retry_after, _, online_user_only in commands:
        msg_id = f"m{which}"
        try:
            if name == "create":
                target.create(
                    msg_id, sender="a", user_id="b", online_user_only=which % 2 == 0
                )
            elif name == "fail":
                target.record_failure(msg_id, code=code, retry_after=retry_after)
            elif name == "resend":
                target.resend(
                    msg_id,
                    request_id=f"r{which}-{code}",
                    online_user_only=online_user_only,
                )
            elif name == "deliver":
                target.record_delivery(msg_id, seq=f"s{which}")
        except MsgStateError:
            pass


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=COMMANDS, policy=POLICIES, prefetch=st.booleans())
def test_batch_equals_commands_one_by_one(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    commands: Any,
    policy: Any,
    prefetch: bool,
) -> None:
    """Any batch produces the same histories as its commands run one by one."""
    clock = FakeClock()
    with (
        opened(
            backend_url(backend, tmp_path_factory.mktemp("a")),
            policy=policy,
            clock=clock,
        ) as one,
        opened(
            backend_url(backend, tmp_path_factory.mktemp("b")),
            policy=policy,
            clock=clock,
        ) as many,
    ):
        run(one, commands)
        with many.batch() as batch:
            if prefetch:  # loading every message up front must change nothing
                batch.prefetch([f"m{i}" for i in range(6)])
            run(batch, commands)
        for which in range(6):
            try:
                expected = one.history(f"m{which}")
            except MessageNotFound:
                with pytest.raises(MessageNotFound):
                    many.history(f"m{which}")
                continue
            assert expected == many.history(f"m{which}")


def test_batch_get_sees_unsaved_changes(service: MessageService) -> None:
    """batch.get shows the batch's own changes before they are saved."""
    service.create("m1", sender="a", user_id="b")
    with service.batch() as batch:
        batch.record_failure("m1", code=TIMEOUT)
        assert MessageStatus.SEND_FAIL == batch.get("m1").status
        assert MessageStatus.SENDING == service.get("m1").status
        with pytest.raises(MessageNotFound):
            batch.get("missing")


@pytest.mark.parametrize("snapshots", [None, 2])
def test_prefetch_loads_the_same_messages(
    make_service: ServiceFactory, backend: str, snapshots: int | None
) -> None:
    """prefetch gives the views one-by-one loading gives; missing ids stay missing."""
    service = make_service(snapshot_every=snapshots)
    for i in range(4):
        service.create(f"m{i}", sender="a", user_id="b")
        service.record_failure(f"m{i}", code=TIMEOUT)
    service.resend("m2")
    expected = [service.get(f"m{i}") for i in range(4)]
    with service.batch() as batch:
        batch.prefetch(["m0", "m1", "m2", "m3", "new", "bad\nid"])
        assert expected == [batch.get(f"m{i}") for i in range(4)]
        with pytest.raises(MessageNotFound):
            batch.get("new")
        created = batch.create("new", sender="a", user_id="b")
        assert 1 == created.version
    assert "new" == service.get("new").msg_id


def test_bulk_reports_read_streams_in_few_queries(tmp_path: Any) -> None:
    """record_deliveries loads its messages with one query per 500, not one each."""
    from msgstate import storage

    service = MessageService.open(backend_url("sqlite", tmp_path))
    ids = [f"m{i}" for i in range(600)]
    with service.batch() as batch:
        for msg_id in ids:
            batch.create(msg_id, sender="a", user_id="b")
    calls: list[int] = []
    original = storage.select_streams

    def counting(recorder: Any, wanted: Any) -> Any:
        calls.append(len(wanted))
        return original(recorder, wanted)

    import msgstate.repository as repository

    repository.select_streams = counting  # type: ignore[assignment]
    other = MessageService.open(backend_url("sqlite", tmp_path))  # nothing cached
    try:
        outcomes = other.record_deliveries([{"msg_id": m, "seq": "1"} for m in ids])
        assert [600] == calls
        # The service that saved them keeps them in its cache: its first try
        # reads nothing. That cache is stale (the other service delivered them),
        # so the save loses the race, and the retry reads all 600 at once.
        failures = service.record_failures([{"msg_id": m, "code": 6012} for m in ids])
        assert [600, 600] == calls
    finally:
        repository.select_streams = original  # type: ignore[assignment]
        other.close()
        service.close()
    assert all(o.status is MessageStatus.SEND_SUCC for o in outcomes)  # type: ignore[union-attr]
    # Reloaded, each failure report comes after the delivery: it changes nothing.
    assert all(o.status is MessageStatus.SEND_SUCC for o in failures)  # type: ignore[union-attr]


def test_batch_takes_cached_messages_without_reading(service: MessageService) -> None:
    """Messages this service saved come from its cache: a batch reads nothing."""
    for i in range(3):
        service.create(f"m{i}", sender="a", user_id="b")

    def no_read(msg_id: str) -> Any:
        raise AssertionError(f"read {msg_id} from the store")

    service.messages.find = no_read  # type: ignore[method-assign]
    with service.batch() as batch:
        batch.prefetch(["m0"])
        views = [batch.record_failure(f"m{i}", code=TIMEOUT) for i in range(3)]
    assert [2, 2, 2] == [v.version for v in views]
    assert views == [service.get(f"m{i}") for i in range(3)]


def test_block_that_raises_leaves_the_cache_as_it_was(service: MessageService) -> None:
    """Changes of a batch that raised are not seen by later commands or batches."""
    service.create("m1", sender="a", user_id="b")
    with pytest.raises(RuntimeError), service.batch() as batch:
        batch.record_failure("m1", code=TIMEOUT)
        raise RuntimeError("boom")
    with service.batch() as batch:
        assert (MessageStatus.SENDING, 1) == (
            batch.get("m1").status,
            batch.get("m1").version,
        )
    assert 1 == service.get("m1").version


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_stale_cached_message_conflicts_and_the_rerun_reads_the_store(
    make_service: ServiceFactory,
) -> None:
    """A batch decides on this process's copy; another writer's change since makes
    the save fail (ConcurrencyConflict, nothing saved), and the rerun decides on
    the stored message. (One memory store has one service: no stale cache.)"""
    first = make_service()
    other = make_service()
    first.create("m1", sender="a", user_id="b")
    other.record_delivery("m1", seq="1")
    with pytest.raises(ConcurrencyConflict), first.batch() as batch:
        stale = batch.record_failure("m1", code=TIMEOUT)
        assert MessageStatus.SEND_FAIL == stale.status  # decided on the cached copy
    assert (MessageStatus.SEND_SUCC, 2) == (
        first.get("m1").status,
        first.get("m1").version,
    )
    with first.batch() as batch:
        rerun = batch.record_failure("m1", code=TIMEOUT)
    assert (MessageStatus.SEND_SUCC, 2) == (rerun.status, rerun.version)
    assert 2 == len(first.history("m1"))


def test_batch_without_a_cache_reads_each_message(make_service: ServiceFactory) -> None:
    """cache_size=0: every message of a batch is read from the store, once."""
    service = make_service(cache_size=0)
    service.create("m1", sender="a", user_id="b")
    with service.batch() as batch:
        batch.record_failure("m1", code=TIMEOUT)
        batch.resend("m1", request_id="r")
    assert (MessageStatus.SENDING, 3) == (
        service.get("m1").status,
        service.get("m1").version,
    )


# -- creates: not read first; a lost race teaches the service what exists --


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_create_of_a_message_made_elsewhere_conflicts_then_answers_from_the_store(
    make_service: ServiceFactory,
) -> None:
    """A batch creates ids its service has not seen without reading them. One made
    by another service meanwhile makes the save fail (nothing saved); the rerun
    answers as the service would: the existing message, or DuplicateMessage."""
    first = make_service()
    other = make_service()
    existing = other.record_failure(
        other.create("m1", sender="a", user_id="b").msg_id, code=TIMEOUT
    )
    with pytest.raises(ConcurrencyConflict), first.batch() as batch:
        provisional = batch.create("m1", sender="a", user_id="b")
        batch.create("m2", sender="a", user_id="b")
    assert 1 == provisional.version  # the batch's own, never saved
    with pytest.raises(MessageNotFound):
        first.get("m2")
    assert existing == first.get("m1")
    with first.batch() as batch:
        assert existing == batch.create("m1", sender="a", user_id="b")
        with pytest.raises(DuplicateMessage):
            batch.create("m1", sender="a", user_id="someone else")
        batch.create("m2", sender="a", user_id="b")
    assert (existing, 1) == (first.get("m1"), first.get("m2").version)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_prefetch_makes_creates_final(make_service: ServiceFactory) -> None:
    """With prefetch first, a create of an existing id answers at once."""
    first = make_service()
    other = make_service()
    existing = other.create("m1", sender="a", user_id="b")
    with first.batch() as batch:
        batch.prefetch(["m1", "m2"])
        assert existing == batch.create("m1", sender="a", user_id="b")
        assert 1 == batch.create("m2", sender="a", user_id="b").version
    assert 1 == first.get("m2").version


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_without_a_cache_creates_are_read_first(make_service: ServiceFactory) -> None:
    """cache_size=0: nothing can be learnt, so every create reads; no conflict."""
    first = make_service(cache_size=0)
    other = make_service()
    existing = other.create("m1", sender="a", user_id="b")
    with first.batch() as batch:
        assert existing == batch.create("m1", sender="a", user_id="b")


def test_ids_to_read_first_are_bounded(
    make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service remembers at most READ_FIRST_SIZE such ids, the newest."""
    import msgstate.application as application

    monkeypatch.setattr(application, "READ_FIRST_SIZE", 2)
    service = make_service()
    service.messages.learn(["a", "b", "c"])
    assert ["b", "c"] == list(service.messages.read_first)
    service.messages.learn(["d"])
    assert ["c", "d"] == list(service.messages.read_first)


# -- answers that write nothing are decided on the store, not a stale copy --


def _two_services(make_service: ServiceFactory, **kwargs: Any) -> Any:
    first = make_service(**kwargs)
    other = make_service(**kwargs)
    first.create("m1", sender="a", user_id="b")  # cached by first
    return first, other


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_refusal_on_a_stale_copy_is_decided_again_on_the_store(
    make_service: ServiceFactory,
) -> None:
    """first's copy is SENDING (resend refused); the store's has failed: allowed."""
    first, other = _two_services(make_service)
    other.record_failure("m1", code=TIMEOUT)
    with first.batch() as batch:
        resent = batch.resend("m1", request_id="r1")
    assert (MessageStatus.SENDING, 2, 3) == (
        resent.status,
        resent.attempts,
        resent.version,
    )
    assert resent == first.get("m1")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_repeat_on_a_stale_copy_answers_with_the_store(
    make_service: ServiceFactory,
) -> None:
    """A command that changes nothing returns the stored message, not the copy."""
    first, other = _two_services(make_service)
    other.record_delivery("m1", seq="7")
    with first.batch() as batch:
        created = batch.create("m1", sender="a", user_id="b")
        got = batch.get("m1")
    assert (MessageStatus.SEND_SUCC, 2) == (created.status, created.version)
    assert created == got == first.get("m1")
    with first.batch() as batch:
        again = batch.record_delivery("m1", seq="7")  # the copy is now fresh
    assert created == again


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_stuck_send_is_expired_whatever_the_cache_holds(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """first's copy is at attempt 1; another process resent (attempt 2), which
    then stayed SENDING: first can still expire attempt 2 (no refusal from the
    copy, which knows no attempt 2)."""
    policy = ResendPolicy(send_timeout=timedelta(seconds=30))
    first, other = _two_services(make_service, policy=policy, clock=clock)
    first.record_failure("m1", code=TIMEOUT)
    other.resend("m1", request_id="r1")
    clock.advance(60)
    with first.batch() as batch:
        expired = batch.expire_send("m1", attempt=2, actor="w1")
        assert 1 == batch.pending
    assert (MessageStatus.SEND_FAIL, 2, 4) == (
        expired.status,
        expired.attempts,
        expired.version,
    )


def test_an_archived_message_still_cached_is_refused_as_archived(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Any
) -> None:
    """A create of a cached message archived since: MessageArchived."""
    from msgstate import MessageArchived

    service = make_service(clock=clock)
    service.create("done", sender="a", user_id="b")
    service.record_delivery("done", seq="1")
    copy = service.messages.cached("done")
    service.create("newest", sender="a", user_id="b")  # the archive keeps it
    clock.advance(60)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    service.repository.cache.put(copy.id, copy)  # as a stale process would hold it
    with pytest.raises(MessageArchived), service.batch() as batch:
        batch.create("done", sender="a", user_id="b")


def test_the_cache_keeps_a_copy_of_what_was_saved(
    service: MessageService, clock: FakeClock
) -> None:
    """A saved message's later changes (unsaved) don't reach the cache."""
    with service.batch() as batch:
        batch.create("m1", sender="a", user_id="b")
    message = service.messages.cached("m1")
    assert message is not None
    service.messages.save(message)  # nothing pending: saves nothing
    message.record_failure(
        code=TIMEOUT, desc="", attempt=None, retry_after=None, at=clock()
    )
    cached = service.messages.cached("m1")
    assert cached is not None
    assert (1, MessageStatus.SENDING) == (cached.version, cached.status)


def test_a_batch_made_by_hand_uses_the_services_policy_and_clock(
    clock: FakeClock,
) -> None:
    """Batch(service) decides as service.batch() does: the service's policy and
    clock (a resend refused by max_attempts=1, times from the test clock)."""
    service = MessageService.open(
        "memory://", policy=ResendPolicy(max_attempts=1), clock=clock
    )
    service.create("m1", sender="a", user_id="b")
    clock.advance(5)
    with Batch(service) as batch:
        failed = batch.record_failure("m1", code=TIMEOUT)
        with pytest.raises(ResendRefused) as refused:
            batch.resend("m1")
    assert clock() == failed.last_failed_at
    assert ErrorCode.ATTEMPTS_EXHAUSTED == refused.value.code
