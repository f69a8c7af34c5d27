"""The V2TIM-shaped facade: ``reSendMessage`` answers and the ``V2TimMessage`` map."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageService,
    MessageStatus,
    MessageView,
    MsgStateError,
    ResendPolicy,
    RetryClass,
    SendError,
    Sent,
    SimulatedTransport,
)
from msgstate.tencent import V2TIMMessageManager, V2TimValueCallback
from tests.conftest import ServiceFactory
from tests.support import EPOCH, FakeClock

RETRYABLE = 6012  # ERR_REQUEST_TIME_OUT: transient
PERMANENT = 6017  # ERR_INVALID_PARAMETERS: permanent

NATIVE_KEYS = sorted(
    [
        "cloudCustomData",
        "customElem",
        "elemType",
        "faceElem",
        "faceUrl",
        "fileElem",
        "friendRemark",
        "groupAtUserList",
        "groupID",
        "groupTipsElem",
        "hasRiskContent",
        "imageElem",
        "isBroadcastMessage",
        "isExcludedFromContentModeration",
        "isExcludedFromLastMessage",
        "isExcludedFromUnreadCount",
        "isPeerRead",
        "isRead",
        "isSelf",
        "isSupportMessageExtension",
        "localCustomData",
        "localCustomInt",
        "locationElem",
        "mergerElem",
        "msgID",
        "nameCard",
        "needReadReceipt",
        "nickName",
        "offlinePushInfo",
        "priority",
        "progress",
        "random",
        "revokeReason",
        "revokerInfo",
        "sender",
        "seq",
        "soundElem",
        "status",
        "textElem",
        "timestamp",
        "userID",
        "videoElem",
    ]
)
"""The keys native 8.1 sends (CommonUtil.convertV2TIMMessageToMap) plus every
element key of the seed page's template; no ``id``, no ``messageFromWeb``."""

