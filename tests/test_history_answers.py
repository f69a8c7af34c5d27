"""The history queries' exact answers (``msgstate.history``): ``history``,
``get_at`` (by version, by domain time, or now) and ``export_history`` (its lines
byte for byte, its ``msg_ids`` and ``since`` filters), their refusals word for
word, and sealed creations opened (or shown forgotten) in histories and exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from msgstate import (
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    MessageStatus,
)
from msgstate.keys import FORGOTTEN, FORGOTTEN_CONTENT
from tests.support import EPOCH, FakeClock

MAX_VERSION = 2**63 - 1

CREATED_DATA = {
    "msg_id": "m",
    "sender": "s",
    "user_id": "u",
    "group_id": None,
    "elem_type": 1,
    "priority": 0,
    "online_user_only": False,
    "need_read_receipt": False,
    "cloud_custom_data": "ccd-é",
    "content": {"t": "é中"},
}

LINE_1 = (
    '{"msg_id": "m", "version": 1, "event": "Created", '
    '"recorded_at": "2026-01-01T00:00:00+00:00", "data": {"msg_id": "m", '
    '"sender": "s", "user_id": "u", "group_id": null, "elem_type": 1, '
    '"priority": 0, "online_user_only": false, "need_read_receipt": false, '
    '"cloud_custom_data": "ccd-é", "content": {"t": "é中"}}}\n'
)
LINE_2 = (
    '{"msg_id": "m", "version": 2, "event": "SendFailed", '
    '"recorded_at": "2026-01-01T00:00:10+00:00", "data": {"attempt": 1, '
    '"code": 20003, "desc": "ü", "retry_after": null}}\n'
)
LINE_3 = (
    '{"msg_id": "m", "version": 3, "event": "Delivered", '
    '"recorded_at": "2026-01-01T00:00:15+00:00", "data": {"attempt": 1, '
    '"seq": "1", "server_time": "2026-01-01T00:00:15+00:00"}}\n'
)


def _create(service: MessageService, msg_id: str = "m") -> None:
    service.create(
        msg_id,
        sender="s",
        user_id="u",
        cloud_custom_data="ccd-é",
        content={"t": "é中"},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> Iterator[MessageService]:
    """``m``: Created at EPOCH, SendFailed at +10 s, Delivered at +15 s."""
    service = MessageService.open("memory://", clock=clock)
    try:
        _create(service)
        clock.advance(10)
        service.record_failure("m", code=20003, desc="ü")
        clock.advance(5)
        service.record_delivery("m", seq="1", attempt=1)
        yield service
    finally:
        service.close()


@pytest.fixture
def forgettable(clock: FakeClock) -> Iterator[MessageService]:
    service = MessageService.open("memory://", clock=clock, forgettable=True)
    try:
        _create(service)
        yield service
    finally:
        service.close()


def _refused(error: pytest.ExceptionInfo[Exception]) -> tuple[ErrorCode, str]:
    return error.value.code, str(error.value)  # type: ignore[attr-defined]


# -- history ------------------------------------------------------------------


def test_history_refuses_a_bad_id_in_words(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused:
        service.history("")
    assert (
        ErrorCode.INVALID_ARGUMENT,
        "msg_id must not be empty, got '' [INVALID_ARGUMENT]",
    ) == _refused(refused)


# -- get_at -------------------------------------------------------------------


def test_get_at_refuses_a_bad_id_in_words(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused:
        service.get_at("", version=1)
    assert (
        ErrorCode.INVALID_ARGUMENT,
        "msg_id must not be empty, got '' [INVALID_ARGUMENT]",
    ) == _refused(refused)


def test_get_at_refuses_version_and_at_together(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused:
        service.get_at("m", version=1, at=EPOCH)
    assert (
        ErrorCode.INVALID_ARGUMENT,
        "give version or at, not both [INVALID_ARGUMENT]",
    ) == _refused(refused)


def test_get_at_without_version_or_at_is_the_message_now(
    service: MessageService,
) -> None:
    now = service.get_at("m")
    assert now == service.get("m")
    assert (MessageStatus.SEND_SUCC, 3, "1") == (now.status, now.version, now.seq)


@pytest.mark.parametrize("version", [0, MAX_VERSION + 1])
def test_get_at_refuses_a_version_out_of_range_in_words(
    service: MessageService, version: int
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        service.get_at("m", version=version)
    assert (
        ErrorCode.INVALID_ARGUMENT,
        f"version must be between 1 and {MAX_VERSION}, got {version} "
        "[INVALID_ARGUMENT]",
    ) == _refused(refused)


@pytest.mark.parametrize("version", [4, MAX_VERSION])
def test_get_at_a_version_not_yet_recorded_is_refused_in_words(
    service: MessageService, version: int
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        service.get_at("m", version=version)
    assert (
        ErrorCode.INVALID_ARGUMENT,
        f"message 'm' has 3 versions; version {version} does not exist yet "
        "[INVALID_ARGUMENT]",
    ) == _refused(refused)


def test_get_at_each_version(service: MessageService) -> None:
    seen = [service.get_at("m", version=v) for v in (1, 2, 3)]
    assert [
        (MessageStatus.SENDING, 1),
        (MessageStatus.SEND_FAIL, 2),
        (MessageStatus.SEND_SUCC, 3),
    ] == [(view.status, view.version) for view in seen]


def test_get_at_an_unknown_id_by_version_is_not_found(
    service: MessageService,
) -> None:
    with pytest.raises(MessageNotFound) as refused:
        service.get_at("nope", version=1)
    assert (
        ErrorCode.MESSAGE_NOT_FOUND,
        "message 'nope' not found [MESSAGE_NOT_FOUND]",
    ) == _refused(refused)


def test_get_at_refuses_a_naive_at_in_words(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused:
        service.get_at("m", at=datetime(2026, 1, 1))
    assert (
        ErrorCode.INVALID_ARGUMENT,
        "at must be timezone-aware, got datetime.datetime(2026, 1, 1, 0, 0) "
        "[INVALID_ARGUMENT]",
    ) == _refused(refused)


def test_get_at_a_moment_includes_the_events_recorded_exactly_then(
    service: MessageService,
) -> None:
    at = {s: service.get_at("m", at=EPOCH + timedelta(seconds=s)) for s in (0, 10, 15)}
    assert {
        0: (MessageStatus.SENDING, 1),
        10: (MessageStatus.SEND_FAIL, 2),
        15: (MessageStatus.SEND_SUCC, 3),
    } == {s: (view.status, view.version) for s, view in at.items()}
    between = service.get_at("m", at=EPOCH + timedelta(seconds=12))
    assert (MessageStatus.SEND_FAIL, 2) == (between.status, between.version)


def test_get_at_before_the_first_event_is_not_found_in_words(
    service: MessageService,
) -> None:
    with pytest.raises(MessageNotFound) as refused:
        service.get_at("m", at=EPOCH - timedelta(seconds=1))
    assert (
        ErrorCode.MESSAGE_NOT_FOUND,
        "message 'm' did not exist yet at 2025-12-31T23:59:59+00:00 "
        "[MESSAGE_NOT_FOUND]",
    ) == _refused(refused)


# -- export_history -------------------------------------------------------------


def test_export_lines_byte_for_byte(service: MessageService) -> None:
    """Every key, value and non-ASCII character as promised, newline-terminated."""
    assert [LINE_1, LINE_2, LINE_3] == list(service.export_history())


def test_export_names_each_message_and_keeps_only_msg_ids(
    service: MessageService, clock: FakeClock
) -> None:
    clock.advance(5)
    _create(service, "other")
    clock.advance(5)
    service.record_failure("other", code=20003)
    other = [json.loads(line) for line in service.export_history(["other"])]
    assert [("other", 1, "Created"), ("other", 2, "SendFailed")] == [
        (line["msg_id"], line["version"], line["event"]) for line in other
    ]
    assert [LINE_1, LINE_2, LINE_3] == list(service.export_history(["m"]))
    everything = [json.loads(line)["msg_id"] for line in service.export_history()]
    assert ["m", "m", "m", "other", "other"] == everything


def test_export_refuses_a_bad_msg_id_in_words(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as refused:
        list(service.export_history([""]))
    assert (
        ErrorCode.INVALID_ARGUMENT,
        "msg_id must not be empty, got '' [INVALID_ARGUMENT]",
    ) == _refused(refused)


def test_export_since_keeps_events_recorded_at_or_after_it(
    service: MessageService,
) -> None:
    assert [LINE_2, LINE_3] == list(
        service.export_history(since=EPOCH + timedelta(seconds=10))
    )
    assert [LINE_3] == list(service.export_history(since=EPOCH + timedelta(seconds=11)))
    assert [] == list(service.export_history(since=EPOCH + timedelta(seconds=16)))
    assert [LINE_2, LINE_3] == list(
        service.export_history(["m"], since=EPOCH + timedelta(seconds=10))
    )


@pytest.mark.parametrize(
    ("since", "said"),
    [
        (
            datetime(2026, 1, 1),
            "since must be timezone-aware, got datetime.datetime(2026, 1, 1, 0, 0)",
        ),
        ("2026-01-01", "since must be a datetime, got '2026-01-01'"),
    ],
)
def test_export_refuses_a_bad_since_in_words(
    service: MessageService, since: object, said: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        list(service.export_history(since=since))  # type: ignore[arg-type]
    assert (ErrorCode.INVALID_ARGUMENT, f"{said} [INVALID_ARGUMENT]") == _refused(
        refused
    )


# -- sealed creations -------------------------------------------------------------


def test_a_sealed_creation_is_opened_in_history_and_export(
    forgettable: MessageService,
) -> None:
    [created] = forgettable.history("m")
    assert ("Created", 1, CREATED_DATA) == (
        created.event,
        created.version,
        created.data,
    )
    assert [LINE_1] == list(forgettable.export_history())


def test_a_forgotten_creation_shows_the_markers(
    forgettable: MessageService, clock: FakeClock
) -> None:
    clock.advance(1)
    forgettable.forget("m", actor="ops", reason="asked")
    created = forgettable.history("m")[0]
    assert {
        **CREATED_DATA,
        "sender": FORGOTTEN,
        "user_id": FORGOTTEN,
        "cloud_custom_data": FORGOTTEN,
        "content": dict(FORGOTTEN_CONTENT),
    } == created.data
    assert "Created" == created.event
