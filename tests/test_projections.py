"""Read models: due resends, dead letters, counts; rebuild; external runner."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st

from msgstate import (
    ErrorCode,
    Message,
    MessageService,
    MessageStatus,
    MsgStateError,
    ProjectionTimeout,
    ResendPolicy,
    ResendRefused,
    RetryClass,
)
from tests import strategies as mst
from tests.conftest import ServiceFactory, backend_url
from tests.support import EPOCH, FakeClock, opened

TIMEOUT, BLOCKED, ACK = 6012, 80001, 9520


def make(service: MessageService, msg_id: str, **kwargs: Any) -> None:
    service.create(msg_id, sender="alice", user_id="bob", **kwargs)


def test_due_resends_soonest_first_with_limit(
    service: MessageService, clock: FakeClock
) -> None:
    """due_resends lists retryable failures whose backoff ended, soonest first."""
    for msg_id, retry_after in [("late", 50), ("soon", None), ("mid", 20)]:
        make(service, msg_id)
        service.record_failure(msg_id, code=TIMEOUT, retry_after=retry_after)
    make(service, "blocked")
    service.record_failure("blocked", code=BLOCKED)
    make(service, "sending")
    at = EPOCH + timedelta(seconds=30)
    assert ["soon", "mid"] == [v.msg_id for v in service.due_resends(at)]
    later = EPOCH + timedelta(seconds=60)
    assert ["soon", "mid", "late"] == [v.msg_id for v in service.due_resends(later)]
    assert ["soon"] == [v.msg_id for v in service.due_resends(later, limit=1)]


def test_dead_letters_with_reasons_and_paging(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """dead_letters pages by msg_id and says why each message is dead."""
    service = make_service(ResendPolicy(max_attempts=2, max_age=timedelta(hours=1)))
    make(service, "c-blocked")
    service.record_failure("c-blocked", code=BLOCKED)
    make(service, "a-exhausted")
    service.record_failure("a-exhausted", code=TIMEOUT)
    service.resend("a-exhausted")
    service.record_failure("a-exhausted", code=TIMEOUT)
    make(service, "b-retryable")
    service.record_failure("b-retryable", code=TIMEOUT)
    now = clock.now
    first = service.dead_letters(now, limit=1)
    second = service.dead_letters(now, limit=1, after=first[-1].msg_id)
    rest = service.dead_letters(now, limit=10, after=second[-1].msg_id)
    actual = [(d.msg_id, d.code) for d in [*first, *second, *rest]]
    expected = [
        ("a-exhausted", ErrorCode.ATTEMPTS_EXHAUSTED),
        ("c-blocked", ErrorCode.NOT_RETRYABLE),
    ]
    assert expected == actual
    expired = service.dead_letters(now + timedelta(hours=2))
    assert ErrorCode.EXPIRED == {d.msg_id: d.code for d in expired}["b-retryable"]


def test_counts(service: MessageService) -> None:
    """status_counts covers every status; counts_by_error_code only SEND_FAIL."""
    for i in range(3):
        make(service, f"m{i}")
    service.record_failure("m0", code=TIMEOUT)
    service.record_failure("m1", code=BLOCKED)
    service.record_delivery("m2", seq="1")
    counts = service.status_counts()
    assert 6 == len(counts)
    assert (0, 1, 2) == (
        counts[MessageStatus.SENDING],
        counts[MessageStatus.SEND_SUCC],
        counts[MessageStatus.SEND_FAIL],
    )
    assert {TIMEOUT: 1, BLOCKED: 1} == service.counts_by_error_code()


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_reopening_with_another_policy_changes_the_split(
    backend_name: str, tmp_path: Path, clock: FakeClock
) -> None:
    """Due/dead follow the policy of the service asking, not a frozen one."""
    url = backend_url(backend_name, tmp_path)
    lenient = MessageService.open(url, clock=clock)
    make(lenient, "m1")
    lenient.record_failure("m1", code=ACK)
    clock.advance(10)
    assert ["m1"] == [v.msg_id for v in lenient.due_resends()]
    strict = MessageService.open(
        url, clock=clock, policy=ResendPolicy(resend_ambiguous=False)
    )
    assert [] == strict.due_resends()
    assert [("m1", ErrorCode.NOT_RETRYABLE)] == [
        (d.msg_id, d.code) for d in strict.dead_letters()
    ]
    unknown = MessageService.open(
        url, clock=clock, policy=ResendPolicy(unknown_code_class=RetryClass.PERMANENT)
    )
    assert ["m1"] == [v.msg_id for v in unknown.due_resends()]


# -- the property: live == rebuilt == what the policy says per message --

# The shared command generator (tests/strategies.py); these names stay importable
# from here too.
COMMANDS, POLICIES, run_commands = mst.COMMANDS, mst.POLICIES, mst.run_commands


def expected_split(
    service: MessageService, ids: list[str], now: Any
) -> tuple[list[str], list[tuple[str, ErrorCode]]]:
    """What the policy decides, message by message, from each full history."""
    due: list[tuple[Any, str]] = []
    dead = []
    for msg_id in ids:
        view = service.get(msg_id)
        decision = service.policy.decide(view, now)
        if view.status is not MessageStatus.SEND_FAIL:
            continue
        if decision.allowed and view.next_retry_at <= now:
            # Documented order: next_retry_at, ties by stream id.
            due.append((view.next_retry_at, Message.create_id(msg_id), msg_id))
        elif not decision.allowed and decision.code is not ErrorCode.TOO_EARLY:
            dead.append((msg_id, decision.code))
    return [m for _, _, m in sorted(due)], sorted(dead)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=COMMANDS, policy=POLICIES, extra=st.integers(0, 120))
def test_live_rebuilt_and_model_agree(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    commands: Any,
    policy: Any,
    extra: int,
) -> None:
    """After any commands, live views == rebuilt views == the policy's answers."""
    clock = FakeClock()
    url = backend_url(backend, tmp_path_factory.mktemp("p"))
    with opened(url, policy=policy, clock=clock) as service:
        commands = mst.initial_creates() + commands
        half = len(commands) // 2
        ids = run_commands(service, clock, commands[:half], "m")
        service.status_counts()  # catch up half-way, so live views are incremental
        later = run_commands(service, clock, commands[half:], "m")
        ids = sorted(set(ids) | set(later))
        now = clock.now + timedelta(seconds=extra)

        def observe() -> Any:
            return (
                [v.msg_id for v in service.due_resends(now, limit=1000)],
                sorted(
                    (d.msg_id, d.code) for d in service.dead_letters(now, limit=1000)
                ),
                service.status_counts(),
                service.counts_by_error_code(),
            )

        live = observe()
        service.rebuild_projections()
        rebuilt = observe()
        assert live == rebuilt
        due, dead = expected_split(service, ids, now)
        target(float(len(due)), label="due messages")  # steer towards orderings
        target(float(len(dead)), label="dead messages")
        assert (due, dead) == (live[0], live[1])
        statuses = [service.get(m).status for m in ids]
        assert {s: statuses.count(s) for s in MessageStatus} == live[2]


