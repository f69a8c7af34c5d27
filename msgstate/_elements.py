"""Message element content: checked against the plugin's Dart models (private).

A message's ``content`` holds the fields of the one element its ``elem_type``
names, with the names and types of tencent_cloud_chat_sdk's Dart models
(8.1.6122, ``lib/models/v2_tim_*_elem.dart``): ``{"text": "hi"}`` for a text
message, ``{"longitude": 113.9, "latitude": 22.5, "desc": "..."}`` for a
location. :func:`check_content` refuses, at ``create``, anything that would make
the client's ``fromJson`` throw: a field of the wrong JSON type (an int where
``String?`` is declared), a missing non-nullable field (``late double
longitude``, ``late String groupID``, ``abstractList`` read with ``.cast``).
Fields the models do not know are kept and passed through (Dart ignores them).

:func:`v2tim_element` and :func:`csdk_element` render checked content as the
8.1 camelCase element map and as the C SDK's snake_case element (the >= 8.5
native models' ``message_elem_array`` entries).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from attrs import evolve, frozen

from msgstate.errors import InvalidArgument

__all__ = [
    "ELEM_KEYS",
    "check_content",
    "csdk_element",
    "v2tim_element",
]

INT64 = (-(2**63), 2**63 - 1)
"""Dart's ``int`` on the VM: a signed 64-bit number."""


@frozen
class Field:
    """One field of a Dart model: its JSON type and whether null may stand in."""

    kind: str
    """``str``, ``int``, ``bool``, ``double``, ``map`` or ``list``."""
    required: bool = False
    """Non-nullable in Dart (``late double``, ``late String``, ``.cast<String>()``)."""
    item: Field | None = None
    """A list's item type."""
    fields: Mapping[str, Field] | None = None
    """A map's own fields (``None``: any JSON map)."""


STR = Field("str")
INT = Field("int")
BOOL = Field("bool")
ANY_MAP = Field("map")

GROUP_MEMBER = Field(
    "map",
    fields={
        "userID": STR,
        "nickName": STR,
        "nameCard": STR,
        "friendRemark": STR,
        "faceUrl": STR,
        "onlineDevices": Field("list", item=Field("str", required=True)),
    },
)
"""``V2TimGroupMemberInfo`` (lib/models/v2_tim_group_member_info.dart)."""

GROUP_CHANGE = Field(
    "map",
    fields={"type": INT, "value": STR, "key": STR, "boolValue": BOOL, "intValue": INT},
)
"""``V2TimGroupChangeInfo`` (lib/models/v2_tim_group_change_info.dart)."""

MEMBER_CHANGE = Field("map", fields={"userID": STR, "muteTime": INT})
"""``V2TimGroupMemberChangeInfo`` (lib/models/v2_tim_group_member_change_info.dart)."""

IMAGE = Field(
    "map",
    fields={
        "UUID": STR,
        "uuid": STR,
        "type": INT,
        "size": INT,
        "width": INT,
        "height": INT,
        "url": STR,
        "localUrl": STR,
    },
)
"""``V2TimImage`` (lib/models/v2_tim_image.dart; ``UUID`` or ``uuid``)."""

NEXT = {"nextElem": ANY_MAP}


# Lists of maps: items may not be null (the C SDK shape needs them).
IMAGES = Field("list", item=evolve(IMAGE, required=True))
MEMBERS = Field("list", item=evolve(GROUP_MEMBER, required=True))
GROUP_CHANGES = Field("list", item=evolve(GROUP_CHANGE, required=True))
MEMBER_CHANGES = Field("list", item=evolve(MEMBER_CHANGE, required=True))


"""Every element may carry the next element as a map (``Utils.formatJson``)."""

