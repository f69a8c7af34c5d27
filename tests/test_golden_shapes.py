"""Golden shapes: reSendMessage's answers as the plugin's own parsing reads them.

``tests/data/golden_shapes.json`` lists, from the Dart and Java sources it cites
(tencent_cloud_chat_sdk 8.1.6122 and the >= 8.5 native models), every key the
client reads, its Dart type and whether null is accepted. Each answer msgstate
gives (success, send failure, a transport that raised, refusal, unknown id), for
each element type, in both shapes, is checked against it here. The checker
follows Dart's ``fromJson`` casts: a JSON int where ``double`` is declared fails
(the Dart VM does not widen it), a bool is not an int, a non-nullable key must be
present and non-null.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstate import MessageService, SendError, Sent, Transport
from msgstate.tencent import V2TIMMessageManager
from msgstate.views import MessageView
from tests.strategies import ELEMENT_SAMPLES, element_contents

GOLDEN = json.loads(
    (Path(__file__).parent / "data" / "golden_shapes.json").read_text("utf-8")
)
V2TIM = GOLDEN["v2tim_81"]
CSDK = GOLDEN["csdk_85"]
SCENARIOS = ["success", "send_failure", "transport_raised", "refusal", "unknown_id"]
FAILURE = SendError(code=80001, desc="text blocked")


class Scripted:
    """A transport answering one fixed outcome (or raising it)."""

    def __init__(self, outcome: Sent | SendError | Exception) -> None:
        self.outcome = outcome

    def send(self, message: MessageView) -> Sent | SendError:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def _dart_type_problems(
    value: Any, dart: str, models: dict[str, Any], path: str
) -> Iterator[str]:
    """Why ``value`` would not parse as Dart type ``dart`` (nothing if it would)."""
    if dart.startswith("Map:"):
        if not isinstance(value, dict):
            yield f"{path}: {value!r} is not a Map"
            return
        yield from _model_problems(value, models[dart[4:]], models, path)
        return
    if dart.startswith("List<"):
        if not isinstance(value, list):
            yield f"{path}: {value!r} is not a List"
            return
        item = dart[5:-1]
        for index, element in enumerate(value):
            yield from _dart_type_problems(element, item, models, f"{path}[{index}]")
        return
    ok = {
        "String": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "double": isinstance(value, float),
        "Map": isinstance(value, dict),
        "scalar": isinstance(value, str | int | float | bool),
    }[dart]
    if not ok:
        yield f"{path}: {value!r} is not a Dart {dart}"


def _model_problems(
    value: dict[str, Any], model: dict[str, Any], models: dict[str, Any], path: str
) -> Iterator[str]:
    """Every key of ``model``: its type if present, present if non-nullable."""
    for key, spec in model["keys"].items():
        if key not in value or value[key] is None:
            if not spec["nullable"]:
                yield f"{path}.{key}: non-nullable ({model['source']}) but missing"
            continue
        yield from _dart_type_problems(
            value[key], spec["type"], models, f"{path}.{key}"
        )


def _prepare(service: MessageService, elem_type: int, content: dict[str, Any]) -> None:
    target = {"group_id": "room"} if elem_type == 9 else {"user_id": "bob"}
    service.create("m1", sender="alice", elem_type=elem_type, content=content, **target)


def _answer(scenario: str, elem_type: int, content: dict[str, Any], shape: str) -> Any:
    """The facade's answer for ``scenario``, as ``to_dict(shape)``."""
    service = MessageService.open("memory://")
    try:
        _prepare(service, elem_type, content)
        transport: Transport = {
            "success": Scripted(Sent(seq="4242")),
            "send_failure": Scripted(FAILURE),
            "transport_raised": Scripted(ConnectionResetError("reset")),
            "refusal": Scripted(Sent(seq="1")),
            "unknown_id": Scripted(Sent(seq="1")),
        }[scenario]
        manager = V2TIMMessageManager(service, transport=transport)
        if scenario == "unknown_id":
            return manager.reSendMessage("nope").to_dict(shape)  # type: ignore[arg-type]
        if scenario != "refusal":  # a refusal: the first send is still in flight
            service.record_failure("m1", code=6012)
        return manager.reSendMessage("m1").to_dict(shape)  # type: ignore[arg-type]
    finally:
        service.close()


EXPECTED_V2TIM: dict[str, tuple[int, str | None, int | None]] = {
    # scenario: (code, desc or None for any, data.status or None for null data)
    "success": (0, "ok", 2),
    "send_failure": (80001, "text blocked", 3),
    "transport_raised": (1014, None, 3),
    "refusal": (1005, None, 1),
    "unknown_id": (-1, "message not found", None),
}


