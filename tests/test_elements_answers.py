"""Element content as a client reads it: each refusal names the field, the Dart
model and the value (cut at 40 characters) word for word; nested fields and list
items name their model too; int64 limits; elements nested in ``nextElem`` and
unknown keys pass through; answers are copies that share nothing with the
stored message."""

from __future__ import annotations

from typing import Any

import pytest

from msgstate import InvalidArgument, MessageService
from msgstate.tencent import V2TimValueCallback

NULL = "makes the client's fromJson throw or loses the value)"


@pytest.fixture
def service(memory_service: MessageService) -> MessageService:
    return memory_service


def refusal(service: MessageService, elem_type: int, content: dict[str, Any]) -> str:
    with pytest.raises(InvalidArgument) as refused:
        service.create(
            "m", sender="u", user_id="v", elem_type=elem_type, content=content
        )
    return refused.value.desc


@pytest.mark.parametrize(
    ("elem_type", "content", "says"),
    [
        (
            7,
            {"longitude": None, "latitude": 1.0},
            "content.longitude must not be null (as V2TimLocationElem is read, a "
            "null there " + NULL,
        ),
        (
            7,
            {"longitude": 1.0},
            "content.latitude is missing: V2TimLocationElem declares it "
            "non-nullable, so the client's fromJson would throw",
        ),
        (
            10,
            {"title": "t", "abstractList": [None], "layersOverLimit": False},
            "content.abstractList[0] must not be null (as V2TimMergerElem is read, "
            "a null there " + NULL,
        ),
        (
            3,
            {"path": "p", "imageList": [{"type": 1, "width": "wide"}]},
            "content.imageList[0].width must be an integer (Dart int) as the "
            "V2TimImageElem model declares it, got 'wide'",
        ),
        (
            8,
            {"index": 2**63},
            "content.index must be an integer (Dart int) as the V2TimFaceElem model "
            f"declares it, got {2**63}",
        ),
    ],
)
def test_refusals_name_field_model_and_value(
    service: MessageService, elem_type: int, content: dict[str, Any], says: str
) -> None:
    assert says == refusal(service, elem_type, content)


def test_values_are_shown_whole_up_to_40_characters(service: MessageService) -> None:
    start = "content.text must be a string (Dart String) as the V2TimTextElem model "
    forty = 10**39  # 40 digits
    assert f"{start}declares it, got {forty}" == refusal(service, 1, {"text": forty})
    longer = 10**40  # 41 digits: cut to 37 and "..."
    assert f"{start}declares it, got {str(longer)[:37]}..." == refusal(
        service, 1, {"text": longer}
    )


def test_the_widest_int64_is_accepted(service: MessageService) -> None:
    for index in (2**63 - 1, -(2**63)):
        view = service.create(
            f"m{index}",
            sender="u",
            user_id="v",
            elem_type=8,
            content={"index": index},
        )
        assert index == view.content["index"]


def test_nested_elements_and_unknown_keys_pass_through(
    service: MessageService,
) -> None:
    content = {
        "text": "hi",
        "nextElem": {"text": "second", "nextElem": {"text": "third"}},
        "extra": {"kept": [1, 2.5, {"deep": True}]},
    }
    view = service.create("m", sender="u", user_id="v", content=content)
    answer = V2TimValueCallback.ok(view).to_dict()
    assert content == answer["data"]["textElem"]


def test_answers_share_nothing_with_the_view(service: MessageService) -> None:
    """Changing an answer's nested values changes neither the view nor the next
    answer built from it."""
    content = {
        "text": "hi",
        "extra": {"kept": [1, 2]},
        "nextElem": {"text": "n", "items": [1]},
    }
    view = service.create("m", sender="u", user_id="v", content=content)
    first = V2TimValueCallback.ok(view).to_dict()
    element = first["data"]["textElem"]
    element["extra"]["kept"].append(3)
    element["nextElem"]["items"].append(2)
    assert content == view.content
    assert content == V2TimValueCallback.ok(view).to_dict()["data"]["textElem"]
