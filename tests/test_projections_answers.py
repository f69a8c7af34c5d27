"""Read-model answers against the exact decision, message by message.

Every due, dead and stuck answer is compared with ``check_resend`` (and the
message's own ``next_retry_at``) for each message, at many moments and page sizes,
under policies where each rule of the SQL and in-memory queries matters; plus the
bookkeeping of applying, rebuilding and tracking the read model.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from msgstate import ErrorCode, MessageService, MessageStatus, ResendPolicy, RetryClass
from msgstate.projections import (
    MessageViewsProjection,
    POPOMessageViews,
    ViewChange,
    apply_or_skip,
    views_class_for,
)
from tests.conftest import backend_url
from tests.support import EPOCH, FakeClock

TIMEOUT, BLOCKED, ACK, UNKNOWN = 6012, 80001, 9520, 55555
LOCAL = ["memory", "sqlite"]


def make(service: MessageService, msg_id: str, **kwargs: object) -> None:
    service.create(msg_id, sender="alice", user_id="bob", **kwargs)  # type: ignore[arg-type]


def fail_at_attempt(
    service: MessageService,
    clock: FakeClock,
    msg_id: str,
    attempts: int,
    at: float,
    code: int = TIMEOUT,
    retry_after: float | None = None,
) -> None:
    """Create ``msg_id`` and fail its send ``attempts`` times, the last at ``at``."""
    clock.now = EPOCH
    make(service, msg_id)
    for _ in range(attempts - 1):
        service.record_failure(msg_id, code=TIMEOUT)
        service.resend(msg_id)
    clock.now = EPOCH + timedelta(seconds=at)
    service.record_failure(msg_id, code=code, retry_after=retry_after)


def open_service(
    backend: str, tmp_path: Path, clock: FakeClock, policy: ResendPolicy, **kw: object
) -> MessageService:
    return MessageService.open(
        backend_url(backend, tmp_path), clock=clock, policy=policy, **kw
    )  # type: ignore[arg-type]


def expected_due(
    service: MessageService, clock: FakeClock, ids: list[str], moment: datetime
) -> list[str]:
    """The messages due at ``moment`` by the exact decision, soonest first."""
    clock.now = moment
    due = []
    for msg_id in ids:
        view = service.get(msg_id)
        decision = service.check_resend(msg_id)
        if (
            decision.allowed
            and view.next_retry_at is not None
            and view.next_retry_at <= moment
        ):
            due.append((view.next_retry_at, service.stream_id(msg_id), msg_id))
    return [msg_id for *_, msg_id in sorted(due)]


def expected_dead(
    service: MessageService, clock: FakeClock, ids: list[str], moment: datetime
) -> list[tuple[str, ErrorCode]]:
    """The failed messages never resent at ``moment``, by msg_id, with codes."""
    clock.now = moment
    dead = []
    for msg_id in sorted(ids):
        if service.get(msg_id).status is not MessageStatus.SEND_FAIL:
            continue
        decision = service.check_resend(msg_id)
        if not decision.allowed and decision.code is not ErrorCode.TOO_EARLY:
            dead.append((msg_id, decision.code))
    return dead


@pytest.mark.parametrize("backend", LOCAL)
def test_due_order_follows_the_exact_schedule(backend: str, tmp_path: Path) -> None:
    """A third attempt waits 4 s (not a capped 1 or 2 s): a first attempt that
    failed later but waits less comes first."""
    clock = FakeClock(EPOCH)
    service = open_service(
        backend, tmp_path, clock, ResendPolicy(enforce_backoff=False)
    )
    fail_at_attempt(service, clock, "a", 3, at=0.0)  # due at 4 s
    fail_at_attempt(service, clock, "b", 1, at=2.5)  # due at 3.5 s
    at = EPOCH + timedelta(seconds=10)
    assert ["b", "a"] == [v.msg_id for v in service.due_resends(at)]
    assert ["b", "a"] == expected_due(service, clock, ["a", "b"], at)
    assert ["b"] == [v.msg_id for v in service.due_resends(at, limit=1)]
    early = EPOCH + timedelta(seconds=3.75)
    assert ["b"] == [v.msg_id for v in service.due_resends(early)]
    assert [] == service.due_resends(EPOCH + timedelta(seconds=3))


@pytest.mark.parametrize("backend", LOCAL)
@pytest.mark.parametrize("jitter", [0.0, 0.5, 1.0])
def test_due_pages_match_the_exact_decision(
    backend: str, tmp_path: Path, jitter: float
) -> None:
    """At every moment and page size, due_resends is the exact due list's head."""
    clock = FakeClock(EPOCH)
    policy = ResendPolicy(max_attempts=4, jitter=jitter, enforce_backoff=False)
    service = open_service(backend, tmp_path, clock, policy)
    fail_at_attempt(service, clock, "x4-exhausted", 4, at=0.0)
    fail_at_attempt(service, clock, "a1", 1, at=0.0)
    fail_at_attempt(service, clock, "a2", 2, at=1.0)
    fail_at_attempt(service, clock, "a3", 3, at=2.0)
    fail_at_attempt(service, clock, "ack", 1, at=0.5, code=ACK)
    fail_at_attempt(service, clock, "ra", 1, at=0.25, retry_after=7.0)
    fail_at_attempt(service, clock, "perm", 1, at=0.0, code=BLOCKED)
    fail_at_attempt(service, clock, "unk", 2, at=0.75, code=UNKNOWN)
    fail_at_attempt(service, clock, "b1", 1, at=3.0)
    ids = ["x4-exhausted", "a1", "a2", "a3", "ack", "ra", "perm", "unk", "b1"]
    seen_nonempty = 0
    for step in range(41):
        moment = EPOCH + timedelta(seconds=step * 0.5 + 0.125)
        expected = expected_due(service, clock, ids, moment)
        seen_nonempty += bool(expected)
        for limit in (1, 2, 3, 100):
            actual = [v.msg_id for v in service.due_resends(moment, limit=limit)]
            assert (step, limit, expected[:limit]) == (step, limit, actual)
    assert seen_nonempty >= 30
    assert 7 == len(expected_due(service, clock, ids, EPOCH + timedelta(hours=1)))


