"""Message statuses and the one table of legal status changes.

:class:`MessageStatus` carries Tencent Cloud IM's ``V2TIMMessageStatus`` values, so a
status read from msgstate can be handed to a V2TIM client unchanged.

:data:`TRANSITIONS` is the single source of truth for which event may move a message
from which status to which: the :class:`~msgstate.Message` aggregate's guards, the
diagrams (:func:`to_mermaid`, :func:`to_dot`) and the documentation all read it.
"""

from __future__ import annotations

from enum import IntEnum

from attrs import frozen

__all__ = [
    "TRANSITIONS",
    "MessageStatus",
    "Transition",
    "target_status",
    "to_dot",
    "to_mermaid",
]


class MessageStatus(IntEnum):
    """A message's send status, with ``V2TIMMessageStatus`` values.

    msgstate itself moves messages only between :attr:`SENDING`, :attr:`SEND_FAIL`
    and :attr:`SEND_SUCC`; the other three values exist so that a status coming from
    a V2TIM client can be represented.
    """

    def __repr__(self) -> str:
        # Valid Python, so hypothesis' failing examples and views print runnably.
        return f"{type(self).__name__}.{self.name}"

    SENDING = 1
    """A send (the first, or a resend) is in flight."""
    SEND_SUCC = 2
    """The server acknowledged the message. Terminal for sending."""
    SEND_FAIL = 3
    """The last send failed; a resend may be allowed by the policy."""
    HAS_DELETED = 4
    """Deleted locally (V2TIM only; msgstate never moves a message here)."""
    LOCAL_IMPORTED = 5
    """Imported locally (V2TIM only; msgstate never moves a message here)."""
    LOCAL_REVOKED = 6
    """Revoked locally (V2TIM only; msgstate never moves a message here)."""


@frozen
class Transition:
    """One legal status change: ``source --event--> target``.

    ``source`` is ``None`` for the event that creates the message.
    """

    source: MessageStatus | None
    event: str
    target: MessageStatus
    note: str = ""


TRANSITIONS: tuple[Transition, ...] = (
    Transition(None, "Created", MessageStatus.SENDING, "first attempt"),
    Transition(MessageStatus.SENDING, "SendFailed", MessageStatus.SEND_FAIL),
    Transition(MessageStatus.SENDING, "Delivered", MessageStatus.SEND_SUCC),
    Transition(
        MessageStatus.SEND_FAIL,
        "ResendRequested",
        MessageStatus.SENDING,
        "if the policy allows",
    ),
    Transition(
        MessageStatus.SEND_FAIL,
        "Delivered",
        MessageStatus.SEND_SUCC,
        "late acknowledgement",
    ),
    *(
        Transition(status, "Forgotten", status, "any status; changes none")
        for status in (
            MessageStatus.SENDING,
            MessageStatus.SEND_FAIL,
            MessageStatus.SEND_SUCC,
        )
    ),
)
"""Every legal status change. Anything not listed here is refused."""

_TABLE: dict[tuple[MessageStatus | None, str], MessageStatus] = {
    (t.source, t.event): t.target for t in TRANSITIONS
}


def target_status(source: MessageStatus | None, event: str) -> MessageStatus | None:
    """The status that ``event`` leads to from ``source``, or ``None`` if illegal."""
    return _TABLE.get((source, event))


def to_mermaid() -> str:
    """The transition table as a Mermaid ``stateDiagram-v2``."""
    lines = ["stateDiagram-v2"]
    for t in TRANSITIONS:
        source = "[*]" if t.source is None else t.source.name
        label = t.event if not t.note else f"{t.event} ({t.note})"
        lines.append(f"    {source} --> {t.target.name}: {label}")
    lines.append(f"    {MessageStatus.SEND_SUCC.name} --> [*]")
    return "\n".join(lines) + "\n"


def to_dot() -> str:
    """The transition table as a Graphviz DOT digraph."""
    lines = ["digraph msgstate {", "    rankdir=LR;", "    start [shape=point];"]
    for t in TRANSITIONS:
        source = "start" if t.source is None else t.source.name
        label = t.event if not t.note else f"{t.event}\\n({t.note})"
        lines.append(f'    {source} -> {t.target.name} [label="{label}"];')
    lines.append(f"    {MessageStatus.SEND_SUCC.name} [shape=doublecircle];")
    lines.append("}")
    return "\n".join(lines) + "\n"
