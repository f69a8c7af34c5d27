"""Unit tests of MessageService: each command, each refusal code, the queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from msgstate import (
    ConcurrencyConflict,
    DeliveryConflict,
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    MessageStatus,
    ResendPolicy,
    ResendRefused,
    RetryClass,
)
from tests.conftest import ServiceFactory
from tests.support import EPOCH, FakeClock

TIMEOUT = 6012  # TRANSIENT
ACK_TIMEOUT = 9520  # AMBIGUOUS
BLOCKED = 80001  # PERMANENT


def make(service: MessageService, msg_id: str = "m1", **kwargs: object) -> None:
    service.create(msg_id, sender="alice", user_id="bob", **kwargs)  # type: ignore[arg-type]


def test_create_starts_the_first_send(service: MessageService) -> None:
    """create records attempt 1 in SENDING with every field given."""
    view = service.create(
        "m1",
        sender="alice",
        group_id="g1",
        elem_type=2,
        priority=1,
        online_user_only=True,
        need_read_receipt=True,
        cloud_custom_data="cd",
        content={"data": "x"},
    )
    expected = (MessageStatus.SENDING, 1, 1, "g1", None, {"data": "x"}, True, EPOCH)
    actual = (
        view.status,
        view.attempts,
        view.version,
        view.group_id,
        view.user_id,
        view.content,
        view.online_user_only,
        view.created_at,
    )
    assert expected == actual


def test_create_again_with_same_fields_returns_existing(
    service: MessageService, clock: FakeClock
) -> None:
    """A repeated identical create answers as the first did and writes nothing."""
    first = service.create("m1", sender="alice", user_id="bob", content={"text": "hi"})
    clock.advance(5)
    again = service.create("m1", sender="alice", user_id="bob", content={"text": "hi"})
    assert first == again
    assert len(service.history("m1")) == 1


def test_create_again_with_other_fields_is_a_duplicate(service: MessageService) -> None:
    """create with the same id but different fields raises DuplicateMessage."""
    make(service)
    with pytest.raises(DuplicateMessage) as info:
        service.create("m1", sender="alice", user_id="carol")
    assert ErrorCode.DUPLICATE_MESSAGE == info.value.code
    assert len(service.history("m1")) == 1


def test_failure_then_resend_then_delivery(
    service: MessageService, clock: FakeClock
) -> None:
    """The happy path after a retryable failure ends delivered on attempt 2."""
    make(service)
    clock.advance(1)
    failed = service.record_failure("m1", code=TIMEOUT, desc="timeout")
    assert (MessageStatus.SEND_FAIL, RetryClass.TRANSIENT) == (
        failed.status,
        failed.last_error_class,
    )
    assert EPOCH + timedelta(seconds=2) == failed.next_retry_at
    clock.advance(2)
    resent = service.resend("m1", request_id="r1", actor="user")
    assert (MessageStatus.SENDING, 2) == (resent.status, resent.attempts)
    delivered = service.record_delivery("m1", seq="100")
    expected = (MessageStatus.SEND_SUCC, "100", 4, clock.now)
    assert expected == (
        delivered.status,
        delivered.seq,
        delivered.version,
        delivered.delivered_at,
    )


def test_retry_after_raises_the_wait_never_lowers_it(service: MessageService) -> None:
    """next_retry_at = failed_at + max(delay, retry_after)."""
    make(service)
    service.create("m2", sender="alice", user_id="bob")
    longer = service.record_failure("m1", code=7008, retry_after=30)
    shorter = service.record_failure("m2", code=7008, retry_after=0.5)
    assert EPOCH + timedelta(seconds=30) == longer.next_retry_at
    assert EPOCH + timedelta(seconds=1) == shorter.next_retry_at


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("sending", ErrorCode.SEND_IN_PROGRESS),
        ("delivered", ErrorCode.ALREADY_DELIVERED),
        ("permanent", ErrorCode.NOT_RETRYABLE),
        ("exhausted", ErrorCode.ATTEMPTS_EXHAUSTED),
        ("early", ErrorCode.TOO_EARLY),
        ("expired", ErrorCode.EXPIRED),
        ("online_expired", ErrorCode.EXPIRED),
        ("ambiguous_refused", ErrorCode.NOT_RETRYABLE),
    ],
)
def test_each_resend_refusal_has_its_code_and_writes_nothing(
    make_service: ServiceFactory, clock: FakeClock, setup: str, expected: ErrorCode
) -> None:
    """Every refusal raises ResendRefused with its documented code; no event."""
    policy = ResendPolicy(
        max_attempts=2,
        enforce_backoff=setup == "early",
        max_age=timedelta(hours=1) if setup == "expired" else None,
        online_only_max_age=timedelta(seconds=10),
        resend_ambiguous=setup != "ambiguous_refused",
    )
    service = make_service(policy)
    make(service, online_user_only=setup == "online_expired")
    code = {"permanent": BLOCKED, "ambiguous_refused": ACK_TIMEOUT}.get(setup, TIMEOUT)
    if setup != "sending":
        service.record_failure("m1", code=code)
    if setup == "delivered":
        service.record_delivery("m1", seq="1")
    if setup == "exhausted":
        service.resend("m1")
        service.record_failure("m1", code=TIMEOUT)
    if setup in ("expired", "online_expired"):
        clock.advance(3601)
    before = service.get("m1").version
    with pytest.raises(ResendRefused) as info:
        service.resend("m1", request_id="r-refused")
    assert expected == info.value.code
    assert before == service.get("m1").version
    assert not service.check_resend("m1").allowed


def test_too_early_decision_says_when(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """With enforce_backoff a TOO_EARLY refusal carries not_before; later it passes."""
    service = make_service(ResendPolicy(enforce_backoff=True))
    make(service)
    service.record_failure("m1", code=TIMEOUT)
    decision = service.check_resend("m1")
    assert (False, ErrorCode.TOO_EARLY, EPOCH + timedelta(seconds=1)) == (
        decision.allowed,
        decision.code,
        decision.not_before,
    )
    clock.advance(1)
    assert ErrorCode.OK == service.check_resend("m1").code
    assert 2 == service.resend("m1").attempts


def test_repeated_request_id_returns_current_view(
    service: MessageService, clock: FakeClock
) -> None:
    """A resend with an accepted request_id writes nothing, whatever the status."""
    make(service)
    service.record_failure("m1", code=TIMEOUT)
    first = service.resend("m1", request_id="r1")
    delivered = service.record_delivery("m1", seq="9")
    clock.advance(10)
    again = service.resend("m1", request_id="r1")
    assert first.attempts == again.attempts
    assert delivered == again


def test_resend_keeps_or_changes_online_user_only(service: MessageService) -> None:
    """online_user_only=None keeps the option; a value is recorded in the event."""
    make(service, online_user_only=True)
    service.record_failure("m1", code=TIMEOUT)
    kept = service.resend("m1", request_id="a")
    service.record_failure("m1", code=TIMEOUT)
    changed = service.resend("m1", request_id="b", online_user_only=False)
    events = [e.data["online_user_only"] for e in service.history("m1")[2::2]]
    assert (True, False, [True, False]) == (
        kept.online_user_only,
        changed.online_user_only,
        events,
    )


def test_stale_repeated_and_late_failures_change_nothing(
    service: MessageService,
) -> None:
    """Failures for an older attempt, repeated, or after delivery write nothing."""
    make(service)
    service.record_failure("m1", code=TIMEOUT)
    service.resend("m1")
    stale = service.record_failure("m1", code=TIMEOUT, attempt=1)
    assert (MessageStatus.SENDING, 3) == (stale.status, stale.version)
    service.record_failure("m1", code=TIMEOUT)
    repeated = service.record_failure("m1", code=BLOCKED)
    assert (4, TIMEOUT) == (repeated.version, repeated.last_error_code)
    service.record_delivery("m1", seq="5")
    after = service.record_failure("m1", code=TIMEOUT, attempt=2)
    assert (MessageStatus.SEND_SUCC, 5) == (after.status, after.version)


def test_future_attempt_is_invalid(service: MessageService) -> None:
    """An attempt number above the current one raises InvalidArgument, no event."""
    make(service)
    with pytest.raises(InvalidArgument):
        service.record_failure("m1", code=TIMEOUT, attempt=2)
    with pytest.raises(InvalidArgument):
        service.record_delivery("m1", seq="1", attempt=2)
    assert 1 == service.get("m1").version


def test_late_ack_after_ambiguous_failure_delivers(service: MessageService) -> None:
    """SEND_FAIL --Delivered--> SEND_SUCC: an ack timeout that was in fact delivered."""
    make(service)
    failed = service.record_failure("m1", code=ACK_TIMEOUT)
    assert (True, RetryClass.AMBIGUOUS) == (
        failed.maybe_delivered,
        failed.last_error_class,
    )
    late = service.record_delivery("m1", seq="77", attempt=1)
    assert (MessageStatus.SEND_SUCC, False) == (late.status, late.maybe_delivered)


def test_delivery_repeated_and_conflicting(service: MessageService) -> None:
    """Same seq again changes nothing; another seq raises DeliveryConflict."""
    make(service)
    service.record_delivery("m1", seq="1")
    assert 2 == service.record_delivery("m1", seq="1").version
    with pytest.raises(DeliveryConflict) as info:
        service.record_delivery("m1", seq="2")
    assert ErrorCode.ALREADY_DELIVERED == info.value.code
    assert 2 == service.get("m1").version


def test_unknown_message(service: MessageService) -> None:
    """Every command and query on an unknown id raises MessageNotFound."""
    calls = [
        lambda: service.get("nope"),
        lambda: service.history("nope"),
        lambda: service.get_at("nope", version=1),
        lambda: service.record_failure("nope", code=TIMEOUT),
        lambda: service.resend("nope"),
        lambda: service.record_delivery("nope", seq="1"),
        lambda: service.check_resend("nope"),
    ]
    for call in calls:
        with pytest.raises(MessageNotFound) as info:
            call()
        assert ErrorCode.MESSAGE_NOT_FOUND == info.value.code


def test_history_entries(service: MessageService, clock: FakeClock) -> None:
    """history lists each event with version, name, domain time, attempt and data."""
    make(service, content={"text": "hi"})
    clock.advance(1)
    service.record_failure("m1", code=TIMEOUT, desc="t/o", retry_after=3)
    clock.advance(1)
    service.resend("m1", request_id="r", actor="admin")
    actual = [
        (h.version, h.event, h.recorded_at, h.attempt) for h in service.history("m1")
    ]
    expected = [
        (1, "Created", EPOCH, 1),
        (2, "SendFailed", EPOCH + timedelta(seconds=1), 1),
        (3, "ResendRequested", EPOCH + timedelta(seconds=2), 2),
    ]
    assert expected == actual
    entries = service.history("m1")
    assert {"text": "hi"} == entries[0].data["content"]
    assert {"attempt": 1, "code": TIMEOUT, "desc": "t/o", "retry_after": 3.0} == (
        entries[1].data
    )
    assert {
        "attempt": 2,
        "request_id": "r",
        "actor": "admin",
        "online_user_only": False,
    } == entries[2].data


def test_get_at_version_and_time(service: MessageService, clock: FakeClock) -> None:
    """get_at answers for a version, for a time, and refuses before creation."""
    make(service)
    clock.advance(10)
    service.record_failure("m1", code=TIMEOUT)
    clock.advance(10)
    service.resend("m1")
    assert MessageStatus.SEND_FAIL == service.get_at("m1", version=2).status
    assert MessageStatus.SENDING == service.get_at("m1", version=1).status
    at_15 = service.get_at("m1", at=EPOCH + timedelta(seconds=15))
    assert (MessageStatus.SEND_FAIL, 2) == (at_15.status, at_15.version)
    later = service.get_at("m1", at=EPOCH + timedelta(days=1))
    assert service.get("m1") == later
    with pytest.raises(MessageNotFound):
        service.get_at("m1", at=EPOCH - timedelta(seconds=1))
    with pytest.raises(InvalidArgument):
        service.get_at("m1", version=4)
    with pytest.raises(InvalidArgument):
        service.get_at("m1", version=1, at=EPOCH)


def test_policy_dependent_fields_follow_the_current_policy(tmp_path: Path) -> None:
    """Reopened with another policy, views are recomputed from the history."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    first = MessageService.open(
        url, policy=ResendPolicy(unknown_code_class=RetryClass.TRANSIENT)
    )
    make(first)
    first.record_failure("m1", code=424242)
    assert RetryClass.TRANSIENT == first.get("m1").last_error_class
    second = MessageService.open(
        url, policy=ResendPolicy(unknown_code_class=RetryClass.PERMANENT)
    )
    assert RetryClass.PERMANENT == second.get("m1").last_error_class
    assert ErrorCode.NOT_RETRYABLE == second.check_resend("m1").code


