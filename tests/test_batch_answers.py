"""Batches' exact answers: each refusal word for word, defaults as the service's,
every command's options passed through, prefetch keeping the batch's own unsaved
changes, and idempotent creates inside a batch."""

from __future__ import annotations

from datetime import timedelta

import pytest

from msgstate import (
    ConcurrencyConflict,
    ErrorCode,
    InvalidArgument,
    MessageService,
    MessageStatus,
)
from tests.support import EPOCH, FakeClock

CREATE_KEYS = (
    "['cloud_custom_data', 'content', 'elem_type', 'group_id', 'need_read_receipt', "
    "'online_user_only', 'priority', 'user_id']"
)


@pytest.fixture
def service(memory_service: MessageService) -> MessageService:
    return memory_service


def test_a_batch_is_used_once_and_only_inside_its_block(
    service: MessageService,
) -> None:
    batch = service.batch()
    with pytest.raises(InvalidArgument) as outside:
        batch.create("m", sender="u", user_id="v")
    assert "use a batch inside its with-block" == outside.value.desc
    with batch:
        batch.create("m", sender="u", user_id="v")
    with pytest.raises(InvalidArgument) as again, batch:
        pass
    assert "a batch is used once; start a new one" == again.value.desc
    with pytest.raises(InvalidArgument) as closed:
        batch.get("m")
    assert "use a batch inside its with-block" == closed.value.desc


@pytest.mark.parametrize(
    ("kwargs", "got"),
    [({"user_id": "v"}, "['user_id']"), ({"sender": "u", "colour": 1}, None)],
)
def test_create_names_its_arguments(
    service: MessageService, kwargs: dict[str, object], got: str | None
) -> None:
    with pytest.raises(InvalidArgument) as refused, service.batch() as batch:
        batch.create("m", **kwargs)
    shown = got if got is not None else str(sorted(kwargs))
    assert f"create takes sender and {CREATE_KEYS}, got {shown}" == refused.value.desc


def test_create_defaults_are_the_services(service: MessageService) -> None:
    with service.batch() as batch:
        in_batch = batch.create("b", sender="u", user_id="v")
    direct = service.create("d", sender="u", user_id="v")
    fields = ("online_user_only", "need_read_receipt", "elem_type", "priority")
    assert [getattr(in_batch, f) for f in fields] == [
        getattr(direct, f) for f in fields
    ]
    assert in_batch.online_user_only is False


def test_a_repeated_create_in_a_batch_is_the_stored_message(
    service: MessageService,
) -> None:
    stored = service.create("m", sender="u", user_id="v")
    with service.batch() as batch:
        again = batch.create("m", sender="u", user_id="v")
        assert 0 == batch.pending
    assert stored == again == service.get("m")


def test_get_refuses_a_bad_id_naming_it(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused, service.batch() as batch:
        batch.get("")
    assert refused.value.desc.startswith("msg_id "), refused.value.desc


def test_prefetch_keeps_the_batchs_own_changes(service: MessageService) -> None:
    service.create("m", sender="u", user_id="v")
    with service.batch() as batch:
        batch.record_failure("m", code=6012)
        batch.prefetch(["m", "", "absent"])
        assert MessageStatus.SEND_FAIL == batch.get("m").status
        assert 1 == batch.pending
    assert MessageStatus.SEND_FAIL == service.get("m").status


def test_delivery_options_pass_through(service: MessageService) -> None:
    service.create("m", sender="u", user_id="v")
    service.record_failure("m", code=6012)
    service.resend("m")
    server_time = EPOCH + timedelta(minutes=3)
    with service.batch() as batch:
        view = batch.record_delivery("m", seq="9", server_time=server_time, attempt=1)
    assert server_time == view.server_time == service.get("m").server_time
    delivered = service.history("m")[-1]
    assert ("Delivered", 1) == (delivered.event, delivered.attempt)


def test_expire_send_in_a_batch(service: MessageService, clock: FakeClock) -> None:
    service.create("m", sender="u", user_id="v")
    clock.advance(61)
    with service.batch() as batch:
        view = batch.expire_send("m", attempt=1, actor="ops")
        assert int(ErrorCode.SEND_TIMED_OUT) == view.last_error_code
    assert service.get("m").last_error_desc == (
        "send 1 stayed SENDING for 61.000 s, past send_timeout (60 s); expired by ops"
    )


def test_a_lost_race_says_how_many_messages_and_what_to_do(
    service: MessageService,
) -> None:
    service.create("m1", sender="a", user_id="b")
    with pytest.raises(ConcurrencyConflict) as lost, service.batch() as batch:
        batch.create("m2", sender="a", user_id="b")
        batch.record_failure("m1", code=6012)
        service.record_delivery("m1", seq="1")
    assert lost.value.desc == (
        "another writer changed one of this batch's 2 messages; nothing was "
        "saved, run the batch again"
    )
