"""The Tencent facade's answers, pinned value by value.

``msgstate.tencent`` turns a resend into a ``V2TimValueCallback``. This file pins
what a client receives and what the store keeps, exactly:

- the whole C SDK message in ``json_param`` (``shape="csdk"``) for a C2C message
  in flight and a delivered group message, ``message_seq`` for every kind of
  ``seq``, ``message_server_time`` and the element array;
- JSON text: non-ASCII characters kept as they are, never ``NaN``;
- ``reSendMessage`` with a transport: the transport's ``server_time`` recorded,
  each outcome recorded against the attempt that was sent (even when another
  sender moved the message on meanwhile), a coroutine answered by mistake
  closed, a recording refused by the store answered as its refusal;
- the ``desc`` recorded when a transport raises: NUL removed, lone surrogates
  replaced, 1,000 characters at most;
- a repeated ``request_id``: the answer while the first send is in flight and
  after a failure with an empty ``desc``;
- argument checks: the constructor's exact messages, and an argument refused
  before an unknown ``msgID`` is looked up.

A few tests give ``V2TimValueCallback.ok`` a ``MessageView`` made by hand (with
``attrs.evolve``), in states the service never produces: each says so.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest
from attrs import evolve

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageService,
    MessageStatus,
    MessageView,
    SendError,
    Sent,
)
from msgstate.tencent import V2TIMMessageManager, V2TimValueCallback
from tests.support import EPOCH, FakeClock

T0 = int(EPOCH.timestamp())
"""2026-01-01T00:00:00Z in seconds: every message here is created then."""

RANDOM_M1 = 2897667843
"""``random`` / ``message_rand`` of ``msg_id`` "m1" (pinned in test_tencent.py)."""

RANDOM_G1 = 3919906997
"""``random`` / ``message_rand`` of ``msg_id`` "g1"."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EPOCH)


@pytest.fixture
def service(clock: FakeClock) -> MessageService:
    return MessageService.open("memory://", clock=clock)


def failed_text(service: MessageService, msg_id: str = "m1", text: str = "hi") -> None:
    """A C2C text message from alice to bob whose first send timed out (6012)."""
    service.create(msg_id, sender="alice", user_id="bob", content={"text": text})
    service.record_failure(msg_id, code=6012, desc="boom")


def csdk_message(callback: V2TimValueCallback) -> Any:
    """The C SDK message a ``shape="csdk"`` answer carries, parsed."""
    return json.loads(callback.to_dict("csdk")["json_param"])


class Scripted:
    """A transport answering one outcome (raising it if it is an exception).

    ``during`` runs inside ``send`` first, to stand in for what another sender
    does while this send is in flight.
    """

    def __init__(
        self, outcome: object, during: Callable[[MessageView], object] | None = None
    ) -> None:
        self.outcome = outcome
        self.during = during
        self.sent: list[tuple[str, int]] = []

    def send(self, message: MessageView) -> Sent | SendError:
        self.sent.append((message.msg_id, message.attempts))
        if self.during is not None:
            self.during(message)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome  # type: ignore[return-value]


def events(service: MessageService, msg_id: str = "m1") -> list[tuple[str, int]]:
    """Each recorded event's name and the attempt it belongs to."""
    return [(entry.event, entry.attempt) for entry in service.history(msg_id)]


# -- the C SDK message (shape="csdk") --


