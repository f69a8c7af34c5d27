"""The transition table's renderings and the error-code catalog."""

from __future__ import annotations

import pytest

from msgstate import MessageStatus, RetryClass
from msgstate.codes import catalog, find, lookup
from msgstate.status import to_dot, to_mermaid

REQUIRED = [
    6008, 6012, 6014, 6016, 6017, 6200, 6201, 6206, 6208, 6250, 6251,
    7004, 7005, 7006, 7007, 7008, 8001, 80001, 80002, 80101, 9506, 9508, 9510,
    9512, 9514, 9517, 9520, 9524, 10002, 10010, 10017, 10023, 20003, 20004,
    20005, 20006, 20007, 20009, 20010, 20011, 20012, 60018, 60019, 70001, 114005,
]  # fmt: skip


def test_status_values_are_v2tim() -> None:
    """MessageStatus carries V2TIMMessageStatus's integers."""
    expected = {
        "SENDING": 1,
        "SEND_SUCC": 2,
        "SEND_FAIL": 3,
        "HAS_DELETED": 4,
        "LOCAL_IMPORTED": 5,
        "LOCAL_REVOKED": 6,
    }
    assert expected == {s.name: int(s) for s in MessageStatus}


def test_mermaid_diagram_lists_every_move() -> None:
    """The Mermaid diagram has one arrow per legal move (written out here)."""
    expected = [
        "[*] --> SENDING: Created (first attempt)",
        "SENDING --> SEND_FAIL: SendFailed",
        "SENDING --> SEND_SUCC: Delivered",
        "SEND_FAIL --> SENDING: ResendRequested (if the policy allows)",
        "SEND_FAIL --> SEND_SUCC: Delivered (late acknowledgement)",
        "SENDING --> SENDING: Forgotten (any status; changes none)",
        "SEND_FAIL --> SEND_FAIL: Forgotten (any status; changes none)",
        "SEND_SUCC --> SEND_SUCC: Forgotten (any status; changes none)",
        "SEND_SUCC --> [*]",
    ]
    actual = [line.strip() for line in to_mermaid().splitlines()[1:]]
    assert expected == actual


def test_dot_diagram_is_a_digraph() -> None:
    """The DOT rendering is a digraph with eight labelled edges."""
    dot = to_dot()
    assert dot.startswith("digraph msgstate {")
    assert 8 == dot.count("[label=")


def test_diagrams_exactly() -> None:
    """Both renderings, character for character (written out here), so a changed
    label, arrow, header or line end is noticed."""
    mermaid = """\
stateDiagram-v2
    [*] --> SENDING: Created (first attempt)
    SENDING --> SEND_FAIL: SendFailed
    SENDING --> SEND_SUCC: Delivered
    SEND_FAIL --> SENDING: ResendRequested (if the policy allows)
    SEND_FAIL --> SEND_SUCC: Delivered (late acknowledgement)
    SENDING --> SENDING: Forgotten (any status; changes none)
    SEND_FAIL --> SEND_FAIL: Forgotten (any status; changes none)
    SEND_SUCC --> SEND_SUCC: Forgotten (any status; changes none)
    SEND_SUCC --> [*]
"""
    dot = """\
digraph msgstate {
    rankdir=LR;
    start [shape=point];
    start -> SENDING [label="Created\\n(first attempt)"];
    SENDING -> SEND_FAIL [label="SendFailed"];
    SENDING -> SEND_SUCC [label="Delivered"];
    SEND_FAIL -> SENDING [label="ResendRequested\\n(if the policy allows)"];
    SEND_FAIL -> SEND_SUCC [label="Delivered\\n(late acknowledgement)"];
    SENDING -> SENDING [label="Forgotten\\n(any status; changes none)"];
    SEND_FAIL -> SEND_FAIL [label="Forgotten\\n(any status; changes none)"];
    SEND_SUCC -> SEND_SUCC [label="Forgotten\\n(any status; changes none)"];
    SEND_SUCC [shape=doublecircle];
}
"""
    assert (mermaid, dot) == (to_mermaid(), to_dot())