MICROSECOND = timedelta(microseconds=1)


def observed_moments(
    service: MessageService, ids: list[str], end: datetime
) -> list[datetime]:
    """The moments where an answer can change: the end of the run, each message's
    own ``next_retry_at``, and each age limit's last allowed moment and the
    microsecond after it."""
    policy = service.policy
    limits = [x for x in (policy.max_age, policy.online_only_max_age) if x]
    moments = {end}
    for msg_id in ids:
        view = service.get(msg_id)
        if view.next_retry_at is not None:
            moments.add(view.next_retry_at)
        for limit in limits:
            moments |= {view.created_at + limit, view.created_at + limit + MICROSECOND}
    return sorted(moments)


def test_read_models_agree_with_check_resend_at_every_moment(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """At every moment where an answer can change, the read models agree with the
    policy's own decision for every message: a failed message is listed by
    ``due_resends`` exactly when ``check_resend`` allows it and its
    ``next_retry_at`` has come (so at its own ``next_retry_at`` at the latest), and
    by ``dead_letters`` exactly when ``check_resend`` refuses it for good (anything
    but TOO_EARLY). Short pages hold the first messages of the full answer.

    PostgreSQL runs a quarter of the examples (each makes a schema and a few
    hundred queries); its SQL is the same as SQLite's, which runs them all.
    """
    share = 0.25 if backend == "postgres" else 1.0

    @settings(max_examples=max(10, int(40 * share)), deadline=None)
    @given(commands=COMMANDS, policy=POLICIES)
    def check(commands: Any, policy: ResendPolicy) -> None:
        clock = FakeClock()
        url = backend_url(backend, tmp_path_factory.mktemp("m"))
        with opened(url, policy=policy, clock=clock) as service:
            agree_at_every_moment(service, clock, commands)

    check()


def agree_at_every_moment(
    service: MessageService, clock: FakeClock, commands: Any
) -> None:
    ids = run_commands(service, clock, mst.initial_creates() + commands, "m")
    views = {msg_id: service.get(msg_id) for msg_id in ids}
    failed = [m for m in ids if views[m].status is MessageStatus.SEND_FAIL]
    for moment in observed_moments(service, ids, clock.now):
        clock.now = moment  # check_resend, due_resends, dead_letters: now
        decisions = {msg_id: service.check_resend(msg_id) for msg_id in failed}
        due = sorted(
            (views[m].next_retry_at, Message.create_id(m), m)
            for m in failed
            if decisions[m].allowed and views[m].next_retry_at <= moment
        )
        dead = sorted(
            (m, decisions[m].code)
            for m in failed
            if not decisions[m].allowed and decisions[m].code is not ErrorCode.TOO_EARLY
        )
        expected_due = [m for _, _, m in due]
        assert expected_due == [v.msg_id for v in service.due_resends(limit=1000)], (
            moment
        )
        assert expected_due[:1] == [v.msg_id for v in service.due_resends(limit=1)]
        letters = [(d.msg_id, d.code) for d in service.dead_letters(limit=1000)]
        assert dead == letters, moment
        first = [(d.msg_id, d.code) for d in service.dead_letters(limit=1)]
        assert dead[:1] == first, moment
    for msg_id in failed:  # the words, literally
        clock.now = views[msg_id].next_retry_at
        if service.check_resend(msg_id).allowed:
            assert msg_id in [v.msg_id for v in service.due_resends(limit=1000)]


def test_each_message_is_due_at_its_own_next_retry_at(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """With jitter, every failed message is listed by due_resends at exactly its
    own next_retry_at (the read model computes the same jitter as the policy)."""
    service = make_service(ResendPolicy(jitter=0.5, max_attempts=5))
    ids = [f"j{i}" for i in range(16)]
    for i, msg_id in enumerate(ids):
        make(service, msg_id)
        service.record_failure(msg_id, code=TIMEOUT)
        for _ in range(i % 3):  # attempts 1 to 3: each has its own jitter
            clock.now = service.get(msg_id).next_retry_at
            service.resend(msg_id)
            service.record_failure(msg_id, code=TIMEOUT)
    missing = []
    for msg_id in ids:
        at = service.get(msg_id).next_retry_at
        if msg_id not in [v.msg_id for v in service.due_resends(at, limit=100)]:
            missing.append(msg_id)
    assert [] == missing


@pytest.mark.parametrize("created", [True, False])
def test_read_models_follow_a_resends_online_user_only(
    make_service: ServiceFactory, clock: FakeClock, created: bool
) -> None:
    """A resend that changed online_user_only changes which age limit the read
    models apply, as it changes check_resend's answer."""
    service = make_service(ResendPolicy(online_only_max_age=timedelta(seconds=30)))
    make(service, "m1", online_user_only=created)
    service.record_failure("m1", code=TIMEOUT)
    clock.advance(5)
    service.resend("m1", online_user_only=not created)
    service.record_failure("m1", code=TIMEOUT)
    clock.advance(60)  # past online_only_max_age
    decision = service.check_resend("m1")
    due = [v.msg_id for v in service.due_resends()]
    dead = [(d.msg_id, d.code) for d in service.dead_letters()]
    if created:  # resent as not online-only: no age limit any more
        assert (True, ["m1"], []) == (decision.allowed, due, dead)
    else:  # resent online-only: expired now
        assert (ErrorCode.EXPIRED, [], [("m1", ErrorCode.EXPIRED)]) == (
            decision.code,
            due,
            dead,
        )


@pytest.mark.parametrize("limit", ["max_age", "online_only_max_age"])
def test_age_limits_at_the_boundary(
    make_service: ServiceFactory, clock: FakeClock, limit: str
) -> None:
    """A message exactly ``limit`` old may be resent; one microsecond older it is
    EXPIRED, for check_resend, resend, due_resends and dead_letters alike.
    ``online_only_max_age`` applies to online-only messages only."""
    service = make_service(ResendPolicy(**{limit: timedelta(seconds=60)}))
    names = ["at", "after", "offline"]
    for name in names:
        make(service, name, online_user_only=name != "offline")
        service.record_failure(name, code=TIMEOUT)
    boundary = EPOCH + timedelta(seconds=60)
    after = boundary + MICROSECOND

    clock.now = boundary
    assert service.check_resend("after").allowed
    assert names == sorted(
        (v.msg_id for v in service.due_resends(limit=10)), key=names.index
    )
    assert [] == service.dead_letters()
    assert 2 == service.resend("at").attempts  # allowed at exactly the limit

    clock.now = after
    decision = service.check_resend("after")
    assert (False, ErrorCode.EXPIRED) == (decision.allowed, decision.code)
    with pytest.raises(ResendRefused) as info:
        service.resend("after")
    assert ErrorCode.EXPIRED == info.value.code
    due = [v.msg_id for v in service.due_resends()]
    dead = [(d.msg_id, d.code) for d in service.dead_letters()]
    if limit == "max_age":  # every message
        assert ([], [("after", ErrorCode.EXPIRED), ("offline", ErrorCode.EXPIRED)]) == (
            due,
            dead,
        )
    else:  # online-only messages only
        assert (["offline"], [("after", ErrorCode.EXPIRED)]) == (due, dead)
        assert service.check_resend("offline").allowed


def test_rebuild_counts_every_event(service: MessageService) -> None:
    """rebuild_projections replays the whole log and reports how many events."""
    for i in range(5):
        make(service, f"m{i}")
        service.record_failure(f"m{i}", code=TIMEOUT)
    assert 10 == service.rebuild_projections()
    assert 0 == service.catch_up_projections()


# -- audit trail --


def test_export_history_round_trips(service: MessageService, clock: FakeClock) -> None:
    """Each JSON line equals the history entry it exports, in notification order."""
    make(service, "a", content={"text": "hi"})
    clock.advance(1)
    make(service, "b")
    service.record_failure("a", code=TIMEOUT, desc="t/o")
    service.resend("a", request_id="r1", actor="admin")
    service.record_delivery("a", seq="9")
    lines = list(service.export_history())
    assert all(line.endswith("\n") for line in lines)
    parsed = [json.loads(line) for line in lines]
    assert ["a", "b", "a", "a", "a"] == [p["msg_id"] for p in parsed]
    for msg_id in ("a", "b"):
        exported = [p for p in parsed if p["msg_id"] == msg_id]
        recorded = service.history(msg_id)
        assert [(h.version, h.event, h.recorded_at.isoformat()) for h in recorded] == [
            (p["version"], p["event"], p["recorded_at"]) for p in exported
        ]
        assert [
            json.loads(json.dumps(h.data, default=lambda d: d.isoformat()))
            for h in recorded
        ] == [p["data"] for p in exported]


def test_export_history_filters(service: MessageService, clock: FakeClock) -> None:
    """msg_ids keeps those messages; since keeps events recorded at or after it."""
    make(service, "a")
    clock.advance(10)
    make(service, "b")
    service.record_failure("a", code=TIMEOUT)
    only_a = [json.loads(x)["msg_id"] for x in service.export_history(msg_ids=["a"])]
    assert ["a", "a"] == only_a
    recent = [
        (json.loads(x)["msg_id"], json.loads(x)["event"])
        for x in service.export_history(since=EPOCH + timedelta(seconds=10))
    ]
    assert [("b", "Created"), ("a", "SendFailed")] == recent


# -- the external runner (PostgreSQL) --


def test_external_runner_keeps_views_current(tmp_path: Path) -> None:
    """run_projections follows the store; wait_for_projections blocks until current."""
    from msgstate.runner import run_projections

    url = backend_url("postgres", tmp_path)
    service = MessageService.open(url, projections="external")
    make(service, "before")
    with pytest.raises(ProjectionTimeout):
        service.wait_for_projections(timeout=0.2)
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=run_projections, args=(url,), kwargs={"stop": stop, "ready": ready}
    )
    thread.start()
    try:
        assert ready.wait(20)
        for i in range(20):
            make(service, f"m{i}")
            service.record_failure(f"m{i}", code=BLOCKED)
        service.wait_for_projections(timeout=20)
        assert 21 == sum(service.status_counts().values())
        assert 20 == len(service.dead_letters(limit=100))
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()


def test_sqlite_queries_while_another_service_writes(tmp_path: Path) -> None:
    """Two services on one SQLite file: catching up never fails as 'locked'."""
    url = backend_url("sqlite", tmp_path)
    writer, reader = MessageService.open(url), MessageService.open(url)
    errors: list[BaseException] = []

    def write() -> None:
        for i in range(300):
            make(writer, f"m{i}")
            writer.record_failure(f"m{i}", code=TIMEOUT)

    def read() -> None:
        for _ in range(150):
            try:
                reader.due_resends()
                reader.status_counts()
            except MsgStateError as error:
                errors.append(error)

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [] == errors
    assert 300 == reader.status_counts()[MessageStatus.SEND_FAIL]


@pytest.mark.parametrize("encrypted", [False, True])
def test_dead_letter_pages_in_code_point_order(
    backend: str, tmp_path: Path, encrypted: bool
) -> None:
    """Paging dead letters walks msg_ids in code-point order, encrypted or not."""
    from msgstate import generate_cipher_key

    key = generate_cipher_key() if encrypted else None
    service = MessageService.open(backend_url(backend, tmp_path), cipher_key=key)
    ids = ["b", "a", "é", "Z", "z", "ab", "中", "a0"]
    for msg_id in ids:
        make(service, msg_id)
        service.record_failure(msg_id, code=BLOCKED)
    seen: list[str] = []
    after = None
    while page := service.dead_letters(limit=3, after=after):
        seen.extend(d.msg_id for d in page)
        after = page[-1].msg_id
    assert sorted(ids) == seen


def test_flat_schedule_with_huge_max_attempts(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """backoff_coefficient=1 and a huge max_attempts: quick, and due is exact."""
    policy = ResendPolicy(
        max_attempts=10**9,
        backoff_coefficient=1.0,
        initial_interval=timedelta(seconds=10),
    )
    service = make_service(policy)
    make(service, "m1")
    for _ in range(3):
        service.record_failure("m1", code=TIMEOUT)
        service.resend("m1")
    service.record_failure("m1", code=TIMEOUT)
    failed_at = clock.now
    assert [] == service.due_resends(failed_at + timedelta(seconds=9))
    assert ["m1"] == [
        v.msg_id for v in service.due_resends(failed_at + timedelta(seconds=10))
    ]


def test_runner_in_a_separate_process(tmp_path: Path) -> None:
    """`python -m msgstate.runner URL` keeps another process's read models current."""
    import subprocess
    import sys

    url = backend_url("postgres", tmp_path)
    service = MessageService.open(url, projections="external")
    runner = subprocess.Popen(
        [sys.executable, "-m", "msgstate.runner", url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for i in range(10):
            make(service, f"m{i}")
            service.record_failure(f"m{i}", code=BLOCKED)
        service.wait_for_projections(timeout=60)
        assert 10 == len(service.dead_letters())
        assert runner.poll() is None, runner.stderr.read() if runner.stderr else ""
    finally:
        runner.terminate()
        runner.wait(20)


@pytest.mark.parametrize("unknown", [RetryClass.TRANSIENT, RetryClass.PERMANENT])
def test_callback_range_codes_are_dead_in_every_view(
    make_service: ServiceFactory, clock: FakeClock, unknown: RetryClass
) -> None:
    """A code inside 120001-130000 is the range entry's (PERMANENT) in SQL too."""
    service = make_service(policy=ResendPolicy(unknown_code_class=unknown))
    for msg_id, code in [
        ("cb-first", 120001),
        ("cb-mid", 125000),
        ("cb-last", 130000),
        ("after", 130001),
        ("t/o", TIMEOUT),
    ]:
        make(service, msg_id)
        service.record_failure(msg_id, code=code)
    later = EPOCH + timedelta(hours=1)
    dead = {d.msg_id for d in service.dead_letters(later, limit=100)}
    due = {v.msg_id for v in service.due_resends(later, limit=100)}
    in_range = {"cb-first", "cb-mid", "cb-last"}
    unknown_dead = {"after"} if unknown is RetryClass.PERMANENT else set()
    assert in_range | unknown_dead == dead
    assert {"t/o", "after"} - unknown_dead == due
