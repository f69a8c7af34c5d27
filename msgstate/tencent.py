"""A facade shaped like Tencent Cloud IM's Flutter ``reSendMessage``.

A backend that already speaks the V2TIM plugin's shapes can call
:meth:`V2TIMMessageManager.reSendMessage` and get back a
:class:`V2TimValueCallback` that the plugin's own Dart parsing accepts. Nothing is
raised for a refusal: like the plugin, every outcome is an answer.

With a transport (``V2TIMMessageManager(service, transport=...)``) a call claims
the resend, sends through the transport, records the outcome and answers as the
plugin does after its send callback:

- sent: ``code`` 0, ``desc`` ``"ok"``, ``data`` the message with ``status`` 2
  (``SEND_SUCC``), the assigned ``seq``;
- send failed (the transport answered a :class:`~msgstate.SendError`): the
  Tencent ``code`` and ``desc``, ``data`` the message with ``status`` 3
  (``SEND_FAIL``); the failure is recorded with the code, desc and
  ``retry_after``;
- the transport raised (or answered something else): an unknown outcome,
  recorded and answered as :attr:`~msgstate.ErrorCode.TRANSPORT_FAILED` (1014,
  retry class ``AMBIGUOUS``), ``data`` the message with ``status`` 3;
- unknown ``msgID``: ``-1`` ``"message not found"``, ``data`` null (the 8.1
  Android plugin's answer; the C SDK shape answers ``6017`` as the >= 8.9 native
  adapter does);
- refused by the :class:`~msgstate.ResendPolicy` (in flight, delivered, failed
  for good, out of attempts, too early, too old) or bad arguments: msgstate's
  own :class:`~msgstate.ErrorCode` (1001-1099, which no Tencent code uses) and
  its ``desc``, ``data`` the message as it is now (``None`` if it cannot be
  read), so a client can still update its row.

Without a transport the facade only records: the resend is claimed (the message
is ``SENDING``, attempt n + 1) and the answer is ``code`` 0 with ``status`` 1;
the backend sends and reports with ``record_delivery`` / ``record_failure``.

Two shapes (:meth:`V2TimValueCallback.to_dict`)
    ``shape="v2tim"`` (default): ``{"code", "desc", "data"}`` where ``data`` is
    the ``V2TimMessage`` map native 8.1 (Android ``CommonUtil
    .convertV2TIMMessageToMap``) sends, with the types the Dart models declare.
    ``shape="csdk"``: ``{"code", "desc", "json_param"}`` where ``json_param`` is
    a JSON *string* holding the C SDK's snake_case message, as the >= 8.5 native
    ``V2TimValueCallback.fromJson`` reads it. ``docs/tencent.md`` lists both.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import math
from typing import TYPE_CHECKING, Any, Literal

from attrs import field, frozen
from attrs.validators import instance_of, optional

from msgstate._elements import ELEM_KEYS, csdk_element, v2tim_element
from msgstate.errors import (
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MsgStateError,
)
from msgstate.status import MessageStatus
from msgstate.transports import SendError, Sent, Transport
from msgstate.views import MessageView

if TYPE_CHECKING:
    from msgstate.application import MessageService

__all__ = ["V2TIMMessageManager", "V2TimValueCallback"]

SUCCESS_DESC = "ok"
"""The ``desc`` of a successful answer, as the plugin's ``returnSuccess`` sends."""

NOT_FOUND_CODE = -1
"""The 8.1 plugin's code for an unknown ``msgID`` (Android ``returnError(-1, ...)``)."""

NOT_FOUND_DESC = "message not found"
"""The 8.1 Android plugin's ``desc`` for an unknown ``msgID``."""

CSDK_NOT_FOUND_CODE = 6017
"""ERR_INVALID_PARAMETERS: the >= 8.9 native adapter's code for an unknown msgID."""

UNSEQUENCED = "0"
"""The ``seq`` of a message the server has not acknowledged yet."""

PROGRESS = 100
"""``progress`` in every answer: CommonUtil's value when no progress is reported."""

MAX_TRANSPORT_DESC = 1_000
"""The longest ``desc`` recorded for a transport that raised."""

Shape = Literal["v2tim", "csdk"]

_RANDOM_PERSON = b"msgstate.random"