ELEMENTS: dict[int, tuple[str, dict[str, Field]]] = {
    1: ("textElem", {"text": STR, **NEXT}),
    2: ("customElem", {"data": STR, "desc": STR, "extension": STR, **NEXT}),
    3: (
        "imageElem",
        {"path": STR, "imageList": IMAGES, **NEXT},
    ),
    4: (
        "soundElem",
        {
            "path": STR,
            "UUID": STR,
            "dataSize": INT,
            "duration": INT,
            "url": STR,
            "localUrl": STR,
            **NEXT,
        },
    ),
    5: (
        "videoElem",
        {
            "videoPath": STR,
            "UUID": STR,
            "videoSize": INT,
            "duration": INT,
            "snapshotPath": STR,
            "snapshotUUID": STR,
            "snapshotSize": INT,
            "snapshotWidth": INT,
            "snapshotHeight": INT,
            "videoUrl": STR,
            "snapshotUrl": STR,
            "localVideoUrl": STR,
            "localSnapshotUrl": STR,
            **NEXT,
        },
    ),
    6: (
        "fileElem",
        {
            "path": STR,
            "fileName": STR,
            "UUID": STR,
            "url": STR,
            "fileSize": INT,
            "localUrl": STR,
            **NEXT,
        },
    ),
    7: (
        "locationElem",
        {
            "desc": STR,
            "longitude": Field("double", required=True),
            "latitude": Field("double", required=True),
            **NEXT,
        },
    ),
    8: ("faceElem", {"index": INT, "data": STR, **NEXT}),
    9: (
        "groupTipsElem",
        {
            "groupID": Field("str", required=True),
            "type": Field("int", required=True),
            "opMember": GROUP_MEMBER,
            "memberList": MEMBERS,
            "groupChangeInfoList": GROUP_CHANGES,
            "memberChangeInfoList": MEMBER_CHANGES,
            "memberCount": INT,
        },
    ),
    10: (
        "mergerElem",
        {
            "isLayersOverLimit": BOOL,
            "title": STR,
            "abstractList": Field("list", required=True, item=Field("str", True)),
            "compatibleText": STR,
            **NEXT,
        },
    ),
}
"""``elemType`` -> (the ``V2TimMessage`` key of its element, the element's fields)."""

ELEM_KEYS: dict[int, str] = {elem_type: key for elem_type, (key, _) in ELEMENTS.items()}
"""``V2TIMElemType`` values and the ``V2TimMessage`` key holding that element."""

_WHAT = {
    "str": "a string (Dart String)",
    "int": "an integer (Dart int)",
    "bool": "true or false (Dart bool)",
    "double": "a number (Dart double)",
    "map": "a JSON object (Dart Map)",
    "list": "a JSON array (Dart List)",
}


def _is(kind: str, value: object) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and INT64[0] <= value <= INT64[1]
        )
    if kind == "double":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "map":
        return isinstance(value, dict | Mapping)
    return isinstance(value, list | tuple)


def _ok(spec: Field, value: object) -> bool:
    """Whether ``value`` fits ``spec`` (the fast path: no error text is built)."""
    if value is None:
        return not spec.required
    if not _is(spec.kind, value):
        return False
    if spec.kind == "map" and spec.fields is not None:
        return _fields_ok(spec.fields, value)  # type: ignore[arg-type]
    if spec.kind == "list" and spec.item is not None:
        item = spec.item
        return all(_ok(item, element) for element in value)  # type: ignore[attr-defined]
    return True


def _fields_ok(fields: Mapping[str, Field], value: Mapping[str, Any]) -> bool:
    for name, spec in fields.items():
        if name in value:
            if not _ok(spec, value[name]):
                return False
        elif spec.required:
            return False
    return True


