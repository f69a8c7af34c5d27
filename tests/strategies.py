"""Shared hypothesis strategies for msgstate's tests.

The error catalog is read here straight from ``msgstate/data/tencent_codes.json``
(not through :mod:`msgstate.codes`), so the tests' idea of each code's retry class
is their own and a broken loader fails them.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

import msgstate
from msgstate import MsgStateError, ResendPolicy, RetryClass

__all__ = [
    "CATALOG_CLASSES",
    "COMMANDS",
    "INT32",
    "MAX_INTERVAL",
    "MAX_RETRY_AFTER",
    "POLICIES",
    "catalog_codes",
    "creation_fields",
    "error_codes",
    "identifiers",
    "initial_creates",
    "invalid_policy_kwargs",
    "machine_policies",
    "msg_ids",
    "policies",
    "request_ids",
    "retry_afters",
    "run_commands",
    "seqs",
    "unknown_codes",
]

INT32 = (-(2**31), 2**31 - 1)
MAX_INTERVAL = timedelta(days=36_525)
"""The longest backoff interval a policy accepts: 100 years (docs: limits)."""
MAX_RETRY_AFTER = 30 * 24 * 3600.0
"""The largest ``retry_after`` (seconds) a command accepts (docs: limits)."""

_CATALOG_FILE = Path(msgstate.__file__).parent / "data" / "tencent_codes.json"
CATALOG_CLASSES: dict[int, str] = {
    entry["code"]: entry["retry_class"]
    for entry in json.loads(_CATALOG_FILE.read_text("utf-8"))["codes"]
}
"""Every catalogued code and its retry class name, read by the tests themselves."""


# -- ids and small values --

_ID_ALPHABET = st.characters(
    codec="utf-8",
    exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"),
)


def identifiers(max_size: int = 128) -> st.SearchStrategy[str]:
    """Valid ids: printable, non-empty, no surrounding white space, <= 128 chars."""
    return st.text(_ID_ALPHABET, min_size=1, max_size=max_size).filter(
        lambda s: s.strip() == s and s != ""
    )


def msg_ids() -> st.SearchStrategy[str]:
    """Any valid message id (mostly short ones, some unusual characters)."""
    return st.one_of(st.sampled_from(["m1", "m2", "msg-3", "消息 4"]), identifiers())


def request_ids() -> st.SearchStrategy[str]:
    """Request ids from a small pool, so that repeats and reuse happen often."""
    return st.sampled_from(["r1", "r2", "r3", "r4"])


def seqs() -> st.SearchStrategy[str]:
    """Server sequence numbers from a small pool, so they repeat."""
    return st.sampled_from(["1001", "1002", "1003"])


# -- error codes --


def catalog_codes() -> st.SearchStrategy[int]:
    """A code listed in the shipped Tencent IM catalog."""
    return st.sampled_from(sorted(CATALOG_CLASSES))


def unknown_codes() -> st.SearchStrategy[int]:
    """A valid (non-zero, int32) code that the catalog does not list."""
    return st.one_of(
        st.sampled_from([-1, 1, 99_999, 2**31 - 1, -(2**31)]),
        st.integers(*INT32),
    ).filter(lambda c: c != 0 and c not in CATALOG_CLASSES)


def error_codes() -> st.SearchStrategy[int]:
    """Mostly catalogued codes, sometimes unknown ones."""
    return st.one_of(catalog_codes(), catalog_codes(), unknown_codes())


def retry_afters() -> st.SearchStrategy[float | int | None]:
    """A server's ``retry_after`` in seconds, or none given."""
    return st.one_of(
        st.none(),
        st.integers(0, 120),
        st.floats(0, 120, allow_nan=False),
        st.floats(0, MAX_RETRY_AFTER, allow_nan=False),
    )


# -- message creation --