def _random_of(msg_id: str) -> int:
    """An unsigned 32-bit number fixed by ``msg_id`` in every process."""
    digest = hashlib.blake2b(
        msg_id.encode("utf-8", "surrogatepass"), digest_size=4, person=_RANDOM_PERSON
    ).digest()
    return int.from_bytes(digest, "big")


def _timestamp(view: MessageView) -> int:
    """Seconds: the server's time once delivered, else the creation time."""
    delivered = view.status is MessageStatus.SEND_SUCC
    when = (
        view.server_time
        if delivered and view.server_time is not None
        else view.created_at
    )
    return math.floor(when.timestamp())


def _v2tim_message(view: MessageView) -> dict[str, Any]:
    """``view`` as the ``V2TimMessage`` map native 8.1 sends (keys sorted)."""
    elems: dict[str, Any] = dict.fromkeys(ELEM_KEYS.values())
    elem_key = ELEM_KEYS.get(view.elem_type)
    if elem_key is not None:
        elems[elem_key] = v2tim_element(view.elem_type, view.content)
    message: dict[str, Any] = {
        "cloudCustomData": view.cloud_custom_data,
        "elemType": view.elem_type,
        "faceUrl": "",
        "friendRemark": "",
        "groupAtUserList": [],
        "groupID": view.group_id,
        "hasRiskContent": False,
        "isBroadcastMessage": False,
        "isExcludedFromContentModeration": False,
        "isExcludedFromLastMessage": False,
        "isExcludedFromUnreadCount": False,
        "isPeerRead": False,
        "isRead": False,
        "isSelf": True,
        "isSupportMessageExtension": False,
        "localCustomData": "",
        "localCustomInt": 0,
        "msgID": view.msg_id,
        "nameCard": "",
        "needReadReceipt": view.need_read_receipt,
        "nickName": "",
        "offlinePushInfo": {"desc": "", "disablePush": False, "ext": "", "title": ""},
        "priority": view.priority,
        "progress": PROGRESS,
        "random": _random_of(view.msg_id),
        "revokeReason": "",
        "revokerInfo": None,
        "sender": view.sender,
        "seq": UNSEQUENCED if view.seq is None else view.seq,
        "status": int(view.status),
        "timestamp": _timestamp(view),
        "userID": view.user_id,
        **elems,
    }
    return dict(sorted(message.items()))


def _csdk_seq(seq: str | None) -> int | str:
    """The C SDK's ``message_seq`` (a uint64): an int when ``seq`` is one."""
    if seq is None:
        return 0
    if seq.isascii() and seq.isdigit() and int(seq) < 2**64:
        return int(seq)
    return seq  # Dart reads it with ``?.toString()``, so any scalar parses


def _csdk_message(view: MessageView) -> dict[str, Any]:
    """``view`` as the C SDK's message JSON (the >= 8.5 native models' keys)."""
    group = view.group_id is not None
    delivered = view.status is MessageStatus.SEND_SUCC
    element = csdk_element(view.elem_type, view.content)
    message: dict[str, Any] = {
        "message_cloud_custom_str": view.cloud_custom_data,
        "message_client_time": math.floor(view.created_at.timestamp()),
        "message_conv_id": view.group_id if group else view.user_id,
        "message_conv_type": 2 if group else 1,
        "message_custom_int": 0,
        "message_custom_str": "",
        "message_elem_array": [] if element is None else [element],
        "message_excluded_from_content_moderation": False,
        "message_excluded_from_last_message": False,
        "message_group_at_user_array": [],
        "message_is_broadcast_message": False,
        "message_is_excluded_from_unread_count": False,
        "message_is_from_self": True,
        "message_is_online_msg": view.online_user_only,
        "message_is_peer_read": False,
        "message_is_read": False,
        "message_msg_id": view.msg_id,
        "message_need_read_receipt": view.need_read_receipt,
        "message_offline_push_config": {
            "offline_push_config_desc": "",
            "offline_push_config_ext": "",
            "offline_push_config_flag": 0,
            "offline_push_config_title": "",
        },
        "message_priority": view.priority,
        "message_rand": _random_of(view.msg_id),
        "message_revoke_reason": "",
        "message_risk_type_identified": 0,
        "message_sender": view.sender,
        "message_sender_profile": {
            "user_profile_face_url": "",
            "user_profile_friend_remark": "",
            "user_profile_identifier": view.sender,
            "user_profile_nick_name": "",
        },
        "message_seq": _csdk_seq(view.seq),
        "message_server_time": (
            _timestamp(view) if delivered and view.server_time is not None else 0
        ),
        "message_status": int(view.status),
        "message_support_message_extension": False,
        "progress": PROGRESS,
    }
    if group:
        message["message_sender_group_member_info"] = {
            "group_member_info_identifier": view.sender,
        }
    return dict(sorted(message.items()))


