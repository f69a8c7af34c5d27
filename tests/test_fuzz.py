"""Bad input, fuzzed with hypothesis over the whole public API.

Every argument of every public entry point is drawn either valid or invalid in a
known way: text with NULs, lone surrogates or control characters, megabyte
strings, huge ints (2**100, -2**100, 2**1024), wrong types (None, bytes, floats,
lists, dicts, objects, bools where ints are expected), content nested too deep or
too large, SQL meta-characters. Invalid input must be refused with
:class:`InvalidArgument` (``TypeError`` is tolerated for an argument of the wrong
Python type) and write nothing; valid input must be accepted, ids with SQL
meta-characters stored verbatim; and every store must be readable by a fresh
service afterwards, holding exactly the events the accepted commands wrote.

The limits are pinned here from the documentation, not imported from the library.
The number of inputs tried is printed at the end of the session (and
``--hypothesis-show-statistics`` shows each test's outcomes).
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import posixpath
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import IntEnum
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlsplit
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from msgstate import (
    DeliveryConflict,
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    MessageStatus,
    MessageView,
    MsgStateError,
    ResendPolicy,
    ResendRefused,
    RetryClass,
    StorageError,
    generate_cipher_key,
    setup_schema,
)
from msgstate.tencent import NOT_FOUND_CODE, V2TIMMessageManager
from tests import pg
from tests.conftest import backend_url
from tests.support import EPOCH, FakeClock

# -- the documented limits --

MAX_ID_CHARS = 128
MAX_DESC_CHARS = 1_000
MAX_SEQ_CHARS = 64
MAX_CLOUD_CUSTOM_DATA_BYTES = 8 * 1024
MAX_CONTENT_BYTES = 64 * 1024
MAX_CONTENT_DEPTH = 32
MAX_RETRY_AFTER = 30 * 24 * 3600
MAX_ATTEMPT = 1_000_000
INT32 = (-(2**31), 2**31 - 1)
TRANSIENT_CODE = 6012  # a catalogued TRANSIENT error: the default policy resends it

FUZZ = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)
"""Fixtures are per test, not per example: every example uses its own msg ids."""

# -- counting the inputs tried --

TRIED: Counter[str] = Counter()


class _FuzzSummary:
    """Prints how many fuzzed inputs each test tried, at the end of the session."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not TRIED:
            return
        terminalreporter.write_sep("-", "msgstate fuzz: inputs tried")
        for name, count in sorted(TRIED.items()):
            terminalreporter.write_line(f"{count:6d}  {name}")
        terminalreporter.write_line(f"{sum(TRIED.values()):6d}  in total")