def test_csdk_message_of_a_c2c_message_in_flight_is_pinned(
    service: MessageService, clock: FakeClock
) -> None:
    """Every key of json_param for a claimed C2C message: server time and seq 0."""
    service.create(
        "m1",
        sender="alice",
        user_id="bob",
        content={"text": "hi"},
        priority=2,
        need_read_receipt=True,
        cloud_custom_data="cc",
        online_user_only=True,
    )
    service.record_failure("m1", code=6012)
    clock.advance(30)
    actual = csdk_message(V2TIMMessageManager(service).reSendMessage("m1"))
    expected = {
        "message_client_time": T0,
        "message_cloud_custom_str": "cc",
        "message_conv_id": "bob",
        "message_conv_type": 1,
        "message_custom_int": 0,
        "message_custom_str": "",
        "message_elem_array": [{"elem_type": 0, "text_elem_content": "hi"}],
        "message_excluded_from_content_moderation": False,
        "message_excluded_from_last_message": False,
        "message_group_at_user_array": [],
        "message_is_broadcast_message": False,
        "message_is_excluded_from_unread_count": False,
        "message_is_from_self": True,
        "message_is_online_msg": True,
        "message_is_peer_read": False,
        "message_is_read": False,
        "message_msg_id": "m1",
        "message_need_read_receipt": True,
        "message_offline_push_config": {
            "offline_push_config_desc": "",
            "offline_push_config_ext": "",
            "offline_push_config_flag": 0,
            "offline_push_config_title": "",
        },
        "message_priority": 2,
        "message_rand": RANDOM_M1,
        "message_revoke_reason": "",
        "message_risk_type_identified": 0,
        "message_sender": "alice",
        "message_sender_profile": {
            "user_profile_face_url": "",
            "user_profile_friend_remark": "",
            "user_profile_identifier": "alice",
            "user_profile_nick_name": "",
        },
        "message_seq": 0,
        "message_server_time": 0,
        "message_status": 1,
        "message_support_message_extension": False,
        "progress": 100,
    }
    assert expected == actual


def test_csdk_message_of_a_delivered_group_message_is_pinned(
    service: MessageService, clock: FakeClock
) -> None:
    """A delivered group message: conv type 2, the group, the server's time, seq."""
    service.create(
        "g1",
        sender="carol",
        group_id="room",
        elem_type=2,
        content={"data": "x", "desc": "d", "extension": "e"},
    )
    clock.advance(10)
    service.record_delivery("g1", seq="42", server_time=EPOCH + timedelta(seconds=7))
    actual = csdk_message(V2TimValueCallback.ok(service.get("g1")))
    expected = {
        "message_client_time": T0,
        "message_cloud_custom_str": "",
        "message_conv_id": "room",
        "message_conv_type": 2,
        "message_custom_int": 0,
        "message_custom_str": "",
        "message_elem_array": [
            {
                "elem_type": 3,
                "custom_elem_data": "x",
                "custom_elem_desc": "d",
                "custom_elem_ext": "e",
            }
        ],
        "message_excluded_from_content_moderation": False,
        "message_excluded_from_last_message": False,
        "message_group_at_user_array": [],
        "message_is_broadcast_message": False,
        "message_is_excluded_from_unread_count": False,
        "message_is_from_self": True,
        "message_is_online_msg": False,
        "message_is_peer_read": False,
        "message_is_read": False,
        "message_msg_id": "g1",
        "message_need_read_receipt": False,
        "message_offline_push_config": {
            "offline_push_config_desc": "",
            "offline_push_config_ext": "",
            "offline_push_config_flag": 0,
            "offline_push_config_title": "",
        },
        "message_priority": 0,
        "message_rand": RANDOM_G1,
        "message_revoke_reason": "",
        "message_risk_type_identified": 0,
        "message_sender": "carol",
        "message_sender_group_member_info": {"group_member_info_identifier": "carol"},
        "message_sender_profile": {
            "user_profile_face_url": "",
            "user_profile_friend_remark": "",
            "user_profile_identifier": "carol",
            "user_profile_nick_name": "",
        },
        "message_seq": 42,
        "message_server_time": T0 + 7,
        "message_status": 2,
        "message_support_message_extension": False,
        "progress": 100,
    }
    assert expected == actual


