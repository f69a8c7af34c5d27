"""The Message aggregate's exact refusals and records: every command's error
message word for word, the desc an expired send records, copies that share no
state, and the transition table enforced when an event is applied (the last line
against a stream that breaks it)."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from uuid import uuid5

import pytest

from msgstate import (
    MESSAGE_NAMESPACE,
    TRANSITIONS,
    DeliveryConflict,
    ErrorCode,
    InvalidArgument,
    Message,
    MessageService,
    MessageStatus,
    ResendPolicy,
    ResendRefused,
    SendNotOverdue,
    StaleAttempt,
    generate_cipher_key,
)
from msgstate.domain import _next_status
from tests.support import EPOCH, FakeClock


@pytest.fixture
def service(memory_service: MessageService) -> MessageService:
    return memory_service


def aggregate(service: MessageService, msg_id: str) -> Message:
    message = service.repository.get(service.stream_id(msg_id))
    assert isinstance(message, Message)
    return message


def test_command_refusals_word_for_word(
    service: MessageService, clock: FakeClock
) -> None:
    service.create("d", sender="u", user_id="v")
    service.record_delivery("d", seq="1")
    with pytest.raises(DeliveryConflict) as conflict:
        service.record_delivery("d", seq="2")
    assert conflict.value.desc == (
        "message 'd' was already delivered with seq '1'; a second delivery with "
        "seq '2' is refused"
    )
    with pytest.raises(ResendRefused) as refused:
        service.resend("d")
    assert "message 'd' was delivered (seq '1'); it is never resent" == (
        refused.value.desc
    )
    assert ErrorCode.ALREADY_DELIVERED == refused.value.code

    service.create("s", sender="u", user_id="v")
    with pytest.raises(InvalidArgument) as early:
        service.expire_send("s", attempt=2)
    assert early.value.desc == (
        "attempt 2 of message 's' has not started; the current attempt is 1"
    )
    clock.advance(12.5)
    with pytest.raises(SendNotOverdue) as not_overdue:
        service.expire_send("s", attempt=1)
    assert not_overdue.value.desc == (
        "send 1 of message 's' started 12.500 s ago; it can be expired after "
        "send_timeout (60 s)"
    )
    service.record_failure("s", code=6012)
    with pytest.raises(StaleAttempt) as stale:
        service.resend("s", expected_attempt=2)
    assert stale.value.desc == (
        "message 's' is at attempt 1 (SEND_FAIL), not 2: the caller's view is "
        "stale (another sender moved it on); reread it before claiming"
    )


@pytest.mark.parametrize("actor", [None, "ops-alice"])
def test_an_expired_send_records_why_and_by_whom(
    service: MessageService, clock: FakeClock, actor: str | None
) -> None:
    service.create("s", sender="u", user_id="v")
    clock.advance(61.25)
    view = service.expire_send("s", attempt=1, actor=actor)
    by = "" if actor is None else f"; expired by {actor}"
    assert view.last_error_desc == (
        f"send 1 stayed SENDING for 61.250 s, past send_timeout (60 s){by}"
    )
    assert int(ErrorCode.SEND_TIMED_OUT) == view.last_error_code


def test_an_expiry_desc_is_cut_at_the_desc_limit(
    service: MessageService, clock: FakeClock
) -> None:
    """Message is public: called directly, a long actor still gives a desc no
    longer than any other failure's (1,000 characters)."""
    service.create("s", sender="u", user_id="v")
    message = aggregate(service, "s")
    clock.advance(61)
    message.expire_send(
        attempt=1,
        send_timeout=timedelta(seconds=60),
        actor="a" * 2000,
        at=clock.now,
    )
    (event,) = [e for e in message.collect_events() if e.desc]
    assert 1000 == len(event.desc)
    assert event.desc.startswith("send 1 stayed SENDING for 61.000 s")


def test_a_copy_shares_no_state_with_the_original(service: MessageService) -> None:
    service.create("m", sender="u", user_id="v")
    service.record_failure("m", code=6012)
    original = aggregate(service, "m")
    clone = copy.deepcopy(original)
    clone.request_resend(
        request_id="r-1",
        actor=None,
        online_user_only=None,
        policy=service.policy,
        now=service.now() + timedelta(hours=1),
    )
    clone.record_failure(
        attempt=2, code=9508, desc="x", retry_after=None, at=service.now()
    )
    assert [6012] == original.failure_codes
    assert [] == original.request_ids
    assert [6012, 9508] == clone.failure_codes
    assert ["r-1"] == clone.request_ids