@pytest.fixture(scope="module", autouse=True)
def _fuzz_summary(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("msgstate-fuzz-summary"):
        manager.register(_FuzzSummary(), "msgstate-fuzz-summary")


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Callable[[], None]:
    """Counts one fuzzed input for the running test."""
    name = request.node.name

    def count() -> None:
        TRIED[name] += 1

    return count


# -- values that print short in hypothesis reports --


class Huge(str):
    """A long str that hypothesis reports by its length, not its megabyte of text."""

    __slots__ = ()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<str of {len(self)} chars, {str.__repr__(self[:16])}...>")


class Deep(dict):  # type: ignore[type-arg]
    """Content too deep, cyclic or too large to print in a report."""

    def __init__(self, label: str, content: dict[str, Any]) -> None:
        super().__init__(content)
        self.label = label

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<content: {self.label}>")


class StrSub(str):
    """A str subclass: still a str, so valid wherever a str is."""

    __slots__ = ()


class Small(IntEnum):
    """An int subclass: still an int, so valid wherever an int is."""

    ONE = 1


class NoOffset(tzinfo):
    """A tzinfo whose utcoffset is None: the datetime is naive in disguise."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None

    def __repr__(self) -> str:
        return "NoOffset()"


def _nested(depth: int, *, in_lists: bool = False) -> dict[str, Any]:
    """A mapping whose innermost value sits ``depth`` levels below the top."""
    value: Any = {}
    for _ in range(depth):
        value = [value] if in_lists else {"a": value}
    return value if isinstance(value, dict) else {"a": value}


def _cyclic() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


MEGA = 2**20
HUGE_STRINGS = (
    Huge("x" * MEGA),
    Huge("é" * MEGA),
    Huge("\x00" * MEGA),
    Huge("\ud800" * MEGA),
    Huge("'; DROP TABLE stored_events; --" * (MEGA // 31)),
)

# -- wrong types --

OBJ = object()
WRONG_TYPES: tuple[Any, ...] = (
    None,
    b"m1",
    bytearray(b"m1"),
    memoryview(b"m1"),
    0,
    1,
    -1,
    2**100,
    -(2**100),
    2**1024,
    1.0,
    1.5,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    True,
    False,
    [],
    ["m1"],
    [[[[["deep"]]]]],
    {},
    {"m1": 1},
    ("m1",),
    {"m1"},
    frozenset(),
    OBJ,
    1j,
    Decimal("1"),
    Fraction(1, 3),
    EPOCH,
    EPOCH.date(),
    time(1),
    timedelta(seconds=1),
    Path("m1"),
    Small.ONE,
    ErrorCode.INVALID_ARGUMENT,
    str,
    print,
    Ellipsis,
    MappingProxyType({"m1": 1}),
)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wrong(keep: Callable[[Any], bool]) -> st.SearchStrategy[Any]:
    return st.sampled_from([v for v in WRONG_TYPES if keep(v)])


NOT_STR = _wrong(lambda v: not isinstance(v, str))
NOT_STR_NOR_NONE = _wrong(lambda v: v is not None and not isinstance(v, str))
NOT_INT = _wrong(lambda v: not _is_int(v)) | st.sampled_from(["1", "0x1"])
NOT_INT_NOR_NONE = _wrong(lambda v: v is not None and not _is_int(v))
NOT_BOOL = _wrong(lambda v: not isinstance(v, bool)) | st.sampled_from(["true", ""])
NOT_BOOL_NOR_NONE = _wrong(lambda v: v is not None and not isinstance(v, bool))
NOT_NUMBER_NOR_NONE = _wrong(
    lambda v: (v is not None and not isinstance(v, int | float)) or isinstance(v, bool)
) | st.sampled_from(["1", "1.5"])
NOT_DATETIME_NOR_NONE = _wrong(
    lambda v: v is not None and not isinstance(v, datetime)
) | st.sampled_from(["2026-01-01T00:00:00+00:00", 1_767_225_600])

# -- ids and text --

SQL_IDS = (
    "'; DROP TABLE stored_events; --",
    "Robert'); DROP TABLE students;--",
    "' OR '1'='1",
    "'",
    "''",
    '"',
    '";--',
    "\\",
    "\\'",
    "\\\\",
    "%s",
    "%(msg_id)s",
    "%",
    "_%",
    "$1",
    "$$;$$",
    "$1::text",
    "?",
    ":name",
    "@p",
    "`x`",
    "[x]",
    "{}",
    "1; SELECT pg_sleep(10)",
    "x' UNION SELECT * FROM pg_user --",
    "E'\\x00'",
    "\\x00",
    "\\0",
    "NULL",
    "null",
    "None",
    "0",
    "-1",
    "msg'id\"with\\all%s$1;--",
    "消息 4",
    "🙂",
    "a b",
    "x" * MAX_ID_CHARS,
    "é" * MAX_ID_CHARS,
    "🙂" * MAX_ID_CHARS,
)
_SQL_FRAGMENTS = st.sampled_from(
    [
        *("'", '"', "\\", ";", "--", "/*", "*/", "%s", "$1", "?", ":x", "`", "%"),
        *("_", "DROP TABLE stored_events", " ", "x", "é", "0"),
    ]
)
ID_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")
)
WHITE = ("\x20", "\xa0", "\u2003", "\u3000")
CONTROLS = st.characters(categories=("Cc", "Cf", "Zl", "Zp"))
SURROGATES = st.characters(categories=("Cs",))


def _id_shaped(text: str) -> bool:
    return 0 < len(text) <= MAX_ID_CHARS and text.strip() == text


GOOD_IDS: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(SQL_IDS),
    st.text(ID_CHARS, min_size=1, max_size=24).filter(_id_shaped),
    st.lists(_SQL_FRAGMENTS, min_size=1, max_size=12).map("".join).filter(_id_shaped),
    st.text(ID_CHARS, min_size=1, max_size=12).filter(_id_shaped).map(StrSub),
    st.sampled_from([RetryClass.TRANSIENT, StrSub("'; --")]),
)


def _insert(text: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> Any:
    return st.builds(
        lambda s, c, at: s[: at % (len(s) + 1)] + c + s[at % (len(s) + 1) :],
        text,
        bad,
        st.integers(0, 200),
    )


BAD_ID_VALUES: st.SearchStrategy[str] = st.one_of(
    st.just(""),
    st.sampled_from(WHITE),
    _insert(GOOD_IDS, st.just("\x00")),
    _insert(GOOD_IDS, SURROGATES),
    _insert(GOOD_IDS, CONTROLS),
    st.builds(lambda s, w: w + s, GOOD_IDS, st.sampled_from(WHITE)),
    st.builds(lambda s, w: s + w, GOOD_IDS, st.sampled_from(WHITE)),
    st.integers(MAX_ID_CHARS + 1, 4 * MAX_ID_CHARS).map(lambda n: Huge("y" * n)),
    st.sampled_from(HUGE_STRINGS),
)


def good_text(max_chars: int, *, allow_empty: bool = True) -> st.SearchStrategy[str]:
    """Text within ``max_chars`` without NUL or surrogates (controls are fine)."""
    return st.one_of(
        st.text(
            st.characters(codec="utf-8", exclude_characters="\x00"),
            min_size=0 if allow_empty else 1,
            max_size=min(max_chars, 40),
        ),
        st.sampled_from(SQL_IDS).filter(lambda s: len(s) <= max_chars),
        st.sampled_from(
            [Huge("x" * max_chars), Huge("🙂" * max_chars), Huge("\t\n\r" * 3)]
        ),
    )


def unencodable(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``text`` with a NUL or a lone surrogate inserted somewhere."""
    return st.one_of(_insert(text, st.just("\x00")), _insert(text, SURROGATES))


def bad_text(max_chars: int) -> st.SearchStrategy[str]:
    """Text with a NUL or a lone surrogate, or longer than ``max_chars``."""
    return st.one_of(
        unencodable(good_text(max_chars)),
        st.integers(max_chars + 1, 2 * max_chars + 10).map(lambda n: Huge("z" * n)),
        st.sampled_from(HUGE_STRINGS),
    )


GOOD_CLOUD_CUSTOM_DATA = st.one_of(
    good_text(40),
    st.sampled_from(
        [
            Huge("x" * MAX_CLOUD_CUSTOM_DATA_BYTES),
            Huge("é" * (MAX_CLOUD_CUSTOM_DATA_BYTES // 2)),
            Huge("🙂" * (MAX_CLOUD_CUSTOM_DATA_BYTES // 4)),
            '{"json": true, "sql": "\'; DROP TABLE stored_events; --"}',
        ]
    ),
)
BAD_CLOUD_CUSTOM_DATA = st.one_of(
    unencodable(good_text(40)),
    st.sampled_from(HUGE_STRINGS),
    st.sampled_from(
        [
            Huge("x" * (MAX_CLOUD_CUSTOM_DATA_BYTES + 1)),
            Huge("é" * (MAX_CLOUD_CUSTOM_DATA_BYTES // 2 + 1)),
            Huge("🙂" * (MAX_CLOUD_CUSTOM_DATA_BYTES // 4 + 1)),
        ]
    ),
)

# -- numbers and times --


def good_ints(low: int, high: int) -> st.SearchStrategy[int]:
    extra = [Small.ONE] if low <= 1 <= high else []
    return st.one_of(st.integers(low, high), st.sampled_from([low, high, *extra]))


def bad_ints(low: int, high: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(max_value=low - 1),
        st.integers(min_value=high + 1),
        st.sampled_from([low - 1, high + 1, 2**63, 2**100, -(2**100), 2**1024]),
    )


GOOD_CODES = st.one_of(
    st.sampled_from([TRANSIENT_CODE, 6016, 9520, 7008, -1, 1, *INT32]),
    st.integers(*INT32).map(lambda c: c or 1),
    st.just(Small.ONE),
)
BAD_CODE_VALUES = st.one_of(st.just(0), bad_ints(*INT32))
GOOD_RETRY_AFTER = st.one_of(
    st.none(),
    st.integers(0, MAX_RETRY_AFTER),
    st.floats(0, MAX_RETRY_AFTER),
    st.sampled_from([0, -0.0, 0.5, MAX_RETRY_AFTER, float(MAX_RETRY_AFTER)]),
)
BAD_RETRY_AFTER = st.one_of(
    st.floats(max_value=-1e-300),
    st.floats(min_value=MAX_RETRY_AFTER, exclude_min=True),
    st.integers(max_value=-1),
    st.integers(min_value=MAX_RETRY_AFTER + 1),
    st.sampled_from([math.nan, math.inf, -math.inf, 2**100, -(2**100)]),
    st.sampled_from([2**1024, -(2**1024), 10**400]),  # ints beyond any float
)
FIXED_OFFSETS = st.one_of(
    st.just(UTC),
    st.timedeltas(
        min_value=-timedelta(hours=23, minutes=59),
        max_value=timedelta(hours=23, minutes=59),
    ).map(timezone),
)
AWARE_DATETIMES = st.one_of(
    st.integers(-100, 200).flatmap(
        lambda s: FIXED_OFFSETS.map(
            lambda tz: (EPOCH + timedelta(seconds=s)).astimezone(tz)
        )
    ),
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=FIXED_OFFSETS,
    ),
)
LATEST = datetime.max.replace(tzinfo=timezone(-timedelta(hours=1)))
EARLIEST = datetime.min.replace(tzinfo=timezone(timedelta(hours=1)))
EXTREME_DATETIMES = st.one_of(
    st.sampled_from([LATEST, EARLIEST]),
    st.datetimes(min_value=datetime(9999, 12, 31), timezones=FIXED_OFFSETS),
    st.datetimes(max_value=datetime(1, 1, 1, 23, 59), timezones=FIXED_OFFSETS),
)
"""Aware datetimes at the ends of the calendar, some with no UTC equivalent: the
documentation neither promises nor forbids them, so a refusal is fine."""
BAD_DATETIME_VALUES = st.one_of(
    st.datetimes(),  # naive
    st.datetimes(timezones=st.just(NoOffset())),
)

# -- content --

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**100, -(2**100), 10**400]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=12),  # NUL is fine in JSON
    st.sampled_from(SQL_IDS[:8]),
)
JSON_KEYS = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=8), st.sampled_from(SQL_IDS[:8])
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(JSON_KEYS, children, max_size=3),
    ),
    max_leaves=10,
)
GOOD_CONTENT = st.one_of(
    st.none(),
    st.dictionaries(JSON_KEYS, JSON_VALUES, max_size=4),
    st.sampled_from(
        [
            {"text": "hi"},
            {"_type_": "uuid_hex", "_data_": "not-a-uuid"},
            {"__class__": "x", "__dict__": {}, "$ref": "#", "%s": "$1"},
            {"t": (1, "two", (3.5, None))},  # tuples are JSON arrays
            _nested(MAX_CONTENT_DEPTH),
            _nested(MAX_CONTENT_DEPTH - 1, in_lists=True),
            Deep("exactly 64 KiB", {"x": "a" * (MAX_CONTENT_BYTES - 8)}),
            MappingProxyType({"text": "a read-only mapping"}),
        ]
    ),
)
BAD_CONTENT_VALUES = st.one_of(
    st.sampled_from(
        [
            {"k": math.nan},
            {"k": math.inf},
            {"k": [1, -math.inf]},
            {1: "int key"},
            {None: "None key"},
            {("a",): "tuple key"},
            {True: "bool key"},
            {"k": {"k2": {3: "deep int key"}}},
            {"\ud800": "surrogate key"},
            {"k": "lone \udfff surrogate"},
            {"k": b"bytes"},
            {"k": OBJ},
            {"k": {1, 2}},
            {"k": EPOCH},
            {"k": Decimal("1.5")},
            {"k": 1j},
            _nested(MAX_CONTENT_DEPTH + 1),
            _nested(MAX_CONTENT_DEPTH + 1, in_lists=True),
            Deep("nested 100000 deep", _nested(100_000)),
            Deep("nested 100000 deep in lists", _nested(100_000, in_lists=True)),
            Deep("cyclic", _cyclic()),
            Deep("64 KiB + 1", {"x": "a" * (MAX_CONTENT_BYTES - 7)}),
            Deep("a megabyte", {"x": "é" * MEGA}),
        ]
    ),
    st.dictionaries(JSON_KEYS, st.sampled_from(HUGE_STRINGS), min_size=1, max_size=1),
)
BAD_CONTENT_TYPES = st.one_of(
    _wrong(lambda v: v is not None and not isinstance(v, Mapping)),
    st.sampled_from(["{}", '{"text": "hi"}', [("a", 1)], [{"text": "hi"}]]),
)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def canonical(content: Mapping[str, Any] | None) -> str:
    """Content as the documented canonical JSON (None is the empty mapping)."""
    return json.dumps(
        {} if content is None else _plain(content),
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
        sort_keys=True,
    )


# -- drawing arguments, each valid or invalid in a known way --

OK, BAD_VALUE, BAD_TYPE, MAYBE = "ok", "value", "type", "maybe"


@dataclass(frozen=True)
class Arg:
    """How to draw one argument: valid values, and invalid values and types.

    ``maybe`` values are of the right type but beyond what the documentation
    promises either way: refusing them is fine, accepting them must then work.
    """

    good: st.SearchStrategy[Any]
    bad_value: st.SearchStrategy[Any] | None = None
    bad_type: st.SearchStrategy[Any] | None = None
    has_default: bool = False
    maybe: st.SearchStrategy[Any] | None = None

    def bad(self) -> st.SearchStrategy[tuple[Any, str]]:
        options = []
        if self.bad_value is not None:
            options.append(self.bad_value.map(lambda v: (v, BAD_VALUE)))
        if self.bad_type is not None:
            options.append(self.bad_type.map(lambda v: (v, BAD_TYPE)))
        return st.one_of(options)


@st.composite
def arguments(
    draw: st.DrawFn, spec: dict[str, Arg], max_bad: int = 2
) -> tuple[dict[str, Any], dict[str, str]]:
    """Keyword arguments from ``spec`` and the kind of each unusual one among them.

    Up to ``max_bad`` arguments are invalid; the others are valid or, when they
    have a default, sometimes left out.
    """
    candidates = sorted(
        n for n, a in spec.items() if a.bad_value is not None or a.bad_type is not None
    )
    limit = min(max_bad, len(candidates))
    count = draw(st.sampled_from([c for c in (0, 0, 0, 1, 1, 2, 3) if c <= limit]))
    invalid = (
        draw(
            st.lists(
                st.sampled_from(candidates), min_size=count, max_size=count, unique=True
            )
        )
        if count
        else []
    )
    kwargs: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for name in sorted(spec):
        arg = spec[name]
        if name in invalid:
            kwargs[name], kinds[name] = draw(arg.bad())
        elif arg.has_default and draw(st.booleans()):
            continue
        elif arg.maybe is not None and draw(st.booleans()):
            kwargs[name], kinds[name] = draw(arg.maybe), MAYBE
        else:
            kwargs[name] = draw(arg.good)
    return kwargs, kinds


def invalid(kinds: frozenset[str]) -> bool:
    return bool(kinds & {BAD_VALUE, BAD_TYPE})


def refusals(kinds: frozenset[str]) -> tuple[type[Exception], ...]:
    """What invalid input may raise: InvalidArgument, or TypeError for a wrong type."""
    return (InvalidArgument, TypeError) if BAD_TYPE in kinds else (InvalidArgument,)


def check_error(error: BaseException) -> None:
    """A refusal is a documented error with a stable code and a printable text."""
    event(f"refused: {type(error).__name__}")
    if isinstance(error, MsgStateError):
        assert isinstance(error.code, ErrorCode)
        assert error.desc
        assert str(error)
        assert repr(error)


OMIT: Any = type("Omitted", (), {"__repr__": lambda self: "OMIT"})()
"""An argument left out of the call."""

MSG_ID = Arg(GOOD_IDS, BAD_ID_VALUES, NOT_STR)
STATES = ("sending", "failed", "resent", "delivered")
ATTEMPTS = {"sending": 1, "failed": 1, "resent": 2, "delivered": 1}
PREPARED_REQUEST = "prep-request"
PREPARED_SEQ = "prep-seq"


@dataclass(frozen=True)
class Case:
    """One fuzzed command: its arguments and the message it names.

    ``mode`` is ``prepared`` (a fresh message brought to ``state``, its id made
    unique from ``msg_id``), ``unknown`` (a valid id naming nothing) or ``bad`` (an
    invalid id).
    """

    kwargs: dict[str, Any]
    bad: dict[str, str] = field(default_factory=dict)
    """The kind of each invalid (or ``maybe``) argument, by name."""
    mode: str = "prepared"
    state: str = "sending"
    msg_id: Any = "m"
    extra: Any = None

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self.bad.values())


@st.composite
def cases(
    draw: st.DrawFn, spec: dict[str, Arg], states: tuple[str, ...] = STATES
) -> Case:
    kwargs, kinds = draw(arguments(spec))
    mode = draw(st.sampled_from(["prepared"] * 4 + ["unknown", "bad"]))
    if mode == "bad":
        msg_id, kinds["msg_id"] = draw(MSG_ID.bad())
    else:
        msg_id = draw(GOOD_IDS)
    return Case(kwargs, kinds, mode, draw(st.sampled_from(states)), msg_id)


RESEND_STATES = ("failed", "failed", "failed", *STATES)
"""Mostly failed messages, so that resends are often accepted."""


# -- one store per test, checked by a fresh service afterwards --


@dataclass(repr=False)
class Store:
    """A service on a fresh store, and what the test believes it holds."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"<store at {self.url}, {len(self.versions)} messages>")

    url: str
    clock: FakeClock
    service: MessageService
    versions: dict[str, int] = field(default_factory=dict)
    """Every message the test saw accepted, and its version as last answered."""
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The creation fields of every message created from fuzzed arguments."""
    times: dict[str, list[datetime]] = field(default_factory=dict)
    """When each event of the query test's messages was recorded."""
    serial: Iterator[int] = field(default_factory=itertools.count)

    def written(self) -> int:
        """The last notification id: it moves exactly when something is written."""
        return self.service.recorder.max_notification_id() or 0

    def written_since(self, last: int) -> int:
        """How many events were written after notification ``last``.

        Ids can skip (PostgreSQL burns a sequence number on a refused insert).
        """
        recorder = self.service.recorder
        return len(recorder.select_notifications(start=last + 1, limit=100))

    def resolve(self, case: Case) -> tuple[Any, int]:
        """The msg id ``case`` names (preparing it if needed) and its attempts."""
        if case.mode == "bad":
            return case.msg_id, 0
        if case.mode == "unknown":
            msg_id = case.msg_id
            return (msg_id if msg_id not in self.versions else f"{msg_id[:99]}~?"), 0
        msg_id = f"{case.msg_id[:100]}#{next(self.serial)}"
        prepare(self, case.state, msg_id)
        return msg_id, ATTEMPTS[case.state]


def prepare(held: Store, state: str, msg_id: str) -> None:
    """Create ``msg_id`` and bring it to ``state`` with valid commands."""
    service = held.service
    service.create(msg_id, sender="alice", user_id="bob", content={"text": "hi"})
    if state in ("failed", "resent"):
        service.record_failure(msg_id, code=TRANSIENT_CODE)
    if state == "resent":
        service.resend(msg_id, request_id=PREPARED_REQUEST)
    if state == "delivered":
        service.record_delivery(msg_id, seq=PREPARED_SEQ)
    view = service.get(msg_id)
    assert msg_id == view.msg_id
    held.versions[msg_id] = view.version


def _read_everything(service: MessageService) -> dict[str, int]:
    """Every message the store holds and its version, decoding every event."""
    counts: Counter[Any] = Counter()
    names: dict[Any, str] = {}
    start = 1
    while True:
        page = service.recorder.select_notifications(start=start, limit=500)
        for notification in page:
            decoded = service.mapper.to_domain_event(notification)
            counts[decoded.originator_id] += 1
            if type(decoded).__name__ == "Created":
                names[decoded.originator_id] = decoded.msg_id
        if len(page) < 500:
            break
        start = page[-1].id + 1
    assert set(names) == set(counts), "events of a message that was never created"
    found = {}
    for originator, msg_id in names.items():
        history = service.history(msg_id)
        view = service.get(msg_id)
        assert list(range(1, counts[originator] + 1)) == [e.version for e in history]
        assert msg_id == view.msg_id
        assert counts[originator] == view.version
        found[msg_id] = view.version
    return found


@pytest.fixture
def store(backend: str, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    """A service on a fresh store; afterwards a fresh service must read it all.

    The fresh service must find exactly the messages the test saw accepted, each
    at the version last answered: nothing was written for a refused command.
    """
    url = backend_url(backend, tmp_path)
    service = MessageService.open(url, clock=clock)
    held = Store(url=url, clock=clock, service=service)
    yield held
    try:
        if backend == "memory":  # a memory store lives only in its service
            found = _read_everything(service)
        else:
            fresh = MessageService.open(url, clock=clock)
            try:
                found = _read_everything(fresh)
            finally:
                fresh.close()
        assert held.versions == found, "the store holds other events than accepted"
    finally:
        service.close()


REFUSED, UNCHANGED, ONE_EVENT = "refused", "unchanged", "one event"


def perform(
    held: Store,
    msg_id: Any,
    call: Callable[[], Any],
    expected: str,
    *errors: type[BaseException],
    may_refuse: bool = False,
) -> Any:
    """Run ``call`` once and check it did what ``expected`` says.

    ``refused``: it raised one of ``errors``; ``unchanged``: it answered the
    message as it was; ``one event``: it wrote exactly one event and answered the
    message after it. A refusal writes nothing. With ``may_refuse`` (input the
    documentation neither promises to take nor to refuse) an InvalidArgument that
    writes nothing is also fine; the answer is then None.
    """
    before = held.written()
    old = None if expected == REFUSED else held.service.get(msg_id)
    error: BaseException | None = None
    try:
        answer = call()
    except Exception as raised:  # checked just below; anything else is re-raised
        error = raised
    if error is not None:
        allowed = (*errors, InvalidArgument) if may_refuse else errors
        if not isinstance(error, allowed):
            raise error
        check_error(error)
        assert before == held.written(), "a refused command wrote an event"
        return None
    assert expected != REFUSED, f"{call} did not raise any of {errors}"
    assert old is not None
    if expected == UNCHANGED:
        assert old == answer
        assert before == held.written()
    else:
        assert old.version + 1 == answer.version
        assert 1 == held.written_since(before)
        assert answer == held.service.get(msg_id)
        assert msg_id == answer.msg_id
        held.versions[msg_id] = answer.version
    event(f"accepted: {expected}")
    return answer


def refused(
    held: Store, call: Callable[[], object], *errors: type[BaseException]
) -> BaseException:
    """``call`` raises one of ``errors`` and writes nothing."""
    before = held.written()
    with pytest.raises(errors) as info:
        call()
    check_error(info.value)
    assert before == held.written(), "a refused command wrote an event"
    return info.value


def unchanged(held: Store, msg_id: str, call: Callable[[], Any]) -> Any:
    """``call`` answers the message as it was and writes nothing."""
    return perform(held, msg_id, call, UNCHANGED)


def one_event(held: Store, msg_id: str, call: Callable[[], Any]) -> Any:
    """``call`` writes exactly one event and answers the message after it."""
    return perform(held, msg_id, call, ONE_EVENT)


# -- create --

OPTIONAL_ID = Arg(
    st.one_of(GOOD_IDS, GOOD_IDS, GOOD_IDS, st.none()),
    BAD_ID_VALUES,
    NOT_STR_NOR_NONE,
)
CREATE_ARGS = {
    "msg_id": Arg(
        st.one_of(GOOD_IDS, st.text(ID_CHARS, min_size=1, max_size=40)).filter(
            _id_shaped
        ),
        BAD_ID_VALUES,
        NOT_STR,
    ),
    "sender": Arg(GOOD_IDS, BAD_ID_VALUES, NOT_STR),
    "user_id": OPTIONAL_ID,
    "group_id": OPTIONAL_ID,
    "elem_type": Arg(good_ints(0, 255), bad_ints(0, 255), NOT_INT, has_default=True),
    "priority": Arg(good_ints(0, 3), bad_ints(0, 3), NOT_INT, has_default=True),
    "online_user_only": Arg(st.booleans(), None, NOT_BOOL, has_default=True),
    "need_read_receipt": Arg(st.booleans(), None, NOT_BOOL, has_default=True),
    "cloud_custom_data": Arg(
        GOOD_CLOUD_CUSTOM_DATA, BAD_CLOUD_CUSTOM_DATA, NOT_STR, has_default=True
    ),
    "content": Arg(
        GOOD_CONTENT, BAD_CONTENT_VALUES, BAD_CONTENT_TYPES, has_default=True
    ),
}
CREATE_DEFAULTS: dict[str, Any] = {
    "user_id": None,
    "group_id": None,
    "elem_type": 1,
    "priority": 0,
    "online_user_only": False,
    "need_read_receipt": False,
    "cloud_custom_data": "",
    "content": None,
}


@FUZZ
@given(case=arguments(CREATE_ARGS).map(lambda a: Case(*a)))
@example(
    case=Case(
        {
            "msg_id": "'; DROP TABLE stored_events; --",
            "sender": "'",
            "user_id": "\\",
            "group_id": "%s$1",
            "content": {"sql": "'; DROP TABLE stored_events; --", "nul": "\x00"},
            "cloud_custom_data": "\"'\\%s$1",
        }
    )
)
@example(
    case=Case(
        {
            "msg_id": "m-read-only-content",
            "sender": "alice",
            "user_id": "bob",
            "content": MappingProxyType({"text": "a read-only mapping"}),
        }
    )
)
def test_create(store: Store, tally: Callable[[], None], case: Case) -> None:
    """create() with every field fuzzed: refused and unwritten, or stored verbatim.

    A valid creation writes one event and reads back equal (ids with SQL
    meta-characters included); a repeat is idempotent with identical fields and
    a DuplicateMessage otherwise.
    """
    tally()
    kwargs = dict(case.kwargs)
    msg_id = kwargs.pop("msg_id")

    def call() -> Any:
        return store.service.create(msg_id, **kwargs)

    if invalid(case.kinds):
        refused(store, call, *refusals(case.kinds))
        return
    fields = {**CREATE_DEFAULTS, **kwargs}
    if fields["user_id"] is None and fields["group_id"] is None:
        refused(store, call, InvalidArgument)
        return
    content = json.loads(canonical(fields["content"]))
    fields["content"] = canonical(fields["content"])
    if msg_id in store.created:
        if fields == store.created[msg_id]:
            unchanged(store, msg_id, call)
        else:
            refused(store, call, DuplicateMessage)
        return
    before = store.written()
    view = call()
    assert 1 == store.written_since(before)
    store.created[msg_id] = fields
    store.versions[msg_id] = view.version
    event("accepted: created")
    assert 1 == view.version
    assert MessageStatus.SENDING is view.status
    for name in CREATE_DEFAULTS:
        if name != "content":
            assert fields[name] == getattr(view, name), name
    assert content == view.content
    assert view == store.service.get(msg_id)
    (created,) = store.service.history(msg_id)
    assert msg_id == view.msg_id == created.data["msg_id"]
    assert content == created.data["content"]


# -- record_failure --

GOOD_ATTEMPTS = st.one_of(
    st.none(), st.sampled_from([1, 2, Small.ONE]), st.integers(1, MAX_ATTEMPT)
)
ATTEMPT = Arg(
    GOOD_ATTEMPTS, bad_ints(1, MAX_ATTEMPT), NOT_INT_NOR_NONE, has_default=True
)
FAILURE_ARGS = {
    "code": Arg(GOOD_CODES, BAD_CODE_VALUES, NOT_INT),
    "desc": Arg(
        good_text(MAX_DESC_CHARS), bad_text(MAX_DESC_CHARS), NOT_STR, has_default=True
    ),
    "attempt": ATTEMPT,
    "retry_after": Arg(
        GOOD_RETRY_AFTER, BAD_RETRY_AFTER, NOT_NUMBER_NOR_NONE, has_default=True
    ),
}


def expected_failure(case: Case, attempts: int) -> tuple[str, tuple[type, ...]]:
    """What record_failure does: refuse (with which errors), change nothing, or
    record the failure."""
    if invalid(case.kinds):
        return REFUSED, refusals(case.kinds)
    if case.mode == "unknown":
        return REFUSED, (MessageNotFound,)
    attempt = case.kwargs.get("attempt")
    if attempt is not None and attempt > attempts:
        return REFUSED, (InvalidArgument,)
    if case.state not in ("sending", "resent") or attempt not in (None, attempts):
        return UNCHANGED, ()
    return ONE_EVENT, ()


@FUZZ
@given(case=cases(FAILURE_ARGS))
@example(
    case=Case(
        {"code": TRANSIENT_CODE, "retry_after": 2**1024}, {"retry_after": BAD_VALUE}
    )
)
def test_record_failure(store: Store, tally: Callable[[], None], case: Case) -> None:
    """record_failure() fuzzed: a valid report of the current attempt is recorded.

    Invalid arguments are refused and write nothing; a report for an attempt not
    started yet is refused; a stale or repeated report changes nothing.
    """
    tally()
    msg_id, attempts = store.resolve(case)

    def call() -> Any:
        return store.service.record_failure(msg_id, **case.kwargs)

    expected, errors = expected_failure(case, attempts)
    view = perform(store, msg_id, call, expected, *errors)
    if expected != ONE_EVENT:
        return
    retry_after = case.kwargs.get("retry_after")
    assert MessageStatus.SEND_FAIL is view.status
    assert case.kwargs["code"] == view.last_error_code
    assert case.kwargs.get("desc", "") == view.last_error_desc
    assert (None if retry_after is None else float(retry_after)) == (
        view.last_retry_after
    )
    last = store.service.history(msg_id)[-1]
    assert ("SendFailed", attempts) == (last.event, last.attempt)


# -- resend --

RESEND_ARGS = {
    "request_id": Arg(
        st.one_of(st.none(), st.just(PREPARED_REQUEST), GOOD_IDS),
        BAD_ID_VALUES,
        NOT_STR_NOR_NONE,
        has_default=True,
    ),
    "online_user_only": Arg(
        st.one_of(st.none(), st.booleans()), None, NOT_BOOL_NOR_NONE, has_default=True
    ),
    "actor": Arg(
        st.one_of(st.none(), GOOD_IDS),
        BAD_ID_VALUES,
        NOT_STR_NOR_NONE,
        has_default=True,
    ),
}


def expected_resend(state: str, request_id: object) -> str:
    """What resend does to a prepared message: "no-op", "resend" or a refusal code."""
    if state == "resent" and request_id == PREPARED_REQUEST:
        return "no-op"
    if state == "failed":
        return "resend"
    if state == "delivered":
        return ErrorCode.ALREADY_DELIVERED.name
    return ErrorCode.SEND_IN_PROGRESS.name


@FUZZ
@given(case=cases(RESEND_ARGS, RESEND_STATES))
def test_resend(store: Store, tally: Callable[[], None], case: Case) -> None:
    """resend() and check_resend() fuzzed: only a failed message is resent.

    Invalid arguments are refused and write nothing; a known request id changes
    nothing; in flight or delivered messages are refused with their codes.
    """
    tally()
    msg_id, _ = store.resolve(case)

    def call() -> Any:
        return store.service.resend(msg_id, **case.kwargs)

    if invalid(case.kinds):
        refused(store, call, *refusals(case.kinds))
        if case.mode == "bad":
            check = refusals(frozenset({case.bad["msg_id"]}))
            refused(store, lambda: store.service.check_resend(msg_id), *check)
        return
    if case.mode == "unknown":
        refused(store, call, MessageNotFound)
        refused(store, lambda: store.service.check_resend(msg_id), MessageNotFound)
        return
    before = store.written()
    decision = store.service.check_resend(msg_id)
    assert before == store.written()
    expected = expected_resend(case.state, case.kwargs.get("request_id"))
    if expected == "no-op":
        unchanged(store, msg_id, call)
        return
    if expected != "resend":
        error = refused(store, call, ResendRefused)
        assert isinstance(error, ResendRefused)
        assert expected == error.code.name == decision.code.name
        assert not decision.allowed
        return
    assert decision.allowed
    view = one_event(store, msg_id, call)
    chosen = case.kwargs.get("online_user_only")
    assert (MessageStatus.SENDING, 2) == (view.status, view.attempts)
    assert (False if chosen is None else chosen) == view.online_user_only
    last = store.service.history(msg_id)[-1]
    assert "ResendRequested" == last.event
    assert case.kwargs.get("actor") == last.data["actor"]
    if case.kwargs.get("request_id") is not None:
        assert case.kwargs["request_id"] == last.data["request_id"]


# -- record_delivery --

DELIVERY_ARGS = {
    "seq": Arg(
        st.one_of(st.just(PREPARED_SEQ), good_text(MAX_SEQ_CHARS, allow_empty=False)),
        st.one_of(st.just(""), bad_text(MAX_SEQ_CHARS)),
        NOT_STR,
    ),
    "server_time": Arg(
        st.one_of(st.none(), AWARE_DATETIMES),
        BAD_DATETIME_VALUES,
        NOT_DATETIME_NOR_NONE,
        has_default=True,
        maybe=EXTREME_DATETIMES,
    ),
    "attempt": ATTEMPT,
}


def expected_delivery(case: Case, attempts: int) -> tuple[str, tuple[type, ...]]:
    """What record_delivery does: refuse (with which errors), change nothing, or
    record the delivery (a server time with no UTC equivalent may be refused)."""
    if invalid(case.kinds):
        return REFUSED, refusals(case.kinds)
    if case.mode == "unknown":
        return REFUSED, (MessageNotFound,)
    attempt = case.kwargs.get("attempt")
    if attempt is not None and attempt > attempts:
        return REFUSED, (InvalidArgument,)
    if case.state == "delivered":
        if case.kwargs["seq"] == PREPARED_SEQ:
            return UNCHANGED, ()
        return REFUSED, (DeliveryConflict,)
    return ONE_EVENT, ()


@FUZZ
@given(case=cases(DELIVERY_ARGS))
@example(case=Case({"seq": "1", "server_time": LATEST}, {"server_time": MAYBE}))
@example(case=Case({"seq": "1", "server_time": EARLIEST}, {"server_time": MAYBE}))
def test_record_delivery(store: Store, tally: Callable[[], None], case: Case) -> None:
    """record_delivery() fuzzed: any aware server time and seq up to 64 chars.

    Invalid arguments are refused and write nothing; a repeat with the same seq
    changes nothing and another seq is a DeliveryConflict. A server time at the
    very end of the calendar may be refused, but nothing else may go wrong.
    """
    tally()
    msg_id, attempts = store.resolve(case)

    def call() -> Any:
        return store.service.record_delivery(msg_id, **case.kwargs)

    expected, errors = expected_delivery(case, attempts)
    maybe = MAYBE in case.kinds
    view = perform(store, msg_id, call, expected, *errors, may_refuse=maybe)
    if view is None or expected != ONE_EVENT:
        return
    server_time = case.kwargs.get("server_time")
    assert MessageStatus.SEND_SUCC is view.status
    assert case.kwargs["seq"] == view.seq
    assert (store.clock.now if server_time is None else server_time) == (
        view.server_time
    )
    assert "Delivered" == store.service.history(msg_id)[-1].event


# -- queries: get, history, get_at, check_resend --

KNOWN = {
    "q-sending": "sending",
    "'; DROP TABLE stored_events; --": "failed",
    'q"\\%s$1': "resent",
    "q délivré 🙂": "delivered",
}
"""Messages the query test creates once, one event every 10 s, and their states."""


def setup_known(held: Store) -> None:
    """Create the query test's messages, recording when each event happened."""
    service = held.service
    for msg_id, state in KNOWN.items():
        times = held.times.setdefault(msg_id, [])
        service.create(msg_id, sender="alice", group_id="g", content={"id": msg_id})
        times.append(held.clock.now)
        held.clock.advance(10)
        if state != "sending":
            service.record_failure(msg_id, code=TRANSIENT_CODE)
            times.append(held.clock.now)
            held.clock.advance(10)
        if state in ("resent", "delivered"):
            service.resend(msg_id, request_id="q")
            times.append(held.clock.now)
            held.clock.advance(10)
        if state == "delivered":
            service.record_delivery(msg_id, seq="q-seq")
            times.append(held.clock.now)
            held.clock.advance(10)
        held.versions[msg_id] = len(times)


@dataclass(frozen=True)
class Query:
    """One fuzzed query: which method, which message, and get_at's arguments."""

    op: str
    which: str
    msg_id: Any
    version: Any = OMIT
    at: Any = OMIT
    kinds: frozenset[str] = frozenset()


VERSIONS = st.one_of(
    st.just(OMIT),
    st.none(),
    st.integers(1, 4),
    st.integers(5, 2**63 - 1),
    st.integers(max_value=0),
    st.sampled_from([2**63, 2**100, -(2**100), 2**1024]),
    NOT_INT_NOR_NONE,
)
MOMENTS = st.one_of(
    st.just(OMIT),
    st.none(),
    AWARE_DATETIMES,
    EXTREME_DATETIMES,
    BAD_DATETIME_VALUES,
    NOT_DATETIME_NOR_NONE,
)


@st.composite
def queries(draw: st.DrawFn) -> Query:
    op = draw(st.sampled_from(["get", "history", "check_resend"] + ["get_at"] * 3))
    which = draw(st.sampled_from(["known"] * 3 + ["unknown", "bad"]))
    kinds: frozenset[str] = frozenset()
    if which == "known":
        msg_id = draw(st.sampled_from(sorted(KNOWN)))
    elif which == "unknown":
        msg_id = draw(GOOD_IDS)
    else:
        msg_id, kind = draw(MSG_ID.bad())
        kinds = frozenset({kind})
    if op != "get_at":
        return Query(op, which, msg_id, kinds=kinds)
    return Query(op, which, msg_id, draw(VERSIONS), draw(MOMENTS), kinds)


def _aware(value: object) -> bool:
    return isinstance(value, datetime) and value.utcoffset() is not None


def _check_get_at(held: Store, query: Query, call: Callable[[], Any]) -> None:
    """get_at's documented answers, from the recorded times of each event."""
    version_given = query.version not in (OMIT, None)
    at_given = query.at not in (OMIT, None)
    if version_given and at_given:
        refused(held, call, InvalidArgument)
        return
    if not (version_given or at_given):
        if query.which == "unknown":
            refused(held, call, MessageNotFound)
        else:
            assert held.service.get(query.msg_id) == call()
        return
    if query.which == "unknown":  # the stream is looked up before the arguments
        refused(held, call, MessageNotFound, InvalidArgument, TypeError)
        return
    times = held.times[query.msg_id]
    if version_given:
        if not _is_int(query.version):
            refused(held, call, InvalidArgument, TypeError)
        elif not 1 <= query.version <= len(times):
            refused(held, call, InvalidArgument)
        else:
            assert query.version == call().version
        return
    if not isinstance(query.at, datetime):
        refused(held, call, InvalidArgument, TypeError)
        return
    if not _aware(query.at):
        refused(held, call, InvalidArgument)
        return
    expected = sum(1 for t in times if t <= query.at)
    extreme = query.at.year in (1, 9999)  # may have no UTC equivalent: may be refused
    error: MsgStateError | None = None
    try:
        answer = call()
    except (MessageNotFound, InvalidArgument) as raised:
        error = raised
    if error is None:
        assert expected == answer.version
        return
    check_error(error)
    if isinstance(error, MessageNotFound):
        assert 0 == expected, error
    else:
        assert extreme, error


@FUZZ
@given(query=queries())
@example(query=Query("get_at", "known", "q-sending", at=LATEST))
@example(query=Query("get_at", "known", "q-sending", at=EARLIEST))
def test_queries(store: Store, tally: Callable[[], None], query: Query) -> None:
    """get, history, get_at (version or at) and check_resend fuzzed: read only.

    A bad id or argument is refused, an unknown id is MessageNotFound, a known one
    answers from its recorded history; no query ever writes.
    """
    tally()
    if not store.times:
        setup_known(store)
    service = store.service
    before = store.written()
    msg_id = query.msg_id
    if query.which == "unknown" and msg_id in KNOWN:
        msg_id = f"{msg_id[:99]}~?"
        query = Query(query.op, query.which, msg_id, query.version, query.at)
    kwargs = {
        name: value
        for name, value in (("version", query.version), ("at", query.at))
        if value is not OMIT
    }
    calls: dict[str, Callable[[], Any]] = {
        "get": lambda: service.get(msg_id),
        "history": lambda: service.history(msg_id),
        "check_resend": lambda: service.check_resend(msg_id),
        "get_at": lambda: service.get_at(msg_id, **kwargs),
    }
    call = calls[query.op]
    if invalid(query.kinds):
        refused(store, call, *refusals(query.kinds))
    elif query.op == "get_at":
        _check_get_at(store, query, call)
    elif query.which == "unknown":
        refused(store, call, MessageNotFound)
    else:
        answer = call()
        state, version = KNOWN[msg_id], store.versions[msg_id]
        if query.op == "get":
            assert (msg_id, version) == (answer.msg_id, answer.version)
        elif query.op == "history":
            assert list(range(1, version + 1)) == [e.version for e in answer]
            assert store.times[msg_id] == [e.recorded_at for e in answer]
            assert {"id": msg_id} == answer[0].data["content"]
        else:
            assert (state == "failed") is answer.allowed
        event(f"answered: {query.op}")
    assert before == store.written(), "a query wrote an event"


# -- the Tencent facade --

ANYTHING = st.one_of(
    st.sampled_from(WRONG_TYPES),
    st.sampled_from(HUGE_STRINGS),
    GOOD_IDS,
    BAD_CONTENT_VALUES,
)
TENCENT_ARGS = {
    "onlineUserOnly": Arg(
        st.one_of(st.none(), st.booleans()), None, NOT_BOOL_NOR_NONE, has_default=True
    ),
    "webMessageInstatnce": Arg(ANYTHING, has_default=True),
    "webMessageInstance": Arg(ANYTHING, has_default=True),
    "request_id": RESEND_ARGS["request_id"],
    "actor": RESEND_ARGS["actor"],
}


@FUZZ
@given(case=cases(TENCENT_ARGS, RESEND_STATES))
def test_resend_message(store: Store, tally: Callable[[], None], case: Case) -> None:
    """reSendMessage() fuzzed: never raises, answers code != 0 on bad input.

    Invalid arguments answer INVALID_ARGUMENT (with the message if it exists), an
    unknown id the plugin's -1 with no data, and nothing is written; a prepared
    message answers as resend() does, a refusal with the message as it is now.
    Every answer converts to a dict and to JSON.
    """
    tally()
    msg_id, _ = store.resolve(case)
    manager = V2TIMMessageManager(store.service)
    before = store.written()
    old = None if case.mode != "prepared" else store.service.get(msg_id)
    answer = manager.reSendMessage(msg_id, **case.kwargs)
    as_dict = answer.to_dict()
    assert as_dict == json.loads(answer.to_json())
    assert isinstance(answer.desc, str)
    assert answer.desc
    event(f"answered code {answer.code}")
    if invalid(case.kinds) or case.mode == "unknown":
        # Bad arguments keep msgstate's code, with the message if it can be read;
        # an unknown id is the plugin's -1 "message not found", no data.
        expected = (
            (int(ErrorCode.INVALID_ARGUMENT), current_view(store.service, msg_id))
            if invalid(case.kinds)
            else (NOT_FOUND_CODE, None)
        )
        assert expected == (answer.code, answer.data)
        assert before == store.written()
        return
    outcome = expected_resend(case.state, case.kwargs.get("request_id"))
    if outcome in ("no-op", "resend"):
        assert ErrorCode.OK == answer.code
        assert answer.data is not None
        assert msg_id == answer.data.msg_id == as_dict["data"]["msgID"]
        assert old is not None
        assert old.version + (outcome == "resend") == answer.data.version
        assert (outcome == "resend") == store.written_since(before)
        store.versions[msg_id] = answer.data.version
    else:  # a refusal answers the message as it is now
        assert (ErrorCode[outcome], old) == (answer.code, answer.data)
        assert before == store.written()


def current_view(service: MessageService, msg_id: object) -> MessageView | None:
    """The message's view, or None if ``msg_id`` names none (or is no id)."""
    try:
        return service.get(msg_id)  # type: ignore[arg-type]
    except MsgStateError:
        return None


# -- record_failures and record_deliveries: many commands, one transaction --

MALFORMED_ITEMS = st.sampled_from(
    [
        None,
        "m1",
        ["m1", "1"],
        ("msg_id", "m1"),
        1,
        OBJ,
        {},
        {"seq": "1", "code": TRANSIENT_CODE},
        {"msg_id": "m1", "unknown": 1},
        {1: "m1"},
        {"msg_id": None, "seq": "1", "code": TRANSIENT_CODE},
    ]
)
"""Items that are no mapping of a command's keyword arguments."""


@dataclass(frozen=True)
class Bulk:
    """One fuzzed bulk call: which command, and its items (a Case each)."""

    command: str
    items: tuple[Case, ...]
    as_iterator: bool = False


BULK_COMMANDS = {
    "record_failures": (FAILURE_ARGS, expected_failure),
    "record_deliveries": (DELIVERY_ARGS, expected_delivery),
}


@st.composite
def bulks(draw: st.DrawFn) -> Bulk:
    command = draw(st.sampled_from(sorted(BULK_COMMANDS)))
    spec, _ = BULK_COMMANDS[command]
    item = st.one_of(
        cases(spec),
        cases(spec),
        cases(spec),
        MALFORMED_ITEMS.map(lambda raw: Case({}, mode="malformed", extra=raw)),
    )
    items = draw(st.lists(item, max_size=5))
    return Bulk(command, tuple(items), draw(st.booleans()))


@FUZZ
@given(bulk=bulks())
@example(
    bulk=Bulk(
        "record_failures",
        (
            Case({"code": TRANSIENT_CODE}),
            Case(
                {"code": TRANSIENT_CODE, "retry_after": 2**1024},
                {"retry_after": BAD_VALUE},
            ),
        ),
    )
)
def test_bulk_commands(store: Store, tally: Callable[[], None], bulk: Bulk) -> None:
    """record_failures() and record_deliveries() with fuzzed items.

    One outcome per item, each what the single command would do (a wrong type is
    an InvalidArgument outcome, never raised), malformed items included; only the
    accepted items are written, and nothing else.
    """
    tally()
    _, expect = BULK_COMMANDS[bulk.command]
    items: list[Any] = []
    targets: list[tuple[Case, Any, int]] = []
    for case in bulk.items:
        if case.mode == "malformed":
            items.append(case.extra)
            targets.append((case, None, 0))
            continue
        msg_id, attempts = store.resolve(case)
        items.append({"msg_id": msg_id, **case.kwargs})
        targets.append((case, msg_id, attempts))
    old = {
        msg_id: store.service.get(msg_id)
        for case, msg_id, _ in targets
        if case.mode == "prepared"
    }
    before = store.written()
    call = getattr(store.service, bulk.command)
    outcomes = call(iter(items) if bulk.as_iterator else items)
    assert len(items) == len(outcomes)
    written = 0
    for (case, msg_id, attempts), outcome in zip(targets, outcomes, strict=True):
        if case.mode == "malformed":
            assert isinstance(outcome, InvalidArgument), outcome
            check_error(outcome)
            continue
        expected, errors = expect(case, attempts)
        if isinstance(outcome, MsgStateError):
            check_error(outcome)
            allowed = tuple(InvalidArgument if e is TypeError else e for e in errors)
            if MAYBE in case.kinds:
                allowed += (InvalidArgument,)
            assert isinstance(outcome, allowed), (expected, outcome)
            continue
        assert expected != REFUSED, f"an item to refuse was answered: {outcome!r}"
        assert isinstance(outcome, MessageView)
        assert msg_id == outcome.msg_id
        if expected == UNCHANGED:
            assert old[msg_id] == outcome
        else:
            assert old[msg_id].version + 1 == outcome.version
            written += 1
    assert written == store.written_since(before), "other events than accepted"
    for msg_id, view in old.items():
        store.versions[msg_id] = store.service.get(msg_id).version
        assert store.versions[msg_id] in (view.version, view.version + 1)
    event(f"accepted: {'some' if written else 'no'} items")


# -- read models and audit: due_resends, dead_letters, counts, export, simulate --

READ_MESSAGES = (
    ("r-due", "failed", TRANSIENT_CODE),
    ("r-ambiguous", "failed", 9520),
    ("r-resent", "resent", TRANSIENT_CODE),
    ("r-sending", "sending", None),
    ("r-delivered", "delivered", None),
    *(
        (msg_id, "failed", 6016)  # permanent: dead letters, to page through
        for msg_id in (
            "'; DROP TABLE stored_events; --",
            "'",
            '"',
            "\\",
            "%s",
            "$1",
            "_%",
            "Zebra",
            "zebra",
            "ébène",
            "🙂",
            "a b",
            "Z",
            "z",
        )
    ),
)
"""Messages the read-model test creates once: id, state, last error code."""


def setup_read_models(held: Store) -> None:
    """Create the read-model test's messages, one event every 10 s."""
    service = held.service

    def step(msg_id: str, command: Callable[..., Any], **kwargs: Any) -> None:
        command(msg_id, **kwargs)
        held.times.setdefault(msg_id, []).append(held.clock.now)
        held.clock.advance(10)

    for msg_id, state, code in READ_MESSAGES:
        step(msg_id, service.create, sender="alice", user_id="bob")
        if code is not None:
            step(msg_id, service.record_failure, code=code, retry_after=5)
        if state == "resent":
            step(msg_id, service.resend, request_id="r")
        if state == "delivered":
            step(msg_id, service.record_delivery, seq="1")
        held.versions[msg_id] = len(held.times[msg_id])
    held.clock.advance(3600)


MOMENT = Arg(
    st.one_of(st.none(), AWARE_DATETIMES),
    BAD_DATETIME_VALUES,
    NOT_DATETIME_NOR_NONE,
    has_default=True,
    maybe=EXTREME_DATETIMES,
)
LIMIT = Arg(
    st.one_of(st.integers(1, 30), good_ints(1, 100_000)),
    bad_ints(1, 100_000),
    NOT_INT,
    has_default=True,
)
READ_ID_SET = frozenset(m for m, _, _ in READ_MESSAGES)
READ_IDS = st.sampled_from(sorted(READ_ID_SET))
MSG_ID_LISTS = Arg(
    st.one_of(
        st.none(),
        st.lists(st.one_of(READ_IDS, READ_IDS, GOOD_IDS), max_size=4),
        st.lists(READ_IDS, max_size=3).map(tuple),
    ),
    st.builds(
        lambda ids, bad, at: [*ids[:at], bad, *ids[at:]],
        st.lists(READ_IDS, max_size=2),
        BAD_ID_VALUES,
        st.integers(0, 2),
    ),
    st.one_of(
        st.sampled_from([5, 1.5, True, OBJ]),
        st.lists(NOT_STR, min_size=1, max_size=2),
    ),
    has_default=True,
)
NEW_POLICIES = st.sampled_from(
    [
        ResendPolicy(),
        ResendPolicy(max_attempts=1),
        ResendPolicy(max_attempts=2, max_age=timedelta(seconds=5)),
        ResendPolicy(enforce_backoff=True, resend_ambiguous=False),
    ]
)
READ_OPS: dict[str, dict[str, Arg]] = {
    "due_resends": {"now": MOMENT, "limit": LIMIT},
    "dead_letters": {
        "now": MOMENT,
        "limit": LIMIT,
        "after": Arg(
            st.one_of(st.none(), READ_IDS, GOOD_IDS, good_text(MAX_ID_CHARS)),
            bad_text(MAX_ID_CHARS),
            NOT_STR_NOR_NONE,
            has_default=True,
        ),
    },
    "status_counts": {},
    "counts_by_error_code": {},
    "export_history": {"msg_ids": MSG_ID_LISTS, "since": MOMENT},
    "simulate_policy": {
        "new_policy": Arg(
            NEW_POLICIES,
            None,
            st.sampled_from([None, {}, "default", ResendPolicy, 1, OBJ]),
        ),
        "msg_ids": MSG_ID_LISTS,
    },
    "wait_for_projections": {
        "timeout": Arg(
            st.one_of(st.floats(0, 0.01), st.sampled_from([0, 0.01, 10])),
            None,
            st.sampled_from(["1", None, [], OBJ]),
            has_default=True,
            maybe=st.sampled_from([math.nan, math.inf, -1, True, 2**1024, 10**400]),
        )
    },
    "catch_up_projections": {},
    "rebuild_projections": {},
}


@st.composite
def read_cases(draw: st.DrawFn) -> Case:
    op = draw(st.sampled_from(sorted(READ_OPS)))
    kwargs, kinds = draw(arguments(READ_OPS[op], max_bad=1))
    return Case(kwargs, kinds, extra=op)


def _dead_or_due(held: Store, moment: datetime) -> tuple[list[str], list[str]]:
    """The test's own answer: which messages are dead letters, which are due."""
    dead, due = [], []
    for msg_id in held.versions:
        view = held.service.get(msg_id)
        if view.status is not MessageStatus.SEND_FAIL:
            continue
        decision = held.service.policy.decide(view, moment)
        if decision.allowed and view.next_retry_at and view.next_retry_at <= moment:
            due.append(msg_id)
        elif not decision.allowed and decision.code is not ErrorCode.TOO_EARLY:
            dead.append(msg_id)
    return sorted(dead), due


def _check_read(held: Store, op: str, kwargs: dict[str, Any], answer: Any) -> None:
    """Each read-model and audit answer against the test's own account."""
    views = {m: held.service.get(m) for m in held.versions}
    moment = kwargs.get("now") or held.clock.now
    limit = kwargs.get("limit", 100)
    if op == "status_counts":
        expected = Counter(v.status for v in views.values())
        assert {s: expected.get(s, 0) for s in MessageStatus} == answer
    elif op == "counts_by_error_code":
        failed = [v for v in views.values() if v.status is MessageStatus.SEND_FAIL]
        assert Counter(v.last_error_code for v in failed) == answer
    elif op == "due_resends":
        _, due = _dead_or_due(held, moment)
        ids = [v.msg_id for v in answer]
        assert len(ids) <= limit
        assert set(ids) <= set(due)
        assert len(ids) == min(limit, len(due)), (ids, due)
        times = [v.next_retry_at for v in answer]
        assert sorted(times) == times
    elif op == "dead_letters":
        dead, _ = _dead_or_due(held, moment)
        after = kwargs.get("after")
        expected = [m for m in dead if after is None or m > after][:limit]
        assert expected == [letter.msg_id for letter in answer], "paging by msg_id"
        assert all(letter.code is not ErrorCode.TOO_EARLY for letter in answer)
    elif op == "export_history":
        lines = list(answer)
        wanted = kwargs.get("msg_ids")
        chosen = held.versions if wanted is None else set(wanted) & set(held.versions)
        since = kwargs.get("since")
        expected = sum(
            1 for m in chosen for t in held.times[m] if since is None or t >= since
        )
        assert expected == len(lines)
        for line in lines:
            assert line.endswith("\n")
            entry = json.loads(line)
            assert entry["msg_id"] in chosen
            assert {"msg_id", "version", "event", "recorded_at", "data"} <= set(entry)
    elif op == "simulate_policy":
        wanted = kwargs.get("msg_ids")
        assert answer.messages <= len(held.versions if wanted is None else wanted)
    elif op in ("catch_up_projections", "rebuild_projections"):
        assert isinstance(answer, int)
        assert answer >= 0
    else:
        assert answer is None


@FUZZ
@given(case=read_cases())
@example(case=Case({"since": LATEST}, {"since": MAYBE}, extra="export_history"))
@example(
    case=Case({"timeout": 2**1024}, {"timeout": MAYBE}, extra="wait_for_projections")
)
def test_read_models(store: Store, tally: Callable[[], None], case: Case) -> None:
    """The read-model and audit queries with fuzzed arguments: read only.

    due_resends, dead_letters (paged by msg_id after an id with SQL
    meta-characters), status_counts, counts_by_error_code, export_history,
    simulate_policy, wait_for_projections and the projections' catch-up and
    rebuild: invalid arguments are refused (an extreme datetime or timeout may
    be), valid ones answer what the messages' own histories say, and nothing is
    ever written to the event store.
    """
    tally()
    if not store.times:
        setup_read_models(store)
    op, kwargs = case.extra, case.kwargs
    service = store.service
    if op == "wait_for_projections":
        service.status_counts()  # catch up first: nothing to wait for
    before = store.written()

    def call() -> Any:
        answer = getattr(service, op)(**kwargs)
        return list(answer) if op == "export_history" else answer

    if invalid(case.kinds):
        refused(store, call, *refusals(case.kinds))
        return
    error: Exception | None = None
    try:
        answer = call()
    except (InvalidArgument, TypeError) as raised:
        error = raised
    assert before == store.written(), "a query wrote an event"
    if error is not None:
        assert MAYBE in case.kinds, error
        check_error(error)
        return
    _check_read(store, op, kwargs, iter(answer) if op == "export_history" else answer)
    event(f"answered: {op}")


# -- ResendPolicy --

SHORT_INTERVALS = st.one_of(
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=1)),
    st.sampled_from([timedelta(microseconds=1), timedelta(seconds=1)]),
)
LONG_INTERVALS = st.one_of(
    st.timedeltas(min_value=timedelta(days=1), max_value=timedelta(days=36_525)),
    st.just(timedelta(days=36_525)),
)
HUGE_INTERVALS = st.one_of(
    st.timedeltas(min_value=timedelta(days=36_525)),
    st.just(timedelta.max),
)
NON_POSITIVE_INTERVALS = st.one_of(
    st.timedeltas(max_value=timedelta(0)), st.sampled_from([timedelta(0)])
)
NOT_INTERVAL = _wrong(lambda v: not isinstance(v, timedelta)) | st.sampled_from(
    ["1s", "PT1S", 60]
)
NOT_INTERVAL_NOR_NONE = _wrong(lambda v: v is not None and not isinstance(v, timedelta))
NOT_REAL = _wrong(
    lambda v: isinstance(v, bool) or not isinstance(v, int | float)
) | st.sampled_from(["2", "0.5"])
POLICY_ARGS = {
    "max_attempts": Arg(
        st.one_of(st.integers(1, 20), st.sampled_from([1, 2**100, Small.ONE])),
        st.one_of(st.integers(max_value=0), st.just(-(2**100))),
        NOT_INT,
        has_default=True,
    ),
    "initial_interval": Arg(
        st.one_of(SHORT_INTERVALS, SHORT_INTERVALS, LONG_INTERVALS),
        NON_POSITIVE_INTERVALS,
        NOT_INTERVAL,
        has_default=True,
        maybe=HUGE_INTERVALS,
    ),
    "maximum_interval": Arg(
        st.one_of(SHORT_INTERVALS, LONG_INTERVALS, LONG_INTERVALS),
        NON_POSITIVE_INTERVALS,
        NOT_INTERVAL,
        has_default=True,
        maybe=HUGE_INTERVALS,
    ),
    "backoff_coefficient": Arg(
        st.one_of(
            st.floats(1, 1e300),
            st.integers(1, 10**6),
            st.sampled_from([1, 1.0, 2, 10**300, 1e308]),
        ),
        st.one_of(
            st.floats(max_value=1, exclude_max=True),
            st.integers(max_value=0),
            st.sampled_from([math.nan, math.inf, -math.inf, 2**1024, 10**400]),
        ),
        NOT_REAL,
        has_default=True,
    ),
    "jitter": Arg(
        st.one_of(st.floats(0, 1), st.sampled_from([0, 1, 0.5, -0.0])),
        st.one_of(
            st.floats(max_value=-1e-300),
            st.floats(min_value=1, exclude_min=True),
            st.sampled_from([math.nan, math.inf, 2, -1, 2**1024]),
        ),
        NOT_REAL,
        has_default=True,
    ),
    "enforce_backoff": Arg(st.booleans(), None, NOT_BOOL, has_default=True),
    "resend_ambiguous": Arg(st.booleans(), None, NOT_BOOL, has_default=True),
    "max_age": Arg(
        st.one_of(st.none(), SHORT_INTERVALS, LONG_INTERVALS),
        NON_POSITIVE_INTERVALS,
        NOT_INTERVAL_NOR_NONE,
        has_default=True,
        maybe=HUGE_INTERVALS,
    ),
    "online_only_max_age": Arg(
        st.one_of(st.none(), SHORT_INTERVALS, LONG_INTERVALS),
        NON_POSITIVE_INTERVALS,
        NOT_INTERVAL_NOR_NONE,
        has_default=True,
        maybe=HUGE_INTERVALS,
    ),
    "unknown_code_class": Arg(
        st.sampled_from(RetryClass),
        None,
        st.sampled_from(["TRANSIENT", "PERMANENT", None, 1, ErrorCode.OK, OBJ]),
        has_default=True,
    ),
}
POLICY_CODES = (TRANSIENT_CODE, 9520, 6016, 7008, 123_456)
"""Transient, ambiguous, permanent, rate-limited and uncatalogued codes."""