def _v2tim_problems(answer: dict[str, Any], elem_type: int) -> list[str]:
    models = V2TIM["models"]
    problems = list(_model_problems(answer, V2TIM["callback"], models, "callback"))
    data = answer["data"]
    if data is None:
        return problems
    native = V2TIM["native_sends"]
    elem_key = V2TIM["elem_keys"][str(elem_type)]
    problems += [
        f"data.{k}: native 8.1 sends it" for k in native["keys"] if k not in data
    ]
    problems += [
        f"data.{k}: native never sends it" for k in native["never"] if k in data
    ]
    known = set(models["V2TimMessage"]["keys"])
    problems += [f"data.{k}: no model reads it" for k in data if k not in known]
    if data[elem_key] is None:
        problems.append(f"data.{elem_key} is null for elemType {elem_type}")
    others = [k for k in V2TIM["elem_keys"].values() if k != elem_key and data[k]]
    problems += [f"data.{k}: not the message's element" for k in others]
    if sorted(data["offlinePushInfo"]) != sorted(native["offline_push_info_keys"]):
        problems.append(f"data.offlinePushInfo: {data['offlinePushInfo']!r}")
    return problems


def _csdk_problems(answer: dict[str, Any], elem_type: int) -> list[str]:
    models = CSDK["models"]
    problems = list(_model_problems(answer, CSDK["callback"], models, "callback"))
    if sorted(answer) != ["code", "desc", "json_param"]:
        problems.append(f"callback keys {sorted(answer)}")
    if answer["json_param"] is None:
        return problems
    message = json.loads(answer["json_param"])
    problems += list(
        _model_problems(message, models["V2TimMessage"], models, "json_param")
    )
    known = set(models["V2TimMessage"]["keys"])
    problems += [
        f"json_param.{k}: no model reads it" for k in message if k not in known
    ]
    elems = message["message_elem_array"]
    c_type = CSDK["c_elem_types"][str(elem_type)]
    if [e.get("elem_type") for e in elems] != [c_type]:
        problems.append(f"message_elem_array types {elems!r}, want [{c_type}]")
        return problems
    elem_model = models[f"C_{c_type}"]
    problems += list(_model_problems(elems[0], elem_model, models, "elem"))
    readable = set(elem_model["keys"]) | {"elem_type"}
    problems += [f"elem.{k}: no model reads it" for k in elems[0] if k not in readable]
    return problems


CASES = [
    (scenario, elem_type, index)
    for scenario in SCENARIOS
    for elem_type in sorted(ELEMENT_SAMPLES)
    for index in range(len(ELEMENT_SAMPLES[elem_type]))
]


@pytest.mark.parametrize(("scenario", "elem_type", "sample"), CASES)
def test_v2tim_answer_parses_as_the_81_models_read_it(
    scenario: str, elem_type: int, sample: int
) -> None:
    """Every key 8.1 reads has its Dart type; the answer is the plugin's."""
    content = ELEMENT_SAMPLES[elem_type][sample]
    answer = _answer(scenario, elem_type, content, "v2tim")
    assert [] == _v2tim_problems(answer, elem_type)
    code, desc, status = EXPECTED_V2TIM[scenario]
    actual = (
        answer["code"],
        answer["desc"] if desc is not None else None,
        None if answer["data"] is None else answer["data"]["status"],
    )
    assert (code, desc, status) == actual
    if scenario == "success":
        assert ("4242", 100) == (answer["data"]["seq"], answer["data"]["progress"])


@pytest.mark.parametrize(("scenario", "elem_type", "sample"), CASES)
def test_csdk_answer_parses_as_the_85_native_models_read_it(
    scenario: str, elem_type: int, sample: int
) -> None:
    """json_param is the C SDK message every >= 8.5 model parses."""
    content = ELEMENT_SAMPLES[elem_type][sample]
    answer = _answer(scenario, elem_type, content, "csdk")
    assert [] == _csdk_problems(answer, elem_type)
    code, _, status = EXPECTED_V2TIM[scenario]
    if scenario == "unknown_id":
        expected = CSDK["answers"]["unknown_id"]
        assert expected == answer
        return
    message = json.loads(answer["json_param"])
    assert (code, status) == (answer["code"], message["message_status"])
    if scenario == "success":
        assert 4242 == message["message_seq"]


@settings(max_examples=60, deadline=None)
@given(data=st.data(), elem_type=st.integers(1, 10))
def test_any_valid_content_gives_answers_both_shapes_parse(
    data: st.DataObject, elem_type: int
) -> None:
    """Whatever content the Dart model accepts, both shapes stay parseable."""
    content = data.draw(element_contents(elem_type))
    for shape, problems in (("v2tim", _v2tim_problems), ("csdk", _csdk_problems)):
        answer = _answer("success", elem_type, content, shape)
        assert [] == problems(answer, elem_type)