@frozen
class V2TimValueCallback:
    """``V2TimValueCallback<V2TimMessage>``: a result code, its text, the message.

    ``code`` 0 means success. Any other code is a Tencent IM code (a send
    failure), :data:`NOT_FOUND_CODE` (``-1``, unknown ``msgID``) or an
    :class:`~msgstate.ErrorCode` (a refusal, or 1014 for a transport that
    raised). ``data`` is the message as the answer leaves it, or ``None``.
    """

    code: int = field(validator=instance_of(int))
    desc: str = field(validator=instance_of(str))
    data: MessageView | None = field(validator=optional(instance_of(MessageView)))

    @classmethod
    def ok(cls, view: MessageView) -> V2TimValueCallback:
        """The success answer carrying ``view``."""
        return cls(code=int(ErrorCode.OK), desc=SUCCESS_DESC, data=view)

    @classmethod
    def failed(cls, code: int, desc: str, view: MessageView) -> V2TimValueCallback:
        """A send failure: the vendor ``code`` and ``desc`` with the failed message."""
        return cls(code=code, desc=desc, data=view)

    @classmethod
    def not_found(cls) -> V2TimValueCallback:
        """The unknown-``msgID`` answer: ``-1`` "message not found", no data."""
        return cls(code=NOT_FOUND_CODE, desc=NOT_FOUND_DESC, data=None)

    @classmethod
    def from_error(
        cls, error: MsgStateError, view: MessageView | None = None
    ) -> V2TimValueCallback:
        """A refusal: ``error``'s code and desc, with the message as it is now."""
        return cls(code=int(error.code), desc=error.desc, data=view)

    def to_dict(self, shape: Shape = "v2tim") -> dict[str, Any]:
        """The answer as the client parses it: ``"v2tim"`` (8.1) or ``"csdk"``.

        ``"v2tim"``: ``{"code", "desc", "data"}``, ``data`` the ``V2TimMessage``
        map or ``None``. ``"csdk"``: ``{"code", "desc", "json_param"}``,
        ``json_param`` the C SDK message as a JSON string or ``None``; an unknown
        ``msgID`` is ``6017`` there, as the >= 8.9 native adapter answers.
        """
        if shape == "v2tim":
            return {
                "code": self.code,
                "desc": self.desc,
                "data": None if self.data is None else _v2tim_message(self.data),
            }
        if shape == "csdk":
            code = self.code
            if code == NOT_FOUND_CODE and self.data is None:
                code = CSDK_NOT_FOUND_CODE
            return {
                "code": code,
                "desc": self.desc,
                "json_param": (
                    None
                    if self.data is None
                    else json.dumps(
                        _csdk_message(self.data), ensure_ascii=False, allow_nan=False
                    )
                ),
            }
        raise InvalidArgument(f'shape must be "v2tim" or "csdk", got {shape!r}')

    def to_json(self, shape: Shape = "v2tim") -> str:
        """:meth:`to_dict` as JSON text (UTF-8 characters kept, not escaped)."""
        return json.dumps(self.to_dict(shape), ensure_ascii=False, allow_nan=False)