@st.composite
def policy_cases(draw: st.DrawFn) -> Case:
    kwargs, kinds = draw(arguments(POLICY_ARGS, max_bad=1))
    unknown = draw(st.sampled_from([None] * 9 + ["max_attempt", "maxAttempts"]))
    if unknown is not None:
        kwargs[unknown], kinds[unknown] = 3, BAD_TYPE
    retry_after = draw(st.sampled_from([None, 0, 1.5, MAX_RETRY_AFTER]))
    return Case(kwargs, kinds, extra=retry_after)


def exercise(policy: ResendPolicy, retry_after: float | None) -> None:
    """Use an accepted policy everywhere: it must never fail but with a refusal."""
    for attempt in (1, 2, 3, 64, MAX_ATTEMPT):
        assert timedelta(0) <= policy.delay(attempt, "m")
        assert EPOCH <= policy.next_retry_at(
            failed_at=EPOCH, attempt=attempt, msg_id="m", retry_after=retry_after
        )
    service = MessageService.open("memory://", policy=policy, clock=FakeClock())
    for code in POLICY_CODES:
        msg_id = f"p-{code}"
        service.create(msg_id, sender="a", user_id="b", online_user_only=True)
        service.record_failure(msg_id, code=code, retry_after=retry_after)
        decision = service.check_resend(msg_id)
        if decision.allowed:
            assert 2 == service.resend(msg_id, online_user_only=False).attempts
        else:
            with pytest.raises(ResendRefused) as refusal:
                service.resend(msg_id, online_user_only=False)
            assert decision.code == refusal.value.code
        assert service.get(msg_id) == service.get_at(msg_id, at=service.now())
        assert service.history(msg_id)
    service.close()


