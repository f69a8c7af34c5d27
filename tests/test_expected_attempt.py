"""resend(expected_attempt=), MessageView.request_id, stuck_sends and expire_send,
on every backend (memory, SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    MessageStatus,
    ResendPolicy,
    ResendRefused,
    RetryClass,
    SendNotOverdue,
    StaleAttempt,
)
from tests.conftest import ServiceFactory
from tests.support import FakeClock

TRANSIENT = 6012
TIMEOUT = ResendPolicy(send_timeout=timedelta(seconds=30), max_attempts=5)


def failed(service: MessageService, msg_id: str, attempt: int = 1) -> None:
    if attempt == 1:
        service.create(msg_id, sender="alice", user_id="bob")
    service.record_failure(msg_id, code=TRANSIENT, attempt=attempt)


# -- expected_attempt --


def test_a_stale_expected_attempt_is_refused_and_writes_nothing(
    service: MessageService,
) -> None:
    """expected_attempt=1 on a message at attempt 2: STALE_ATTEMPT, no event."""
    failed(service, "m")
    service.resend("m", request_id="r2")
    service.record_failure("m", code=TRANSIENT, attempt=2)
    before = service.get("m")
    with pytest.raises(StaleAttempt) as refused:
        service.resend("m", request_id="r3", expected_attempt=1)
    assert (ErrorCode.STALE_ATTEMPT, True) == (
        refused.value.code,
        isinstance(refused.value, ResendRefused),
    )
    assert before == service.get("m")


def test_the_current_expected_attempt_claims_the_next(service: MessageService) -> None:
    """expected_attempt=n on a message at attempt n claims n + 1 with that id."""
    failed(service, "m")
    view = service.resend("m", request_id="claim", expected_attempt=1, actor="w")
    assert (MessageStatus.SENDING, 2, "claim") == (
        view.status,
        view.attempts,
        view.request_id,
    )


def test_a_future_expected_attempt_is_stale_too(service: MessageService) -> None:
    """An expected attempt beyond the current one is refused the same way."""
    failed(service, "m")
    with pytest.raises(StaleAttempt):
        service.resend("m", expected_attempt=2)
    assert 1 == service.get("m").attempts


def test_stale_is_judged_before_the_policy(service: MessageService) -> None:
    """A SENDING message with a stale expected attempt answers STALE_ATTEMPT (not
    SEND_IN_PROGRESS): the caller learns its view is old."""
    failed(service, "m")
    service.resend("m", request_id="a")
    with pytest.raises(StaleAttempt):
        service.resend("m", request_id="b", expected_attempt=1)


def test_a_repeated_request_id_still_answers_the_current_view(
    service: MessageService,
) -> None:
    """Idempotency first: the same request again answers the current view, even
    though its expected attempt is stale now."""
    failed(service, "m")
    first = service.resend("m", request_id="r", expected_attempt=1)
    assert first == service.resend("m", request_id="r", expected_attempt=1)


@pytest.mark.parametrize("bad", [0, -1, "1", 1.0, True])
def test_a_malformed_expected_attempt_is_invalid(
    service: MessageService, bad: object
) -> None:
    failed(service, "m")
    with pytest.raises(InvalidArgument) as refused:
        service.resend("m", expected_attempt=bad)  # type: ignore[arg-type]
    assert "expected_attempt" in refused.value.desc
    assert 1 == service.get("m").attempts


def test_request_id_is_that_of_the_current_attempt(service: MessageService) -> None:
    """None for attempt 1; each resend's id afterwards, kept through its failure."""
    service.create("m", sender="alice", user_id="bob")
    assert service.get("m").request_id is None
    service.record_failure("m", code=TRANSIENT)
    assert service.get("m").request_id is None
    service.resend("m", request_id="first")
    service.record_failure("m", code=TRANSIENT, attempt=2)
    assert "first" == service.get("m").request_id
    service.resend("m", request_id="second")
    assert ["first", "second"] == [
        service.get_at("m", version=v).request_id for v in (3, 5)
    ]


def test_expected_attempt_in_a_batch(service: MessageService) -> None:
    """In a batch the stale claim raises at once; the batch's other claims save."""
    failed(service, "a")
    failed(service, "b")
    with service.batch() as batch:
        batch.resend("a", expected_attempt=1, request_id="ra")
        with pytest.raises(StaleAttempt):
            batch.resend("b", expected_attempt=2, request_id="rb")
    assert [(2, "ra"), (1, None)] == [
        (service.get(m).attempts, service.get(m).request_id) for m in ("a", "b")
    ]


# -- stuck sends --


