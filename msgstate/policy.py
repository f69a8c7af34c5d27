"""The resend policy: may this message be resent now, and from when?

Pure functions of ``(view, now)``: no I/O, no clock of its own, no randomness that
a replay could not reproduce. Jitter is derived from ``(msg_id, attempt)`` with a
stable hash, so the same history gives the same decisions in any process.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID, uuid5

from attrs import field, fields, frozen

from msgstate.codes import RetryClass, lookup
from msgstate.errors import ErrorCode, InvalidArgument
from msgstate.ids import MESSAGE_NAMESPACE
from msgstate.status import MessageStatus

__all__ = ["Decision", "ResendFacts", "ResendPolicy", "jitter_unit"]


class ResendFacts(Protocol):
    """What :meth:`ResendPolicy.decide` reads of a message.

    A :class:`~msgstate.MessageView` has all of it; so does anything else with
    these attributes (the ``Message`` aggregate decides on itself, so a resend
    needs no view).
    """

    @property
    def msg_id(self) -> str: ...
    @property
    def status(self) -> MessageStatus: ...
    @property
    def seq(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def last_error_code(self) -> int | None: ...
    @property
    def last_failed_at(self) -> datetime | None: ...
    @property
    def last_retry_after(self) -> float | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def online_user_only(self) -> bool: ...
    @property
    def stream_id(self) -> UUID | None: ...


@frozen
class Decision:
    """The policy's answer: ``allowed``, or a refusal ``code`` with ``desc``.

    ``not_before`` is when the backoff ends (``None`` when no failure is recorded
    or the refusal is final).
    """

    allowed: bool
    code: ErrorCode
    desc: str
    not_before: datetime | None = None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgument(message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_interval(value: object) -> bool:
    return isinstance(value, timedelta) and value > timedelta(0)


def _is_finite(value: int | float) -> bool:
    """``math.isfinite`` without its OverflowError for ints beyond any float."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


MAX_INTERVAL = timedelta(days=36_525)
"""The longest ``maximum_interval``: 100 years. With jitter the wait is at most
twice that, so ``next_retry_at`` stays a representable datetime."""


