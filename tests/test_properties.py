"""Properties of the backoff schedule, the policy's arguments, idempotency and the
status table, checked against the tests' own expectations (never msgstate's table).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from attrs import asdict
from hypothesis import event, given, settings
from hypothesis import strategies as st

from msgstate import (
    DeliveryConflict,
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageService,
    MessageStatus,
    MessageView,
    MsgStateError,
    ResendPolicy,
    ResendRefused,
)
from tests import pg
from tests import strategies as mst
from tests.support import EPOCH, FakeClock

MICROSECOND = timedelta(microseconds=1)
STORE_BACKENDS = ("memory", "sqlite", "postgres")


def seconds(interval: timedelta) -> float:
    return interval / timedelta(seconds=1)


def expected_base(policy: ResendPolicy, attempt: int) -> float:
    """The documented un-jittered wait: initial * coefficient ** (n - 1), capped."""
    cap = seconds(policy.maximum_interval)
    try:
        grown = seconds(policy.initial_interval) * policy.backoff_coefficient ** (
            attempt - 1
        )
    except OverflowError:
        return cap
    return min(grown, cap)


def close_to(low: float, actual: timedelta, high: float) -> bool:
    """``low <= actual <= high`` up to microsecond rounding and float error."""
    slack = 1e-6 + 1e-12 * high
    return low - slack <= seconds(actual) <= high + slack


ATTEMPTS = st.one_of(st.integers(1, 12), st.integers(1, 1_000_000))


# -- the backoff schedule --


@given(policy=mst.policies(jitter=0.0), msg_id=mst.msg_ids(), last=st.integers(1, 60))
def test_backoff_is_non_decreasing_without_jitter(
    policy: ResendPolicy, msg_id: str, last: int
) -> None:
    """Without jitter, a later attempt never waits less than an earlier one."""
    delays = [policy.delay(attempt, msg_id) for attempt in range(1, last + 1)]
    assert sorted(delays) == delays


@given(policy=mst.policies(jitter=0.0), msg_id=mst.msg_ids())
def test_first_backoff_is_the_initial_interval(
    policy: ResendPolicy, msg_id: str
) -> None:
    """Without jitter, the wait after the first send is exactly initial_interval."""
    assert policy.initial_interval == policy.delay(1, msg_id)


@given(policy=mst.policies(), msg_id=mst.msg_ids(), attempt=ATTEMPTS)
def test_backoff_is_capped_at_maximum_interval_times_jitter(
    policy: ResendPolicy, msg_id: str, attempt: int
) -> None:
    """No wait exceeds maximum_interval * (1 + jitter)."""
    cap = seconds(policy.maximum_interval) * (1 + policy.jitter)
    assert close_to(0.0, policy.delay(attempt, msg_id), cap)


@given(policy=mst.policies(), msg_id=mst.msg_ids(), attempt=ATTEMPTS)
def test_backoff_is_the_capped_exponential_within_the_jitter_band(
    policy: ResendPolicy, msg_id: str, attempt: int
) -> None:
    """The wait is the capped exponential times a factor in [1-jitter, 1+jitter]."""
    base = expected_base(policy, attempt)
    actual = policy.delay(attempt, msg_id)
    assert close_to(base * (1 - policy.jitter), actual, base * (1 + policy.jitter))


@given(policy=mst.policies(), msg_id=mst.msg_ids(), attempt=ATTEMPTS)
def test_backoff_is_deterministic_in_process(
    policy: ResendPolicy, msg_id: str, attempt: int
) -> None:
    """An equal policy (a new instance) gives the same wait for (msg_id, attempt)."""
    twin = ResendPolicy(**asdict(policy, recurse=False))
    assert policy.delay(attempt, msg_id) == twin.delay(attempt, msg_id)


_SUBPROCESS_DELAYS = """
import json, sys
from datetime import timedelta
from msgstate import ResendPolicy
cases = json.load(sys.stdin)
policy = ResendPolicy(
    jitter=0.5,
    initial_interval=timedelta(seconds=3),
    maximum_interval=timedelta(hours=1),
)
print(json.dumps([policy.delay(a, m) // timedelta(microseconds=1) for m, a in cases]))
"""


@settings(max_examples=5)
@given(
    cases=st.lists(st.tuples(mst.msg_ids(), st.integers(1, 30)), min_size=3),
    hash_seed=st.integers(0, 2**32 - 1),
)
def test_jitter_is_the_same_in_another_process(
    cases: list[tuple[str, int]], hash_seed: int
) -> None:
    """Jitter comes from a stable hash: another interpreter (another
    PYTHONHASHSEED) computes the very same waits."""
    policy = ResendPolicy(
        jitter=0.5,
        initial_interval=timedelta(seconds=3),
        maximum_interval=timedelta(hours=1),
    )
    expected = [policy.delay(a, m) // MICROSECOND for m, a in cases]
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    done = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_DELAYS],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert expected == json.loads(done.stdout)


@given(
    policy=mst.policies(),
    msg_id=mst.msg_ids(),
    attempt=ATTEMPTS,
    retry_after=mst.retry_afters(),
)
def test_next_retry_at_is_the_failure_plus_the_longer_wait(
    policy: ResendPolicy,
    msg_id: str,
    attempt: int,
    retry_after: float | None,
) -> None:
    """next_retry_at = failed_at + max(delay, retry_after), for every valid policy."""
    wait = policy.delay(attempt, msg_id)
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    expected = EPOCH + wait
    actual = policy.next_retry_at(
        failed_at=EPOCH, attempt=attempt, msg_id=msg_id, retry_after=retry_after
    )
    assert expected == actual


# -- policy arguments --


@given(kwargs=mst.invalid_policy_kwargs())
def test_invalid_policy_values_raise_invalid_argument(kwargs: dict[str, Any]) -> None:
    """Every out-of-range or wrongly typed policy value raises InvalidArgument."""
    with pytest.raises(InvalidArgument) as raised:
        ResendPolicy(**kwargs)
    assert ErrorCode.INVALID_ARGUMENT == raised.value.code


@given(policy=mst.policies())
def test_valid_policies_are_accepted_and_equal_to_their_twin(
    policy: ResendPolicy,
) -> None:
    """Any value within the documented ranges is accepted (and compares by value)."""
    assert policy == ResendPolicy(**asdict(policy, recurse=False))


# -- the decision order --


@st.composite
def failed_views(draw: st.DrawFn) -> MessageView:
    """A view of a message in any status, with any last error, age and attempts."""
    created_at = EPOCH
    failed_at = created_at + draw(
        st.timedeltas(timedelta(0), timedelta(seconds=90))
        | st.timedeltas(timedelta(0), timedelta(days=2))
    )
    status = draw(st.just(MessageStatus.SEND_FAIL) | st.sampled_from(MessageStatus))
    code = draw(mst.error_codes())
    return MessageView(
        msg_id=draw(mst.msg_ids()),
        sender="alice",
        user_id="u1",
        group_id=None,
        elem_type=1,
        priority=0,
        online_user_only=draw(st.booleans()),
        need_read_receipt=False,
        cloud_custom_data="",
        content={},
        status=status,
        attempts=draw(st.integers(1, 6) | st.integers(1, 25)),
        last_error_code=code,
        last_error_desc="",
        last_error_class=None,
        last_retry_after=draw(mst.retry_afters()),
        last_failed_at=failed_at,
        maybe_delivered=False,
        seq=None,
        server_time=None,
        created_at=created_at,
        updated_at=failed_at,
        delivered_at=None,
        next_retry_at=None,
        version=2,
    )


def expected_refusal(
    policy: ResendPolicy, view: MessageView, now: datetime
) -> ErrorCode | None:
    """The documented order of refusals; OK when the resend is allowed.

    ``None`` when ``now`` falls inside the jitter band, where only the library's
    own hash can tell.
    """
    if view.status == 2:
        return ErrorCode.ALREADY_DELIVERED
    if view.status == 1:
        return ErrorCode.SEND_IN_PROGRESS
    if view.status != 3:
        return ErrorCode.NOT_RETRYABLE  # statuses msgstate never moves to
    assert view.last_error_code is not None
    retry_class = mst.CATALOG_CLASSES.get(
        view.last_error_code, policy.unknown_code_class.value
    )
    if retry_class == "PERMANENT" or (
        retry_class == "AMBIGUOUS" and not policy.resend_ambiguous
    ):
        return ErrorCode.NOT_RETRYABLE
    if view.attempts >= policy.max_attempts:
        return ErrorCode.ATTEMPTS_EXHAUSTED
    age = now - view.created_at
    if policy.max_age is not None and age > policy.max_age:
        return ErrorCode.EXPIRED
    if (
        view.online_user_only
        and policy.online_only_max_age is not None
        and age > policy.online_only_max_age
    ):
        return ErrorCode.EXPIRED
    if not policy.enforce_backoff:
        return ErrorCode.OK
    assert view.last_failed_at is not None
    base = expected_base(policy, view.attempts)
    shortest = timedelta(seconds=base * (1 - policy.jitter))
    longest = timedelta(seconds=base * (1 + policy.jitter))
    if view.last_retry_after is not None:
        server_wait = timedelta(seconds=view.last_retry_after)
        shortest, longest = max(shortest, server_wait), max(longest, server_wait)
    if now < view.last_failed_at + shortest - MICROSECOND:
        return ErrorCode.TOO_EARLY
    if now >= view.last_failed_at + longest + MICROSECOND:
        return ErrorCode.OK
    return None  # inside the jitter band (or on a rounding edge): either answer


@given(
    policy=mst.policies(),
    view=failed_views(),
    later=st.timedeltas(timedelta(0), timedelta(minutes=5))
    | st.timedeltas(timedelta(0), timedelta(days=3)),
)
def test_decide_refuses_in_the_documented_order(
    policy: ResendPolicy, view: MessageView, later: timedelta
) -> None:
    """decide() answers the first documented refusal that applies, else OK."""
    now = view.created_at + later
    expected = expected_refusal(policy, view, now)
    event(f"expected {'either' if expected is None else expected.name}")
    actual = policy.decide(view, now)
    if expected is None:
        assert actual.code in (ErrorCode.OK, ErrorCode.TOO_EARLY)
    else:
        assert expected == actual.code
    assert actual.allowed == (actual.code == ErrorCode.OK)


# -- services on a fresh store --


@contextmanager
def fresh_service(
    backend: str, clock: FakeClock, policy: ResendPolicy | None = None
) -> Iterator[MessageService]:
    """A service on a new, empty store (SQLite in its own temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="msgstate-prop-") as directory:
        url = (
            pg.fresh_url()
            if backend == "postgres"
            else "memory://"
            if backend == "memory"
            else f"sqlite:///{directory}/p.db"
        )
        service = MessageService.open(url, policy=policy, clock=clock)
        try:
            yield service
        finally:
            service.close()


Outcome = tuple[str, Any]


def outcome(call: Any) -> Outcome:
    """A command's answer (the view) or its error (type, code and sentence)."""
    try:
        return ("answer", call())
    except MsgStateError as error:
        return ("error", (type(error), error.code, error.desc))


def apply(service: MessageService, command: tuple[Any, ...]) -> Outcome:
    kind, msg_id, args = command
    method = {
        "create": service.create,
        "fail": service.record_failure,
        "resend": service.resend,
        "deliver": service.record_delivery,
    }[kind]
    return outcome(lambda: method(msg_id, **args))


COMMAND_IDS = st.sampled_from(["m1", "m2"])
COMMAND = st.one_of(
    st.tuples(st.just("create"), COMMAND_IDS, mst.creation_fields()),
    st.tuples(
        st.just("fail"),
        COMMAND_IDS,
        st.fixed_dictionaries(
            {
                "code": mst.error_codes(),
                "attempt": st.none() | st.integers(1, 3),
                "retry_after": st.sampled_from([None, 2, 90.5]),
            }
        ),
    ),
    st.tuples(
        st.just("resend"),
        COMMAND_IDS,
        st.fixed_dictionaries(
            {
                "request_id": mst.request_ids(),
                "online_user_only": st.none() | st.booleans(),
            }
        ),
    ),
    st.tuples(
        st.just("deliver"),
        COMMAND_IDS,
        st.fixed_dictionaries(
            {"seq": mst.seqs(), "attempt": st.none() | st.integers(1, 3)}
        ),
    ),
)
STEPS = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 1, 5, 61]),  # seconds to wait before the command
        COMMAND,
        st.integers(1, 3),  # how often the command is sent in the repeated run
    ),
    max_size=12,
)
REPEAT_POLICY = ResendPolicy(
    max_attempts=3,
    enforce_backoff=True,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=60),
    online_only_max_age=timedelta(seconds=100),
)


