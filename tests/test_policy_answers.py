"""ResendPolicy's exact answers: every decision's code, desc and not_before, the
jitter's fixed values, and every refusal of a bad setting, word for word (these
are what a backend logs and shows, so a changed word is a changed answer)."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import attrs
import pytest

from msgstate import (
    MESSAGE_NAMESPACE,
    ErrorCode,
    InvalidArgument,
    MessageService,
    MessageStatus,
    MessageView,
    ResendPolicy,
    RetryClass,
)
from msgstate.codes import catalog
from msgstate.policy import MAX_INTERVAL, jitter_unit
from tests.support import EPOCH, FakeClock


def failed_view(
    policy: ResendPolicy, code: int = 6012, *, retry_after: float | None = None
) -> tuple[MessageService, FakeClock, MessageView]:
    clock = FakeClock(EPOCH)
    service = MessageService.open("memory://", clock=clock, policy=policy)
    service.create("m", sender="u", user_id="v")
    view = service.record_failure("m", code=code, desc="x", retry_after=retry_after)
    return service, clock, view


def test_every_refusal_and_the_allowance_word_for_word() -> None:
    policy = ResendPolicy(
        max_attempts=2,
        enforce_backoff=True,
        jitter=0.0,
        max_age=timedelta(hours=1),
        online_only_max_age=timedelta(minutes=10),
    )
    service, _, view = failed_view(policy)
    try:
        now = view.last_failed_at
        assert now is not None
        early = policy.decide(view, now)
        wait = policy.delay(1, "m")
        assert early == policy.decide(view, now)
        assert (False, ErrorCode.TOO_EARLY) == (early.allowed, early.code)
        assert early.desc == (
            f"message 'm' may be resent from {(now + wait).isoformat()}, "
            f"{wait} from now"
        )
        assert now + wait == early.not_before
        later = now + wait
        allowed = policy.decide(view, later)
        assert allowed.allowed
        assert "resend allowed" == allowed.desc
        assert now + wait == allowed.not_before

        sending = attrs.evolve(view, status=MessageStatus.SENDING, attempts=2)
        delivered = attrs.evolve(view, status=MessageStatus.SEND_SUCC, seq="77")
        revoked = attrs.evolve(view, status=MessageStatus.LOCAL_REVOKED)
        exhausted = attrs.evolve(view, attempts=2)
        online = attrs.evolve(view, online_user_only=True)
        cases = {
            ErrorCode.ALREADY_DELIVERED: (
                delivered,
                later,
                "message 'm' was delivered (seq '77'); it is never resent",
            ),
            ErrorCode.SEND_IN_PROGRESS: (
                sending,
                later,
                "send 2 of message 'm' is in flight; record its failure before "
                "asking for a resend",
            ),
            ErrorCode.NOT_RETRYABLE: (
                revoked,
                later,
                "message 'm' is LOCAL_REVOKED; only SEND_FAIL is resent",
            ),
            ErrorCode.ATTEMPTS_EXHAUSTED: (
                exhausted,
                later,
                "message 'm' was sent 2 times; the policy allows at most 2",
            ),
            ErrorCode.EXPIRED: (
                view,
                view.created_at + timedelta(hours=2),
                "message 'm' is 2:00:00 old; the policy resends messages up to "
                "1:00:00 old",
            ),
        }
        for code, (subject, at, desc) in cases.items():
            decision = policy.decide(subject, at)
            assert (False, code, desc, None) == (
                decision.allowed,
                decision.code,
                decision.desc,
                decision.not_before,
            )
        online_old = policy.decide(online, view.created_at + timedelta(minutes=20))
        assert online_old.desc == (
            "online-only message 'm' is 0:20:00 old; the policy resends online-only "
            "messages up to 0:10:00 old"
        )
    finally:
        service.close()


def first_code(policy: ResendPolicy, retry_class: RetryClass) -> int:
    return min(c for c in catalog() if policy.classify(c) is retry_class)


def test_refusals_by_error_class_word_for_word() -> None:
    policy = ResendPolicy(resend_ambiguous=False)
    permanent = first_code(policy, RetryClass.PERMANENT)
    ambiguous = first_code(policy, RetryClass.AMBIGUOUS)
    expected = {
        permanent: f"error {permanent} of message 'm' is permanent; resending the "
        "same message cannot succeed",
        ambiguous: f"error {ambiguous} of message 'm' is an ack timeout: it may have "
        "been delivered, and this policy does not resend those",
    }
    for code, desc in expected.items():
        service, _, view = failed_view(policy, code)
        try:
            decision = policy.decide(view, service.now())
            assert (False, ErrorCode.NOT_RETRYABLE, desc, None) == (
                decision.allowed,
                decision.code,
                decision.desc,
                decision.not_before,
            )
        finally:
            service.close()


def test_a_servers_retry_after_lengthens_the_wait() -> None:
    policy = ResendPolicy(jitter=0.0, enforce_backoff=True)
    service, _, view = failed_view(policy, retry_after=3600.0)
    try:
        assert view.last_failed_at is not None
        decision = policy.decide(view, view.last_failed_at)
        assert ErrorCode.TOO_EARLY == decision.code
        assert view.last_failed_at + timedelta(hours=1) == decision.not_before
    finally:
        service.close()


def test_the_jitter_is_keyed_by_the_views_stream_id() -> None:
    policy = ResendPolicy(enforce_backoff=True, jitter=0.5)
    service, _, view = failed_view(policy)
    try:
        other = UUID(int=12345)
        moved = attrs.evolve(view, stream_id=other)
        assert view.last_failed_at is not None
        keyed = policy.next_retry_at(
            failed_at=view.last_failed_at,
            attempt=1,
            msg_id="m",
            retry_after=None,
            stream_id=other,
        )
        assert keyed == view.last_failed_at + policy.delay(1, "m", other)
        assert keyed != view.last_failed_at + policy.delay(1, "m")
        assert keyed == policy.decide(moved, view.last_failed_at).not_before
    finally:
        service.close()


def test_jitter_units_are_fixed_forever() -> None:
    """Read models and every process compute the same unit: its values are part of
    the stored data's meaning (a changed hash moves every recorded next_retry_at)."""
    key = MESSAGE_NAMESPACE
    units = [round(jitter_unit(key, attempt), 12) for attempt in (1, 2, 3, 2**40)]
    assert units == EXPECTED_UNITS
    assert all(0 <= u < 1 for u in units)