def test_csdk_element_array_is_empty_for_a_type_without_a_c_model(
    service: MessageService,
) -> None:
    """elemType 0 (none) has no C SDK element: the array is [], not [null]."""
    service.create("m1", sender="alice", user_id="bob", elem_type=0, content={})
    message = csdk_message(V2TimValueCallback.ok(service.get("m1")))
    assert [] == message["message_elem_array"]


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        ("42", 42),
        (str(2**64 - 1), 2**64 - 1),
        (str(2**64), str(2**64)),
        (str(2**65), str(2**65)),
        ("abc", "abc"),
        ("\u0664\u0662", "\u0664\u0662"),  # Arabic-Indic 42: digits, not ASCII
    ],
    ids=["small", "uint64-max", "2**64", "2**65", "letters", "non-ascii-digits"],
)
def test_csdk_seq_is_an_int_only_when_it_is_a_uint64(
    service: MessageService, seq: str, expected: int | str
) -> None:
    """message_seq is the int for an ASCII uint64, else the seq string as given."""
    failed_text(service)
    manager = V2TIMMessageManager(service, transport=Scripted(Sent(seq=seq)))
    message = csdk_message(manager.reSendMessage("m1"))
    assert (expected, 2) == (message["message_seq"], message["message_status"])


def test_invalid_msg_id_answers_its_own_code_in_the_csdk_shape(
    service: MessageService,
) -> None:
    """Only an unknown msgID becomes 6017: a bad one keeps INVALID_ARGUMENT."""
    answer = V2TIMMessageManager(service).reSendMessage(42)  # type: ignore[arg-type]
    expected = {
        "code": int(ErrorCode.INVALID_ARGUMENT),
        "desc": "msg_id must be a str, got 42",
        "json_param": None,
    }
    assert expected == answer.to_dict("csdk")


# -- JSON text --


def test_json_param_keeps_non_ascii_characters(service: MessageService) -> None:
    """json_param holds "你好" as is, not as \\u escapes."""
    failed_text(service, text="你好")
    json_param = V2TIMMessageManager(service).reSendMessage("m1").to_dict("csdk")
    expected = '"message_elem_array": [{"elem_type": 0, "text_elem_content": "你好"}]'
    assert expected in json_param["json_param"]


def test_to_json_keeps_non_ascii_characters(service: MessageService) -> None:
    """to_json writes a non-ASCII desc and content as they are."""
    failed_text(service, text="你好")
    transport = Scripted(SendError(code=80001, desc="文本被拦截"))
    text = V2TIMMessageManager(service, transport=transport).reSendMessage("m1")
    actual = text.to_json()
    assert actual.startswith('{"code": 80001, "desc": "文本被拦截", "data": {')
    assert '"textElem": {"text": "你好"}' in actual


@pytest.mark.parametrize(
    ("method", "shape"),
    [("to_json", "v2tim"), ("to_json", "csdk"), ("to_dict", "csdk")],
    ids=["to_json-v2tim", "to_json-csdk", "to_dict-csdk"],
)
def test_answers_are_never_json_with_nan(
    service: MessageService, method: str, shape: str
) -> None:
    """A NaN in content is refused (ValueError), never written as ``NaN``.

    Made by hand: the service refuses NaN at ``create``, so the view's content is
    replaced with ``attrs.evolve``.
    """
    location = {"longitude": 1.5, "latitude": 2.5}
    service.create("m1", sender="alice", user_id="bob", elem_type=7, content=location)
    view = evolve(service.get("m1"), content={"longitude": math.nan, "latitude": 2.5})
    render = getattr(V2TimValueCallback.ok(view), method)
    with pytest.raises(ValueError, match="not JSON compliant"):
        render(shape)


# -- timestamps and random of views made by hand --


def test_delivered_view_without_server_time_uses_the_creation_time(
    service: MessageService, clock: FakeClock
) -> None:
    """SEND_SUCC without server_time: timestamp is created_at, server time 0.

    Made by hand: the service always records a server time with a delivery.
    """
    service.create("m1", sender="alice", user_id="bob", content={"text": "hi"})
    clock.advance(20)
    service.record_delivery("m1", seq="5", server_time=EPOCH + timedelta(seconds=9))
    view = evolve(service.get("m1"), server_time=None)
    callback = V2TimValueCallback.ok(view)
    message = csdk_message(callback)
    actual = (
        callback.to_dict()["data"]["timestamp"],
        message["message_server_time"],
        message["message_client_time"],
    )
    assert (T0, 0, T0) == actual