def creation_fields() -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for ``create`` (besides ``msg_id``), from small pools."""
    target = st.sampled_from(
        [
            {"user_id": "u1", "group_id": None},
            {"user_id": None, "group_id": "g1"},
            {"user_id": "u2", "group_id": "g1"},
        ]
    )
    return st.builds(
        lambda to, **rest: {**to, **rest},
        target,
        sender=st.sampled_from(["alice", "bob"]),
        elem_type=st.sampled_from([1, 2]),
        priority=st.integers(0, 3),
        online_user_only=st.booleans(),
        need_read_receipt=st.booleans(),
        cloud_custom_data=st.sampled_from(["", "x"]),
        content=st.sampled_from([None, {"text": "hi"}, {"text": "hé", "n": [1, 2]}]),
    )


# -- policies --

_SECOND = timedelta(seconds=1)


def _intervals(low: timedelta, high: timedelta) -> st.SearchStrategy[timedelta]:
    """Intervals in [low, high], often short ones (up to an hour) when possible."""
    short = max(low, min(high, timedelta(hours=1)))
    return st.one_of(
        st.timedeltas(min_value=low, max_value=short),
        st.timedeltas(min_value=low, max_value=high),
    )


@st.composite
def policies(draw: st.DrawFn, *, jitter: float | None = None) -> ResendPolicy:
    """Any valid policy, across the whole range of every parameter."""
    initial = draw(_intervals(timedelta(microseconds=1), MAX_INTERVAL))
    maximum = draw(_intervals(initial, MAX_INTERVAL))
    return ResendPolicy(
        max_attempts=draw(st.integers(1, 20)),
        initial_interval=initial,
        backoff_coefficient=draw(
            st.one_of(
                st.sampled_from([1, 1.5, 2, 3, 10]),
                st.floats(1, 1e300, allow_nan=False, allow_infinity=False),
            )
        ),
        maximum_interval=maximum,
        jitter=(
            draw(st.one_of(st.just(0.0), st.floats(0, 1, allow_nan=False)))
            if jitter is None
            else jitter
        ),
        enforce_backoff=draw(st.booleans()),
        max_age=draw(st.none() | _intervals(timedelta(microseconds=1), MAX_INTERVAL)),
        online_only_max_age=draw(
            st.none() | _intervals(timedelta(microseconds=1), MAX_INTERVAL)
        ),
        unknown_code_class=draw(st.sampled_from(RetryClass)),
        resend_ambiguous=draw(st.booleans()),
    )


@st.composite
def machine_policies(draw: st.DrawFn) -> ResendPolicy:
    """Small, exact policies for the state machine: few attempts, short waits.

    Intervals are whole seconds and coefficients have exact float powers, so a
    model's own arithmetic gives the very same microseconds as the library's.
    """
    initial = draw(st.sampled_from([1, 2, 5]))
    return ResendPolicy(
        max_attempts=draw(st.sampled_from([1, 2, 3, 4, 4])),
        initial_interval=initial * _SECOND,
        backoff_coefficient=draw(st.sampled_from([1, 1.5, 2, 3])),
        maximum_interval=draw(st.sampled_from([initial, 10, 60])) * _SECOND,
        jitter=draw(st.sampled_from([0.0, 0.0, 0.5])),
        enforce_backoff=draw(st.booleans()),
        max_age=draw(st.sampled_from([None, None, 30 * _SECOND, 300 * _SECOND])),
        online_only_max_age=draw(st.sampled_from([None, 20 * _SECOND])),
        unknown_code_class=draw(st.sampled_from(RetryClass)),
        resend_ambiguous=draw(st.booleans()),
    )


_NOT_NUMBERS = st.sampled_from([None, "2", b"2", [2], object()])
_NOT_OPTIONAL_INTERVALS = st.one_of(
    st.sampled_from(["2", b"2", [2], object()]),
    st.integers(1, 100),
    st.floats(1, 100),
    st.booleans(),
)
_NOT_INTERVALS = st.one_of(st.none(), _NOT_OPTIONAL_INTERVALS)


def _non_positive_intervals() -> st.SearchStrategy[timedelta]:
    return st.timedeltas(max_value=timedelta(0))


def _too_long_intervals() -> st.SearchStrategy[timedelta]:
    return st.timedeltas(min_value=MAX_INTERVAL + timedelta(microseconds=1))


def _invalid_bool() -> st.SearchStrategy[object]:
    return st.one_of(_NOT_NUMBERS, st.integers(0, 1), st.just("true"))


@st.composite
def invalid_policy_kwargs(draw: st.DrawFn) -> dict[str, object]:
    """``ResendPolicy`` keyword arguments with exactly one invalid value."""
    initial = timedelta(seconds=draw(st.integers(2, 100)))
    choices: dict[str, st.SearchStrategy[dict[str, object]]] = {
        "max_attempts": st.one_of(
            st.integers(max_value=0),
            st.booleans(),
            st.floats(allow_nan=True),
            _NOT_NUMBERS,
        ).map(lambda v: {"max_attempts": v}),
        "initial_interval": st.one_of(_non_positive_intervals(), _NOT_INTERVALS).map(
            lambda v: {"initial_interval": v}
        ),
        "maximum_interval": st.one_of(
            _non_positive_intervals(),
            _NOT_INTERVALS,
            _too_long_intervals(),
            st.timedeltas(max_value=initial - timedelta(microseconds=1)),
        ).map(lambda v: {"initial_interval": initial, "maximum_interval": v}),
        "backoff_coefficient": st.one_of(
            st.floats(max_value=1, exclude_max=True),
            st.floats(allow_nan=True).filter(lambda v: not math.isfinite(v)),
            st.integers(max_value=0),
            st.integers(min_value=2**1024),  # not a float: too large to be finite
            st.booleans(),
            _NOT_NUMBERS,
        ).map(lambda v: {"backoff_coefficient": v}),
        "jitter": st.one_of(
            st.floats(max_value=0, exclude_max=True),
            st.floats(min_value=1, exclude_min=True),
            st.just(math.nan),
            st.integers(min_value=2),
            st.integers(max_value=-1),
            st.booleans(),
            _NOT_NUMBERS,
        ).map(lambda v: {"jitter": v}),
        "max_age": st.one_of(_non_positive_intervals(), _NOT_OPTIONAL_INTERVALS).map(
            lambda v: {"max_age": v}
        ),
        "online_only_max_age": st.one_of(
            _non_positive_intervals(), _NOT_OPTIONAL_INTERVALS
        ).map(lambda v: {"online_only_max_age": v}),
        "unknown_code_class": st.one_of(
            st.sampled_from([c.value for c in RetryClass]),
            st.integers(),
            _NOT_NUMBERS,
        ).map(lambda v: {"unknown_code_class": v}),
        "enforce_backoff": _invalid_bool().map(lambda v: {"enforce_backoff": v}),
        "resend_ambiguous": _invalid_bool().map(lambda v: {"resend_ambiguous": v}),
    }
    name = draw(st.sampled_from(sorted(choices)))
    return draw(choices[name])


# -- command sequences: the read-model, what-if and batch properties share them --

TIMEOUT, BLOCKED, ACK = 6012, 80001, 9520

COMMANDS = st.lists(
    st.tuples(
        st.sampled_from(
            ["create", "create", "fail", "fail", "resend", "deliver", "tick"]
        ),
        st.integers(0, 5),  # which message
        st.sampled_from([TIMEOUT, TIMEOUT, BLOCKED, ACK, 7008, 424242]),
        st.sampled_from([None, 0.5, 30.0]),  # retry_after
        st.integers(0, 40),  # seconds to advance
        st.sampled_from([None, True, False]),  # a resend's online_user_only
    ),
    max_size=60,
)
"""Commands ``(name, which, code, retry_after, seconds, online_user_only)`` on six
messages; :func:`run_commands` performs them."""

POLICIES = st.builds(
    ResendPolicy,
    max_attempts=st.sampled_from([1, 2, 3, 4, 4, 4]),
    jitter=st.sampled_from([0.0, 0.5]),
    enforce_backoff=st.booleans(),
    max_age=st.sampled_from([None, None, timedelta(seconds=90)]),
    online_only_max_age=st.sampled_from([None, None, timedelta(seconds=30)]),
    unknown_code_class=st.sampled_from(list(RetryClass)),
    resend_ambiguous=st.booleans(),
)
"""Policies small enough that :data:`COMMANDS` reach every limit."""


def initial_creates() -> list[tuple[Any, ...]]:
    """Commands creating all six messages (so failures and resends land often)."""
    return [("create", i, 0, None, 0, None) for i in range(6)]


def run_commands(
    service: Any, clock: Any, commands: list[Any], prefix: str
) -> list[str]:
    """Perform :data:`COMMANDS` on ``service`` (a service or a batch), advancing
    ``clock`` by a second after each (and by ``seconds`` on a tick); refusals are
    part of the sequence. Message ``which`` is created online-only when even, and a
    resend passes its ``online_user_only`` (``None`` keeps the message's own).
    Returns the ids created, sorted."""
    ids = []
    for name, which, code, retry_after, seconds, online_user_only in commands:
        msg_id = f"{prefix}{which}"
        try:
            if name == "create":
                service.create(
                    msg_id,
                    sender="alice",
                    user_id="bob",
                    online_user_only=which % 2 == 0,
                )
                ids.append(msg_id)
            elif name == "fail":
                service.record_failure(msg_id, code=code, retry_after=retry_after)
            elif name == "resend":
                service.resend(msg_id, online_user_only=online_user_only)
            elif name == "deliver":
                service.record_delivery(msg_id, seq=f"s{which}")
            elif clock is not None:
                clock.advance(seconds)
        except MsgStateError:
            pass  # refusals are part of the sequence
        if clock is not None:
            clock.advance(1)  # distinct times, so orderings are not all ties
    return sorted(set(ids))