EXPECTED_UNITS = [0.234264770302, 0.179060879991, 0.552768686791, 0.895269436548]


# -- settings refused word for word --


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"initial_interval": timedelta(0)},
            "initial_interval must be a timedelta > 0, got datetime.timedelta(0)",
        ),
        (
            {"maximum_interval": MAX_INTERVAL + timedelta(microseconds=1)},
            "maximum_interval must be a timedelta >= initial_interval and at most "
            "36525 days, got datetime.timedelta(days=36525, microseconds=1)",
        ),
    ],
)
def test_bad_settings_are_refused_word_for_word(
    settings: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        ResendPolicy(**settings)  # type: ignore[arg-type]
    assert says == raised.value.desc


def test_the_longest_maximum_interval_is_accepted() -> None:
    assert MAX_INTERVAL == ResendPolicy(maximum_interval=MAX_INTERVAL).maximum_interval


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([1, 2], "a policy must be a mapping of settings, got list"),
        (
            {"colour": 1},
            "unknown policy key 'colour' (known: "
            + ", ".join(ResendPolicy().to_dict())
            + ")",
        ),
        (
            {"initial_interval": 0},
            "policy key 'initial_interval' must be a number of seconds > 0, got 0",
        ),
        (
            {"initial_interval": None},
            "policy key 'initial_interval' must be a number of seconds > 0, got None",
        ),
        (
            {"max_age": -1},
            "policy key 'max_age' must be a number of seconds > 0 or None, got -1",
        ),
        (
            {"initial_interval": 1e-7},
            "policy key 'initial_interval' must be at least one microsecond, got 1e-07",
        ),
        (
            {"unknown_code_class": "SOMETIMES"},
            "policy key 'unknown_code_class' must be one of "
            + ", ".join(RetryClass.__members__)
            + ", got 'SOMETIMES'",
        ),
    ],
)
def test_bad_policy_dicts_are_refused_word_for_word(data: object, says: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        ResendPolicy.from_dict(data)  # type: ignore[arg-type]
    assert says == raised.value.desc


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"backoff_coefficient": 10**400},
            "backoff_coefficient must be a finite number >= 1, got " + str(10**400),
        ),
        (
            {"max_age": timedelta(0)},
            "max_age must be None or a timedelta > 0, got datetime.timedelta(0)",
        ),
        (
            {"unknown_code_class": "TRANSIENT"},
            "unknown_code_class must be a RetryClass, got 'TRANSIENT'",
        ),
    ],
)
def test_more_bad_settings_word_for_word(
    settings: dict[str, object], says: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        ResendPolicy(**settings)  # type: ignore[arg-type]
    assert says == raised.value.desc


def test_the_longest_send_timeout_is_accepted() -> None:
    assert MAX_INTERVAL == ResendPolicy(send_timeout=MAX_INTERVAL).send_timeout


def test_sub_second_intervals_back_off_from_the_first_wait() -> None:
    policy = ResendPolicy(
        initial_interval=timedelta(milliseconds=1),
        maximum_interval=timedelta(seconds=1),
        backoff_coefficient=10.0,
    )
    waits = [policy.base_delay(n) for n in (1, 2, 3, 4, 5)]
    assert waits == pytest.approx([0.001, 0.01, 0.1, 1.0, 1.0])


def test_a_view_without_a_failure_time_has_no_backoff() -> None:
    """decide() takes any view; one with no recorded failure time has no wait."""
    policy = ResendPolicy(enforce_backoff=True)
    service, _, view = failed_view(policy)
    try:
        decision = policy.decide(attrs.evolve(view, last_failed_at=None), service.now())
        assert (True, None) == (decision.allowed, decision.not_before)
    finally:
        service.close()