REPEAT_EXAMPLES = {"memory": 1.0, "sqlite": 1.0, "postgres": 0.2}
"""Each backend's share of the profile's examples: PostgreSQL makes two schemas per
example (about 0.4 s), and the logic under test is the same on every backend."""


@pytest.mark.parametrize("backend", STORE_BACKENDS)
def test_repeating_each_command_changes_nothing(backend: str) -> None:
    """Sending every command several times (same arguments, request ids and time)
    answers as the first send did and stores the very same history."""
    examples = max(10, int(settings.default.max_examples * REPEAT_EXAMPLES[backend]))

    @settings(max_examples=examples)
    @given(steps=STEPS)
    def check(steps: list[tuple[int, tuple[Any, ...], int]]) -> None:
        _repeat_each_command(backend, steps)

    check()


def _repeat_each_command(
    backend: str, steps: list[tuple[int, tuple[Any, ...], int]]
) -> None:
    once, repeated = FakeClock(), FakeClock()
    with (
        fresh_service(backend, once, REPEAT_POLICY) as single,
        fresh_service(backend, repeated, REPEAT_POLICY) as many,
    ):
        for wait, command, times in steps:
            once.advance(wait)
            repeated.advance(wait)
            first = apply(single, command)
            answers = [apply(many, command) for _ in range(times)]
            assert [first] * times == answers
        for msg_id in ("m1", "m2"):
            assert outcome(lambda m=msg_id: single.history(m)) == outcome(
                lambda m=msg_id: many.history(m)
            )


