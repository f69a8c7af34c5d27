"""Bad input raises InvalidArgument (a ValueError) and writes nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from msgstate import ErrorCode, InvalidArgument, MessageService

GOOD: dict[str, Any] = {"sender": "alice", "user_id": "bob"}


@pytest.mark.parametrize(
    ("msg_id", "fields"),
    [
        ("", {}),
        ("x" * 129, {}),
        ("a\nb", {}),
        ("a\x00b", {}),
        (" padded", {}),
        ("\ud800", {}),
        (42, {}),
        ("ok", {"user_id": None, "group_id": None}),
        ("ok", {"sender": ""}),
        ("ok", {"elem_type": -1}),
        ("ok", {"elem_type": True}),
        ("ok", {"priority": 9}),
        ("ok", {"online_user_only": "yes"}),
        ("ok", {"content": {"bad": float("nan")}}),
        ("ok", {"content": {"bad": object()}}),
        ("ok", {"content": {1: "int key"}}),
        ("ok", {"content": ["not", "a", "mapping"]}),
        ("ok", {"content": {"big": "x" * 70_000}}),
        ("ok", {"cloud_custom_data": "é" * 5000}),
    ],
)
def test_bad_create_arguments(
    service: MessageService, msg_id: Any, fields: dict[str, Any]
) -> None:
    """Each malformed create argument is refused and nothing is stored."""
    with pytest.raises(InvalidArgument) as info:
        service.create(msg_id, **{**GOOD, **fields})
    assert ErrorCode.INVALID_ARGUMENT == info.value.code
    assert isinstance(info.value, ValueError)
    assert 0 == sum(1 for _ in service.notification_log.select(start=1, limit=10))


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("record_failure", {"code": 0}),
        ("record_failure", {"code": 2**40}),
        ("record_failure", {"code": "6012"}),
        ("record_failure", {"code": 6012, "retry_after": -1}),
        ("record_failure", {"code": 6012, "retry_after": float("inf")}),
        ("record_failure", {"code": 6012, "attempt": 0}),
        ("record_failure", {"code": 6012, "desc": "x" * 1001}),
        ("resend", {"request_id": ""}),
        ("resend", {"online_user_only": 1}),
        ("resend", {"actor": "a\tb"}),
        ("record_delivery", {"seq": ""}),
        ("record_delivery", {"seq": "1", "server_time": datetime(2026, 1, 1)}),
        ("record_delivery", {"seq": 5}),
    ],
)
def test_bad_command_arguments(
    service: MessageService, call: str, kwargs: dict[str, Any]
) -> None:
    """Each malformed command argument is refused before the message is touched."""
    service.create("m1", **GOOD)
    service.record_failure("m1", code=6012)
    before = service.get("m1")
    with pytest.raises(InvalidArgument):
        getattr(service, call)("m1", **kwargs)
    assert before == service.get("m1")


def test_content_with_transcoder_lookalike_keys_round_trips(
    service: MessageService,
) -> None:
    """A mapping shaped like eventsourcing's {_type_, _data_} is stored as given."""
    content = {"_type_": "uuid_hex", "_data_": "not-a-uuid"}
    service.create("m1", content=content, **GOOD)
    reopened = service.get("m1")
    assert content == reopened.content
    assert content == service.history("m1")[0].data["content"]


@pytest.mark.parametrize("msg_ids", ["abc", b"abc", 42])
def test_msg_ids_must_be_an_iterable_of_ids_not_one_str(
    service: MessageService, msg_ids: Any
) -> None:
    """A lone str would be read as its characters: "abc" exported nothing."""
    from msgstate import ResendPolicy

    service.create("abc", **GOOD)
    for call in (
        lambda: list(service.export_history(msg_ids)),
        lambda: service.simulate_policy(ResendPolicy(), msg_ids),
    ):
        with pytest.raises(InvalidArgument) as raised:
            call()
        assert ErrorCode.INVALID_ARGUMENT is raised.value.code
        assert str(raised.value).startswith(
            "msg_ids must be an iterable of ids (a list, not one str), got "
        )
    assert 1 == len(list(service.export_history(["abc"])))
    assert 1 == len(list(service.export_history(iter(["abc"]))))
    assert 1 == service.simulate_policy(ResendPolicy(), ("abc",)).messages