LEGAL = {(t.source, t.event) for t in TRANSITIONS}
EVENTS = sorted({t.event for t in TRANSITIONS})
ILLEGAL = [
    (source, event)
    for source in [None, *MessageStatus]
    for event in EVENTS
    if (source, event) not in LEGAL
]


@pytest.mark.parametrize(("source", "event"), ILLEGAL)
def test_an_event_the_table_forbids_is_refused_when_applied(
    source: MessageStatus | None, event: str
) -> None:
    with pytest.raises(ResendRefused) as refused:
        _next_status(source, event)
    where = "before creation" if source is None else f"in {source.name}"
    assert f"can't apply {event} {where}" == refused.value.desc
    expected = {
        MessageStatus.SEND_SUCC: ErrorCode.ALREADY_DELIVERED,
        MessageStatus.SENDING: ErrorCode.SEND_IN_PROGRESS,
    }.get(source, ErrorCode.NOT_RETRYABLE)  # type: ignore[arg-type]
    assert expected == refused.value.code


def test_a_delivered_message_cannot_take_a_failure_event(
    service: MessageService,
) -> None:
    """The aggregate applies the table to its own events, so a stream that breaks
    it cannot be built, even bypassing the commands."""
    service.create("m", sender="u", user_id="v")
    service.record_delivery("m", seq="1")
    message = aggregate(service, "m")
    with pytest.raises(ResendRefused) as refused:
        message._send_failed(
            attempt=1, code=6012, desc="late", retry_after=None, at=service.now()
        )
    assert "can't apply SendFailed in SEND_SUCC" == refused.value.desc
    assert ErrorCode.ALREADY_DELIVERED == refused.value.code


def test_views_of_a_keyed_store_carry_its_stream_id_and_backoff(
    tmp_path: Path,
) -> None:
    """In a store with keyed ids the stream id is not uuid5(msg_id): the view's
    stream_id, and the jitter of its next_retry_at, follow the store's own id."""
    clock = FakeClock(EPOCH)
    policy = ResendPolicy(jitter=0.5)
    service = MessageService.open(
        f"sqlite:///{tmp_path / 'keyed.db'}",
        cipher_key=generate_cipher_key(),
        clock=clock,
        policy=policy,
    )
    try:
        service.create("m", sender="u", user_id="v")
        view = service.record_failure("m", code=6012)
        stream_id = service.stream_id("m")
        assert stream_id != uuid5(MESSAGE_NAMESPACE, "m")
        assert stream_id == view.stream_id == service.get("m").stream_id
        assert view.last_failed_at is not None
        keyed = view.last_failed_at + policy.delay(1, "m", stream_id)
        assert keyed == view.next_retry_at
        assert keyed != view.last_failed_at + policy.delay(1, "m")
    finally:
        service.close()


def test_the_aggregate_has_the_facts_the_policy_reads(
    service: MessageService, clock: FakeClock
) -> None:
    """decide() on the Message aggregate answers as on its view, in every state
    (the aggregate decides resends on itself, through ResendFacts)."""
    policy = ResendPolicy(max_attempts=3, jitter=0.3, max_age=timedelta(seconds=90))
    service.create("m1", sender="a", user_id="b", online_user_only=True)
    seen = []
    for step in [
        lambda: None,
        lambda: service.record_failure("m1", code=6012, retry_after=2.5),
        lambda: clock.advance(5),
        lambda: service.resend("m1"),
        lambda: service.record_failure("m1", code=6017),
        lambda: clock.advance(100),
    ]:
        step()
        message = aggregate(service, "m1")
        view = service.get("m1")
        assert message.stream_id == view.stream_id == message.id
        for now in (clock(), clock() + timedelta(seconds=1)):
            decision = policy.decide(message, now)
            assert policy.decide(view, now) == decision
            seen.append(decision.code)
    assert {
        ErrorCode.SEND_IN_PROGRESS,
        ErrorCode.OK,
        ErrorCode.NOT_RETRYABLE,
    } <= set(seen)
