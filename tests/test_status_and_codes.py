"""The transition table's renderings and the error-code catalog."""

from __future__ import annotations

import pytest

from msgstate import MessageStatus, RetryClass
from msgstate.codes import catalog, lookup
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
        "SEND_SUCC --> [*]",
    ]
    actual = [line.strip() for line in to_mermaid().splitlines()[1:]]
    assert expected == actual


def test_dot_diagram_is_a_digraph() -> None:
    """The DOT rendering is a digraph with five labelled edges."""
    dot = to_dot()
    assert dot.startswith("digraph msgstate {")
    assert 5 == dot.count("[label=")


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