@FUZZ
@given(case=policy_cases())
@example(
    case=Case({"backoff_coefficient": 2**1024}, {"backoff_coefficient": BAD_VALUE})
)
@example(
    case=Case(
        {"initial_interval": timedelta.max, "maximum_interval": timedelta.max},
        {"initial_interval": MAYBE, "maximum_interval": MAYBE},
    )
)
def test_resend_policy(tally: Callable[[], None], case: Case) -> None:
    """ResendPolicy(**random kwargs) is InvalidArgument or a policy that works.

    An invalid value is refused (an unknown keyword may be a TypeError); a valid
    policy decides, computes backoffs and drives a service without failing.
    Intervals beyond 100 years may be refused, but if accepted they must work.
    """
    tally()
    kwargs = case.kwargs
    initial = kwargs.get("initial_interval", timedelta(seconds=1))
    maximum = kwargs.get("maximum_interval", timedelta(seconds=60))
    kinds = case.kinds
    if not invalid(kinds) and maximum < initial:
        kinds = kinds | {BAD_VALUE}
    if invalid(kinds):
        with pytest.raises(refusals(kinds)) as info:
            ResendPolicy(**kwargs)
        check_error(info.value)
        return
    try:
        policy = ResendPolicy(**kwargs)
    except InvalidArgument as error:
        assert MAYBE in kinds, "a valid policy was refused"
        check_error(error)
        return
    event("accepted: policy")
    exercise(policy, case.extra)