@pytest.mark.parametrize("backend", LOCAL)
def test_exhausted_message_never_crowds_out_a_due_one(
    backend: str, tmp_path: Path
) -> None:
    """A message at max_attempts, whose backoff ended first, takes no page slot."""
    clock = FakeClock(EPOCH)
    policy = ResendPolicy(max_attempts=2, enforce_backoff=False)
    service = open_service(backend, tmp_path, clock, policy)
    fail_at_attempt(service, clock, "exhausted", 2, at=0.0)
    fail_at_attempt(service, clock, "due", 1, at=5.0)
    at = EPOCH + timedelta(seconds=10)
    assert ["due"] == [v.msg_id for v in service.due_resends(at, limit=1)]
    assert [("exhausted", ErrorCode.ATTEMPTS_EXHAUSTED)] == [
        (d.msg_id, d.code) for d in service.dead_letters(at)
    ]


POLICIES = [
    ResendPolicy(max_age=timedelta(seconds=10)),
    ResendPolicy(online_only_max_age=timedelta(seconds=5)),
    ResendPolicy(
        max_age=timedelta(seconds=10), online_only_max_age=timedelta(seconds=5)
    ),
    ResendPolicy(unknown_code_class=RetryClass.PERMANENT, resend_ambiguous=False),
    ResendPolicy(max_attempts=2, unknown_code_class=RetryClass.AMBIGUOUS),
    ResendPolicy(
        max_attempts=3,
        resend_ambiguous=False,
        unknown_code_class=RetryClass.AMBIGUOUS,
        max_age=timedelta(seconds=8),
    ),
]


