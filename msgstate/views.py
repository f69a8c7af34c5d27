"""Frozen snapshots of a message, as the service answers queries.

A :class:`MessageView` is everything a backend needs to show or decide about one
message at one version. Fields that depend on the resend policy
(``last_error_class``, ``maybe_delivered``, ``next_retry_at``) are computed from
the recorded history with the policy in force, never stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from attrs import field, frozen

from msgstate.codes import RetryClass
from msgstate.status import MessageStatus

if TYPE_CHECKING:
    from msgstate.domain import Message
    from msgstate.policy import ResendPolicy

__all__ = ["HistoryEntry", "MessageView", "view_of"]


@frozen
class MessageView:
    """A message as it is (or was) at one version."""

    msg_id: str
    sender: str
    user_id: str | None
    group_id: str | None
    elem_type: int
    priority: int
    online_user_only: bool
    """The option in force: the creation's, or the last resend's if it changed it."""
    need_read_receipt: bool
    cloud_custom_data: str
    content: dict[str, Any]
    status: MessageStatus
    attempts: int
    """Sends started so far, the first included."""
    last_error_code: int | None
    last_error_desc: str | None
    last_error_class: RetryClass | None
    last_retry_after: float | None
    last_failed_at: datetime | None
    maybe_delivered: bool
    """True while undelivered if any recorded failure was AMBIGUOUS (ack timeout)."""
    seq: str | None
    server_time: datetime | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    next_retry_at: datetime | None
    """When the backoff after the last failure ends (``None`` unless SEND_FAIL)."""
    version: int
    request_id: str | None = None
    """The ``request_id`` of the resend that started the current attempt (``None``
    for attempt 1), so a caller can tell its own claim from another's."""
    forgotten: bool = False
    """True once :meth:`~msgstate.MessageService.forget` destroyed the personal
    fields; they then show the ``msgstate.keys.FORGOTTEN`` markers."""
    stream_id: UUID | None = field(default=None, eq=False, repr=False)
    """The message's stream id, which keys the backoff jitter (``None``: a view
    made by hand; the jitter is then keyed by ``uuid5`` of ``msg_id``). Not
    compared or shown in the repr: it follows from ``msg_id`` and the store."""


@frozen
class HistoryEntry:
    """One recorded event, for audit trails and timelines."""

    version: int
    event: str
    """The event class name: Created, SendFailed, ResendRequested, Delivered or
    Forgotten (a sealed creation is shown as Created)."""
    recorded_at: datetime
    """Domain time from the service's clock when the event was recorded."""
    attempt: int
    data: dict[str, Any]
    """The event's own fields (``content`` decoded to a mapping)."""


def view_of(message: Message, policy: ResendPolicy) -> MessageView:
    """The view of ``message`` with ``policy``'s classification and backoff."""
    status = message.status
    code = message.last_error_code
    failed = status is MessageStatus.SEND_FAIL
    next_retry_at = None
    if failed and message.last_failed_at is not None:
        next_retry_at = policy.next_retry_at(
            failed_at=message.last_failed_at,
            attempt=message.attempts,
            msg_id=message.msg_id,
            retry_after=message.last_retry_after,
            stream_id=message.id,
        )
    return MessageView(
        msg_id=message.msg_id,
        sender=message.sender,
        user_id=message.user_id,
        group_id=message.group_id,
        elem_type=message.elem_type,
        priority=message.priority,
        online_user_only=message.online_user_only,
        need_read_receipt=message.need_read_receipt,
        cloud_custom_data=message.cloud_custom_data,
        content=message.content,
        status=status,
        attempts=message.attempts,
        last_error_code=code,
        last_error_desc=message.last_error_desc,
        last_error_class=None if code is None else policy.classify(code),
        last_retry_after=message.last_retry_after,
        last_failed_at=message.last_failed_at,
        maybe_delivered=status is not MessageStatus.SEND_SUCC
        and any(
            policy.classify(c) is RetryClass.AMBIGUOUS for c in message.failure_codes
        ),
        seq=message.seq,
        server_time=message.server_time,
        created_at=message.created_at,
        updated_at=message.updated_at,
        delivered_at=message.delivered_at,
        next_retry_at=next_retry_at,
        version=message.version,
        request_id=message.request_ids[-1] if message.request_ids else None,
        stream_id=message.id,
    )