@frozen
class ResendPolicy:
    """When a failed message may be resent.

    ``max_attempts`` counts every send, the first included (as Temporal and gRPC
    count): ``max_attempts=1`` never resends. The wait after attempt *n* fails is
    ``initial_interval * backoff_coefficient ** (n - 1)``, capped at
    ``maximum_interval``, times a jitter factor in ``[1 - jitter, 1 + jitter]``;
    a server's ``retry_after`` can raise that wait, never lower it. The wait is
    only enforced (``TOO_EARLY``) with ``enforce_backoff=True``; otherwise it is
    advice, published as ``next_retry_at``. ``send_timeout`` is how long a send
    may stay ``SENDING`` before it counts as stuck (see
    :meth:`~msgstate.MessageService.expire_send`).
    """

    max_attempts: int = 5
    initial_interval: timedelta = field(factory=lambda: timedelta(seconds=1))
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta = field(factory=lambda: timedelta(seconds=60))
    jitter: float = 0.0
    enforce_backoff: bool = False
    max_age: timedelta | None = None
    online_only_max_age: timedelta | None = None
    unknown_code_class: RetryClass = RetryClass.TRANSIENT
    resend_ambiguous: bool = True
    send_timeout: timedelta = field(factory=lambda: timedelta(seconds=60))
    """How long a send may stay ``SENDING`` before it counts as stuck (its sender
    presumably died): :meth:`~msgstate.MessageService.stuck_sends` lists it and
    :meth:`~msgstate.MessageService.expire_send` may fail it."""

    def __attrs_post_init__(self) -> None:
        _require(
            _is_int(self.max_attempts) and self.max_attempts >= 1,
            f"max_attempts must be an int >= 1, got {self.max_attempts!r}",
        )
        _require(
            _is_positive_interval(self.initial_interval),
            f"initial_interval must be a timedelta > 0, got {self.initial_interval!r}",
        )
        _require(
            _is_positive_interval(self.maximum_interval)
            and self.initial_interval <= self.maximum_interval <= MAX_INTERVAL,
            "maximum_interval must be a timedelta >= initial_interval and at most "
            f"{MAX_INTERVAL.days} days, got {self.maximum_interval!r}",
        )
        _require(
            isinstance(self.backoff_coefficient, int | float)
            and not isinstance(self.backoff_coefficient, bool)
            and _is_finite(self.backoff_coefficient)
            and self.backoff_coefficient >= 1,
            "backoff_coefficient must be a finite number >= 1, "
            f"got {self.backoff_coefficient!r}",
        )
        _require(
            isinstance(self.jitter, int | float)
            and not isinstance(self.jitter, bool)
            and 0 <= self.jitter <= 1,
            f"jitter must be a number in [0, 1], got {self.jitter!r}",
        )
        for name in ("max_age", "online_only_max_age"):
            value = getattr(self, name)
            _require(
                value is None or _is_positive_interval(value),
                f"{name} must be None or a timedelta > 0, got {value!r}",
            )
        _require(
            isinstance(self.unknown_code_class, RetryClass),
            f"unknown_code_class must be a RetryClass, got {self.unknown_code_class!r}",
        )
        _require(
            _is_positive_interval(self.send_timeout)
            and self.send_timeout <= MAX_INTERVAL,
            f"send_timeout must be a timedelta > 0 and at most {MAX_INTERVAL.days} "
            f"days, got {self.send_timeout!r}",
        )
        for name in ("enforce_backoff", "resend_ambiguous"):
            value = getattr(self, name)
            _require(isinstance(value, bool), f"{name} must be a bool, got {value!r}")

    # -- plain data --

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data (JSON- and, without the ``None`` values, TOML-able).

        Intervals are seconds as floats (``None`` stays ``None``), the retry class
        is its name; every other setting is copied. :meth:`from_dict` reads it back.
        """
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval.total_seconds(),
            "backoff_coefficient": self.backoff_coefficient,
            "maximum_interval": self.maximum_interval.total_seconds(),
            "jitter": self.jitter,
            "enforce_backoff": self.enforce_backoff,
            "max_age": _seconds_of(self.max_age),
            "online_only_max_age": _seconds_of(self.online_only_max_age),
            "unknown_code_class": self.unknown_code_class.name,
            "resend_ambiguous": self.resend_ambiguous,
            "send_timeout": self.send_timeout.total_seconds(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResendPolicy:
        """The policy described by ``data``, as :meth:`to_dict` writes it.

        Missing keys keep their defaults; intervals are seconds (int or float, or
        ``None`` for ``max_age`` and ``online_only_max_age``), ``unknown_code_class``
        is a :class:`RetryClass` name. An unknown key or a bad value raises
        :class:`InvalidArgument` naming the key.
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument(
                f"a policy must be a mapping of settings, got {type(data).__name__}"
            )
        known = [f.name for f in fields(cls)]
        settings: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise InvalidArgument(
                    f"unknown policy key {key!r} (known: {', '.join(known)})"
                )
            if key in ("initial_interval", "maximum_interval", "send_timeout"):
                settings[key] = _interval(key, value, optional=False)
            elif key in ("max_age", "online_only_max_age"):
                settings[key] = _interval(key, value, optional=True)
            elif key == "unknown_code_class":
                settings[key] = _retry_class(key, value)
            else:
                settings[key] = value  # checked (and named) by __attrs_post_init__
        return cls(**settings)

    # -- pure computations --

    def classify(self, code: int) -> RetryClass:
        """The retry class of a transport error code (catalog, else the default)."""
        info = lookup(code)
        return self.unknown_code_class if info is None else info.retry_class

    def base_delay(self, attempt: int) -> float:
        """Seconds of backoff after send ``attempt`` failed, before jitter."""
        initial = self.initial_interval.total_seconds()
        cap = self.maximum_interval.total_seconds()
        exponent = max(attempt - 1, 0)
        # Compare in log space: coefficient ** exponent can overflow a float.
        if exponent * math.log(self.backoff_coefficient) >= math.log(cap / initial):
            return cap
        return min(initial * self.backoff_coefficient**exponent, cap)

    def delay(
        self, attempt: int, msg_id: str, stream_id: UUID | None = None
    ) -> timedelta:
        """The backoff after send ``attempt`` (1-based) of ``msg_id`` failed.

        The jitter is keyed by the message's ``stream_id`` (default:
        ``uuid5(MESSAGE_NAMESPACE, msg_id)``, the stream id in stores without
        keyed ids), as the read models key it.
        """
        base = self.base_delay(attempt)
        if self.jitter:
            key = uuid5(MESSAGE_NAMESPACE, msg_id) if stream_id is None else stream_id
            unit = jitter_unit(key, attempt)
            base *= 1 + self.jitter * (2 * unit - 1)
        return timedelta(seconds=base)

    def next_retry_at(
        self,
        *,
        failed_at: datetime,
        attempt: int,
        msg_id: str,
        retry_after: float | None,
        stream_id: UUID | None = None,
    ) -> datetime:
        """When a resend stops being early after ``attempt`` failed at ``failed_at``.

        ``stream_id`` keys the jitter (see :meth:`delay`).
        """
        wait = self.delay(attempt, msg_id, stream_id)
        if retry_after is not None:
            wait = max(wait, timedelta(seconds=retry_after))
        return failed_at + wait

    def decide(self, view: ResendFacts, now: datetime) -> Decision:
        """May ``view``'s message be resent at ``now``? Never raises, never writes.

        ``view`` is a :class:`~msgstate.MessageView`, or anything with the
        attributes of :class:`ResendFacts`.
        """
        status = view.status
        if status is MessageStatus.SEND_SUCC:
            return _refuse(
                ErrorCode.ALREADY_DELIVERED,
                f"message {view.msg_id!r} was delivered (seq {view.seq!r}); "
                "it is never resent",
            )
        if status is MessageStatus.SENDING:
            return _refuse(
                ErrorCode.SEND_IN_PROGRESS,
                f"send {view.attempts} of message {view.msg_id!r} is in flight; "
                "record its failure before asking for a resend",
            )
        if status is not MessageStatus.SEND_FAIL or view.last_error_code is None:
            return _refuse(
                ErrorCode.NOT_RETRYABLE,
                f"message {view.msg_id!r} is {status.name}; only SEND_FAIL is resent",
            )
        code = view.last_error_code
        retry_class = self.classify(code)
        if retry_class is RetryClass.PERMANENT:
            return _refuse(
                ErrorCode.NOT_RETRYABLE,
                f"error {code} of message {view.msg_id!r} is permanent; "
                "resending the same message cannot succeed",
            )
        if retry_class is RetryClass.AMBIGUOUS and not self.resend_ambiguous:
            return _refuse(
                ErrorCode.NOT_RETRYABLE,
                f"error {code} of message {view.msg_id!r} is an ack timeout: it may "
                "have been delivered, and this policy does not resend those",
            )
        if view.attempts >= self.max_attempts:
            return _refuse(
                ErrorCode.ATTEMPTS_EXHAUSTED,
                f"message {view.msg_id!r} was sent {view.attempts} times; "
                f"the policy allows at most {self.max_attempts}",
            )
        age = now - view.created_at
        if self.max_age is not None and age > self.max_age:
            return _refuse(
                ErrorCode.EXPIRED,
                f"message {view.msg_id!r} is {age} old; the policy resends "
                f"messages up to {self.max_age} old",
            )
        if (
            view.online_user_only
            and self.online_only_max_age is not None
            and age > self.online_only_max_age
        ):
            return _refuse(
                ErrorCode.EXPIRED,
                f"online-only message {view.msg_id!r} is {age} old; the policy "
                f"resends online-only messages up to {self.online_only_max_age} old",
            )
        not_before = (
            None
            if view.last_failed_at is None
            else self.next_retry_at(
                failed_at=view.last_failed_at,
                attempt=view.attempts,
                msg_id=view.msg_id,
                retry_after=view.last_retry_after,
                stream_id=view.stream_id,
            )
        )
        if self.enforce_backoff and not_before is not None and now < not_before:
            return Decision(
                allowed=False,
                code=ErrorCode.TOO_EARLY,
                desc=f"message {view.msg_id!r} may be resent from "
                f"{not_before.isoformat()}, {not_before - now} from now",
                not_before=not_before,
            )
        return Decision(
            allowed=True,
            code=ErrorCode.OK,
            desc="resend allowed",
            not_before=not_before,
        )