def test_status_repr_is_python() -> None:
    """A status prints as the Python expression that names it."""
    assert ["MessageStatus.SENDING", "MessageStatus.LOCAL_REVOKED"] == [
        repr(MessageStatus.SENDING),
        repr(MessageStatus.LOCAL_REVOKED),
    ]
    assert MessageStatus.SEND_FAIL is eval(repr(MessageStatus.SEND_FAIL))


@pytest.mark.parametrize("code", REQUIRED)
def test_required_codes_are_catalogued_with_a_source(code: int) -> None:
    """Every code the issue lists is in the catalog, citing its header."""
    info = lookup(code)
    assert info is not None
    assert "TIMErrorCode.h" in info.source
    assert info.name.startswith("ERR_")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (9520, RetryClass.AMBIGUOUS),
        (9524, RetryClass.AMBIGUOUS),
        (6012, RetryClass.TRANSIENT),
        (7008, RetryClass.RATE_LIMITED),
        (80001, RetryClass.PERMANENT),
        (80101, RetryClass.PERMANENT),
        (6206, RetryClass.AFTER_RELOGIN),
        (9508, RetryClass.AFTER_RECONNECT),
    ],
)
def test_retry_classes(code: int, expected: RetryClass) -> None:
    """The classes the issue fixes, and one of each other kind."""
    info = lookup(code)
    assert info is not None
    assert expected == info.retry_class


def test_unknown_code_is_not_catalogued() -> None:
    """Codes outside the catalog return None (the policy picks their class)."""
    assert lookup(123456789) is None
    assert len(catalog()) >= len(REQUIRED)


# -- the catalog of issue 9: every send-failure family, names per header, legacy --

ISSUE_9_ADDED = [
    6013, 6015, 6026, 6226, 70101, 6213, 6255, 9503, 6032, 7013, 7014, 7015, 8004,
    80003, 80004, 93000, 20001, 20002, 9507, 9509, 9511, 9518, 9519, 9521, 9522,
    9523, 9525, 10004, 10006, 10007, 10015, 10016, 10019, 60020, 70051, 70107,
    6006, 6007, 6031, 114000, 114001, 114002, 114003, 114004, 114011, -302,
    -10113, -10114, -20009, 8005, 8021,
]  # fmt: skip


@pytest.mark.parametrize("code", ISSUE_9_ADDED)
def test_common_send_failures_are_catalogued(code: int) -> None:
    """Each send failure the issue found missing has an entry read from a header."""
    info = lookup(code)
    assert info is not None
    assert code == info.code
    assert info.name in info.names.values()
    assert info.header_desc
    assert info.source.startswith(("TencentCloud/TIMSDK: ", "xionghaoo/"))


def test_6012_is_spelled_per_header() -> None:
    """6012 is ERR_REQUEST_TIME_OUT in 2025, ERR_REQUEST_TIMEOUT before."""
    info = lookup(6012)
    assert info is not None
    assert "ERR_REQUEST_TIME_OUT" == info.name
    assert ("ERR_REQUEST_TIMEOUT",) == info.aliases
    assert "ERR_REQUEST_TIME_OUT" == info.names["TIMErrorCode.h 2025"]
    assert "ERR_REQUEST_TIMEOUT" == info.names["TIMErrorCode.h 2021"]
    assert info is find("err_request_timeout") is find("ERR_REQUEST_TIME_OUT")


@pytest.mark.parametrize("code", [8001, 80002, 93000])
def test_body_limits_are_12_kb(code: int) -> None:
    """Current headers say 12 KB (the old catalog said 8)."""
    info = lookup(code)
    assert info is not None
    assert "12 KB" in info.desc
    assert "12k" in info.header_desc


@pytest.mark.parametrize(
    ("code", "legacy"),
    [(6012, True), (6200, True), (6201, True), (6250, True), (6251, True),
     (80101, True), (6014, False), (9520, False), (8001, False)],
)  # fmt: skip
def test_legacy_flag_marks_v3_only_codes(code: int, legacy: bool) -> None:
    """Codes only in the headers' "IM SDK V3" section are legacy."""
    info = lookup(code)
    assert info is not None
    assert legacy is info.legacy