def test_undelivered_view_with_a_server_time_ignores_it(
    service: MessageService,
) -> None:
    """SEND_FAIL with a server_time: timestamp is created_at, server time 0.

    Made by hand: the service records a server time only with a delivery.
    """
    failed_text(service)
    view = evolve(service.get("m1"), server_time=EPOCH + timedelta(seconds=9))
    callback = V2TimValueCallback.ok(view)
    actual = (
        callback.to_dict()["data"]["timestamp"],
        csdk_message(callback)["message_server_time"],
    )
    assert (T0, 0) == actual


def test_random_of_a_msg_id_with_a_lone_surrogate_is_fixed(
    service: MessageService,
) -> None:
    """random does not fail on an id UTF-8 cannot encode strictly.

    Made by hand: the service refuses such ids, so ``msg_id`` is replaced with
    ``attrs.evolve``.
    """
    service.create("m1", sender="alice", user_id="bob", content={"text": "hi"})
    view = evolve(service.get("m1"), msg_id="m\ud800")
    callback = V2TimValueCallback.ok(view)
    actual = (
        callback.to_dict()["data"]["random"],
        callback.to_dict("csdk")["json_param"] is not None,
    )
    assert (2967699802, True) == actual


# -- sending through a transport --


def test_sent_records_the_transports_server_time(
    service: MessageService, clock: FakeClock
) -> None:
    """Sent(server_time=...) is recorded as is, not replaced by the clock's now."""
    failed_text(service)
    clock.advance(60)
    sent = Sent(seq="99", server_time=EPOCH + timedelta(seconds=3))
    answer = V2TIMMessageManager(service, transport=Scripted(sent)).reSendMessage("m1")
    actual = (
        service.get("m1").server_time,
        answer.to_dict()["data"]["timestamp"],
        csdk_message(answer)["message_server_time"],
    )
    assert (EPOCH + timedelta(seconds=3), T0 + 3, T0 + 3) == actual


def _moved_on(service: MessageService) -> Callable[[MessageView], object]:
    """While attempt 2 is in flight, another sender fails it and claims attempt 3."""

    def move_on(message: MessageView) -> None:
        service.record_failure(message.msg_id, code=6012, attempt=message.attempts)
        service.resend(message.msg_id)

    return move_on


def test_late_sent_is_recorded_against_the_attempt_that_was_sent(
    service: MessageService,
) -> None:
    """The Delivered event names attempt 2 (the one sent), not the current 3."""
    failed_text(service)
    transport = Scripted(Sent(seq="7"), during=_moved_on(service))
    answer = V2TIMMessageManager(service, transport=transport).reSendMessage("m1")
    expected = [
        ("Created", 1),
        ("SendFailed", 1),
        ("ResendRequested", 2),
        ("SendFailed", 2),
        ("ResendRequested", 3),
        ("Delivered", 2),
    ]
    assert expected == events(service)
    assert V2TimValueCallback(code=0, desc="ok", data=service.get("m1")) == answer


@pytest.mark.parametrize(
    "outcome",
    [SendError(code=80001, desc="text blocked"), ConnectionResetError("reset")],
    ids=["send-error", "raised"],
)
def test_stale_failure_does_not_fail_the_attempt_another_sender_claimed(
    service: MessageService, outcome: object
) -> None:
    """The failure of attempt 2 changes nothing once attempt 3 is in flight."""
    failed_text(service)
    transport = Scripted(outcome, during=_moved_on(service))
    answer = V2TIMMessageManager(service, transport=transport).reSendMessage("m1")
    view = service.get("m1")
    expected_events = [
        ("Created", 1),
        ("SendFailed", 1),
        ("ResendRequested", 2),
        ("SendFailed", 2),
        ("ResendRequested", 3),
    ]
    assert expected_events == events(service)
    assert (MessageStatus.SENDING, 3) == (view.status, view.attempts)
    assert (view, 1) == (answer.data, answer.to_dict()["data"]["status"])