# -- every (status, command) pair --

SENDING, SEND_SUCC, SEND_FAIL = 1, 2, 3
MOVES = {
    (SENDING, "SendFailed"): SEND_FAIL,
    (SENDING, "Delivered"): SEND_SUCC,
    (SEND_FAIL, "ResendRequested"): SENDING,
    (SEND_FAIL, "Delivered"): SEND_SUCC,
}
"""The tests' own copy of the legal moves (not msgstate.TRANSITIONS)."""

FIELDS = {"sender": "alice", "user_id": "u1"}
PATHS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "sending": [],
    "failed": [("fail", {"code": 6012})],
    "resent": [("fail", {"code": 6012}), ("resend", {"request_id": "a"})],
    "failed twice": [
        ("fail", {"code": 6012}),
        ("resend", {"request_id": "a"}),
        ("fail", {"code": 6012}),
    ],
    "delivered": [("deliver", {"seq": "s1"})],
    "delivered late": [("fail", {"code": 6012}), ("deliver", {"seq": "s1"})],
}
"""Ways to bring message m1 (created first) into each status."""


COMMANDS: dict[str, tuple[str, str | None]] = {
    "fail current": ("fail", "SendFailed"),
    "fail stale": ("fail", "SendFailed"),
    "fail future": ("fail", None),
    "resend": ("resend", "ResendRequested"),
    "resend repeated id": ("resend", "ResendRequested"),
    "deliver same seq": ("deliver", "Delivered"),
    "deliver other seq": ("deliver", "Delivered"),
    "deliver late ack": ("deliver", "Delivered"),
    "deliver future": ("deliver", None),
    "create same": ("create", None),
    "create different": ("create", None),
}
"""Each command: the method it calls and the event it records when legal."""