def test_lost_race_is_retried(service: MessageService) -> None:
    """A save that loses to another writer is reloaded and decided again."""
    make(service)
    original_save = service.save
    calls = {"n": 0}

    def racing_save(*aggregates: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:  # another writer gets the failure in first
            other = service.repository.get(aggregates[0].id)  # type: ignore[attr-defined]
            other.record_failure(
                code=TIMEOUT, desc="", attempt=None, retry_after=None, at=EPOCH
            )
            original_save(other)
        return original_save(*aggregates)  # type: ignore[arg-type]

    service.save = racing_save  # type: ignore[method-assign]
    view = service.record_failure("m1", code=BLOCKED)
    # The retry sees the other writer's failure: a repeat for attempt 1, no event.
    # One save only: the reload found attempt 1 already failed, so nothing to write.
    assert (2, TIMEOUT, 1) == (view.version, view.last_error_code, calls["n"])


def test_endless_race_raises_concurrency_conflict(service: MessageService) -> None:
    """After 1 + 3 lost races the command raises ConcurrencyConflict, writes nothing."""
    from eventsourcing.persistence import IntegrityError

    make(service)

    def always_lose(*aggregates: object) -> object:
        raise IntegrityError("simulated lost race")

    service.save = always_lose  # type: ignore[method-assign]
    with pytest.raises(ConcurrencyConflict) as info:
        service.record_failure("m1", code=TIMEOUT)
    assert ErrorCode.CONCURRENCY_CONFLICT == info.value.code
    assert 1 == service.get("m1").version


def test_clock_must_be_aware() -> None:
    """A naive clock is refused with InvalidArgument at the first command."""
    service = MessageService.open("memory://", clock=lambda: datetime(2026, 1, 1))
    with pytest.raises(InvalidArgument):
        make(service)


def test_clock_is_converted_to_utc() -> None:
    """Aware datetimes in any zone are recorded in UTC."""
    from datetime import timezone

    tokyo = timezone(timedelta(hours=9))
    service = MessageService.open(
        "memory://", clock=lambda: datetime(2026, 1, 1, 9, tzinfo=tokyo)
    )
    make(service)
    assert datetime(2026, 1, 1, tzinfo=UTC) == service.get("m1").created_at
    assert UTC == service.get("m1").created_at.tzinfo


@pytest.mark.parametrize(
    ("created", "resent", "expected"),
    [(True, False, ErrorCode.OK), (False, True, ErrorCode.EXPIRED)],
)
def test_online_only_age_is_judged_by_the_resend_option(
    make_service: ServiceFactory,
    clock: FakeClock,
    created: bool,
    resent: bool,
    expected: ErrorCode,
) -> None:
    """online_only_max_age applies to the option the resend will be sent with."""
    service = make_service(ResendPolicy(online_only_max_age=timedelta(seconds=10)))
    make(service, online_user_only=created)
    service.record_failure("m1", code=TIMEOUT)
    clock.advance(60)
    try:
        service.resend("m1", online_user_only=resent)
        actual = ErrorCode.OK
    except ResendRefused as refusal:
        actual = refusal.code
    assert expected == actual


def test_view_repr_is_valid_python(service: MessageService) -> None:
    """A view's repr evaluates back to an equal view (hypothesis prints them)."""
    import datetime

    import msgstate

    make(service, content={"text": "hi"})
    view = service.record_failure("m1", code=ACK_TIMEOUT, retry_after=2)
    namespace = {**vars(msgstate), "datetime": datetime}
    assert view == eval(repr(view), namespace)
    assert "ErrorCode.TOO_EARLY" == repr(ErrorCode.TOO_EARLY)


def test_content_may_be_any_mapping(service: MessageService) -> None:
    """Any Mapping is accepted as content, nested tuples become lists."""
    from types import MappingProxyType

    view = service.create(
        "m1", sender="a", user_id="b", content=MappingProxyType({"t": [1, (2, 3)]})
    )
    assert {"t": [1, [2, 3]]} == view.content
