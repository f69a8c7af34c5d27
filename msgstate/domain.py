"""The ``Message`` aggregate: one chat message's send history, as events.

Each command method checks its guards against :data:`msgstate.status.TRANSITIONS`
and either triggers exactly one event or, when the command repeats something
already recorded, changes nothing. The aggregate knows nothing of storage; the
:class:`~msgstate.MessageService` loads and saves it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from msgstate.errors import (
    DeliveryConflict,
    ErrorCode,
    InvalidArgument,
    ResendRefused,
    SendNotOverdue,
    StaleAttempt,
)
from msgstate.ids import MESSAGE_NAMESPACE
from msgstate.keys import uuid5_stream_id
from msgstate.status import MessageStatus, target_status

if TYPE_CHECKING:
    from msgstate.policy import ResendPolicy

__all__ = ["MESSAGE_NAMESPACE", "Message"]


class Message(Aggregate):
    """One chat message and everything that happened to its sends."""

    class Created(Aggregate.Created):
        """The message was created and its first send started (attempt 1)."""

        msg_id: str
        sender: str
        user_id: str | None
        group_id: str | None
        elem_type: int
        priority: int
        online_user_only: bool
        need_read_receipt: bool
        cloud_custom_data: str
        content: str  # canonical JSON text, so no transcoder ever reinterprets it
        at: datetime

    class CreatedSealed(Created):
        """As ``Created``, in a forgettable store: the personal fields are sealed.

        ``sender``, ``user_id``, ``group_id``, ``cloud_custom_data`` and ``content``
        hold placeholders; their values are in ``sealed``, encrypted with the
        message's data key (see :mod:`msgstate.keys`).
        """

        sealed: str

        def apply(self, aggregate: Any) -> None:
            aggregate.sealed = self.sealed

    class SendFailed(Aggregate.Event):
        """The transport reported that send ``attempt`` failed with ``code``."""

        attempt: int
        code: int
        desc: str
        retry_after: float | None
        at: datetime

    class ResendRequested(Aggregate.Event):
        """A resend was accepted; it becomes send number ``attempt``."""

        attempt: int
        request_id: str
        actor: str | None
        online_user_only: bool
        at: datetime

    class Delivered(Aggregate.Event):
        """The server acknowledged send ``attempt`` and assigned ``seq``."""

        attempt: int
        seq: str
        server_time: datetime
        at: datetime

    class Forgotten(Aggregate.Event):
        """The message's data key was destroyed: its personal fields are gone.

        Changes no status; ``attempt`` is the attempt current when it happened.
        """

        attempt: int
        actor: str
        reason: str
        at: datetime

    # Defaults for snapshots and histories from before these attributes existed.
    sealed: str | None = None
    forgotten_at: datetime | None = None
    forgotten_by: str | None = None

    @staticmethod
    def create_id(msg_id: str) -> UUID:
        """The aggregate id of ``msg_id``: ``uuid5(MESSAGE_NAMESPACE, msg_id)``.

        The scheme of every store without a cipher key; the service maps ids
        through :meth:`MessageService.stream_id`, which knows the store's scheme.
        """
        return uuid5_stream_id(msg_id)

    def __deepcopy__(self, memo: dict[int, Any]) -> Message:
        """A cheap deep copy: every field is immutable but these three lists.

        eventsourcing copies cached aggregates before each command; the generic
        ``copy.deepcopy`` walk costs more than the command itself.
        """
        return self._copy()

    def _copy(self) -> Message:
        """A copy sharing no mutable state with this message (see ``__deepcopy__``)."""
        clone = object.__new__(type(self))
        state = dict(self.__dict__)
        state["failure_codes"] = list(self.failure_codes)
        state["request_ids"] = list(self.request_ids)
        state["_pending_events"] = list(self._pending_events)
        clone.__dict__.update(state)
        return clone

    @event(Created)
    def __init__(
        self,
        msg_id: str,
        sender: str,
        user_id: str | None,
        group_id: str | None,
        elem_type: int,
        priority: int,
        online_user_only: bool,
        need_read_receipt: bool,
        cloud_custom_data: str,
        content: str,
        at: datetime,
    ) -> None:
        self.msg_id = msg_id
        self.sender = sender
        self.user_id = user_id
        self.group_id = group_id
        self.elem_type = elem_type
        self.priority = priority
        self.created_online_user_only = online_user_only
        self.online_user_only = online_user_only
        self.need_read_receipt = need_read_receipt
        self.cloud_custom_data = cloud_custom_data
        self.content_json = content
        self.status_value = int(_next_status(None, "Created"))
        self.attempts = 1
        self.created_at = at
        self.updated_at = at
        self.last_error_code: int | None = None
        self.last_error_desc: str | None = None
        self.last_retry_after: float | None = None
        self.last_failed_at: datetime | None = None
        self.failure_codes: list[int] = []
        self.request_ids: list[str] = []
        self.seq: str | None = None
        self.server_time: datetime | None = None
        self.delivered_at: datetime | None = None

    @classmethod
    def create_keyed(
        cls, stream_id: UUID, msg_id: str, at: datetime, **fields: Any
    ) -> Message:
        """A new message in stream ``stream_id`` (a store with keyed stream ids)."""
        return cls._create(cls.Created, id=stream_id, msg_id=msg_id, at=at, **fields)

    @classmethod
    def create_sealed(
        cls, stream_id: UUID, msg_id: str, at: datetime, sealed: str, **fields: Any
    ) -> Message:
        """A new message whose personal fields are sealed (``fields``: placeholders).

        ``stream_id`` is given, not derived, because the store chooses the scheme.
        """
        return cls._create(
            cls.CreatedSealed,
            id=stream_id,
            msg_id=msg_id,
            at=at,
            sealed=sealed,
            **fields,
        )

    @property
    def stream_id(self) -> UUID:
        """The id of this message's event stream (the aggregate id)."""
        return self.id

    @property
    def status(self) -> MessageStatus:
        """The current status (stored as a plain int, so snapshots round-trip)."""
        return MessageStatus(self.status_value)

    @property
    def content(self) -> dict[str, Any]:
        """The message body as a fresh dict (decoded from its stored JSON)."""
        value: dict[str, Any] = json.loads(self.content_json)
        return value

    def same_creation(self, **fields: Any) -> bool:
        """Whether ``fields`` (as given to ``create``) match this message's creation."""
        recorded = {
            "sender": self.sender,
            "user_id": self.user_id,
            "group_id": self.group_id,
            "elem_type": self.elem_type,
            "priority": self.priority,
            "online_user_only": self.created_online_user_only,
            "need_read_receipt": self.need_read_receipt,
            "cloud_custom_data": self.cloud_custom_data,
            "content": self.content_json,
        }
        return all(recorded[name] == value for name, value in fields.items())

    # -- commands --

    def record_failure(
        self,
        *,
        code: int,
        desc: str,
        attempt: int | None,
        retry_after: float | None,
        at: datetime,
    ) -> None:
        """Record that a send failed; a stale or repeated report changes nothing."""
        attempt = self._check_attempt(attempt)
        if attempt < self.attempts or self.status is not MessageStatus.SENDING:
            return  # an older attempt, a repeat, or after delivery: nothing new
        self._send_failed(
            attempt=attempt, code=code, desc=desc, retry_after=retry_after, at=at
        )

    def request_resend(
        self,
        *,
        policy: ResendPolicy,
        now: datetime,
        request_id: str,
        actor: str | None,
        online_user_only: bool | None,
        expected_attempt: int | None = None,
    ) -> None:
        """Start send number ``attempts + 1`` if ``policy`` allows it now.

        A ``request_id`` already accepted for this message changes nothing. With
        ``expected_attempt``, a message whose current attempt is another one is
        refused (:class:`StaleAttempt`) before the policy is asked.
        """
        if request_id in self.request_ids:
            return
        if expected_attempt is not None and expected_attempt != self.attempts:
            msg = (
                f"message {self.msg_id!r} is at attempt {self.attempts} "
                f"({self.status.name}), not {expected_attempt}: the caller's view "
                "is stale (another sender moved it on); reread it before claiming"
            )
            raise StaleAttempt(msg)
        # Judge the resend by the option it will be sent with.
        facts: Any = self
        if online_user_only is not None:
            facts = _Resent(self, online_user_only)
        decision = policy.decide(facts, now)
        if not decision.allowed:
            raise ResendRefused(decision.desc, decision.code)
        _next_status(self.status, "ResendRequested")
        self._resend_requested(
            attempt=self.attempts + 1,
            request_id=request_id,
            actor=actor,
            online_user_only=(
                self.online_user_only if online_user_only is None else online_user_only
            ),
            at=now,
        )

    def expire_send(
        self,
        *,
        attempt: int,
        send_timeout: timedelta,
        actor: str | None,
        at: datetime,
    ) -> None:
        """Record that send ``attempt`` stayed ``SENDING`` past ``send_timeout``.

        Recorded as a failure with the msgstate-local code ``SEND_TIMED_OUT``
        (``AMBIGUOUS``: the message may have left). An attempt that is not the
        current one, or that is no longer ``SENDING`` (it failed, was delivered
        or was already expired), changes nothing. The current send, still in
        flight for less than ``send_timeout``, is refused (:class:`SendNotOverdue`).
        """
        attempt = self._check_attempt(attempt)
        if attempt < self.attempts or self.status is not MessageStatus.SENDING:
            return
        started = self.updated_at  # the last event of a SENDING message started it
        running = at - started
        if running < send_timeout:
            msg = (
                f"send {attempt} of message {self.msg_id!r} started "
                f"{running.total_seconds():.3f} s ago; it can be expired after "
                f"send_timeout ({send_timeout.total_seconds():g} s)"
            )
            raise SendNotOverdue(msg)
        who = "" if actor is None else f"; expired by {actor}"
        self._send_failed(
            attempt=attempt,
            code=int(ErrorCode.SEND_TIMED_OUT),
            desc=(
                f"send {attempt} stayed SENDING for {running.total_seconds():.3f} s, "
                f"past send_timeout ({send_timeout.total_seconds():g} s){who}"
            )[:1000],
            retry_after=None,
            at=at,
        )

    def record_delivery(
        self,
        *,
        seq: str,
        server_time: datetime,
        attempt: int | None,
        at: datetime,
    ) -> None:
        """Record the server's acknowledgement (possibly late, for an older attempt)."""
        attempt = self._check_attempt(attempt)
        if self.status is MessageStatus.SEND_SUCC:
            if seq == self.seq:
                return
            msg = (
                f"message {self.msg_id!r} was already delivered with seq "
                f"{self.seq!r}; a second delivery with seq {seq!r} is refused"
            )
            raise DeliveryConflict(msg)
        _next_status(self.status, "Delivered")
        self._delivered(attempt=attempt, seq=seq, server_time=server_time, at=at)

    def forget(self, *, actor: str, reason: str, at: datetime) -> None:
        """Record that the message's personal fields were destroyed (once)."""
        if self.forgotten_at is not None:
            return
        _next_status(self.status, "Forgotten")
        self._forgotten(attempt=self.attempts, actor=actor, reason=reason, at=at)

    # -- events --

    @event(Forgotten)
    def _forgotten(self, attempt: int, actor: str, reason: str, at: datetime) -> None:
        self.status_value = int(_next_status(self.status, "Forgotten"))
        self.forgotten_at = at
        self.forgotten_by = actor
        self.sealed = None  # later snapshots don't even keep the ciphertext

    @event(SendFailed)
    def _send_failed(
        self,
        attempt: int,
        code: int,
        desc: str,
        retry_after: float | None,
        at: datetime,
    ) -> None:
        self.status_value = int(_next_status(self.status, "SendFailed"))
        self.last_error_code = code
        self.last_error_desc = desc
        self.last_retry_after = retry_after
        self.last_failed_at = at
        self.failure_codes.append(code)
        self.updated_at = at

    @event(ResendRequested)
    def _resend_requested(
        self,
        attempt: int,
        request_id: str,
        actor: str | None,
        online_user_only: bool,
        at: datetime,
    ) -> None:
        self.status_value = int(_next_status(self.status, "ResendRequested"))
        self.attempts = attempt
        self.request_ids.append(request_id)
        self.online_user_only = online_user_only
        self.updated_at = at

    @event(Delivered)
    def _delivered(
        self, attempt: int, seq: str, server_time: datetime, at: datetime
    ) -> None:
        self.status_value = int(_next_status(self.status, "Delivered"))
        self.seq = seq
        self.server_time = server_time
        self.delivered_at = at
        self.updated_at = at

    # -- guards --

    def _check_attempt(self, attempt: int | None) -> int:
        if attempt is None:
            return self.attempts
        if attempt > self.attempts:
            msg = (
                f"attempt {attempt} of message {self.msg_id!r} has not started; "
                f"the current attempt is {self.attempts}"
            )
            raise InvalidArgument(msg)
        return attempt


class _Resent:
    """A message's facts for the policy, with the resend's ``online_user_only``."""

    def __init__(self, message: Message, online_user_only: bool) -> None:
        self._message = message
        self.online_user_only = online_user_only

    def __getattr__(self, name: str) -> Any:
        return getattr(self._message, name)


def _next_status(source: MessageStatus | None, event_name: str) -> MessageStatus:
    """The table's target for ``event_name`` from ``source``, or a refusal."""
    target = target_status(source, event_name)
    if target is None:
        where = "before creation" if source is None else f"in {source.name}"
        code = (
            ErrorCode.ALREADY_DELIVERED
            if source is MessageStatus.SEND_SUCC
            else ErrorCode.SEND_IN_PROGRESS
            if source is MessageStatus.SENDING
            else ErrorCode.NOT_RETRYABLE
        )
        raise ResendRefused(f"can't apply {event_name} {where}", code)
    return target