# -- MessageService.open's options --


def naive_clock() -> datetime:
    return datetime(2026, 1, 1)


def no_clock() -> None:
    return None


def text_clock() -> str:
    return "2026-01-01T00:00:00Z"


def date_clock() -> date:
    return date(2026, 1, 1)


def last_clock() -> datetime:
    return LATEST


def first_clock() -> datetime:
    return EARLIEST


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


KEY = generate_cipher_key()
OPTION_ARGS = {
    "policy": Arg(
        st.sampled_from([None, ResendPolicy(), ResendPolicy(max_attempts=1)]),
        None,
        st.sampled_from([{}, {"max_attempts": 2}, "default", ResendPolicy, 1, OBJ]),
        has_default=True,
    ),
    "clock": Arg(
        st.sampled_from([None, FakeClock()]),
        st.sampled_from([naive_clock, no_clock, text_clock, date_clock]),
        st.sampled_from([1, "now", EPOCH, [], OBJ, True]),
        has_default=True,
        maybe=st.sampled_from([last_clock, first_clock]),
    ),
    "create_tables": Arg(st.booleans(), None, NOT_BOOL, has_default=True),
    "snapshot_every": Arg(
        st.one_of(st.none(), st.integers(2, 1_000_000), st.sampled_from([2, 10**6])),
        st.one_of(
            st.integers(max_value=1),
            st.integers(min_value=1_000_001),
            st.sampled_from([2**100, -(2**100)]),
        ),
        NOT_INT_NOR_NONE,
        has_default=True,
    ),
    "cipher_key": Arg(
        st.one_of(
            st.none(),
            st.just(KEY),
            st.sampled_from([16, 24, 32]).flatmap(
                lambda n: st.binary(min_size=n, max_size=n).map(_b64)
            ),
        ),
        st.one_of(
            st.sampled_from(["", "abc", "not base64!", KEY + "\n", " " + KEY]),
            # "-" is not in the standard base64 alphabet: always invalid.
            st.sampled_from([KEY[:-1] + "\x00", "é" * 44, "-" + KEY[1:]]),
            st.binary(max_size=48)
            .filter(lambda b: len(b) not in (16, 24, 32))
            .map(_b64),
            st.sampled_from(HUGE_STRINGS),
        ),
        st.one_of(NOT_STR_NOR_NONE, st.just(base64.b64decode(KEY))),
        has_default=True,
    ),
    "compress": Arg(st.booleans(), None, NOT_BOOL, has_default=True),
}
SERIAL = itertools.count()