@pytest.mark.parametrize("backend", LOCAL)
@pytest.mark.parametrize("encrypted", [False, True])
@pytest.mark.parametrize("policy_index", range(len(POLICIES)))
def test_dead_letters_match_the_exact_decision(
    backend: str, tmp_path: Path, encrypted: bool, policy_index: int
) -> None:
    """Dead letters, their codes and pages agree with check_resend, exactly at
    the age limits and past them, encrypted keys or not."""
    from msgstate import generate_cipher_key

    clock = FakeClock(EPOCH)
    service = open_service(
        backend,
        tmp_path,
        clock,
        POLICIES[policy_index],
        cipher_key=generate_cipher_key() if encrypted else None,
    )
    ids = []
    for name, code in [("t", TIMEOUT), ("ack", ACK), ("unk", UNKNOWN), ("b", BLOCKED)]:
        for online in (False, True):
            msg_id = f"{name}-{'online' if online else 'any'}"
            ids.append(msg_id)
            clock.now = EPOCH
            make(service, msg_id, online_user_only=online)
            service.record_failure(msg_id, code=code)
    clock.now = EPOCH
    make(service, "t-twice")
    service.record_failure("t-twice", code=TIMEOUT)
    clock.advance(2)
    service.resend("t-twice")
    service.record_failure("t-twice", code=TIMEOUT)
    clock.now = EPOCH
    make(service, "sending")
    ids += ["t-twice", "sending"]
    nonempty = 0
    for seconds in (0, 1, 4.999, 5, 5.001, 8, 8.001, 10, 10.001, 11, 100):
        moment = EPOCH + timedelta(seconds=seconds)
        expected = expected_dead(service, clock, ids, moment)
        nonempty += bool(expected)
        letters = service.dead_letters(moment)
        assert (seconds, expected) == (seconds, [(d.msg_id, d.code) for d in letters])
        for letter in letters:
            clock.now = moment
            assert service.check_resend(letter.msg_id).desc == letter.desc
        paged: list[tuple[str, ErrorCode]] = []
        after = None
        while page := service.dead_letters(moment, limit=2, after=after):
            paged.extend((d.msg_id, d.code) for d in page)
            after = page[-1].msg_id
        assert (seconds, expected) == (seconds, paged)
        tail = [e for e in expected if e[0] > "b-online"]
        rest = service.dead_letters(moment, limit=100, after="b-online")
        assert tail == [(d.msg_id, d.code) for d in rest]
    assert nonempty >= 1


@pytest.mark.parametrize("backend", LOCAL)
def test_encrypted_dead_letters_expire_by_age(backend: str, tmp_path: Path) -> None:
    """In an encrypted store a retryable failure older than max_age is dead."""
    from msgstate import generate_cipher_key

    clock = FakeClock(EPOCH)
    policy = ResendPolicy(max_age=timedelta(seconds=10))
    service = open_service(
        backend, tmp_path, clock, policy, cipher_key=generate_cipher_key()
    )
    make(service, "old")
    service.record_failure("old", code=TIMEOUT)
    assert [] == service.dead_letters(EPOCH + timedelta(seconds=10))
    late = EPOCH + timedelta(seconds=11)
    assert [("old", ErrorCode.EXPIRED)] == [
        (d.msg_id, d.code) for d in service.dead_letters(late, limit=5)
    ]


@pytest.mark.parametrize("backend", LOCAL)
def test_stuck_sends_skip_finished_messages(backend: str, tmp_path: Path) -> None:
    """Old failed and delivered messages take no slot of a stuck page."""
    clock = FakeClock(EPOCH)
    service = open_service(backend, tmp_path, clock, ResendPolicy())
    make(service, "failed")
    service.record_failure("failed", code=TIMEOUT)
    make(service, "delivered")
    service.record_delivery("delivered", seq="1")
    clock.advance(1)
    make(service, "stuck")
    clock.advance(2)
    make(service, "recent")
    start = EPOCH + timedelta(seconds=1)
    timeout = timedelta(seconds=60)
    assert [] == service.stuck_sends(start + timeout - timedelta(seconds=0.5))
    assert ["stuck"] == [v.msg_id for v in service.stuck_sends(start + timeout)]
    late = start + timeout + timedelta(seconds=30)
    assert ["stuck"] == [v.msg_id for v in service.stuck_sends(late, limit=1)]
    assert ["stuck", "recent"] == [v.msg_id for v in service.stuck_sends(late)]


@pytest.mark.parametrize("backend", LOCAL)
def test_error_code_counts_add_up(backend: str, tmp_path: Path) -> None:
    """Several failed messages with one code count each."""
    clock = FakeClock(EPOCH)
    service = open_service(backend, tmp_path, clock, ResendPolicy())
    for i in range(3):
        make(service, f"t{i}")
        service.record_failure(f"t{i}", code=TIMEOUT)
    for i in range(2):
        make(service, f"b{i}")
        service.record_failure(f"b{i}", code=BLOCKED)
    make(service, "sending")
    assert {TIMEOUT: 3, BLOCKED: 2} == service.counts_by_error_code()
    counts = service.status_counts()
    assert (1, 5) == (counts[MessageStatus.SENDING], counts[MessageStatus.SEND_FAIL])