class V2TIMMessageManager:
    """The message manager's ``reSendMessage``, answering over a MessageService.

    ``transport`` (a :class:`~msgstate.Transport`) makes each call send and
    record the outcome; without one the facade records the claim only.
    """

    def __init__(
        self, service: MessageService, transport: Transport | None = None
    ) -> None:
        if transport is not None and not isinstance(transport, Transport):
            raise InvalidArgument(
                "transport must have a send(message) method (msgstate.Transport), "
                f"got {transport!r}"
            )
        if transport is not None and inspect.iscoroutinefunction(transport.send):
            raise InvalidArgument(
                "transport.send is a coroutine function (an AsyncTransport); "
                "the facade calls send synchronously: give a Transport"
            )
        self._service = service
        self._transport = transport

    @property
    def service(self) -> MessageService:
        """The service every call is answered from."""
        return self._service

    @property
    def transport(self) -> Transport | None:
        """The transport each resend is sent through (``None``: record only)."""
        return self._transport

    def reSendMessage(
        self,
        msgID: str,
        onlineUserOnly: bool | None = None,
        webMessageInstatnce: object = None,
        *,
        webMessageInstance: object = None,
        request_id: str | None = None,
        actor: str | None = None,
    ) -> V2TimValueCallback:
        """Resend ``msgID`` if the policy allows it now; never raises a refusal.

        ``onlineUserOnly`` (``None`` keeps the option in force), ``request_id`` and
        ``actor`` go to :meth:`MessageService.resend
        <msgstate.MessageService.resend>`. ``webMessageInstatnce`` and
        ``webMessageInstance`` are accepted and ignored (browser-only objects).
        With a transport, a ``request_id`` already accepted answers the message's
        current state and sends nothing again.
        """
        del webMessageInstatnce, webMessageInstance  # meaningful in browsers only
        before: MessageView | None = None
        try:
            if self._transport is not None and request_id is not None:
                # An unknown id is left to resend(), which checks the other
                # arguments first: the same answer with a transport as without.
                with contextlib.suppress(MessageNotFound):
                    before = self._service.get(msgID)
            view = self._service.resend(
                msgID,
                online_user_only=onlineUserOnly,
                request_id=request_id,
                actor=actor,
            )
        except MessageNotFound:
            return V2TimValueCallback.not_found()
        except MsgStateError as error:
            return V2TimValueCallback.from_error(error, self._current(msgID))
        if self._transport is None:
            return V2TimValueCallback.ok(view)
        if before is not None and view.attempts == before.attempts:
            return self._as_it_is(view)  # a repeated request: sent already
        return self._send(self._transport, view)

    def _current(self, msg_id: object) -> MessageView | None:
        try:
            return self._service.get(msg_id)  # type: ignore[arg-type]
        except MsgStateError:
            return None

    def _as_it_is(self, view: MessageView) -> V2TimValueCallback:
        """The answer for a message whose current attempt another call sent."""
        if view.status is MessageStatus.SEND_SUCC:
            return V2TimValueCallback.ok(view)
        if view.status is MessageStatus.SEND_FAIL and view.last_error_code is not None:
            return V2TimValueCallback.failed(
                view.last_error_code, view.last_error_desc or "", view
            )
        return V2TimValueCallback(
            code=int(ErrorCode.SEND_IN_PROGRESS),
            desc="this request's send is still in flight",
            data=view,
        )

    def _send(self, transport: Transport, view: MessageView) -> V2TimValueCallback:
        """Send the claimed attempt, record what happened, answer it."""
        attempt = view.attempts
        try:
            outcome: object = transport.send(view)
        except Exception as error:  # an unknown outcome, never left SENDING
            outcome = error
        if inspect.iscoroutine(outcome):
            outcome.close()  # an async send slipped through: it never ran
        try:
            if isinstance(outcome, Sent):
                delivered = self._service.record_delivery(
                    view.msg_id,
                    seq=outcome.seq,
                    server_time=outcome.server_time,
                    attempt=attempt,
                )
                return V2TimValueCallback.ok(delivered)
            if isinstance(outcome, SendError):
                failed = self._service.record_failure(
                    view.msg_id,
                    code=outcome.code,
                    desc=outcome.desc,
                    attempt=attempt,
                    retry_after=outcome.retry_after,
                )
                return V2TimValueCallback.failed(outcome.code, outcome.desc, failed)
            desc = _transport_desc(outcome)
            failed = self._service.record_failure(
                view.msg_id,
                code=int(ErrorCode.TRANSPORT_FAILED),
                desc=desc,
                attempt=attempt,
            )
            return V2TimValueCallback.failed(
                int(ErrorCode.TRANSPORT_FAILED), desc, failed
            )
        except MsgStateError as error:
            return V2TimValueCallback.from_error(error, self._current(view.msg_id))


def _transport_desc(outcome: object) -> str:
    """What the transport did instead of answering Sent or SendError."""
    if isinstance(outcome, BaseException):
        text = f"transport raised {type(outcome).__name__}: {outcome}"
    else:
        text = f"transport answered {type(outcome).__name__}, not Sent or SendError"
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_TRANSPORT_DESC:
        text = text[: MAX_TRANSPORT_DESC - 3] + "..."
    return text