@FUZZ
@given(
    case=arguments(OPTION_ARGS).map(lambda a: Case(*a)),
    kind=st.sampled_from(["memory", "sqlite"]),
)
@example(case=Case({"clock": last_clock}, {"clock": MAYBE}), kind="memory")
def test_open_options(
    tmp_path: Path, tally: Callable[[], None], case: Case, kind: str
) -> None:
    """MessageService.open's keyword options fuzzed, on memory and SQLite.

    Invalid options are refused when opening (a clock answering something other
    than an aware datetime, at the first command, writing nothing); valid ones
    open a store that works, and a SQLite store reopened with the same options
    reads back equal, while a wrong cipher key or compress option is a StorageError.
    """
    tally()
    url = (
        "memory://" if kind == "memory" else f"sqlite:///{tmp_path}/o{next(SERIAL)}.db"
    )
    kwargs = case.kwargs
    clock_kind = case.bad.get("clock", OK)  # BAD_VALUE: callable, answers nonsense
    at_open = frozenset(kind for name, kind in case.bad.items() if name != "clock")
    at_open |= {BAD_TYPE} if clock_kind == BAD_TYPE else frozenset()
    if at_open:
        with pytest.raises(refusals(at_open)) as info:
            MessageService.open(url, **kwargs)
        check_error(info.value)
        return
    if kind == "sqlite" and kwargs.get("create_tables") is False:
        with pytest.raises(StorageError) as info:  # when opening or writing
            unready = MessageService.open(url, **kwargs)
            try:
                unready.create("m", sender="a", user_id="b")
            finally:
                unready.close()
        check_error(info.value)
        return
    service = MessageService.open(url, **kwargs)
    try:
        if clock_kind == BAD_VALUE:
            with pytest.raises(InvalidArgument) as info:
                service.create("m", sender="a", user_id="b")
            check_error(info.value)
            assert 0 == (service.recorder.max_notification_id() or 0)
            return
        msg_id = "o'; DROP TABLE stored_events; --"
        created = perform_create(
            service, msg_id, may_refuse=clock_kind == MAYBE, content={"k": "\x00'"}
        )
        if not created:
            return
        service.record_failure(msg_id, code=TRANSIENT_CODE, retry_after=1.5)
        service.record_delivery(msg_id, seq="1")
        view = service.get(msg_id)
        history = service.history(msg_id)
        assert (3, 3) == (view.version, len(history))
        event("accepted: options")
    finally:
        service.close()
    if kind == "memory":
        return
    same = {k: v for k, v in kwargs.items() if k != "create_tables"}
    again = MessageService.open(url, **same)
    try:
        assert view == again.get(msg_id)
        assert history == again.history(msg_id)
    finally:
        again.close()
    key, compress = kwargs.get("cipher_key"), kwargs.get("compress", False)
    wrong = [{"cipher_key": generate_cipher_key(), "compress": compress}]
    if key is not None or compress:
        wrong.append({"cipher_key": None, "compress": False})
    for options in wrong:
        with pytest.raises(StorageError):
            _read_with(url, msg_id, **options)