def test_a_coroutine_answered_by_send_is_closed_and_transport_failed(
    service: MessageService,
) -> None:
    """A plain send returning a coroutine: the coroutine is closed, never run."""
    ran: list[str] = []
    made: list[Coroutine[Any, Any, Sent]] = []

    async def deliver() -> Sent:
        ran.append("ran")
        return Sent(seq="1")

    class ReturnsCoroutine:
        def send(self, message: MessageView) -> Sent | SendError:
            coroutine = deliver()
            made.append(coroutine)
            return coroutine  # type: ignore[return-value]

    failed_text(service)
    manager = V2TIMMessageManager(service, transport=ReturnsCoroutine())
    answer = manager.reSendMessage("m1")
    expected = V2TimValueCallback(
        code=1014,
        desc="transport answered coroutine, not Sent or SendError",
        data=service.get("m1"),
    )
    assert expected == answer
    assert ([], "CORO_CLOSED") == (ran, inspect.getcoroutinestate(made[0]))


def test_a_refused_recording_answers_the_refusal_with_the_current_message(
    service: MessageService,
) -> None:
    """Sent with another seq than a delivery recorded meanwhile: its conflict."""
    failed_text(service)

    def delivered_meanwhile(message: MessageView) -> None:
        service.record_delivery(message.msg_id, seq="1")

    transport = Scripted(Sent(seq="2"), during=delivered_meanwhile)
    answer = V2TIMMessageManager(service, transport=transport).reSendMessage("m1")
    expected = V2TimValueCallback(
        code=int(ErrorCode.ALREADY_DELIVERED),
        desc=(
            "message 'm1' was already delivered with seq '1'; "
            "a second delivery with seq '2' is refused"
        ),
        data=service.get("m1"),
    )
    assert expected == answer
    assert "1" == answer.to_dict()["data"]["seq"]


# -- the desc recorded when a transport raises --


PREFIX = "transport raised RuntimeError: "


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("sent!", "transport answered str, not Sent or SendError"),
        (RuntimeError("a\x00b"), PREFIX + "ab"),
        (RuntimeError("x\ud800y"), PREFIX + "x?y"),
        (RuntimeError("a" * (1000 - len(PREFIX))), PREFIX + "a" * (1000 - len(PREFIX))),
        (
            RuntimeError("a" * (1001 - len(PREFIX))),
            PREFIX + "a" * (997 - len(PREFIX)) + "...",
        ),
        (RuntimeError("a" * 5000), PREFIX + "a" * (997 - len(PREFIX)) + "..."),
    ],
    ids=["str", "nul", "lone-surrogate", "1000-chars", "1001-chars", "5000-chars"],
)
def test_transport_failure_desc_is_answered_and_recorded(
    service: MessageService, outcome: object, expected: str
) -> None:
    """The desc: NUL dropped, lone surrogates "?", cut to 997 chars + "..." > 1000."""
    failed_text(service)
    manager = V2TIMMessageManager(service, transport=Scripted(outcome))
    answer = manager.reSendMessage("m1")
    view = service.get("m1")
    assert (1014, expected) == (answer.code, answer.desc)
    assert (1014, expected) == (view.last_error_code, view.last_error_desc)
    assert expected == service.history("m1")[-1].data["desc"]


# -- a repeated request_id --


def test_repeated_request_id_while_its_send_is_in_flight(
    service: MessageService,
) -> None:
    """Claimed but not yet reported: SEND_IN_PROGRESS with the message, no send.

    The earlier failure's code is still on the view: the answer does not echo it.
    """
    failed_text(service)
    service.resend("m1", request_id="r1")  # the first call, still sending
    transport = Scripted(Sent(seq="1"))
    manager = V2TIMMessageManager(service, transport=transport)
    answer = manager.reSendMessage("m1", request_id="r1")
    expected = V2TimValueCallback(
        code=1005, desc="this request's send is still in flight", data=service.get("m1")
    )
    assert expected == answer
    assert (6012, 1) == (
        service.get("m1").last_error_code,
        answer.to_dict()["data"]["status"],
    )
    assert [] == transport.sent


