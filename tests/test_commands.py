"""msgstate.commands: each command's argument checks, word for word, in the service
and in batches alike (both call the same module)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from msgstate import (
    DuplicateMessage,
    InvalidArgument,
    MessageService,
    MessageStatus,
)
from tests.support import FakeClock

TIMEOUT = 6012
Call = Callable[[Any], Any]

# (argument, call with a bad value of it): the refusal starts with the argument's name.
BAD: list[tuple[str, Call]] = [
    ("msg_id", lambda t: t.create("", sender="a", user_id="b")),
    ("sender", lambda t: t.create("m9", sender="", user_id="b")),
    ("user_id", lambda t: t.create("m9", sender="a", user_id="")),
    ("group_id", lambda t: t.create("m9", sender="a", group_id="")),
    ("elem_type", lambda t: t.create("m9", sender="a", user_id="b", elem_type=256)),
    ("priority", lambda t: t.create("m9", sender="a", user_id="b", priority=4)),
    (
        "online_user_only",
        lambda t: t.create("m9", sender="a", user_id="b", online_user_only="y"),
    ),
    (
        "need_read_receipt",
        lambda t: t.create("m9", sender="a", user_id="b", need_read_receipt="y"),
    ),
    ("msg_id", lambda t: t.record_failure("", code=TIMEOUT)),
    ("desc", lambda t: t.record_failure("m1", code=TIMEOUT, desc=5)),
    ("msg_id", lambda t: t.resend("")),
    ("request_id", lambda t: t.resend("m1", request_id="")),
    ("online_user_only", lambda t: t.resend("m1", online_user_only="y")),
    ("actor", lambda t: t.resend("m1", actor="")),
    ("expected_attempt", lambda t: t.resend("m1", expected_attempt=0)),
    ("msg_id", lambda t: t.expire_send("", attempt=1)),
    ("attempt", lambda t: t.expire_send("m1", attempt=0)),
    ("actor", lambda t: t.expire_send("m1", attempt=1, actor="")),
    ("msg_id", lambda t: t.record_delivery("", seq="1")),
    ("seq", lambda t: t.record_delivery("m1", seq="")),
    (
        "server_time",
        lambda t: t.record_delivery("m1", seq="1", server_time=datetime(2026, 1, 1)),
    ),
]


@pytest.fixture
def service(memory_service: MessageService) -> MessageService:
    memory_service.create("m1", sender="a", user_id="b")
    return memory_service


@pytest.mark.parametrize("in_batch", [False, True], ids=["service", "batch"])
@pytest.mark.parametrize(("name", "call"), BAD)
def test_a_bad_argument_is_refused_by_its_name(
    service: MessageService, in_batch: bool, name: str, call: Call
) -> None:
    """Every refused argument is named first in the refusal, and nothing changes."""
    with pytest.raises(InvalidArgument) as refused:
        if in_batch:
            with service.batch() as batch:
                call(batch)
        else:
            call(service)
    assert str(refused.value).startswith(f"{name} "), str(refused.value)
    assert 1 == service.get("m1").version


@pytest.mark.parametrize(
    ("field", "lowest", "highest"), [("elem_type", 0, 255), ("priority", 0, 3)]
)
def test_the_ranges_of_elem_type_and_priority(
    memory_service: MessageService, field: str, lowest: int, highest: int
) -> None:
    """Both ends of each range are accepted; one past them is refused."""
    for value in (lowest, highest):
        view = memory_service.create(
            f"{field}-{value}", sender="a", user_id="b", **{field: value}
        )
        assert value == getattr(view, field)
    for value in (lowest - 1, highest + 1):
        with pytest.raises(InvalidArgument, match=f"^{field} must be between"):
            memory_service.create(
                f"{field}-x", sender="a", user_id="b", **{field: value}
            )


def test_a_message_needs_a_user_or_a_group(memory_service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused:
        memory_service.create("m1", sender="a")
    assert "give user_id (C2C), group_id (group) or both [INVALID_ARGUMENT]" == str(
        refused.value
    )


def test_content_is_checked_against_the_element_type(
    memory_service: MessageService,
) -> None:
    """A text element whose text is not a string is refused, naming the field."""
    with pytest.raises(InvalidArgument, match=r"^content\.text must be a string"):
        memory_service.create("m1", sender="a", user_id="b", content={"text": 5})


@pytest.mark.parametrize("in_batch", [False, True], ids=["service", "batch"])
def test_a_second_create_with_other_fields_is_refused_word_for_word(
    service: MessageService, in_batch: bool
) -> None:
    with pytest.raises(DuplicateMessage) as refused:
        if in_batch:
            with service.batch() as batch:
                batch.create("m1", sender="someone else", user_id="b")
        else:
            service.create("m1", sender="someone else", user_id="b")
    assert "message 'm1' exists with different fields [DUPLICATE_MESSAGE]" == str(
        refused.value
    )


def test_expire_send_needs_the_attempt(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused, service.batch() as batch:
        batch.expire_send("m1", attempt=None)  # type: ignore[arg-type]
    assert "expire_send needs attempt=, the send to expire [INVALID_ARGUMENT]" == str(
        refused.value
    )


def test_a_delivery_without_server_time_takes_the_service_clock(
    service: MessageService, clock: FakeClock
) -> None:
    clock.advance(5)
    view = service.record_delivery("m1", seq="1")
    assert (MessageStatus.SEND_SUCC, clock(), clock()) == (
        view.status,
        view.server_time,
        view.delivered_at,
    )