def perform_create(
    service: MessageService, msg_id: str, *, may_refuse: bool, **fields: Any
) -> bool:
    """Create ``msg_id``; with ``may_refuse`` an InvalidArgument writing nothing
    is fine too. Whether it was created."""
    error: InvalidArgument | None = None
    try:
        service.create(msg_id, sender="a", user_id="b", **fields)
    except InvalidArgument as raised:
        if not may_refuse:
            raise
        error = raised
    if error is None:
        return True
    check_error(error)
    assert 0 == (service.recorder.max_notification_id() or 0)
    return False


def _read_with(url: str, msg_id: str, **options: Any) -> None:
    service = MessageService.open(url, **options)
    try:
        service.get(msg_id)
    finally:
        service.close()


# -- MessageService.open's URL --

_BASE = urlsplit(pg.BASE_URL)
REAL_HOST = f"{_BASE.hostname}:{_BASE.port or 5432}"
SECRET = "S3cretPw0rd"
SESSION = uuid4().hex[:8]
"""Names this session's test schemas (dropped at the end of the session)."""


@dataclass(frozen=True)
class UrlCase:
    """A URL and what opening it may do.

    ``expect``: ``open`` (must open), ``refuse`` (InvalidArgument), ``storage``
    (StorageError), ``reject`` (either error) or ``any`` (either, or open).
    """

    url: str
    expect: str = "any"
    family: str = "generic"
    via: str = "open"


def _text(alphabet: st.SearchStrategy[str] | None = None, **kw: Any) -> Any:
    return st.text(alphabet if alphabet is not None else st.characters(), **kw)


_NO_URL_DELIMS = st.characters(exclude_characters="/?#@[]=")
SCHEMES = st.sampled_from(
    [
        *("memory", "MEMORY", "sqlite", "SQLite", "postgresql", "postgres"),
        *("POSTGRESQL", "mysql", "http", "file", "", " memory", "sqlite3", "pg"),
    ]
)
SQLITE_NAMES = st.one_of(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}", fullmatch=True).filter(
        lambda s: s not in (".", "..")
    ),
    _text(st.characters(exclude_characters="/"), max_size=20),
    st.sampled_from(
        [
            ":memory:",
            "x:memory:.db",
            "mode=memory.db",
            "file:x.db",
            "'; DROP TABLE stored_events; --.db",
            "%2e%2e",
            "\\",
            " x.db",
            "x.db ",
            "ü.db",
            "\ud800.db",
            "x\x00.db",
            "x?mode=ro",
            "x#frag",
            "x" * 300,
            ".",
            "..",
        ]
    ),
)


