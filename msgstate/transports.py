"""How a message leaves the backend: the transport protocols and their answers.

A transport is whatever actually sends a message (Tencent's REST API, an SDK
bridge, a test double). msgstate never sends by itself: the facade
(:class:`~msgstate.tencent.V2TIMMessageManager`) and the resend worker call a
transport and record what it answers.

- :class:`Sent`: the server accepted the message (its ``seq`` and time).
- :class:`SendError`: the server (or SDK) refused it with a vendor code.
- A transport that *raises* is an unknown outcome: the message may or may not have
  left. Callers record it as a failure with the msgstate-local code
  :attr:`~msgstate.ErrorCode.TRANSPORT_FAILED` (retry class ``AMBIGUOUS``), so it is
  never left ``SENDING``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from attrs import field, frozen

from msgstate.errors import InvalidArgument

if TYPE_CHECKING:
    from msgstate.views import MessageView

__all__ = [
    "AsyncTransport",
    "SendError",
    "Sent",
    "SimulatedTransport",
    "Transport",
]


def _check_retry_after(_: object, __: object, value: float | None) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgument(
            f"retry_after must be a finite number of seconds >= 0 or None, "
            f"got {value!r}"
        )


def _check_seq(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"seq must be a non-empty string, got {value!r}")


def _check_code(_: object, __: object, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value == 0:
        raise InvalidArgument(f"code must be a non-zero int, got {value!r}")


@frozen
class Sent:
    """The transport's answer when the server accepted the message."""

    seq: str = field(validator=_check_seq)
    """The server's sequence number for the message."""
    server_time: datetime | None = None
    """When the server accepted it, if the transport knows."""


@frozen
class SendError:
    """The transport's answer when the send failed with a vendor error code."""

    code: int = field(validator=_check_code)
    """The vendor (Tencent IM) error code."""
    desc: str = ""
    """The vendor's error text."""
    retry_after: float | None = field(default=None, validator=_check_retry_after)
    """Seconds the server asks the sender to wait, if it said."""


@runtime_checkable
class Transport(Protocol):
    """Sends one message and answers what happened. May raise: an unknown outcome."""

    def send(self, message: MessageView) -> Sent | SendError:
        """Send ``message`` (its current attempt) and answer the outcome."""
        ...


@runtime_checkable
class AsyncTransport(Protocol):
    """:class:`Transport` for asyncio: the same answers from a coroutine."""

    async def send(self, message: MessageView) -> Sent | SendError:
        """Send ``message`` (its current attempt) and answer the outcome."""
        ...


_FAILURES: tuple[tuple[int, str], ...] = (
    (6012, "request timeout"),
    (9508, "network disconnected"),
    (60018, "request rate limited"),
    (9520, "send timed out waiting for the server's ack"),
    (20004, "server internal error"),
)
"""The failure codes the simulated transport answers (all catalogued)."""


class SimulatedTransport:
    """A flaky transport for demos, tests and benchmarks; deterministic for a seed.

    Each ``(msg_id, attempt)`` fails with probability ``failure_rate``; whether it
    fails and with which code is a pure function of ``(seed, msg_id, attempt)``,
    so two runs with the same seed answer the same, in any order and in any
    process. ``latency`` seconds are slept (sync) or awaited (async) per send.
    It is a :class:`Transport`; :meth:`as_async` gives the same answers as an
    :class:`AsyncTransport`.
    """

    def __init__(
        self, *, seed: int = 0, failure_rate: float = 0.2, latency: float = 0.0
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidArgument(f"seed must be an int, got {seed!r}")
        if (
            isinstance(failure_rate, bool)
            or not isinstance(failure_rate, int | float)
            or not 0 <= failure_rate <= 1
        ):
            raise InvalidArgument(
                f"failure_rate must be a number from 0 to 1, got {failure_rate!r}"
            )
        if (
            isinstance(latency, bool)
            or not isinstance(latency, int | float)
            or not math.isfinite(latency)
            or latency < 0
        ):
            raise InvalidArgument(
                f"latency must be a finite number of seconds >= 0, got {latency!r}"
            )
        self.seed = seed
        self.failure_rate = float(failure_rate)
        self.latency = float(latency)

    def __repr__(self) -> str:
        return (
            f"SimulatedTransport(seed={self.seed}, failure_rate={self.failure_rate}, "
            f"latency={self.latency})"
        )

    def outcome(self, msg_id: str, attempt: int) -> Sent | SendError:
        """The answer for send ``attempt`` of ``msg_id``: a pure function, no sleep."""
        digest = hashlib.blake2b(
            f"{self.seed}:{attempt}:{msg_id}".encode("utf-8", "surrogatepass"),
            digest_size=16,
            person=b"msgstate.sim.tx",
        ).digest()
        u_fail = int.from_bytes(digest[:8], "big") / 2**64
        pick = int.from_bytes(digest[8:], "big")
        if u_fail >= self.failure_rate:
            return Sent(seq=f"sim-{digest[8:].hex()}")
        code, desc = _FAILURES[pick % len(_FAILURES)]
        retry_after = 1.0 + (pick % 4000) / 1000 if code == 60018 else None
        return SendError(code=code, desc=desc, retry_after=retry_after)

    def send(self, message: MessageView) -> Sent | SendError:
        """Answer :meth:`outcome` for the message's current attempt, after latency."""
        if self.latency:
            time.sleep(self.latency)
        return self.outcome(message.msg_id, message.attempts)

    def as_async(self) -> _AsyncSimulated:
        """The same transport as an :class:`AsyncTransport` (latency awaited)."""
        return _AsyncSimulated(self)


class _AsyncSimulated:
    def __init__(self, inner: SimulatedTransport) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"{self.inner!r}.as_async()"

    async def send(self, message: MessageView) -> Sent | SendError:
        if self.inner.latency:
            await asyncio.sleep(self.inner.latency)
        return self.inner.outcome(message.msg_id, message.attempts)
