"""A facade shaped like Tencent Cloud IM's Flutter ``reSendMessage``.

A backend that already speaks the V2TIM plugin's shapes can call
:meth:`V2TIMMessageManager.reSendMessage` and get back a
:class:`V2TimValueCallback`: ``{"code", "desc", "data"}`` where ``data`` is a
``V2TimMessage`` map with every key of the documented return template. Nothing is
raised for a refusal: like the plugin, every outcome is an answer.

Answers
    ``code`` 0 and ``desc`` ``"ok"`` (the plugin's own success ``desc``) with the
    resent message as ``data``; or, for any :class:`~msgstate.MsgStateError`,
    ``code=int(error.code)`` (an :class:`~msgstate.ErrorCode`, all in the 1000s),
    ``desc=error.desc`` and ``data=None``. Arguments of the wrong Python type are
    refused by the service, so they too answer ``INVALID_ARGUMENT`` (1002).

Field mapping (:class:`~msgstate.MessageView` to ``V2TimMessage``)
    ``msgID`` and ``id``: ``msg_id`` (msgstate has one id; V2TIM's ``id`` is the
    local creation id, which the backend does not see). ``sender``, ``userID``
    (``None`` for a group message without a receiver), ``groupID`` (``None`` for
    C2C), ``elemType``, ``priority``, ``needReadReceipt`` and ``cloudCustomData``
    are copied. ``status`` is the ``V2TIMMessageStatus`` int. ``seq`` is the
    delivered ``seq`` string, else ``"0"`` (the plugin sends
    ``String.valueOf(getSeq())`` of an unsigned 64-bit number, which is 0 before the
    server assigns one). ``timestamp`` is whole seconds since the epoch: the
    server's time once delivered, else the creation time. ``progress`` is 100 once
    delivered, else 0. ``random`` is an unsigned 32-bit number derived from
    ``msg_id`` with BLAKE2b, the same in every process (the SDK's own ``random`` is
    not recorded). ``isSelf`` is ``True``: the facade answers the sender.

    Exactly one element key is filled, the one ``elemType`` names (1 ``textElem``,
    2 ``customElem``, 3 ``imageElem``, 4 ``soundElem``, 5 ``videoElem``,
    6 ``fileElem``, 7 ``locationElem``, 8 ``faceElem``, 9 ``groupTipsElem``,
    10 ``mergerElem``), with a copy of the view's ``content`` mapping, which is
    expected to hold that element's own fields (``{"text": "hi"}``). Any other
    ``elemType`` (0 = none, or a type newer than these) leaves every element
    ``None``. The other element keys are ``None``.

    What msgstate does not record gets an empty value: ``faceUrl``, ``nickName``,
    ``nameCard``, ``friendRemark``, ``localCustomData`` and ``messageFromWeb``
    ``""``; ``localCustomInt`` 0; ``groupAtUserList`` ``[]``; ``isRead``,
    ``isPeerRead``, ``isExcludedFromLastMessage`` and ``isExcludedFromUnreadCount``
    ``False`` (reads are not tracked); ``offlinePushInfo`` ``None``.

Differences from the real plugin
    - The plugin's Dart layer forwards only ``msgID`` and drops ``onlineUserOnly``;
      here ``onlineUserOnly`` reaches :meth:`MessageService.resend
      <msgstate.MessageService.resend>` and is recorded on the ``ResendRequested``
      event (``None``, the default here, keeps the option in force; Dart's
      default is ``false``).
    - ``webMessageInstatnce`` (Tencent's spelling, which Dart sends) and
      ``webMessageInstance`` (the spelling the plugin's web layer reads) are both
      accepted and ignored: they carry a browser SDK's message object, which has
      no meaning on the server side.
    - An unknown ``msgID`` answers ``-1`` "message not found" in the plugin; here
      it answers msgstate's own ``MESSAGE_NOT_FOUND`` (1001).
    - The plugin resends whatever the message's status; msgstate asks its
      :class:`~msgstate.ResendPolicy` first, so a message that is in flight
      (``SEND_IN_PROGRESS``), delivered (``ALREADY_DELIVERED``), failed for good
      (``NOT_RETRYABLE``), out of attempts (``ATTEMPTS_EXHAUSTED``), too early
      (``TOO_EARLY``) or too old (``EXPIRED``) is refused.
    - ``request_id`` and ``actor`` are msgstate's additions (keyword-only):
      a repeated ``request_id`` answers the current message and writes nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import TYPE_CHECKING, Any

from attrs import field, frozen
from attrs.validators import instance_of, optional

from msgstate.errors import ErrorCode, MsgStateError
from msgstate.status import MessageStatus
from msgstate.views import MessageView

if TYPE_CHECKING:
    from msgstate.application import MessageService

__all__ = ["V2TIMMessageManager", "V2TimValueCallback"]

SUCCESS_DESC = "ok"
"""The ``desc`` of a successful answer, as the plugin's ``returnSuccess`` sends."""