def _seconds_of(interval: timedelta | None) -> float | None:
    return None if interval is None else interval.total_seconds()


def _interval(key: str, value: object, *, optional: bool) -> timedelta | None:
    """``value`` seconds as a timedelta > 0 (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    what = "a number of seconds > 0" + (" or None" if optional else "")
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not _is_finite(value)
        or value <= 0
    ):
        raise InvalidArgument(f"policy key {key!r} must be {what}, got {value!r}")
    try:
        interval = timedelta(seconds=value)
    except OverflowError:
        raise InvalidArgument(
            f"policy key {key!r} is {value!r} seconds; at most "
            f"{MAX_INTERVAL.total_seconds():.0f}"
        ) from None
    if interval <= timedelta(0):
        raise InvalidArgument(
            f"policy key {key!r} must be at least one microsecond, got {value!r}"
        )
    return interval


def _retry_class(key: str, value: object) -> RetryClass:
    """A :class:`RetryClass` from its name."""
    if isinstance(value, RetryClass):
        return value
    if isinstance(value, str) and value in RetryClass.__members__:
        return RetryClass[value]
    names = ", ".join(RetryClass.__members__)
    raise InvalidArgument(f"policy key {key!r} must be one of {names}, got {value!r}")


def _refuse(code: ErrorCode, desc: str) -> Decision:
    return Decision(allowed=False, code=code, desc=desc)


def jitter_unit(message_uuid: UUID, attempt: int) -> float:
    """A number in [0, 1) fixed by (message, attempt) in every process.

    Keyed by the message's stream id (``uuid5`` of its ``msg_id``), so read models
    can compute it from any event without knowing the message id.
    """
    digest = hashlib.blake2b(
        message_uuid.bytes + attempt.to_bytes(8, "big", signed=True), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") / 2**64
