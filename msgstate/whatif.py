"""Policy what-if: replay recorded failure histories under another policy.

Nothing is written. For each message, every recorded ``ResendRequested`` is asked
again of the new policy, at the moment it was recorded and with the history before
it. Once the new policy refuses a recorded resend (for any reason but
``TOO_EARLY``), the rest of that message's history did not happen under it: that
resend and every later one count as refused, and the message was dead-lettered
earlier than recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from attrs import evolve, frozen

from msgstate.domain import Message
from msgstate.errors import ErrorCode
from msgstate.policy import ResendPolicy
from msgstate.status import MessageStatus
from msgstate.views import view_of

__all__ = ["MessageWhatIf", "WhatIfReport", "simulate"]


@frozen
class MessageWhatIf:
    """One message's replay under the new policy."""

    msg_id: str
    resends_recorded: int
    resends_allowed: int
    resends_refused: int
    resends_delayed: int
    first_refusal: ErrorCode | None
    """The code of the first recorded resend the new policy refuses (not TOO_EARLY)."""
    dead_earlier: bool
    dead_later: bool


@frozen
class WhatIfReport:
    """Totals over the replayed messages, and each message's result."""

    messages: int
    resends_recorded: int
    resends_allowed: int
    resends_refused: int
    resends_delayed: int
    dead_earlier: int
    """Messages whose replay the new policy cut short (dead-lettered sooner)."""
    dead_later: int
    """Messages recorded as dead that the new policy would still resend."""
    per_message: list[MessageWhatIf]


def _replay(
    events: Sequence[Any],
    new: ResendPolicy,
    recorded: ResendPolicy,
    now: datetime,
) -> MessageWhatIf:
    message: Message | None = None
    counts = {"recorded": 0, "allowed": 0, "refused": 0, "delayed": 0}
    first_refusal: ErrorCode | None = None
    for event in events:
        if isinstance(event, Message.ResendRequested) and message is not None:
            counts["recorded"] += 1
            if first_refusal is not None:
                counts["refused"] += 1
            else:
                view = evolve(
                    view_of(message, new), online_user_only=event.online_user_only
                )
                decision = new.decide(view, event.at)
                if decision.allowed:
                    counts["allowed"] += 1
                elif decision.code is ErrorCode.TOO_EARLY:
                    counts["delayed"] += 1
                else:
                    counts["refused"] += 1
                    first_refusal = decision.code
        message = event.mutate(message)
    if message is None:  # pragma: no cover - callers pass non-empty streams
        msg = "empty stream"
        raise ValueError(msg)
    dead_later = False
    if first_refusal is None and message.status is MessageStatus.SEND_FAIL:
        was = recorded.decide(view_of(message, recorded), now)
        would = new.decide(view_of(message, new), now)
        dead_under_recorded = not was.allowed and was.code is not ErrorCode.TOO_EARLY
        resendable_under_new = would.allowed or would.code is ErrorCode.TOO_EARLY
        dead_later = dead_under_recorded and resendable_under_new
    return MessageWhatIf(
        msg_id=message.msg_id,
        resends_recorded=counts["recorded"],
        resends_allowed=counts["allowed"],
        resends_refused=counts["refused"],
        resends_delayed=counts["delayed"],
        first_refusal=first_refusal,
        dead_earlier=first_refusal is not None,
        dead_later=dead_later,
    )


def simulate(
    streams: Iterable[Sequence[Any]],
    new: ResendPolicy,
    recorded: ResendPolicy,
    now: datetime,
) -> WhatIfReport:
    """Replay each stream (a message's events, in order) under ``new``."""
    results = [_replay(events, new, recorded, now) for events in streams if events]
    results.sort(key=lambda r: r.msg_id)
    return WhatIfReport(
        messages=len(results),
        resends_recorded=sum(r.resends_recorded for r in results),
        resends_allowed=sum(r.resends_allowed for r in results),
        resends_refused=sum(r.resends_refused for r in results),
        resends_delayed=sum(r.resends_delayed for r in results),
        dead_earlier=sum(r.dead_earlier for r in results),
        dead_later=sum(r.dead_later for r in results),
        per_message=results,
    )