UNSEQUENCED = "0"
"""The ``seq`` of a message the server has not acknowledged yet."""

_ELEM_KEYS: dict[int, str] = {
    1: "textElem",
    2: "customElem",
    3: "imageElem",
    4: "soundElem",
    5: "videoElem",
    6: "fileElem",
    7: "locationElem",
    8: "faceElem",
    9: "groupTipsElem",
    10: "mergerElem",
}
"""``V2TIMElemType`` values and the ``V2TimMessage`` key holding that element."""

_RANDOM_PERSON = b"msgstate.random"


def _random_of(msg_id: str) -> int:
    """An unsigned 32-bit number fixed by ``msg_id`` in every process."""
    digest = hashlib.blake2b(
        msg_id.encode("utf-8", "surrogatepass"), digest_size=4, person=_RANDOM_PERSON
    ).digest()
    return int.from_bytes(digest, "big")


def _v2tim_message(view: MessageView) -> dict[str, Any]:
    """``view`` as a ``V2TimMessage`` map, keys in the template's order."""
    delivered = view.status is MessageStatus.SEND_SUCC
    when = (
        view.server_time
        if delivered and view.server_time is not None
        else view.created_at
    )
    elem_key = _ELEM_KEYS.get(view.elem_type)
    elems: dict[str, Any] = dict.fromkeys(_ELEM_KEYS.values())
    if elem_key is not None:
        elems[elem_key] = copy.deepcopy(view.content)
    return {
        "cloudCustomData": view.cloud_custom_data,
        "customElem": elems["customElem"],
        "elemType": view.elem_type,
        "faceElem": elems["faceElem"],
        "faceUrl": "",
        "fileElem": elems["fileElem"],
        "friendRemark": "",
        "groupAtUserList": [],
        "groupID": view.group_id,
        "groupTipsElem": elems["groupTipsElem"],
        "id": view.msg_id,
        "imageElem": elems["imageElem"],
        "isExcludedFromLastMessage": False,
        "isExcludedFromUnreadCount": False,
        "isPeerRead": False,
        "isRead": False,
        "isSelf": True,
        "localCustomData": "",
        "localCustomInt": 0,
        "locationElem": elems["locationElem"],
        "mergerElem": elems["mergerElem"],
        "messageFromWeb": "",
        "msgID": view.msg_id,
        "nameCard": "",
        "needReadReceipt": view.need_read_receipt,
        "nickName": "",
        "offlinePushInfo": None,
        "priority": view.priority,
        "progress": 100 if delivered else 0,
        "random": _random_of(view.msg_id),
        "sender": view.sender,
        "seq": UNSEQUENCED if view.seq is None else view.seq,
        "soundElem": elems["soundElem"],
        "status": int(view.status),
        "textElem": elems["textElem"],
        "timestamp": math.floor(when.timestamp()),
        "userID": view.user_id,
        "videoElem": elems["videoElem"],
    }


@frozen
class V2TimValueCallback:
    """``V2TimValueCallback<V2TimMessage>``: a result code, its text, the message.

    ``code`` 0 means success and ``data`` is the message; any other code is an
    :class:`~msgstate.ErrorCode` value and ``data`` is ``None``.
    """

    code: int = field(validator=instance_of(int))
    desc: str = field(validator=instance_of(str))
    data: MessageView | None = field(validator=optional(instance_of(MessageView)))

    @classmethod
    def ok(cls, view: MessageView) -> V2TimValueCallback:
        """The success answer carrying ``view``."""
        return cls(code=int(ErrorCode.OK), desc=SUCCESS_DESC, data=view)

    @classmethod
    def from_error(cls, error: MsgStateError) -> V2TimValueCallback:
        """The refusal answer for ``error``: its code and desc, no data."""
        return cls(code=int(error.code), desc=error.desc, data=None)

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "desc", "data"}`` with ``data`` a ``V2TimMessage`` map or None."""
        return {
            "code": self.code,
            "desc": self.desc,
            "data": None if self.data is None else _v2tim_message(self.data),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text (UTF-8 characters kept, not escaped)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, allow_nan=False)


class V2TIMMessageManager:
    """The message manager's ``reSendMessage``, answering over a MessageService."""

    def __init__(self, service: MessageService) -> None:
        self._service = service

    @property
    def service(self) -> MessageService:
        """The service every call is answered from."""
        return self._service

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
        """
        del webMessageInstatnce, webMessageInstance  # meaningful in browsers only
        try:
            view = self._service.resend(
                msgID,
                online_user_only=onlineUserOnly,
                request_id=request_id,
                actor=actor,
            )
        except MsgStateError as error:
            return V2TimValueCallback.from_error(error)
        return V2TimValueCallback.ok(view)