ELEM_KEYS = {
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


def create_text(service: MessageService, msg_id: str = "m1", **fields: Any) -> None:
    """Create a C2C text message from alice to bob (fields override)."""
    arguments: dict[str, Any] = {
        "sender": "alice",
        "user_id": "bob",
        "content": {"text": "hi"},
    }
    arguments.update(fields)
    service.create(msg_id, **arguments)


def failed_text(
    service: MessageService, msg_id: str = "m1", code: int = RETRYABLE
) -> None:
    """Create a text message whose first send failed with ``code``."""
    create_text(service, msg_id)
    service.record_failure(msg_id, code=code, desc="boom")


def service_refusal(service: MessageService, msg_id: object) -> MsgStateError:
    """The error the service itself raises for resending ``msg_id`` now."""
    with pytest.raises(MsgStateError) as info:
        service.resend(msg_id)  # type: ignore[arg-type]
    return info.value


def refusal(
    code: ErrorCode, error: MsgStateError, view: MessageView | None
) -> V2TimValueCallback:
    """The callback expected for a refusal: ``code``, the service's desc, the view."""
    return V2TimValueCallback(code=int(code), desc=error.desc, data=view)


# -- success --


def test_resend_after_retryable_failure_answers_ok_with_the_message(
    service: MessageService,
) -> None:
    """A resend after a transient failure answers code 0, desc "ok", the message."""
    failed_text(service)
    actual = V2TIMMessageManager(service).reSendMessage("m1")
    expected = V2TimValueCallback(code=0, desc="ok", data=service.get("m1"))
    assert expected == actual


def test_resend_answer_maps_every_field_of_a_c2c_text_message(
    service: MessageService, clock: FakeClock
) -> None:
    """The record-only success answer's dict is the documented mapping."""
    create_text(
        service,
        priority=1,
        need_read_receipt=True,
        cloud_custom_data='{"k":1}',
    )
    clock.advance(5)
    service.record_failure("m1", code=RETRYABLE)
    clock.advance(5)
    actual = V2TIMMessageManager(service).reSendMessage("m1").to_dict()
    expected = {
        "code": 0,
        "desc": "ok",
        "data": {
            "cloudCustomData": '{"k":1}',
            "customElem": None,
            "elemType": 1,
            "faceElem": None,
            "faceUrl": "",
            "fileElem": None,
            "friendRemark": "",
            "groupAtUserList": [],
            "groupID": None,
            "groupTipsElem": None,
            "hasRiskContent": False,
            "imageElem": None,
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
            "locationElem": None,
            "mergerElem": None,
            "msgID": "m1",
            "nameCard": "",
            "needReadReceipt": True,
            "nickName": "",
            "offlinePushInfo": {
                "desc": "",
                "disablePush": False,
                "ext": "",
                "title": "",
            },
            "priority": 1,
            "progress": 100,
            "random": 2897667843,
            "revokeReason": "",
            "revokerInfo": None,
            "sender": "alice",
            "seq": "0",
            "soundElem": None,
            "status": 1,
            "textElem": {"text": "hi"},
            "timestamp": int(EPOCH.timestamp()),
            "userID": "bob",
            "videoElem": None,
        },
    }
    assert expected == actual


def test_delivered_message_maps_seq_server_time_status_and_progress(
    service: MessageService, clock: FakeClock
) -> None:
    """Once delivered: seq as given, timestamp the server's, status 2, progress 100."""
    service.create(
        "g1",
        sender="alice",
        group_id="room",
        elem_type=2,
        content={"data": "x", "desc": "d", "extension": "e"},
    )
    clock.advance(10)
    service.record_delivery("g1", seq="42", server_time=EPOCH + timedelta(seconds=7))
    data = V2TimValueCallback.ok(service.get("g1")).to_dict()["data"]
    keys = ("customElem", "groupID", "progress", "seq", "status", "timestamp", "userID")
    actual = {key: data[key] for key in keys}
    expected = {
        "customElem": {"data": "x", "desc": "d", "extension": "e"},
        "groupID": "room",
        "progress": 100,
        "seq": "42",
        "status": 2,
        "timestamp": int(EPOCH.timestamp()) + 7,
        "userID": None,
    }
    assert expected == actual


@pytest.mark.parametrize("elem_type", sorted(ELEM_KEYS))
def test_content_fills_exactly_the_element_that_elem_type_names(
    service: MessageService, elem_type: int
) -> None:
    """The view's content goes to the elemType's key; every other element is None."""
    content = {"groupID": "g", "type": 1} if elem_type == 9 else {}
    content |= {"abstractList": ["a"]} if elem_type == 10 else {}
    content |= {"longitude": 1.5, "latitude": 2.5} if elem_type == 7 else {}
    content["field"] = elem_type  # a key the model does not know is kept
    create_text(service, elem_type=elem_type, content=content)
    data = V2TimValueCallback.ok(service.get("m1")).to_dict()["data"]
    actual = {key: data[key] for key in ELEM_KEYS.values()}
    expected = {
        key: (content if number == elem_type else None)
        for number, key in ELEM_KEYS.items()
    }
    assert expected == actual


def test_unknown_elem_type_leaves_every_element_none(service: MessageService) -> None:
    """elemType 0 (none) names no element, so all ten element keys are None."""
    create_text(service, elem_type=0, content={"field": 0})
    data = V2TimValueCallback.ok(service.get("m1")).to_dict()["data"]
    actual = {key: data[key] for key in ELEM_KEYS.values()}
    expected = dict.fromkeys(ELEM_KEYS.values())
    assert expected == actual


def test_to_dict_copies_content_so_the_view_is_not_changed(
    service: MessageService,
) -> None:
    """Mutating an answer's element does not change the view it came from."""
    create_text(service, content={"text": "hi", "nested": {"a": 1}})
    callback = V2TimValueCallback.ok(service.get("m1"))
    callback.to_dict()["data"]["textElem"]["nested"]["a"] = 2
    expected = {"text": "hi", "nested": {"a": 1}}
    actual = callback.to_dict()["data"]["textElem"]
    assert expected == actual


def test_random_is_a_fixed_unsigned_32_bit_number_of_the_msg_id(
    service: MessageService,
) -> None:
    """random is derived from msg_id alone (BLAKE2b), the same in every process."""
    create_text(service, "m1")
    create_text(service, "g1")
    actual = [
        V2TimValueCallback.ok(service.get(msg_id)).to_dict()["data"]["random"]
        for msg_id in ("m1", "g1")
    ]
    expected = [2897667843, 3919906997]
    assert expected == actual


# -- refusals --


def test_unknown_message_answers_message_not_found(service: MessageService) -> None:
    """An unknown msgID answers the plugin's -1 "message not found", no data."""
    actual = V2TIMMessageManager(service).reSendMessage("nope")
    expected = V2TimValueCallback(code=-1, desc="message not found", data=None)
    assert expected == actual


def test_message_in_flight_answers_send_in_progress(service: MessageService) -> None:
    """A message whose send has not failed answers SEND_IN_PROGRESS, no data."""
    create_text(service)
    actual = V2TIMMessageManager(service).reSendMessage("m1")
    expected = refusal(
        ErrorCode.SEND_IN_PROGRESS, service_refusal(service, "m1"), service.get("m1")
    )
    assert expected == actual


def test_delivered_message_answers_already_delivered(service: MessageService) -> None:
    """A delivered message is never resent: ALREADY_DELIVERED, no data."""
    create_text(service)
    service.record_delivery("m1", seq="7")
    actual = V2TIMMessageManager(service).reSendMessage("m1")
    expected = refusal(
        ErrorCode.ALREADY_DELIVERED, service_refusal(service, "m1"), service.get("m1")
    )
    assert expected == actual


def test_permanent_error_answers_not_retryable(service: MessageService) -> None:
    """A message that failed with a permanent code answers NOT_RETRYABLE, no data."""
    failed_text(service, code=PERMANENT)
    actual = V2TIMMessageManager(service).reSendMessage("m1")
    expected = refusal(
        ErrorCode.NOT_RETRYABLE, service_refusal(service, "m1"), service.get("m1")
    )
    assert expected == actual


def test_last_allowed_attempt_failed_answers_attempts_exhausted(
    make_service: ServiceFactory,
) -> None:
    """With max_attempts=1, the first failure exhausts the attempts."""
    service = make_service(ResendPolicy(max_attempts=1))
    failed_text(service)
    actual = V2TIMMessageManager(service).reSendMessage("m1")
    expected = refusal(
        ErrorCode.ATTEMPTS_EXHAUSTED, service_refusal(service, "m1"), service.get("m1")
    )
    assert expected == actual


def test_enforced_backoff_answers_too_early(make_service: ServiceFactory) -> None:
    """With enforce_backoff, a resend right after the failure answers TOO_EARLY."""
    service = make_service(ResendPolicy(enforce_backoff=True))
    failed_text(service)
    actual = V2TIMMessageManager(service).reSendMessage("m1")
    expected = refusal(
        ErrorCode.TOO_EARLY, service_refusal(service, "m1"), service.get("m1")
    )
    assert expected == actual


def test_message_older_than_max_age_answers_expired(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """A message older than the policy's max_age answers EXPIRED."""
    service = make_service(ResendPolicy(max_age=timedelta(minutes=1)))
    failed_text(service)
    clock.advance(120)
    actual = V2TIMMessageManager(service).reSendMessage("m1")
    expected = refusal(
        ErrorCode.EXPIRED, service_refusal(service, "m1"), service.get("m1")
    )
    assert expected == actual


def test_msg_id_of_wrong_type_answers_invalid_argument(
    service: MessageService,
) -> None:
    """A msgID that is not a str answers INVALID_ARGUMENT instead of raising."""
    actual = V2TIMMessageManager(service).reSendMessage(42)  # type: ignore[arg-type]
    expected = refusal(ErrorCode.INVALID_ARGUMENT, service_refusal(service, 42), None)
    assert expected == actual


def test_online_user_only_of_wrong_type_answers_invalid_argument(
    service: MessageService,
) -> None:
    """An onlineUserOnly that is not a bool answers INVALID_ARGUMENT."""
    failed_text(service)
    manager = V2TIMMessageManager(service)
    actual = manager.reSendMessage("m1", "yes")  # type: ignore[arg-type]
    expected = (ErrorCode.INVALID_ARGUMENT, service.get("m1"))
    assert expected == (actual.code, actual.data)


def test_refused_resend_writes_nothing(service: MessageService) -> None:
    """A refusal answer leaves the message's history as it was."""
    create_text(service)
    V2TIMMessageManager(service).reSendMessage("m1")
    expected = ["Created"]
    actual = [entry.event for entry in service.history("m1")]
    assert expected == actual


def test_unknown_id_dict_has_code_desc_and_null_data(service: MessageService) -> None:
    """An unknown msgID serialises as the 8.1 plugin's {-1, "message not found"}."""
    actual = V2TIMMessageManager(service).reSendMessage("nope").to_dict()
    expected = {"code": -1, "desc": "message not found", "data": None}
    assert expected == actual


def test_refusal_dict_carries_the_message_as_it_is_now(
    service: MessageService,
) -> None:
    """A policy refusal keeps msgstate's code and answers the current message."""
    create_text(service)
    actual = V2TIMMessageManager(service).reSendMessage("m1").to_dict()
    expected = (1005, "m1", 1)
    assert expected == (
        actual["code"],
        actual["data"]["msgID"],
        actual["data"]["status"],
    )


# -- shape and serialisation --


def test_data_has_exactly_the_native_keys_sorted(service: MessageService) -> None:
    """The V2TimMessage map has every key native 8.1 sends, sorted, and no more."""
    failed_text(service)
    data = V2TIMMessageManager(service).reSendMessage("m1").to_dict()["data"]
    assert NATIVE_KEYS == list(data)


def test_json_round_trip_gives_the_dict_back(service: MessageService) -> None:
    """to_json is JSON whose parse equals to_dict."""
    create_text(service, content={"text": "你好", "list": [1, 2.5, None, True]})
    service.record_failure("m1", code=RETRYABLE)
    callback = V2TIMMessageManager(service).reSendMessage("m1")
    assert callback.to_dict() == json.loads(callback.to_json())


def test_to_dict_is_json_serialisable_with_json_dumps(service: MessageService) -> None:
    """json.dumps accepts to_dict as is, and its parse gives the same dict."""
    failed_text(service)
    expected = V2TIMMessageManager(service).reSendMessage("m1").to_dict()
    assert expected == json.loads(json.dumps(expected))


def test_callback_rejects_a_code_that_is_not_an_int() -> None:
    """V2TimValueCallback validates its fields' types."""
    with pytest.raises(TypeError):
        V2TimValueCallback(code="0", desc="", data=None)  # type: ignore[arg-type]


# -- arguments --


@pytest.mark.parametrize(
    "spelling", ["webMessageInstatnce", "webMessageInstance"], ids=str
)
def test_both_spellings_of_web_message_instance_are_accepted_and_ignored(
    service: MessageService, spelling: str
) -> None:
    """Tencent's misspelling and the correct one are both accepted and ignored."""
    failed_text(service)
    instance: dict[str, Any] = {spelling: {"ID": "web-1"}}
    actual = V2TIMMessageManager(service).reSendMessage("m1", **instance)
    expected = V2TimValueCallback(code=0, desc="ok", data=service.get("m1"))
    assert expected == actual


def test_misspelled_web_message_instance_is_accepted_positionally(
    service: MessageService,
) -> None:
    """The third positional argument is Tencent's webMessageInstatnce."""
    failed_text(service)
    actual = V2TIMMessageManager(service).reSendMessage("m1", None, "web").code
    assert 0 == actual


def test_online_user_only_reaches_the_resend_event(service: MessageService) -> None:
    """onlineUserOnly=True is recorded on the ResendRequested event."""
    failed_text(service)
    V2TIMMessageManager(service).reSendMessage("m1", onlineUserOnly=True)
    last = service.history("m1")[-1]
    expected = ("ResendRequested", True)
    assert expected == (last.event, last.data["online_user_only"])


def test_omitted_online_user_only_keeps_the_creation_option(
    service: MessageService,
) -> None:
    """Without onlineUserOnly the option given at creation stays in force."""
    create_text(service, online_user_only=True)
    service.record_failure("m1", code=RETRYABLE)
    V2TIMMessageManager(service).reSendMessage("m1")
    assert True is service.history("m1")[-1].data["online_user_only"]


def test_actor_is_recorded_on_the_resend_event(service: MessageService) -> None:
    """actor reaches the ResendRequested event."""
    failed_text(service)
    V2TIMMessageManager(service).reSendMessage("m1", actor="ops")
    assert "ops" == service.history("m1")[-1].data["actor"]


def test_repeated_request_id_answers_the_same_and_writes_once(
    service: MessageService,
) -> None:
    """A request_id already accepted answers the same callback and writes nothing."""
    failed_text(service)
    manager = V2TIMMessageManager(service)
    first = manager.reSendMessage("m1", request_id="r1")
    second = manager.reSendMessage("m1", request_id="r1")
    expected = (first, ["Created", "SendFailed", "ResendRequested"])
    actual = (second, [entry.event for entry in service.history("m1")])
    assert expected == actual


def test_manager_exposes_its_service(service: MessageService) -> None:
    """The manager answers from the service it was given."""
    assert service is V2TIMMessageManager(service).service


# -- with a transport: claim, send, record, answer as the plugin --


class Scripted:
    """A transport answering fixed outcomes in turn and remembering what it sent."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[tuple[str, int, MessageStatus]] = []

    def send(self, message: MessageView) -> Sent | SendError:
        self.sent.append((message.msg_id, message.attempts, message.status))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]


def events(service: MessageService, msg_id: str = "m1") -> list[str]:
    return [entry.event for entry in service.history(msg_id)]


def test_sent_answers_ok_with_the_delivered_message(service: MessageService) -> None:
    """Sent: recorded as delivered; code 0, "ok", status 2, the assigned seq."""
    failed_text(service)
    transport = Scripted(Sent(seq="99", server_time=EPOCH + timedelta(seconds=3)))
    actual = V2TIMMessageManager(service, transport=transport).reSendMessage("m1")
    expected = V2TimValueCallback(code=0, desc="ok", data=service.get("m1"))
    assert expected == actual
    data = actual.to_dict()["data"]
    assert (2, "99", 100) == (data["status"], data["seq"], data["progress"])
    assert ["Created", "SendFailed", "ResendRequested", "Delivered"] == events(service)
    assert [("m1", 2, MessageStatus.SENDING)] == transport.sent


def test_send_error_answers_the_tencent_code_with_the_failed_message(
    service: MessageService,
) -> None:
    """SendError: recorded with code, desc, retry_after; answered with status 3."""
    failed_text(service)
    transport = Scripted(SendError(code=60018, desc="too frequent", retry_after=7.5))
    actual = V2TIMMessageManager(service, transport=transport).reSendMessage("m1")
    view = service.get("m1")
    assert V2TimValueCallback(code=60018, desc="too frequent", data=view) == actual
    recorded = (view.status, view.attempts, view.last_error_code, view.last_retry_after)
    assert (MessageStatus.SEND_FAIL, 2, 60018, 7.5) == recorded
    assert 3 == actual.to_dict()["data"]["status"]


@pytest.mark.parametrize(
    "outcome", [ConnectionResetError("reset by peer"), None, "sent!"], ids=repr
)
def test_transport_that_raises_is_recorded_as_transport_failed(
    service: MessageService, outcome: object
) -> None:
    """A raise (or a non-answer) is TRANSPORT_FAILED, AMBIGUOUS, never SENDING."""
    failed_text(service)
    transport = Scripted(outcome)
    actual = V2TIMMessageManager(service, transport=transport).reSendMessage("m1")
    view = service.get("m1")
    assert (1014, view) == (actual.code, actual.data)
    assert (MessageStatus.SEND_FAIL, 1014, RetryClass.AMBIGUOUS, True) == (
        view.status,
        view.last_error_code,
        view.last_error_class,
        view.maybe_delivered,
    )
    assert view.last_error_desc == actual.desc
    assert actual.desc.startswith("transport ")
    if isinstance(outcome, BaseException):
        assert "ConnectionResetError: reset by peer" in actual.desc


def test_refusal_and_unknown_id_send_nothing(service: MessageService) -> None:
    """The transport is not called when the resend is refused or the id unknown."""
    create_text(service)  # first send in flight
    transport = Scripted()
    manager = V2TIMMessageManager(service, transport=transport)
    refused = manager.reSendMessage("m1")
    unknown = manager.reSendMessage("nope")
    assert (1005, -1, []) == (refused.code, unknown.code, transport.sent)
    assert ["Created"] == events(service)


def test_repeated_request_id_sends_once(service: MessageService) -> None:
    """A request_id already accepted answers the current state, sending nothing."""
    failed_text(service)
    transport = Scripted(SendError(code=6012, desc="timeout"))
    manager = V2TIMMessageManager(service, transport=transport)
    first = manager.reSendMessage("m1", request_id="r1")
    second = manager.reSendMessage("m1", request_id="r1")
    assert first == second
    assert [("m1", 2, MessageStatus.SENDING)] == transport.sent
    assert ["Created", "SendFailed", "ResendRequested", "SendFailed"] == events(service)


def test_repeated_request_id_after_delivery_answers_ok(service: MessageService) -> None:
    """The repeat of a request whose send succeeded answers 0 "ok" again."""
    failed_text(service)
    manager = V2TIMMessageManager(service, transport=Scripted(Sent(seq="5")))
    manager.reSendMessage("m1", request_id="r1")
    again = manager.reSendMessage("m1", request_id="r1")
    assert (0, "ok", MessageStatus.SEND_SUCC) == (
        again.code,
        again.desc,
        again.data.status if again.data else None,
    )


def test_simulated_transport_answers_are_recorded_and_answered(
    service: MessageService,
) -> None:
    """With the simulated transport, each answer is its outcome, recorded."""
    transport = SimulatedTransport(seed=3, failure_rate=0.5)
    manager = V2TIMMessageManager(service, transport=transport)
    seen = set()
    for i in range(12):
        msg_id = f"s{i}"
        create_text(service, msg_id)
        service.record_failure(msg_id, code=6012)
        outcome = transport.outcome(msg_id, 2)
        answer = manager.reSendMessage(msg_id)
        view = service.get(msg_id)
        if isinstance(outcome, Sent):
            expected = (0, MessageStatus.SEND_SUCC, outcome.seq)
            actual = (answer.code, view.status, view.seq)
        else:
            expected = (outcome.code, MessageStatus.SEND_FAIL, outcome.code)
            actual = (answer.code, view.status, view.last_error_code)
        assert expected == actual
        seen.add(answer.code == 0)
    assert {True, False} == seen


def test_transport_must_have_send(service: MessageService) -> None:
    """Something that is not a Transport is refused at construction."""
    with pytest.raises(InvalidArgument, match="transport"):
        V2TIMMessageManager(service, transport=object())  # type: ignore[arg-type]


def test_manager_exposes_its_transport(service: MessageService) -> None:
    """transport is None (record only) or the one given."""
    transport = Scripted()
    assert None is V2TIMMessageManager(service).transport
    assert transport is V2TIMMessageManager(service, transport=transport).transport


# -- the C SDK shape --


def test_csdk_shape_wraps_the_message_in_a_json_string(
    service: MessageService,
) -> None:
    """shape="csdk": code, desc and json_param, the C SDK message as JSON text."""
    failed_text(service)
    callback = V2TIMMessageManager(service).reSendMessage("m1")
    answer = callback.to_dict("csdk")
    message = json.loads(answer["json_param"])
    assert (0, "ok") == (answer["code"], answer["desc"])
    expected = {
        "message_msg_id": "m1",
        "message_status": 1,
        "message_conv_type": 1,
        "message_conv_id": "bob",
        "message_risk_type_identified": 0,
        "message_elem_array": [{"elem_type": 0, "text_elem_content": "hi"}],
    }
    assert expected == {key: message[key] for key in expected}
    assert json.loads(callback.to_json("csdk")) == answer


def test_csdk_unknown_id_is_6017(service: MessageService) -> None:
    """The >= 8.9 native adapter answers an unknown msgID with 6017."""
    answer = V2TIMMessageManager(service).reSendMessage("nope").to_dict("csdk")
    assert {"code": 6017, "desc": "message not found", "json_param": None} == answer


def test_unknown_shape_is_refused(service: MessageService) -> None:
    """to_dict names the shapes it knows."""
    failed_text(service)
    callback = V2TIMMessageManager(service).reSendMessage("m1")
    with pytest.raises(InvalidArgument, match="v2tim"):
        callback.to_dict("web")  # type: ignore[arg-type]


def test_an_async_transport_is_refused(service: MessageService) -> None:
    """A coroutine send cannot be called by the synchronous facade."""

    class Async:
        async def send(self, message: MessageView) -> Sent | SendError:
            return Sent(seq="1")

    with pytest.raises(InvalidArgument, match="AsyncTransport"):
        V2TIMMessageManager(service, transport=Async())  # type: ignore[arg-type]