def test_stuck_sends_lists_overdue_sends_oldest_first(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """Only SENDING messages whose current send started send_timeout ago or more,
    oldest send first, at most limit; a rebuilt read model answers the same."""
    service = make_service(TIMEOUT)
    service.create("old", sender="a", user_id="b")
    clock.advance(5)
    failed(service, "resent")
    clock.advance(5)
    service.create("newer", sender="a", user_id="b")
    service.create("done", sender="a", user_id="b")
    service.record_delivery("done", seq="1")
    failed(service, "failed")
    clock.advance(5)
    service.resend("resent")  # its send starts now
    clock.advance(20)  # old: 30 s, newer: 25 s, resent: 20 s
    assert ["old"] == [v.msg_id for v in service.stuck_sends()]
    clock.advance(5)
    assert ["old", "newer"] == [v.msg_id for v in service.stuck_sends()]
    clock.advance(100)
    expected = ["old", "newer", "resent"]
    assert expected == [v.msg_id for v in service.stuck_sends()]
    assert expected[:2] == [v.msg_id for v in service.stuck_sends(limit=2)]
    service.rebuild_projections()
    assert expected == [v.msg_id for v in service.stuck_sends()]
    assert ["old"] == [
        v.msg_id for v in service.stuck_sends(clock.now - timedelta(seconds=105))
    ]


def test_stuck_sends_checks_its_arguments(service: MessageService) -> None:
    with pytest.raises(InvalidArgument):
        service.stuck_sends(limit=0)
    with pytest.raises(InvalidArgument):
        service.stuck_sends(now="now")  # type: ignore[arg-type]


# -- expire_send --


def test_expire_send_records_an_ambiguous_timeout_then_the_policy_decides(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """An overdue send fails with SEND_TIMED_OUT (AMBIGUOUS, maybe delivered);
    the actor is named; the message is then resendable and no longer stuck."""
    service = make_service(TIMEOUT)
    service.create("m", sender="alice", user_id="bob")
    clock.advance(30)
    view = service.expire_send("m", attempt=1, actor="sweeper")
    assert (
        MessageStatus.SEND_FAIL,
        int(ErrorCode.SEND_TIMED_OUT),
        RetryClass.AMBIGUOUS,
        True,
        True,
    ) == (
        view.status,
        view.last_error_code,
        view.last_error_class,
        view.maybe_delivered,
        view.last_error_desc is not None and "sweeper" in view.last_error_desc,
    )
    assert [] == service.stuck_sends()
    assert service.check_resend("m").allowed
    assert 2 == service.resend("m", expected_attempt=1).attempts


def test_expire_send_is_idempotent(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """Expiring again, or expiring an older attempt, writes nothing."""
    service = make_service(TIMEOUT)
    service.create("m", sender="alice", user_id="bob")
    clock.advance(31)
    first = service.expire_send("m", attempt=1)
    assert first == service.expire_send("m", attempt=1)
    service.resend("m")
    clock.advance(31)
    resent = service.get("m")
    assert resent == service.expire_send("m", attempt=1)
    assert MessageStatus.SENDING == resent.status


def test_expire_send_after_a_report_writes_nothing(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    service = make_service(TIMEOUT)
    service.create("m", sender="alice", user_id="bob")
    service.record_delivery("m", seq="s")
    clock.advance(100)
    delivered = service.get("m")
    assert delivered == service.expire_send("m", attempt=1)


def test_a_send_not_yet_overdue_is_refused(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    service = make_service(TIMEOUT)
    service.create("m", sender="alice", user_id="bob")
    clock.advance(29.999)
    with pytest.raises(SendNotOverdue) as refused:
        service.expire_send("m", attempt=1)
    assert ErrorCode.SEND_NOT_OVERDUE == refused.value.code
    assert MessageStatus.SENDING == service.get("m").status


def test_expire_send_checks_its_arguments(service: MessageService) -> None:
    service.create("m", sender="alice", user_id="bob")
    with pytest.raises(InvalidArgument):
        service.expire_send("m", attempt=2)  # not started
    with pytest.raises(InvalidArgument):
        service.expire_send("m", attempt=0)
    with pytest.raises(InvalidArgument):
        service.expire_send("m", attempt=1, actor="")
    with pytest.raises(MessageNotFound):
        service.expire_send("nope", attempt=1)
    assert 1 == service.get("m").version


def test_expire_send_in_a_batch(make_service: ServiceFactory, clock: FakeClock) -> None:
    service = make_service(TIMEOUT)
    for msg_id in ("a", "b"):
        service.create(msg_id, sender="alice", user_id="bob")
    clock.advance(60)
    with service.batch() as batch:
        for msg_id in ("a", "b"):
            batch.expire_send(msg_id, attempt=1)
        assert 2 == batch.pending
    assert {MessageStatus.SEND_FAIL} == {service.get(m).status for m in "ab"}


# -- the property: stale views never claim twice or skip --

# Each step: which worker acts, and what it does: look (refresh its view), claim
# (resend with expected_attempt from its possibly stale view), or report the
# outcome of its claim (fail or deliver the attempt it claimed).
steps = st.lists(
    st.tuples(st.sampled_from("AB"), st.sampled_from(["look", "claim", "fail", "ok"])),
    max_size=40,
)


@given(steps=steps)
def test_stale_views_never_claim_an_attempt_twice_or_skip_one(
    steps: list[tuple[str, str]],
) -> None:
    """Two workers with views of any age: the attempts claimed are exactly
    2, 3, ..., each by one claim, each claim from a view of the attempt before."""
    service = MessageService.open(
        "memory://", policy=ResendPolicy(max_attempts=1_000), clock=FakeClock()
    )
    failed(service, "m")
    views = {w: service.get("m") for w in "AB"}
    claims: dict[str, int | None] = {"A": None, "B": None}
    claimed: list[tuple[int, int, str]] = []  # (attempt claimed, from view, worker)
    for worker, action in steps:
        if action == "look":
            views[worker] = service.get("m")
        elif action == "claim":
            seen = views[worker].attempts
            before = service.get("m")
            try:
                after = service.resend(
                    "m",
                    request_id=f"{worker}:{len(claimed)}:{seen}",
                    expected_attempt=seen,
                )
            except ResendRefused:
                assert before == service.get("m")
                continue
            claimed.append((after.attempts, seen, worker))
            claims[worker] = after.attempts
            views[worker] = after
        elif claims[worker] is not None:
            attempt = claims[worker]
            if action == "fail":
                service.record_failure("m", code=TRANSIENT, attempt=attempt)
            elif service.get("m").status is not MessageStatus.SEND_SUCC:
                service.record_delivery("m", seq=f"s{attempt}", attempt=attempt)
            claims[worker] = None
    assert [(a, a - 1) for a in range(2, len(claimed) + 2)] == [
        (a, seen) for a, seen, _ in claimed
    ]
    assert len(claimed) + 1 == service.get("m").attempts
    service.close()
