"""Policy what-if: recorded histories replayed under another policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageService,
    ResendPolicy,
    ResendRefused,
)
from tests.conftest import backend_url
from tests.strategies import COMMANDS, POLICIES, initial_creates, run_commands
from tests.support import FakeClock, opened

TIMEOUT, BLOCKED = 6012, 80001


def failing_history(service: MessageService, msg_id: str, resends: int) -> None:
    """Created, then ``resends`` x (SendFailed, ResendRequested), then SendFailed."""
    service.create(msg_id, sender="a", user_id="b")
    for _ in range(resends):
        service.record_failure(msg_id, code=TIMEOUT)
        service.resend(msg_id)
    service.record_failure(msg_id, code=TIMEOUT)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=COMMANDS, policy=POLICIES)
def test_recording_policy_reproduces_recorded_decisions(
    backend: str, tmp_path_factory: pytest.TempPathFactory, commands: Any, policy: Any
) -> None:
    """Simulating the policy that recorded a history allows every recorded resend."""
    clock = FakeClock()
    url = backend_url(backend, tmp_path_factory.mktemp("w"))
    with opened(url, policy=policy, clock=clock) as service:
        run_commands(service, clock, initial_creates() + commands, "m")
        report = service.simulate_policy(policy)
        recorded = sum(
            1
            for i in range(6)
            for h in service.history(f"m{i}")
            if h.event == "ResendRequested"
        )
    expected = (6, recorded, recorded, 0, 0, 0, 0)
    actual = (
        report.messages,
        report.resends_recorded,
        report.resends_allowed,
        report.resends_refused,
        report.resends_delayed,
        report.dead_earlier,
        report.dead_later,
    )
    assert expected == actual
    assert all(m.first_refusal is None for m in report.per_message)


@pytest.mark.parametrize("online_user_only", [False, True])
def test_replay_judges_each_resend_by_its_own_option(
    make_service: Any, clock: FakeClock, online_user_only: bool
) -> None:
    """A resend that changed ``online_user_only`` is replayed with the option it
    was recorded with, as it was judged live: turning it off escapes
    ``online_only_max_age``; turning it on (or keeping it) is then EXPIRED."""
    policy = ResendPolicy(online_only_max_age=timedelta(seconds=30))
    service = make_service(policy)
    service.create("m1", sender="a", user_id="b", online_user_only=True)
    service.record_failure("m1", code=TIMEOUT)
    clock.advance(60)  # past online_only_max_age
    view = service.resend("m1", online_user_only=False)  # allowed: not online-only
    assert (2, False) == (view.attempts, view.online_user_only)
    service.record_failure("m1", code=TIMEOUT)
    if online_user_only:
        with pytest.raises(ResendRefused):  # online-only again: too old for that
            service.resend("m1", online_user_only=True)
    report = service.simulate_policy(policy)
    assert (1, 1, 0, 0) == (
        report.resends_recorded,
        report.resends_allowed,
        report.resends_refused,
        report.dead_earlier,
    )
    # Under a policy limiting every message's age the same resend is refused.
    strict = service.simulate_policy(ResendPolicy(max_age=timedelta(seconds=30)))
    assert (0, 1, ErrorCode.EXPIRED) == (
        strict.resends_allowed,
        strict.resends_refused,
        strict.per_message[0].first_refusal,
    )


def test_stricter_policy_dead_letters_earlier(
    make_service: Any, clock: FakeClock
) -> None:
    """Fewer attempts refuse the later recorded resends and end the replay there."""
    service = make_service(ResendPolicy(max_attempts=5))
    failing_history(service, "m1", resends=3)
    failing_history(service, "m2", resends=1)
    report = service.simulate_policy(ResendPolicy(max_attempts=2))
    by_id = {m.msg_id: m for m in report.per_message}
    assert (1, 2, ErrorCode.ATTEMPTS_EXHAUSTED, True) == (
        by_id["m1"].resends_allowed,
        by_id["m1"].resends_refused,
        by_id["m1"].first_refusal,
        by_id["m1"].dead_earlier,
    )
    assert (1, 0, False) == (
        by_id["m2"].resends_allowed,
        by_id["m2"].resends_refused,
        by_id["m2"].dead_earlier,
    )
    assert (4, 2, 2, 1) == (
        report.resends_recorded,
        report.resends_allowed,
        report.resends_refused,
        report.dead_earlier,
    )


def test_too_early_only_delays(make_service: Any, clock: FakeClock) -> None:
    """A resend the new policy finds TOO_EARLY is delayed, and the replay goes on."""
    service = make_service(ResendPolicy(max_attempts=5))
    failing_history(service, "m1", resends=2)  # resends at once, no waiting
    strict = ResendPolicy(max_attempts=5, enforce_backoff=True)
    report = service.simulate_policy(strict)
    assert (2, 0, 0, 0) == (
        report.resends_delayed,
        report.resends_allowed,
        report.resends_refused,
        report.dead_earlier,
    )


def test_more_lenient_policy_revives_dead_messages(
    make_service: Any, clock: FakeClock
) -> None:
    """A message dead under the recording policy, resendable under the new one."""
    service = make_service(ResendPolicy(max_attempts=2))
    failing_history(service, "m1", resends=1)
    service.create("m2", sender="a", user_id="b")
    service.record_failure("m2", code=BLOCKED)
    report = service.simulate_policy(ResendPolicy(max_attempts=3))
    assert (1, 0) == (report.dead_later, report.dead_earlier)
    assert ["m1"] == [m.msg_id for m in report.per_message if m.dead_later]


def test_simulation_writes_nothing_and_checks_input(service: MessageService) -> None:
    """simulate_policy stores no event and refuses a non-policy."""
    failing_history(service, "m1", resends=1)
    before = service.get("m1").version
    report = service.simulate_policy(ResendPolicy(max_attempts=1), msg_ids=["m1"])
    assert (1, 1) == (report.messages, report.resends_refused)
    assert before == service.get("m1").version
    with pytest.raises(InvalidArgument):
        service.simulate_policy("strict")  # type: ignore[arg-type]


def test_expiry_is_judged_at_the_recorded_moment(tmp_path: Path) -> None:
    """max_age is applied with each recorded resend's own time."""
    clock = FakeClock()
    service = MessageService.open(backend_url("sqlite", tmp_path), clock=clock)
    service.create("m1", sender="a", user_id="b")
    service.record_failure("m1", code=TIMEOUT)
    clock.advance(30)
    service.resend("m1")
    young = service.simulate_policy(ResendPolicy(max_age=timedelta(seconds=60)))
    old = service.simulate_policy(ResendPolicy(max_age=timedelta(seconds=10)))
    assert (1, 0) == (young.resends_allowed, young.dead_earlier)
    assert (ErrorCode.EXPIRED, 1) == (
        old.per_message[0].first_refusal,
        old.dead_earlier,
    )