def test_sources_name_the_right_headers() -> None:
    """TIMErrorCode.h is the iOS/Push header; the C SDK's is TIMCloudDef.h."""
    sources = {info.source for info in catalog().values()}
    tencent = {s for s in sources if not s.startswith("msgstate")}
    assert all(": " in s and ".h" in s for s in tencent)
    for source in tencent:
        if source.endswith("TIMErrorCode.h"):
            pytest.fail(f"{source} does not say which TIMErrorCode.h")
        if "/TIMErrorCode.h" in source:
            assert "iOS" in source
        if "TIMCloudDef.h" in source:
            assert "C SDK" in source
    info = lookup(6014)
    assert info is not None
    expected = {
        "TIMErrorCode.h 2025",
        "V2TIMErrorCode.h 8.1",
        "TIMCloudDef.h",
        "TIMErrorCode.h 2021",
    }
    assert expected == set(info.names)
    assert "PushSDK.framework/Headers/TIMErrorCode.h" in info.source


@pytest.mark.parametrize(
    ("code", "found"),
    [(120000, False), (120001, True), (125000, True), (130000, True), (130001, False)],
)
def test_callback_range_is_one_entry(code: int, found: bool) -> None:
    """120001-130000 (the before-send callback's own codes) is one entry."""
    info = lookup(code)
    if not found:
        assert info is None
        return
    assert info is not None
    assert (120001, 130000) == (info.code, info.last)
    assert RetryClass.PERMANENT == info.retry_class
    assert info is find(str(code))


def test_every_entry_is_self_consistent() -> None:
    """Aliases are the other header spellings; names are unique across codes."""
    seen: dict[str, int] = {}
    for code, info in catalog().items():
        assert code == info.code
        assert set(info.aliases) == set(info.names.values()) - {info.name}
        for spelling in info.spellings():
            assert seen.setdefault(spelling, code) == code, spelling
            assert find(spelling.lower()) is info
        assert (info.last is None) == (info.code != 120001)


def test_local_codes_are_kept() -> None:
    """msgstate's own 1014/1015 stay AMBIGUOUS local entries."""
    for code in (1014, 1015):
        info = lookup(code)
        assert info is not None
        assert RetryClass.AMBIGUOUS == info.retry_class
        assert info.source.startswith("msgstate")


def test_find_refuses_what_is_not_there() -> None:
    """Unknown numbers and names find nothing."""
    assert find("4242") is None
    assert find("ERR_NOT_A_REAL_CODE") is None
    assert find("") is None


def test_msgstate_codes_collide_with_no_tencent_code() -> None:
    """A refusal's ErrorCode can never be mistaken for a Tencent send failure."""
    from msgstate import ErrorCode

    tencent = {
        code
        for code, info in catalog().items()
        if not info.source.startswith("msgstate")
    }
    ours = {int(code) for code in ErrorCode if code}
    assert set() == ours & tencent
    assert all(lookup(code) is None or code in (1014, 1015) for code in ours)


def test_code_info_stays_hashable() -> None:
    """Catalog entries can be set members and cache keys."""
    info = lookup(6012)
    assert info is not None
    assert {info} == {lookup(6012)}


def test_covers_is_the_code_or_the_range() -> None:
    """A single entry covers its own code only; the range entry its span."""
    single = lookup(6012)
    span = lookup(120001)
    assert single is not None
    assert span is not None
    expected = [True, False, False, True, True, False]
    actual = [
        single.covers(6012),
        single.covers(6013),
        single.covers(6011),
        span.covers(120001),
        span.covers(130000),
        span.covers(130001),
    ]
    assert expected == actual


def test_retry_class_repr_is_runnable_python() -> None:
    """RetryClass prints as the expression that names it."""
    assert "RetryClass.AMBIGUOUS" == repr(RetryClass.AMBIGUOUS)
