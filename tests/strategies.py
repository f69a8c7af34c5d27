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
    "CATALOG_RANGES",
    "COMMANDS",
    "ELEMENT_SAMPLES",
    "INT32",
    "MAX_INTERVAL",
    "MAX_RETRY_AFTER",
    "POLICIES",
    "catalog_codes",
    "creation_fields",
    "element_contents",
    "error_codes",
    "identifiers",
    "initial_creates",
    "invalid_policy_kwargs",
    "machine_policies",
    "message_scripts",
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
_CATALOG_ENTRIES = json.loads(_CATALOG_FILE.read_text("utf-8"))["codes"]
CATALOG_CLASSES: dict[int, str] = {
    entry["code"]: entry["retry_class"] for entry in _CATALOG_ENTRIES
}
"""Every catalogued code and its retry class name, read by the tests themselves.

A range entry (120001-130000) is listed under its first code; see
:data:`CATALOG_RANGES`.
"""
CATALOG_RANGES: list[tuple[int, int]] = [
    (entry["code"], entry["last"]) for entry in _CATALOG_ENTRIES if "last" in entry
]
"""The catalog's ranges (first, last), inclusive."""


def _catalogued(code: int) -> bool:
    return code in CATALOG_CLASSES or any(lo <= code <= hi for lo, hi in CATALOG_RANGES)


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
    ).filter(lambda c: c != 0 and not _catalogued(c))


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
        priority=st.integers(0, 3),
        online_user_only=st.booleans(),
        need_read_receipt=st.booleans(),
        cloud_custom_data=st.sampled_from(["", "x"]),
        **{"elem_type+content": _small_elements()},
    ).map(_split_element)


def _small_elements() -> st.SearchStrategy[tuple[int, Any]]:
    """(elem_type, content) from small pools, valid for the type (mostly text)."""
    text = st.tuples(
        st.just(1), st.sampled_from([None, {"text": "hi"}, {"text": "hé", "n": [1, 2]}])
    )
    other = st.sampled_from(
        [(elem_type, ELEMENT_SAMPLES[elem_type][0]) for elem_type in (2, 7, 9, 10)]
    )
    return st.one_of(text, text, other)


def _split_element(fields: dict[str, Any]) -> dict[str, Any]:
    elem_type, content = fields.pop("elem_type+content")
    return {**fields, "elem_type": elem_type, "content": content}


# -- element content (the Dart models' fields, tencent_cloud_chat_sdk 8.1.6122) --

ELEMENT_SAMPLES: dict[int, list[dict[str, Any]]] = {
    1: [{"text": "hi"}, {"text": None}],
    2: [{"data": '{"k":1}', "desc": "d", "extension": "e"}, {}],
    3: [
        {
            "path": "/p.png",
            "imageList": [
                {
                    "UUID": "u0",
                    "type": 0,
                    "size": 10,
                    "width": 4,
                    "height": 3,
                    "url": "https://x/0",
                },
                {
                    "uuid": "u1",
                    "type": 1,
                    "size": 5,
                    "width": 2,
                    "height": 1,
                    "url": "https://x/1",
                },
            ],
        },
        {"path": None},
    ],
    4: [
        {
            "path": "/s.aac",
            "UUID": "s",
            "dataSize": 99,
            "duration": 3,
            "url": "https://x/s",
        },
        {},
    ],
    5: [
        {
            "videoPath": "/v.mp4",
            "UUID": "v",
            "videoSize": 1000,
            "duration": 9,
            "snapshotPath": "/v.jpg",
            "snapshotUUID": "vs",
            "snapshotSize": 10,
            "snapshotWidth": 640,
            "snapshotHeight": 480,
            "videoUrl": "https://x/v",
            "snapshotUrl": "https://x/vs",
        },
        {},
    ],
    6: [
        {
            "path": "/f.pdf",
            "fileName": "f.pdf",
            "UUID": "f",
            "url": "https://x/f",
            "fileSize": 12,
        },
        {},
    ],
    7: [
        {"desc": "office", "longitude": 113.93, "latitude": 22.54},
        {"longitude": 0, "latitude": -90},
    ],
    8: [{"index": 3, "data": "smile"}, {}],
    9: [
        {
            "groupID": "g1",
            "type": 2,
            "opMember": {"userID": "alice", "nickName": "A", "onlineDevices": []},
            "memberList": [{"userID": "bob", "nameCard": "B"}],
            "groupChangeInfoList": [
                {"type": 1, "key": "name", "value": "room", "boolValue": False}
            ],
            "memberChangeInfoList": [{"userID": "bob", "muteTime": 60}],
            "memberCount": 3,
        },
        {"groupID": "g2", "type": 7},
    ],
    10: [
        {
            "isLayersOverLimit": False,
            "title": "chat",
            "abstractList": ["a: hi", "b"],
            "compatibleText": "upgrade",
        },
        {"abstractList": []},
    ],
}
"""Valid content for each element type (1 text ... 10 merger): full, then bare."""