@st.composite
def generic_urls(draw: st.DrawFn) -> UrlCase:
    """URLs of every shape; guarded so that none reaches a real server or file."""
    family = draw(st.sampled_from(["text", "scheme", "memory", "sqlite", "pg"]))
    if family == "text":
        return UrlCase(draw(_text(max_size=60)))
    if family == "scheme":
        rest = draw(_text(max_size=40))
        return UrlCase(f"{draw(SCHEMES)}://{rest}", "any")
    if family == "memory":
        url = draw(
            st.sampled_from(["memory://", "MEMORY://", "Memory://"])
            | st.builds(lambda s: "memory://" + s, _text(min_size=1, max_size=20))
            | st.sampled_from(["memory:", "memory:///", f"memory://u:{SECRET}@h"])
        )
        return UrlCase(url, "open" if url.lower() == "memory://" else "refuse")
    if family == "sqlite":
        name = draw(SQLITE_NAMES)
        scheme = draw(st.sampled_from(["sqlite", "SQLITE"]))
        shape = draw(st.sampled_from(["plain", "plain", "missing", "up", "short"]))
        if shape == "missing":  # ("no-such-dir/" and "no-such-dir/." name a file)
            expect = "any" if name in ("", ".") else "refuse"
            return UrlCase(f"{scheme}:///no-such-dir/{name}", expect)
        if shape == "up":
            return UrlCase(f"{scheme}:///./sub/../{name}", "any")
        if shape == "short":
            return UrlCase(f"{scheme}://{name}", "any")
        plain = draw(st.booleans()) and name.isascii() and name.isalnum()
        if plain and len(name) > 247:  # past SQLite's file-name limit: refused
            return UrlCase(f"{scheme}:///{name}", "refuse")
        return UrlCase(f"{scheme}:///{name}", "open" if plain else "any")
    scheme = draw(st.sampled_from(["postgresql", "postgres", "POSTGRESQL"]))
    user = draw(_text(_NO_URL_DELIMS, max_size=10))
    password = draw(
        st.sampled_from(["", f":{SECRET}"])
        | _text(_NO_URL_DELIMS, max_size=8).map(lambda p: ":" + p)
    )
    dbname = draw(_text(st.characters(exclude_characters="=/?#"), max_size=20))
    query = draw(st.sampled_from(["", "?"]) | _text(max_size=30).map(lambda q: "?" + q))
    port = draw(st.sampled_from([":1", ":1", ":x", ":99999", ":-1", ":1:2"]))
    return UrlCase(
        f"{scheme}://{user}{password}@127.0.0.1{port}/{dbname}{query}", "reject"
    )


POOL_OPTIONS = {
    "pool_size": (1, 2),
    "max_overflow": (0, 2),
    "connect_timeout": (1, 3600),
    "lock_timeout": (1, 3600),
    "idle_in_transaction_timeout": (1, 3600),
}
BAD_OPTION_VALUES = st.one_of(
    st.sampled_from(["", "0", "-1", "1.5", " 1", "1 ", "0x10", "²", "1e3", "99999"]),
    st.sampled_from(["2**100", str(2**100), "\x00", "'; DROP TABLE x; --", "\ud800"]),
    _text(max_size=8).filter(lambda v: not v.isdigit()),
)
DOCUMENTED_RANGES = {
    "pool_size": (1, 1000),
    "max_overflow": (0, 1000),
    "connect_timeout": (1, 3600),
    "lock_timeout": (1, 3600),
    "idle_in_transaction_timeout": (1, 3600),
}


def _valid_option(name: str, value: str) -> bool:
    low, high = DOCUMENTED_RANGES[name]
    return value.isascii() and value.isdigit() and low <= int(value) <= high


BAD_SCHEMAS = st.one_of(
    st.sampled_from(["", "1abc", "a-b", "a b", "ünï", "x" * 64, '"quoted"', "\x00"]),
    st.sampled_from(["public; DROP SCHEMA public CASCADE", "t_msgstate_" + "x" * 53]),
    _text(max_size=10).filter(lambda v: not v.isascii() or not v.isidentifier()),
)


@st.composite
def real_server_urls(draw: st.DrawFn) -> UrlCase:
    """URLs of the test PostgreSQL server, fuzzed where it is safe to.

    Unknown users and databases are prefixed (never a real one but the test
    database) and any schema that can be created is a ``t_msgstate_`` test schema,
    dropped at the end of the session.
    """
    user_ok, db_ok = draw(st.booleans()), draw(st.booleans())
    utf8 = st.characters(codec="utf-8", exclude_characters="/")
    names: list[str] = []  # the unknown user's and database's names, decoded
    if user_ok:
        user = _BASE.username or ""
    else:
        names.append(draw(_text(utf8, max_size=8)))
        user = "nouser_" + quote(names[-1], safe="")
    if db_ok:
        dbname = _BASE.path.lstrip("/")
    else:
        names.append(draw(_text(utf8, max_size=8)))
        dbname = "nodb_" + quote(names[-1], safe="")
    password = (
        f":{_BASE.password}"
        if _BASE.password
        else draw(st.sampled_from(["", f":{SECRET}"]))
    )
    options: dict[str, str] = {}
    # A NUL (%00) in a name is refused before connecting (InvalidArgument): no
    # server can have such a user or database.
    good = not any("\x00" in name for name in names)
    for name in draw(
        st.lists(st.sampled_from(sorted(POOL_OPTIONS)), unique=True, max_size=3)
    ):
        low, high = POOL_OPTIONS[name]
        if draw(st.integers(0, 3)):
            options[name] = str(draw(st.integers(low, high)))
        else:
            options[name] = draw(
                BAD_OPTION_VALUES.filter(lambda v, n=name: not _valid_option(n, v))
            )
            good = False
    if not draw(st.integers(0, 5)):
        options[
            draw(st.sampled_from(["host", "port", "user", "sslmode", "Schema"]))
        ] = "x"
        good = False
    if draw(st.integers(0, 3)):
        suffix = draw(st.from_regex(r"[a-z0-9_]{0,8}", fullmatch=True))
        schema = pg.register_schema(f"{pg.SCHEMA_PREFIX}fz{SESSION}_{suffix}")
    else:
        schema = draw(BAD_SCHEMAS)
        good = False
    options["schema"] = schema
    query = "&".join(
        f"{quote(k, safe='')}={quote(v, safe='', errors='surrogatepass')}"
        for k, v in options.items()
    )
    url = f"postgresql://{user}{password}@{REAL_HOST}/{dbname}?{query}"
    if not good:
        return UrlCase(url, "refuse", "real")
    return UrlCase(url, "open" if user_ok and db_ok else "storage", "real")


def _safe(url: str, cwd: str) -> bool:
    """Whether opening ``url`` touches only port 1 or files under ``cwd``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return True  # refused before anything is opened
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres"):
        return parts.hostname == "127.0.0.1" and port == 1
    if scheme != "sqlite":
        return True
    if not url.lower().startswith("sqlite:///") or len(url) == len("sqlite:///"):
        return True
    path = url[len("sqlite:///") :]
    if path == ":memory:" or any(c in path for c in "?#\x00"):
        return True
    if path.lower().startswith("file:") and ("%" in path or "/" in path):
        return False  # an SQLite URI may name any file
    full = posixpath.normpath(posixpath.join(cwd, path))
    return full.startswith(cwd + os.sep)


def _persistent_sqlite(url: str) -> bool:
    return urlsplit(url).scheme.lower() == "sqlite" and url[10:] != ":memory:"


@st.composite
def urls(draw: st.DrawFn) -> UrlCase:
    """Generic URLs, and URLs of the test server when it is up; opened or set up."""
    real = pg.unavailable_reason() is None and draw(st.integers(0, 2)) == 0
    case = draw(real_server_urls() if real else generic_urls())
    return replace(case, via=draw(st.sampled_from(["open", "setup_schema"])))


@FUZZ
@given(case=urls())
@example(case=UrlCase("memory://[", "refuse"))
@example(case=UrlCase("sqlite://[/x.db", "refuse"))
@example(case=UrlCase("sqlite:///\ud800.db"))
@example(case=UrlCase("postgresql://u:a\ud800b@127.0.0.1:1/db", "reject"))
@example(case=UrlCase("postgresql://u@127.0.0.1:1/db?pool_size=\u00b2", "refuse"))
@example(case=UrlCase(f"memory://user:{SECRET}@host", "refuse"))
@example(case=UrlCase(f"sqlite://user:{SECRET}@host/x.db", "refuse"))
@example(case=UrlCase("sqlite:///x:memory:.db"))
@example(case=UrlCase("sqlite:///" + "x" * 300, "refuse"))
@example(case=UrlCase(f"postgresql://u@{REAL_HOST}/nodb_%00", "refuse", "real"))
@example(case=UrlCase(f"postgresql://nouser_%00@{REAL_HOST}/db", "refuse", "real"))
def test_open_url(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tally: Callable[[], None],
    case: UrlCase,
) -> None:
    """MessageService.open and setup_schema with fuzzed URLs.

    Only InvalidArgument or StorageError come out, never naming a password; a
    URL that opens gives a working store, and a SQLite file or PostgreSQL store
    reopened on the same URL reads back what was written. Nothing connects
    anywhere but port 1 of 127.0.0.1 or the test server, and SQLite files are only
    made in the test's own directory.
    """
    tally()
    monkeypatch.chdir(tmp_path)
    cwd = os.getcwd()
    if case.family == "generic":
        assume_safe = _safe(case.url, cwd)
        if not assume_safe:
            event("skipped: unsafe URL")
            return
    opener = MessageService.open if case.via == "open" else setup_schema
    error: MsgStateError | None = None
    try:
        opened = opener(case.url)
    except (InvalidArgument, StorageError) as refusal:
        error = refusal
    if error is not None:
        check_error(error)
        assert SECRET not in str(error), "an error shows the password"
        assert SECRET not in repr(error), "an error shows the password"
        assert case.expect != "open", f"{case.url!r} did not open: {error}"
        assert not (isinstance(error, StorageError) and case.expect == "refuse")
        assert not (isinstance(error, InvalidArgument) and case.expect == "storage")
        return
    if opened is not None:
        opened.close()  # first: a failed assertion must not leak its connections
    assert case.expect in ("open", "any"), f"{case.url!r} opened"
    event(f"opened: {urlsplit(case.url).scheme.lower()} via {case.via}")
    msg_id = "u'; DROP TABLE stored_events; --"
    service = MessageService.open(case.url)
    try:
        view = service.create(msg_id, sender="a", user_id="b", content={"k": "v"})
    finally:
        service.close()
    if _persistent_sqlite(case.url) or case.family == "real":
        again = MessageService.open(case.url)
        try:
            assert view == again.get(msg_id), "the store forgot what was written"
        finally:
            again.close()