def test_repeated_request_id_after_a_failure_without_desc_answers_empty_desc(
    service: MessageService,
) -> None:
    """A SendError without desc is answered with "" the first time and again."""
    failed_text(service)
    transport = Scripted(SendError(code=80001))
    manager = V2TIMMessageManager(service, transport=transport)
    first = manager.reSendMessage("m1", request_id="r1")
    again = manager.reSendMessage("m1", request_id="r1")
    expected = V2TimValueCallback(code=80001, desc="", data=service.get("m1"))
    assert (expected, expected) == (first, again)
    assert [("m1", 2)] == transport.sent


# -- arguments --


def test_bad_argument_is_refused_before_the_message_is_looked_up_record_only(
    service: MessageService,
) -> None:
    """Without a transport, a bad onlineUserOnly is refused even for an unknown id."""
    manager = V2TIMMessageManager(service)
    answer = manager.reSendMessage("nope", "yes", request_id="r1")  # type: ignore[arg-type]
    expected = V2TimValueCallback(
        code=1002, desc="online_user_only must be a bool, got 'yes'", data=None
    )
    assert expected == answer


def test_bad_argument_is_refused_before_the_message_is_looked_up_with_transport(
    service: MessageService,
) -> None:
    """With a transport and no request_id, the same: INVALID_ARGUMENT, not -1."""
    transport = Scripted(Sent(seq="1"))
    manager = V2TIMMessageManager(service, transport=transport)
    answer = manager.reSendMessage("nope", "yes")  # type: ignore[arg-type]
    expected = V2TimValueCallback(
        code=1002, desc="online_user_only must be a bool, got 'yes'", data=None
    )
    assert (expected, []) == (answer, transport.sent)


def test_transport_without_send_is_refused_with_its_message(
    service: MessageService,
) -> None:
    """The refusal names msgstate.Transport and shows what was given."""
    given = object()
    with pytest.raises(InvalidArgument) as info:
        V2TIMMessageManager(service, transport=given)  # type: ignore[arg-type]
    expected = (
        "transport must have a send(message) method (msgstate.Transport), "
        f"got {given!r}"
    )
    assert (expected, ErrorCode.INVALID_ARGUMENT) == (info.value.desc, info.value.code)


def test_async_transport_is_refused_with_its_message(service: MessageService) -> None:
    """A coroutine send is refused with a sentence saying what to give instead."""

    class Async:
        async def send(self, message: MessageView) -> Sent | SendError:
            return Sent(seq="1")

    with pytest.raises(InvalidArgument) as info:
        V2TIMMessageManager(service, transport=Async())  # type: ignore[arg-type]
    expected = (
        "transport.send is a coroutine function (an AsyncTransport); "
        "the facade calls send synchronously: give a Transport"
    )
    assert expected == info.value.desc


@pytest.mark.parametrize("with_transport", [False, True])
def test_an_unknown_id_with_a_bad_argument_answers_the_bad_argument(
    service: MessageService, with_transport: bool
) -> None:
    """The arguments are checked before the id is looked up, with a transport and
    a request_id as without (the transport path used to answer -1 first)."""
    manager = V2TIMMessageManager(
        service, transport=Scripted(Sent(seq="1")) if with_transport else None
    )
    answer = manager.reSendMessage("nope", "yes", request_id="r1").to_dict()  # type: ignore[arg-type]
    assert (1002, None) == (answer["code"], answer["data"])
    assert answer["desc"].startswith("online_user_only must be")
    unknown = manager.reSendMessage("nope", request_id="r1").to_dict()
    assert (-1, "message not found") == (unknown["code"], unknown["desc"])