def arguments(name: str, view: MessageView) -> dict[str, Any]:
    return {
        "fail current": {"code": 6012},
        "fail stale": {"code": 6012, "attempt": 1},
        "fail future": {"code": 6012, "attempt": view.attempts + 1},
        "resend": {"request_id": "b"},
        "resend repeated id": {"request_id": "a"},
        "deliver same seq": {"seq": "s1"},
        "deliver other seq": {"seq": "s2"},
        "deliver late ack": {"seq": "s1", "attempt": 1},
        "deliver future": {"seq": "s1", "attempt": view.attempts + 1},
        "create same": FIELDS,
        "create different": {**FIELDS, "priority": 3},
    }[name]


def expected_result(view: MessageView, name: str, resent: bool) -> tuple[str, Any]:
    """("moved", new status) | ("unchanged", None) | ("error", (type, code))."""
    status = int(view.status)
    event = COMMANDS[name][1]
    if name.endswith("future"):
        return ("error", (InvalidArgument, ErrorCode.INVALID_ARGUMENT))
    if name == "create same":
        return ("unchanged", None)
    if name == "create different":
        return ("error", (DuplicateMessage, ErrorCode.DUPLICATE_MESSAGE))
    if name == "resend repeated id" and resent:
        return ("unchanged", None)  # request "a" was accepted on the way here
    if name == "fail stale" and view.attempts > 1:
        return ("unchanged", None)  # a report about an older send
    if (status, event) in MOVES:
        return ("moved", MOVES[(status, event)])
    if event == "SendFailed":
        return ("unchanged", None)  # repeated, or after delivery
    if event == "ResendRequested":
        refusal = {
            SENDING: ErrorCode.SEND_IN_PROGRESS,
            SEND_SUCC: ErrorCode.ALREADY_DELIVERED,
        }[status]
        return ("error", (ResendRefused, refusal))
    assert (SEND_SUCC, "Delivered") == (status, event)
    if name == "deliver other seq":
        return ("error", (DeliveryConflict, ErrorCode.ALREADY_DELIVERED))
    return ("unchanged", None)  # the same seq again