def test_location_numbers_are_doubles_in_both_shapes() -> None:
    """JSON ints given for longitude/latitude are emitted as floats (Dart double)."""
    content = {"longitude": 113, "latitude": -22}
    v2tim = _answer("success", 7, content, "v2tim")["data"]["locationElem"]
    csdk = json.loads(_answer("success", 7, content, "csdk")["json_param"])
    elem = csdk["message_elem_array"][0]
    actual = [
        v2tim["longitude"],
        v2tim["latitude"],
        elem["location_elem_longitude"],
        elem["location_elem_latitude"],
    ]
    assert [113.0, -22.0, 113.0, -22.0] == actual
    assert all(type(number) is float for number in actual)


def test_group_tips_types_map_to_c_tip_and_join_types() -> None:
    """V2 JOIN/INVITE are C type 1 told apart by join_type; QUIT is C 2."""
    actual = []
    for v2_type in (1, 2, 3, 10):
        answer = _answer("success", 9, {"groupID": "g", "type": v2_type}, "csdk")
        elem = json.loads(answer["json_param"])["message_elem_array"][0]
        actual.append(
            (elem["group_tips_elem_tip_type"], elem.get("group_tips_elem_join_type"))
        )
    assert [(1, 1), (1, 2), (2, None), (16, None)] == actual


def test_checker_rejects_what_dart_would_reject() -> None:
    """The golden checker itself fails an int double, a bool int, a missing key."""
    models = V2TIM["models"]
    bad = {"longitude": 1, "latitude": 2.0}
    assert 1 == len(
        list(_model_problems(bad, models["V2TimLocationElem"], models, "l"))
    )
    tips = {"groupID": "g", "type": True}
    assert 1 == len(
        list(_model_problems(tips, models["V2TimGroupTipsElem"], models, "t"))
    )
    assert 1 == len(list(_model_problems({}, models["V2TimMergerElem"], models, "m")))


MEMBER_NULLS = {
    "group_member_info_face_url": None,
    "group_member_info_friend_remark": None,
    "group_member_info_name_card": None,
    "group_member_info_nick_name": None,
    "group_member_info_online_devices": [],
}

CSDK_ELEMENTS: dict[int, dict[str, Any]] = {
    1: {"elem_type": 0, "text_elem_content": "hi"},
    2: {
        "elem_type": 3,
        "custom_elem_data": '{"k":1}',
        "custom_elem_desc": "d",
        "custom_elem_ext": "e",
    },
    3: {
        "elem_type": 1,
        "image_elem_orig_path": "/p.png",
        "image_elem_orig_id": "u0",
        "image_elem_orig_pic_size": 10,
        "image_elem_orig_pic_width": 4,
        "image_elem_orig_pic_height": 3,
        "image_elem_orig_url": "https://x/0",
        "image_elem_thumb_id": "u1",
        "image_elem_thumb_pic_size": 5,
        "image_elem_thumb_pic_width": 2,
        "image_elem_thumb_pic_height": 1,
        "image_elem_thumb_url": "https://x/1",
    },
    4: {
        "elem_type": 2,
        "sound_elem_file_path": "/s.aac",
        "sound_elem_file_id": "s",
        "sound_elem_file_size": 99,
        "sound_elem_file_time": 3,
        "sound_elem_url": "https://x/s",
    },
    5: {
        "elem_type": 9,
        "video_elem_video_path": "/v.mp4",
        "video_elem_video_id": "v",
        "video_elem_video_size": 1000,
        "video_elem_video_duration": 9,
        "video_elem_video_url": "https://x/v",
        "video_elem_image_path": "/v.jpg",
        "video_elem_image_id": "vs",
        "video_elem_image_size": 10,
        "video_elem_image_width": 640,
        "video_elem_image_height": 480,
        "video_elem_image_url": "https://x/vs",
    },
    6: {
        "elem_type": 4,
        "file_elem_file_path": "/f.pdf",
        "file_elem_file_id": "f",
        "file_elem_file_name": "f.pdf",
        "file_elem_file_size": 12,
        "file_elem_url": "https://x/f",
    },
    7: {
        "elem_type": 7,
        "location_elem_desc": "office",
        "location_elem_longitude": 113.93,
        "location_elem_latitude": 22.54,
    },
    8: {"elem_type": 6, "face_elem_index": 3, "face_elem_buf": "smile"},
    9: {
        "elem_type": 5,
        "group_tips_elem_group_id": "g1",
        "group_tips_elem_tip_type": 1,  # V2 INVITE (2) is C JOIN (1) ...
        "group_tips_elem_join_type": 2,  # ... told apart by the join type
        "group_tips_elem_op_group_memberinfo": {
            **MEMBER_NULLS,
            "group_member_info_identifier": "alice",
            "group_member_info_nick_name": "A",
        },
        "group_tips_elem_changed_group_memberinfo_array": [
            {
                **MEMBER_NULLS,
                "group_member_info_identifier": "bob",
                "group_member_info_name_card": "B",
            }
        ],
        "group_tips_elem_group_change_info_array": [
            {
                "group_tips_group_change_info_flag": 1,
                "group_tips_group_change_info_key": "name",
                "group_tips_group_change_info_value": "room",
                "group_tips_group_change_info_bool_value": False,
                "group_tips_group_change_info_int_value": None,
            }
        ],
        "group_tips_elem_member_change_info_array": [
            {
                "group_tips_member_change_info_identifier": "bob",
                "group_tips_member_change_info_shutupTime": 60,
            }
        ],
        "group_tips_elem_member_num": 3,
    },
    10: {
        "elem_type": 12,
        "merge_elem_layer_over_limit": False,
        "merge_elem_title": "chat",
        "merge_elem_abstract_array": ["a: hi", "b"],
        "merge_elem_compatible_text": "upgrade",
    },
}
"""The full samples' C SDK elements, written out from the >= 8.5 models' keys."""