def _check(path: str, spec: Field, value: object, elem: str) -> None:
    if value is None:
        if spec.required:
            raise InvalidArgument(
                f"{path} must not be null (as {elem} is read, a null there makes "
                "the client's fromJson throw or loses the value)"
            )
        return
    if not _is(spec.kind, value):
        shown = repr(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise InvalidArgument(
            f"{path} must be {_WHAT[spec.kind]} as the {elem} model declares it, "
            f"got {shown}"
        )
    if spec.kind == "map" and spec.fields is not None:
        assert isinstance(value, Mapping)
        _check_fields(path, spec.fields, value, elem)
    elif spec.kind == "list" and spec.item is not None:
        assert isinstance(value, list | tuple)
        for index, item in enumerate(value):
            _check(f"{path}[{index}]", spec.item, item, elem)


def _check_fields(
    path: str, fields: Mapping[str, Field], value: Mapping[str, Any], elem: str
) -> None:
    for name, spec in fields.items():
        if name not in value:
            if spec.required:
                raise InvalidArgument(
                    f"{path}.{name} is missing: {elem} declares it non-nullable, "
                    "so the client's fromJson would throw"
                )
            continue
        _check(f"{path}.{name}", spec, value[name], elem)


def check_content(elem_type: int, content: Mapping[str, Any] | None) -> None:
    """Refuse ``content`` that the client could not parse as ``elem_type``'s element.

    Element types without a model here (0 = none, and types newer than the
    merger, 10) are not checked. Raises :class:`~msgstate.InvalidArgument`
    naming the field (``content.longitude``), before anything is written.
    """
    known = ELEMENTS.get(elem_type)
    if known is None:
        return
    key, fields = known
    given = content or {}
    if _fields_ok(fields, given):
        return
    _check_fields("content", fields, given, f"V2Tim{key[0].upper()}{key[1:]}")


def _floated(spec: Field, value: Any) -> Any:
    """``value`` with every ``double`` field a float (JSON ``1.0``, not ``1``)."""
    if value is None:
        return None
    if spec.kind == "double" and isinstance(value, int | float):
        return float(value)
    if spec.kind == "map" and spec.fields is not None and isinstance(value, Mapping):
        return {
            k: _floated(spec.fields[k], v) if k in spec.fields else copy.deepcopy(v)
            for k, v in value.items()
        }
    if spec.kind == "list" and spec.item is not None and isinstance(value, list):
        return [_floated(spec.item, item) for item in value]
    return copy.deepcopy(value)


def v2tim_element(elem_type: int, content: Mapping[str, Any]) -> dict[str, Any]:
    """The 8.1 element map: a copy of ``content``, doubles as floats."""
    known = ELEMENTS.get(elem_type)
    if known is None:
        return copy.deepcopy(dict(content))
    result = _floated(Field("map", fields=known[1]), content)
    assert isinstance(result, dict)
    return result


# -- the C SDK's element JSON (>= 8.5 native: message_elem_array entries) ---------

C_ELEM_TYPES = {1: 0, 2: 3, 3: 1, 4: 2, 5: 9, 6: 4, 7: 7, 8: 6, 9: 5, 10: 12}
"""``V2TIMElemType`` -> the C SDK's ``TIMElemType`` (tim_c_enum.dart ``CElemType``)."""

C_TIPS_TYPES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7, 9: 8, 10: 16, 11: 17}
"""``V2TIM_GROUP_TIPS_TYPE_*`` -> the C SDK's ``group_tips_elem_tip_type``.

JOIN (1) and INVITE (2) are both C type 1, told apart by
``group_tips_elem_join_type`` (2 = invite); any other value maps to 0 (invalid).
"""

_IMAGE_SIZES = {0: "orig", 1: "thumb", 2: "large"}
"""``V2TimImage.type`` -> the C SDK's ``image_elem_<size>_*`` prefix."""


def _renamed(names: Mapping[str, str], value: Mapping[str, Any]) -> dict[str, Any]:
    return {c_name: value.get(name) for name, c_name in names.items()}


