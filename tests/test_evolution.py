"""Schema evolution: an event class that gains a field still reads old histories."""

from __future__ import annotations

from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from msgstate import Message, MessageService, MessageStatus
from tests.support import FakeClock


def write_v1_send_failed(service: MessageService, msg_id: str) -> None:
    """Store a SendFailed as an imagined version 1 wrote it: without retry_after."""
    clock = FakeClock()
    state = {
        "timestamp": clock.now,
        "attempt": 1,
        "code": 6012,
        "desc": "written by v1",
        "at": clock.now,
    }
    stored = StoredEvent(
        originator_id=Message.create_id(msg_id),
        originator_version=2,
        topic="msgstate.domain:Message.SendFailed",
        state=service.mapper.transcoder.encode(state),
    )
    service.recorder.insert_events([stored])


def upcast_v1_v2(state: dict[str, Any]) -> None:
    state["retry_after"] = None


def test_old_events_need_the_upcaster(tmp_path: Any) -> None:
    """Without an upcaster, a v1 event lacking a field cannot be applied."""
    service = MessageService.open(f"sqlite:///{tmp_path / 'v1.db'}")
    service.create("m1", sender="a", user_id="b")
    write_v1_send_failed(service, "m1")
    with pytest.raises((TypeError, AttributeError, KeyError)):
        service.get("m1")


def test_class_version_2_upcasts_version_1_histories(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With class_version = 2 and upcast_v1_v2, old and new events both read."""
    service = MessageService.open(f"sqlite:///{tmp_path / 'v2.db'}")
    service.create("m1", sender="a", user_id="b")
    write_v1_send_failed(service, "m1")
    monkeypatch.setattr(Message.SendFailed, "class_version", 2, raising=False)
    monkeypatch.setattr(
        Message.SendFailed, "upcast_v1_v2", staticmethod(upcast_v1_v2), raising=False
    )
    view = service.get("m1")
    assert (MessageStatus.SEND_FAIL, None, "written by v1") == (
        view.status,
        view.last_retry_after,
        view.last_error_desc,
    )
    service.resend("m1")
    service.record_failure("m1", code=6012, retry_after=5)  # written as version 2
    reopened = MessageService.open(f"sqlite:///{tmp_path / 'v2.db'}")
    assert [None, 5.0] == [
        h.data.get("retry_after")
        for h in reopened.history("m1")
        if h.event == "SendFailed"
    ]