def test_replay_applies_the_online_only_limit_to_resends_made_online_only(
    make_service: Any, clock: FakeClock
) -> None:
    """A resend recorded with ``online_user_only=True`` (the message was created
    without it) is judged online-only by a policy limiting online-only ages."""
    service = make_service(ResendPolicy())
    service.create("m1", sender="a", user_id="b", online_user_only=False)
    service.record_failure("m1", code=TIMEOUT)
    clock.advance(5)
    service.resend("m1", online_user_only=True)
    report = service.simulate_policy(
        ResendPolicy(online_only_max_age=timedelta(seconds=3))
    )
    assert (0, 1, ErrorCode.EXPIRED) == (
        report.resends_allowed,
        report.resends_refused,
        report.per_message[0].first_refusal,
    )


def test_replay_counts_every_allowed_resend(make_service: Any) -> None:
    """Two recorded resends, both allowed again: two, per message and in total."""
    service = make_service(ResendPolicy(max_attempts=5))
    failing_history(service, "m1", resends=2)
    report = service.simulate_policy(ResendPolicy(max_attempts=5))
    assert (2, 2) == (report.per_message[0].resends_allowed, report.resends_allowed)


def test_dead_earlier_is_never_also_dead_later(make_service: Any) -> None:
    """A message the new policy refuses on the way (dead earlier) is not counted
    as revived (dead later), even if its last failure alone would be resendable."""
    service = make_service(ResendPolicy(max_attempts=2))
    service.create("m1", sender="a", user_id="b")
    service.record_failure("m1", code=9520)  # an ack timeout: resent when recorded
    service.resend("m1")
    service.record_failure("m1", code=TIMEOUT)  # exhausted under the recording one
    report = service.simulate_policy(
        ResendPolicy(max_attempts=5, resend_ambiguous=False)
    )
    result = report.per_message[0]
    assert (ErrorCode.NOT_RETRYABLE, True, False) == (
        result.first_refusal,
        result.dead_earlier,
        result.dead_later,
    )
