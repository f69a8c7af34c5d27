"""Element content is checked at create against the Dart models of its elem_type.

A field of the wrong JSON type, or a missing non-nullable field, would make the
client's ``fromJson`` throw; ``create`` refuses it with ``InvalidArgument`` naming
the field, and writes nothing (on every backend, in a batch too).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate import InvalidArgument, MessageNotFound, MessageService
from tests.strategies import ELEMENT_SAMPLES, element_contents

BAD: list[tuple[int, dict[str, Any], str]] = [
    (1, {"text": 42}, "content.text"),
    (2, {"data": {"k": 1}}, "content.data"),
    (2, {"extension": 1.5}, "content.extension"),
    (3, {"imageList": {"type": 0}}, "content.imageList"),
    (3, {"imageList": [{"size": "10"}]}, "content.imageList[0].size"),
    (3, {"imageList": [None]}, "content.imageList[0]"),
    (4, {"dataSize": 1.5}, "content.dataSize"),
    (4, {"duration": True}, "content.duration"),
    (5, {"snapshotWidth": "640"}, "content.snapshotWidth"),
    (6, {"fileSize": 2**63}, "content.fileSize"),
    (7, {"latitude": 1.0}, "content.longitude"),
    (7, {"longitude": 1.0, "latitude": None}, "content.latitude"),
    (7, {"longitude": "113.9", "latitude": 1.0}, "content.longitude"),
    (7, {"longitude": True, "latitude": 1.0}, "content.longitude"),
    (8, {"index": "3"}, "content.index"),
    (9, {"type": 1}, "content.groupID"),
    (9, {"groupID": "g"}, "content.type"),
    (9, {"groupID": 7, "type": 1}, "content.groupID"),
    (9, {"groupID": "g", "type": 1, "opMember": []}, "content.opMember"),
    (
        9,
        {"groupID": "g", "type": 1, "memberList": [{"onlineDevices": [1]}]},
        "content.memberList[0].onlineDevices[0]",
    ),
    (
        9,
        {"groupID": "g", "type": 1, "groupChangeInfoList": [{"boolValue": 1}]},
        "content.groupChangeInfoList[0].boolValue",
    ),
    (10, {"title": "t"}, "content.abstractList"),
    (10, {"abstractList": None}, "content.abstractList"),
    (10, {"abstractList": ["a", 2]}, "content.abstractList[1]"),
    (10, {"abstractList": [], "isLayersOverLimit": "no"}, "content.isLayersOverLimit"),
    (1, {"nextElem": "text"}, "content.nextElem"),
]


@pytest.mark.parametrize(("elem_type", "content", "field"), BAD)
def test_content_the_client_cannot_parse_is_refused(
    service: MessageService, elem_type: int, content: dict[str, Any], field: str
) -> None:
    """InvalidArgument names the field; nothing is written."""
    with pytest.raises(InvalidArgument) as info:
        service.create(
            "m1", sender="a", group_id="g", elem_type=elem_type, content=content
        )
    assert info.value.desc.startswith(field + " ")
    with pytest.raises(MessageNotFound):
        service.get("m1")


def test_a_batch_refuses_the_same_content(service: MessageService) -> None:
    """Batches share the check: the bad create is refused, nothing is saved."""
    with (
        pytest.raises(InvalidArgument, match=r"content\.longitude"),
        service.batch() as batch,
    ):
        batch.create("ok", sender="a", user_id="b")
        batch.create(
            "bad", sender="a", user_id="b", elem_type=7, content={"latitude": 1}
        )
    with pytest.raises(MessageNotFound):
        service.get("ok")


@pytest.mark.parametrize("elem_type", sorted(ELEMENT_SAMPLES))
@pytest.mark.parametrize("sample", [0, 1])
def test_valid_samples_are_accepted(
    service: MessageService, elem_type: int, sample: int
) -> None:
    """Each sample (full and bare) is created with its content kept as given."""
    content = ELEMENT_SAMPLES[elem_type][sample]
    view = service.create(
        "m1", sender="a", group_id="g", elem_type=elem_type, content=content
    )
    assert content == view.content


@pytest.mark.parametrize("elem_type", [0, 11, 12, 255])
def test_types_without_a_model_are_not_checked(
    service: MessageService, elem_type: int
) -> None:
    """elemType 0 (none) and types newer than the merger take any JSON content."""
    view = service.create(
        "m1", sender="a", user_id="b", elem_type=elem_type, content={"text": 1}
    )
    assert {"text": 1} == view.content


def test_unknown_fields_are_kept(service: MessageService) -> None:
    """Keys the model does not read pass through (Dart ignores them)."""
    content = {"text": "hi", "mention": {"ids": [1, 2]}}
    view = service.create("m1", sender="a", user_id="b", content=content)
    assert content == view.content


WRONG = {
    "str": 1,
    "int": "1",
    "bool": 0,
    "double": "1.0",
    "map": [1],
    "list": {"a": 1},
}
"""A value of the wrong JSON type for each kind of field."""

TOP_FIELDS: dict[int, dict[str, str]] = {
    1: {"text": "str"},
    2: {"data": "str", "desc": "str", "extension": "str"},
    3: {"path": "str", "imageList": "list"},
    4: {"path": "str", "UUID": "str", "dataSize": "int", "duration": "int"},
    5: {"videoPath": "str", "videoSize": "int", "snapshotHeight": "int"},
    6: {"fileName": "str", "fileSize": "int"},
    7: {"desc": "str", "longitude": "double", "latitude": "double"},
    8: {"index": "int", "data": "str"},
    9: {"groupID": "str", "type": "int", "opMember": "map", "memberCount": "int"},
    10: {"isLayersOverLimit": "bool", "title": "str", "abstractList": "list"},
}


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), elem_type=st.integers(1, 10))
def test_any_valid_content_is_accepted_and_one_wrong_field_refused(
    data: st.DataObject, elem_type: int
) -> None:
    """Valid content is accepted; the same content with one field's type broken
    is refused naming that field."""
    service = MessageService.open("memory://")
    content = data.draw(element_contents(elem_type), label="content")
    msg_id = "m1"
    view = service.create(
        msg_id, sender="a", group_id="g", elem_type=elem_type, content=content
    )
    assert view.content == content
    name, kind = data.draw(st.sampled_from(sorted(TOP_FIELDS[elem_type].items())))
    broken = {**content, name: WRONG[kind]}
    with pytest.raises(InvalidArgument) as info:
        service.create(
            "m2", sender="a", group_id="g", elem_type=elem_type, content=broken
        )
    assert info.value.desc.startswith(f"content.{name} ")
    with pytest.raises(MessageNotFound):
        service.get("m2")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), elem_type=st.integers(1, 10))
def test_fast_check_and_field_naming_walk_agree(
    data: st.DataObject, elem_type: int
) -> None:
    """The quick yes/no and the walk that names the field never disagree."""
    from msgstate import _elements

    key, fields = _elements.ELEMENTS[elem_type]
    names = [*sorted(fields), "other"]
    content = data.draw(
        st.dictionaries(st.sampled_from(names), _JSON, max_size=len(names))
        | element_contents(elem_type)
    )
    fast = _elements._fields_ok(fields, content)
    try:
        _elements._check_fields("content", fields, content, key)
    except InvalidArgument:
        slow = False
    else:
        slow = True
    assert fast == slow


def test_content_stored_before_the_check_still_renders() -> None:
    """Content written before this check existed renders without raising."""
    from msgstate._elements import csdk_element, v2tim_element

    tips = {
        "type": True,
        "memberList": [None, "x", {"userID": "u"}],
        "opMember": "x",
        "groupChangeInfoList": "no",
    }
    elem = csdk_element(9, tips)
    assert elem is not None
    expected = (0, "", None, [{**_MEMBER_NULLS, "group_member_info_identifier": "u"}])
    actual = (
        elem["group_tips_elem_tip_type"],
        elem["group_tips_elem_group_id"],
        elem.get("group_tips_elem_join_type"),
        elem["group_tips_elem_changed_group_memberinfo_array"],
    )
    assert expected == actual
    location = csdk_element(7, {"longitude": "1", "latitude": True})
    assert location is not None
    assert (0.0, 0.0) == (
        location["location_elem_longitude"],
        location["location_elem_latitude"],
    )
    merger = csdk_element(10, {"abstractList": ["a", 1, None, "b"]})
    assert merger is not None
    assert ["a", "b"] == merger["merge_elem_abstract_array"]
    image = csdk_element(3, {"imageList": [None, {"type": True}, {"type": 2}]})
    assert image is not None
    assert {"elem_type", "image_elem_orig_path"} | {
        f"image_elem_large_{k}"
        for k in ("id", "pic_size", "pic_width", "pic_height", "url")
    } == set(image)
    assert {"longitude": 1.0, "latitude": 2.0} == v2tim_element(
        7, {"longitude": 1, "latitude": 2}
    )
    assert None is csdk_element(0, {"text": "x"})


_MEMBER_NULLS = {
    "group_member_info_face_url": None,
    "group_member_info_friend_remark": None,
    "group_member_info_name_card": None,
    "group_member_info_nick_name": None,
    "group_member_info_online_devices": [],
}