@pytest.mark.parametrize("backend", STORE_BACKENDS)
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("path", list(PATHS))
def test_every_status_and_command_follows_the_table(
    backend: str, path: str, command: str
) -> None:
    """Each (status, command) pair moves as the table says, or changes nothing,
    or raises its documented error and writes nothing (version unchanged)."""
    methods = {"fail": "record_failure", "deliver": "record_delivery"}
    with fresh_service(backend, FakeClock(), ResendPolicy(max_attempts=10)) as service:
        service.create("m1", **FIELDS)
        for method, args in PATHS[path]:
            getattr(service, methods.get(method, method))("m1", **args)
        before = service.get("m1")
        resent = any(method == "resend" for method, _ in PATHS[path])
        expected = expected_result(before, command, resent)
        method = COMMANDS[command][0]
        call = getattr(service, methods.get(method, method))
        kind, answer = outcome(lambda: call("m1", **arguments(command, before)))
        result = (kind, answer[:2] if kind == "error" else answer)
        after = service.get("m1")
        if expected[0] == "error":
            assert expected == result
            assert before == after
        elif expected[0] == "unchanged":
            assert ("answer", before) == result
            assert before == after
        else:
            assert ("answer", after) == result
            assert (expected[1], before.version + 1) == (after.status, after.version)
            assert len(service.history("m1")) == after.version