@pytest.mark.parametrize("backend", LOCAL)
def test_rebuild_replays_every_notification(backend: str, tmp_path: Path) -> None:
    """rebuild_projections clears the rows and the position, then replays all."""
    clock = FakeClock(EPOCH)
    service = open_service(backend, tmp_path, clock, ResendPolicy())
    make(service, "m1")
    service.record_failure("m1", code=TIMEOUT)
    make(service, "m2")
    service.record_delivery("m2", seq="1")
    assert 4 == service.catch_up_projections()
    assert 0 == service.catch_up_projections()
    before = service.status_counts()
    assert 4 == service.rebuild_projections()
    assert 0 == service.projection_lag()
    assert before == service.status_counts()
    assert 4 == service.rebuild_projections()
    assert {TIMEOUT: 1} == service.counts_by_error_code()


@pytest.mark.parametrize("backend", LOCAL)
def test_forgotten_messages_stay_in_the_read_model(
    backend: str, tmp_path: Path
) -> None:
    """A Forgotten event is applied (tracking moves past it), changing nothing."""
    clock = FakeClock(EPOCH)
    service = open_service(backend, tmp_path, clock, ResendPolicy(), forgettable=True)
    make(service, "m1")
    service.record_failure("m1", code=TIMEOUT)
    service.forget("m1", actor="dpo", reason="erasure request")
    clock.advance(5)
    assert ["m1"] == [v.msg_id for v in service.due_resends()]
    assert 0 == service.projection_lag()
    assert 3 == service.rebuild_projections()
    assert {TIMEOUT: 1} == service.counts_by_error_code()


@pytest.mark.parametrize("backend", LOCAL)
def test_applying_an_applied_notification_again_does_nothing(
    backend: str, tmp_path: Path
) -> None:
    """Changes at or before the tracking position are skipped: apply returns 0."""
    clock = FakeClock(EPOCH)
    service = open_service(backend, tmp_path, clock, ResendPolicy())
    make(service, "m1")
    service.record_failure("m1", code=TIMEOUT)
    assert 2 == service.catch_up_projections()
    views = service._views  # the read model under test
    aid = service.stream_id("m1")
    stale = [
        ViewChange(1, aid, {"status": int(MessageStatus.SEND_SUCC)}),
        ViewChange(2, aid, {"status": int(MessageStatus.SEND_SUCC)}),
    ]
    assert 0 == views.apply(stale, "msgstate")
    assert 0 == views.apply(stale[1:], "msgstate")
    assert 2 == views.max_tracking_id("msgstate")
    assert 1 == service.status_counts()[MessageStatus.SEND_FAIL]
    assert 1 == views.apply([*stale, ViewChange(3, aid, {"attempts": 1})], "msgstate")
    assert 3 == views.max_tracking_id("msgstate")


def test_apply_or_skip_counts_nothing_when_another_process_won() -> None:
    """An IntegrityError (another writer applied first) means nothing applied."""

    class Lost(POPOMessageViews):
        def apply(self, changes: object, application_name: str) -> int:
            raise IntegrityError("tracking moved")

    change = ViewChange(1, uuid4(), {"attempts": 1})
    assert 0 == apply_or_skip(Lost(), [change])
    assert 1 == apply_or_skip(POPOMessageViews(), [change])


def test_projection_tracks_events_it_ignores() -> None:
    """An event the views ignore still moves the tracking position."""
    views = POPOMessageViews()
    projection = MessageViewsProjection(view=views)
    ignored = SimpleNamespace(originator_id=uuid4(), at=EPOCH)
    projection.process_event(ignored, Tracking("msgstate", 7))
    assert 7 == views.max_tracking_id("msgstate")


def test_unknown_persistence_module_is_named() -> None:
    """No read model for a persistence module: the error names it."""
    with pytest.raises(ValueError, match=r"^no read model for eventsourcing\.nope$"):
        views_class_for("eventsourcing.nope")