_DART_STR = st.one_of(st.none(), st.text(max_size=8))
_DART_INT = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
_DART_BOOL = st.one_of(st.none(), st.booleans())
_DOUBLE = st.one_of(
    st.integers(-180, 180), st.floats(-180, 180, allow_nan=False, allow_infinity=False)
)


def _optional_fields(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Maps holding any subset of ``fields`` (missing and null both allowed)."""
    return st.fixed_dictionaries({}, optional=fields)


_MEMBER = _optional_fields(
    userID=_DART_STR,
    nickName=_DART_STR,
    nameCard=_DART_STR,
    friendRemark=_DART_STR,
    faceUrl=_DART_STR,
    onlineDevices=st.one_of(st.none(), st.lists(st.text(max_size=4), max_size=2)),
)


def element_contents(elem_type: int) -> st.SearchStrategy[dict[str, Any]]:
    """Any content the Dart model of ``elem_type`` (1-10) parses."""
    strategies: dict[int, st.SearchStrategy[Any]] = {
        1: _optional_fields(text=_DART_STR),
        2: _optional_fields(data=_DART_STR, desc=_DART_STR, extension=_DART_STR),
        3: _optional_fields(
            path=_DART_STR,
            imageList=st.one_of(
                st.none(),
                st.lists(
                    _optional_fields(
                        UUID=_DART_STR,
                        type=st.one_of(st.none(), st.integers(0, 3)),
                        size=_DART_INT,
                        width=_DART_INT,
                        height=_DART_INT,
                        url=_DART_STR,
                    ),
                    max_size=3,
                ),
            ),
        ),
        4: _optional_fields(
            path=_DART_STR,
            UUID=_DART_STR,
            dataSize=_DART_INT,
            duration=_DART_INT,
            url=_DART_STR,
        ),
        5: _optional_fields(
            videoPath=_DART_STR,
            UUID=_DART_STR,
            videoSize=_DART_INT,
            duration=_DART_INT,
            snapshotPath=_DART_STR,
            snapshotUUID=_DART_STR,
            snapshotSize=_DART_INT,
            snapshotWidth=_DART_INT,
            snapshotHeight=_DART_INT,
            videoUrl=_DART_STR,
            snapshotUrl=_DART_STR,
        ),
        6: _optional_fields(
            path=_DART_STR,
            fileName=_DART_STR,
            UUID=_DART_STR,
            url=_DART_STR,
            fileSize=_DART_INT,
        ),
        7: st.fixed_dictionaries(
            {"longitude": _DOUBLE, "latitude": _DOUBLE}, optional={"desc": _DART_STR}
        ),
        8: _optional_fields(index=_DART_INT, data=_DART_STR),
        9: st.fixed_dictionaries(
            {"groupID": st.text(max_size=8), "type": st.integers(0, 12)},
            optional={
                "opMember": st.one_of(st.none(), _MEMBER),
                "memberList": st.one_of(st.none(), st.lists(_MEMBER, max_size=2)),
                "groupChangeInfoList": st.one_of(
                    st.none(),
                    st.lists(
                        _optional_fields(
                            type=_DART_INT,
                            value=_DART_STR,
                            key=_DART_STR,
                            boolValue=_DART_BOOL,
                            intValue=_DART_INT,
                        ),
                        max_size=2,
                    ),
                ),
                "memberChangeInfoList": st.one_of(
                    st.none(),
                    st.lists(
                        _optional_fields(userID=_DART_STR, muteTime=_DART_INT),
                        max_size=2,
                    ),
                ),
                "memberCount": _DART_INT,
            },
        ),
        10: st.fixed_dictionaries(
            {"abstractList": st.lists(st.text(max_size=6), max_size=3)},
            optional={
                "isLayersOverLimit": _DART_BOOL,
                "title": _DART_STR,
                "compatibleText": _DART_STR,
            },
        ),
    }
    return strategies[elem_type]


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
        send_timeout=draw(_intervals(timedelta(microseconds=1), MAX_INTERVAL)),
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
        send_timeout=draw(st.sampled_from([10, 60])) * _SECOND,
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


@st.composite
def message_scripts(draw: st.DrawFn) -> tuple[bool, list[tuple[Any, ...]]]:
    """``(online_user_only, steps)``: what a transport reports about one message.

    Steps are ``("fail", code)``, ``("resend",)``, ``("deliver",)`` and
    ``("wait", seconds)``; a step the message refuses is simply skipped.
    """
    step = st.one_of(
        st.tuples(st.just("fail"), error_codes()),
        st.tuples(st.just("resend")),
        st.tuples(st.just("deliver")),
        st.tuples(st.just("wait"), st.integers(1, 60)),
    )
    return draw(st.booleans()), draw(st.lists(step, max_size=8))


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