@pytest.mark.parametrize("elem_type", sorted(CSDK_ELEMENTS))
def test_csdk_element_values_are_the_samples_fields(elem_type: int) -> None:
    """Each field lands under the C SDK key the >= 8.5 model reads it from."""
    answer = _answer("success", elem_type, ELEMENT_SAMPLES[elem_type][0], "csdk")
    actual = json.loads(answer["json_param"])["message_elem_array"]
    assert [CSDK_ELEMENTS[elem_type]] == actual


@pytest.mark.parametrize("elem_type", sorted(ELEMENT_SAMPLES))
def test_v2tim_element_is_the_content(elem_type: int) -> None:
    """The 8.1 element is the content as created (its names are the model's)."""
    content = ELEMENT_SAMPLES[elem_type][0]
    data = _answer("success", elem_type, content, "v2tim")["data"]
    assert content == data[V2TIM["elem_keys"][str(elem_type)]]


def test_member_online_devices_and_ids_carry_over() -> None:
    """Online devices and a missing userID ("" in the model) reach the C shape."""
    content = {
        "groupID": "g",
        "type": 4,
        "opMember": {"onlineDevices": ["ios", "web"], "faceUrl": "f"},
        "memberList": [{"userID": None, "friendRemark": "r"}],
        "memberChangeInfoList": [{"muteTime": 5}],
    }
    answer = _answer("success", 9, content, "csdk")
    elem = json.loads(answer["json_param"])["message_elem_array"][0]
    expected = (
        3,  # V2 KICKED (4) is C KICK (3)
        None,
        {**MEMBER_NULLS, "group_member_info_identifier": "",
         "group_member_info_face_url": "f",
         "group_member_info_online_devices": ["ios", "web"]},
        [{**MEMBER_NULLS, "group_member_info_identifier": "",
          "group_member_info_friend_remark": "r"}],
        [{"group_tips_member_change_info_identifier": "",
          "group_tips_member_change_info_shutupTime": 5}],
    )  # fmt: skip
    actual = (
        elem["group_tips_elem_tip_type"],
        elem.get("group_tips_elem_join_type"),
        elem["group_tips_elem_op_group_memberinfo"],
        elem["group_tips_elem_changed_group_memberinfo_array"],
        elem["group_tips_elem_member_change_info_array"],
    )
    assert expected == actual


def test_csdk_defaults_and_int_values_carry_over() -> None:
    """A null image path is "" (the model's default); a change's intValue lands."""
    image = _answer("success", 3, {"path": None}, "csdk")
    image_elem = json.loads(image["json_param"])["message_elem_array"][0]
    change = {"type": 8, "key": "k", "intValue": 5}
    tips = _answer(
        "success",
        9,
        {"groupID": "g", "type": 7, "groupChangeInfoList": [change]},
        "csdk",
    )
    tips_elem = json.loads(tips["json_param"])["message_elem_array"][0]
    expected = (
        {"elem_type": 1, "image_elem_orig_path": ""},
        [
            {
                "group_tips_group_change_info_flag": 8,
                "group_tips_group_change_info_key": "k",
                "group_tips_group_change_info_value": None,
                "group_tips_group_change_info_bool_value": None,
                "group_tips_group_change_info_int_value": 5,
            }
        ],
    )
    actual = (image_elem, tips_elem["group_tips_elem_group_change_info_array"])
    assert expected == actual
