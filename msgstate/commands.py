"""Commands: each one's argument checks and the change it makes to a message.

One place for both callers: :class:`~msgstate.MessageService` applies a change to
one message and saves it; a :class:`~msgstate.Batch` applies many and saves them
together. Arguments are checked before anything is loaded (a bad call raises
:class:`~msgstate.InvalidArgument` and reads nothing); the change itself runs the
aggregate's guards, so a refusal raises before any event is triggered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import uuid4

from msgstate import _validate as check
from msgstate._elements import check_content
from msgstate.domain import Message
from msgstate.errors import DuplicateMessage, InvalidArgument
from msgstate.policy import ResendPolicy

__all__ = ["CREATE_ARGS", "Change", "Commands", "check_same_creation", "creation"]

Change = Callable[[Message], None]
"""What a command does to a loaded message: trigger one event, or nothing."""

CREATE_ARGS = frozenset(
    {
        "sender",
        "user_id",
        "group_id",
        "elem_type",
        "priority",
        "online_user_only",
        "need_read_receipt",
        "cloud_custom_data",
        "content",
    }
)
"""The keyword arguments of ``create`` (``sender`` required)."""

CREATE_DEFAULTS: Mapping[str, Any] = {
    "user_id": None,
    "group_id": None,
    "elem_type": 1,
    "priority": 0,
    "online_user_only": False,
    "need_read_receipt": False,
    "cloud_custom_data": "",
    "content": None,
}


def creation(msg_id: object, **given: Any) -> tuple[str, dict[str, Any]]:
    """Checked ``create`` arguments: the message id and the ``Created`` fields.

    ``given`` holds every name of :data:`CREATE_ARGS`; see :func:`create_args`
    for keyword arguments as a caller passed them.
    """
    fields: dict[str, Any] = {
        "sender": check.identifier("sender", given["sender"]),
        "user_id": check.optional_identifier("user_id", given["user_id"]),
        "group_id": check.optional_identifier("group_id", given["group_id"]),
        "elem_type": check.integer("elem_type", given["elem_type"], 0, 255),
        "priority": check.integer("priority", given["priority"], 0, 3),
        "online_user_only": check.flag("online_user_only", given["online_user_only"]),
        "need_read_receipt": check.flag(
            "need_read_receipt", given["need_read_receipt"]
        ),
        "cloud_custom_data": check.cloud_custom_data(given["cloud_custom_data"]),
        "content": check.content_json(given["content"]),
    }
    check_content(fields["elem_type"], given["content"])
    checked_id = check.identifier("msg_id", msg_id)
    if fields["user_id"] is None and fields["group_id"] is None:
        raise InvalidArgument("give user_id (C2C), group_id (group) or both")
    return checked_id, fields


def create_args(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``create``'s keyword arguments with the defaults filled in; unknown names,
    or no ``sender``, are an :class:`~msgstate.InvalidArgument`."""
    given = {**CREATE_DEFAULTS, **kwargs}
    if "sender" not in given or set(given) - CREATE_ARGS:
        raise InvalidArgument(
            f"create takes sender and {sorted(CREATE_ARGS - {'sender'})}, "
            f"got {sorted(kwargs)}"
        )
    return given


def check_same_creation(message: Message, fields: Mapping[str, Any]) -> None:
    """Refuse a second ``create`` of ``message`` with other fields."""
    if not message.same_creation(**fields):
        raise DuplicateMessage(
            f"message {message.msg_id!r} exists with different fields"
        )


class Commands:
    """The changes of ``record_failure``, ``resend``, ``expire_send`` and
    ``record_delivery``, decided with ``policy`` at the time ``now()`` gives.

    Each method checks its arguments and returns the checked message id and the
    :data:`Change` to apply to that message.
    """

    def __init__(self, policy: ResendPolicy, now: Callable[[], datetime]) -> None:
        self.policy = policy
        self.now = now

    def failure(
        self,
        msg_id: str,
        *,
        code: int,
        desc: str = "",
        attempt: int | None = None,
        retry_after: float | None = None,
    ) -> tuple[str, Change]:
        """``record_failure``: send ``attempt`` (default: the current) failed."""
        msg_id = check.identifier("msg_id", msg_id)
        code = check.error_code(code)
        desc = check.text("desc", desc, max_chars=check.MAX_DESC_CHARS)
        checked_attempt = check.attempt(attempt)
        seconds = check.retry_after(retry_after)

        def fail(message: Message) -> None:
            message.record_failure(
                code=code,
                desc=desc,
                attempt=checked_attempt,
                retry_after=seconds,
                at=self.now(),
            )

        return msg_id, fail

    def resend(
        self,
        msg_id: str,
        *,
        request_id: str | None = None,
        online_user_only: bool | None = None,
        actor: str | None = None,
        expected_attempt: int | None = None,
    ) -> tuple[str, Change]:
        """``resend``: start the next send if the policy allows it now."""
        msg_id = check.identifier("msg_id", msg_id)
        expected = check.attempt(expected_attempt, "expected_attempt")
        request_id = (
            uuid4().hex
            if request_id is None
            else check.identifier("request_id", request_id)
        )
        only_online = (
            None
            if online_user_only is None
            else check.flag("online_user_only", online_user_only)
        )
        who = check.optional_identifier("actor", actor)

        def resend(message: Message) -> None:
            message.request_resend(
                policy=self.policy,
                now=self.now(),
                request_id=request_id,
                actor=who,
                online_user_only=only_online,
                expected_attempt=expected,
            )

        return msg_id, resend

    def expiry(
        self, msg_id: str, *, attempt: int, actor: str | None = None
    ) -> tuple[str, Change]:
        """``expire_send``: send ``attempt`` stayed SENDING past the timeout."""
        msg_id = check.identifier("msg_id", msg_id)
        if attempt is None:
            raise InvalidArgument("expire_send needs attempt=, the send to expire")
        checked_attempt = check.integer("attempt", attempt, 1, check.MAX_ATTEMPT)
        who = check.optional_identifier("actor", actor)
        timeout = self.policy.send_timeout

        def expire(message: Message) -> None:
            message.expire_send(
                attempt=checked_attempt, send_timeout=timeout, actor=who, at=self.now()
            )

        return msg_id, expire

    def delivery(
        self,
        msg_id: str,
        *,
        seq: str,
        server_time: datetime | None = None,
        attempt: int | None = None,
    ) -> tuple[str, Change]:
        """``record_delivery``: the server acknowledged the message."""
        msg_id = check.identifier("msg_id", msg_id)
        seq = check.text("seq", seq, max_chars=check.MAX_SEQ_CHARS, allow_empty=False)
        when = (
            None
            if server_time is None
            else check.aware_datetime("server_time", server_time)
        )
        checked_attempt = check.attempt(attempt)

        def deliver(message: Message) -> None:
            now = self.now()
            message.record_delivery(
                seq=seq,
                server_time=now if when is None else when,
                attempt=checked_attempt,
                at=now,
            )

        return msg_id, deliver