def _maps(value: object) -> list[Mapping[str, Any]]:
    """The map items of a list (content stored before the check may hold others)."""
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _double(value: object) -> float:
    """A Dart double: the number as a float, 0.0 (the model's default) otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 0.0


def _member(value: object) -> dict[str, Any]:
    value = value if isinstance(value, Mapping) else {}
    return {
        "group_member_info_identifier": value.get("userID") or "",
        "group_member_info_nick_name": value.get("nickName"),
        "group_member_info_name_card": value.get("nameCard"),
        "group_member_info_friend_remark": value.get("friendRemark"),
        "group_member_info_face_url": value.get("faceUrl"),
        "group_member_info_online_devices": [
            device
            for device in value.get("onlineDevices") or []
            if isinstance(device, str)
        ],
    }


def _image(content: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"image_elem_orig_path": content.get("path") or ""}
    for image in _maps(content.get("imageList")):
        kind = image.get("type")
        size = _IMAGE_SIZES.get(kind) if type(kind) is int else None
        if size is None:
            continue
        uuid = image.get("UUID", image.get("uuid"))
        out[f"image_elem_{size}_id"] = uuid
        out[f"image_elem_{size}_pic_size"] = image.get("size")
        out[f"image_elem_{size}_pic_width"] = image.get("width")
        out[f"image_elem_{size}_pic_height"] = image.get("height")
        out[f"image_elem_{size}_url"] = image.get("url")
    return out


def _group_tips(content: Mapping[str, Any]) -> dict[str, Any]:
    given = content.get("type")
    v2_type = given if type(given) is int else 0  # content stored before the check
    out: dict[str, Any] = {
        "group_tips_elem_group_id": content.get("groupID") or "",
        "group_tips_elem_tip_type": C_TIPS_TYPES.get(v2_type, 0),
        "group_tips_elem_op_group_memberinfo": _member(content.get("opMember")),
        "group_tips_elem_member_num": content.get("memberCount"),
    }
    if v2_type in (1, 2):
        out["group_tips_elem_join_type"] = v2_type
    if content.get("memberList") is not None:
        out["group_tips_elem_changed_group_memberinfo_array"] = [
            _member(m) for m in _maps(content["memberList"])
        ]
    if content.get("groupChangeInfoList") is not None:
        out["group_tips_elem_group_change_info_array"] = [
            _renamed(
                {
                    "type": "group_tips_group_change_info_flag",
                    "value": "group_tips_group_change_info_value",
                    "key": "group_tips_group_change_info_key",
                    "boolValue": "group_tips_group_change_info_bool_value",
                    "intValue": "group_tips_group_change_info_int_value",
                },
                change,
            )
            for change in _maps(content["groupChangeInfoList"])
        ]
    if content.get("memberChangeInfoList") is not None:
        out["group_tips_elem_member_change_info_array"] = [
            {
                "group_tips_member_change_info_identifier": change.get("userID") or "",
                "group_tips_member_change_info_shutupTime": change.get("muteTime"),
            }
            for change in _maps(content["memberChangeInfoList"])
        ]
    return out


def _location(content: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "location_elem_desc": content.get("desc"),
        "location_elem_longitude": _double(content.get("longitude")),
        "location_elem_latitude": _double(content.get("latitude")),
    }


def _merger(content: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "merge_elem_layer_over_limit": content.get("isLayersOverLimit"),
        "merge_elem_title": content.get("title"),
        "merge_elem_abstract_array": [
            line for line in content.get("abstractList") or [] if isinstance(line, str)
        ],
        "merge_elem_compatible_text": content.get("compatibleText"),
    }


_C_RENAMES: dict[int, dict[str, str]] = {
    1: {"text": "text_elem_content"},
    2: {"data": "custom_elem_data", "desc": "custom_elem_desc",
        "extension": "custom_elem_ext"},
    4: {"path": "sound_elem_file_path", "UUID": "sound_elem_file_id",
        "dataSize": "sound_elem_file_size", "duration": "sound_elem_file_time",
        "url": "sound_elem_url"},
    5: {"videoPath": "video_elem_video_path", "UUID": "video_elem_video_id",
        "videoSize": "video_elem_video_size", "duration": "video_elem_video_duration",
        "videoUrl": "video_elem_video_url", "snapshotPath": "video_elem_image_path",
        "snapshotUUID": "video_elem_image_id", "snapshotSize": "video_elem_image_size",
        "snapshotWidth": "video_elem_image_width",
        "snapshotHeight": "video_elem_image_height",
        "snapshotUrl": "video_elem_image_url"},
    6: {"path": "file_elem_file_path", "UUID": "file_elem_file_id",
        "fileName": "file_elem_file_name", "fileSize": "file_elem_file_size",
        "url": "file_elem_url"},
    8: {"index": "face_elem_index", "data": "face_elem_buf"},
}  # fmt: skip
"""Element fields renamed one for one (the models' ``fromJson`` in >= 8.5)."""

_C_BUILDERS: dict[int, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    3: _image,
    7: _location,
    9: _group_tips,
    10: _merger,
}


def csdk_element(elem_type: int, content: Mapping[str, Any]) -> dict[str, Any] | None:
    """The C SDK's JSON for the element, or ``None`` for a type it has no model of.

    Fields the >= 8.5 models do not read (``localUrl``, ``nextElem``, unknown
    keys) are left out.
    """
    c_type = C_ELEM_TYPES.get(elem_type)
    if c_type is None:
        return None
    build = _C_BUILDERS.get(elem_type)
    body = (
        build(content)
        if build is not None
        else copy.deepcopy(_renamed(_C_RENAMES[elem_type], content))
    )
    return {"elem_type": c_type, **body}
