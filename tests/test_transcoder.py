"""The orjson transcoder reads and writes eventsourcing's JSON format exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder

from msgstate import Message, MessageService, ResendPolicy
from msgstate._transcoder import OrjsonTranscoder

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def transcoders() -> tuple[JSONTranscoder, OrjsonTranscoder]:
    plain, fast = JSONTranscoder(), OrjsonTranscoder()
    for transcoder in (plain, fast):
        transcoder.register(DatetimeAsISO())
        transcoder.register(DecimalAsStr())
    return plain, fast


SAMPLES: list[Any] = [
    {"at": WHEN, "attempt": 2, "code": 6012, "desc": "é\u4e2d", "retry_after": None},
    {"state": {"created_at": WHEN, "codes": [6012, 9520], "nested": [{"t": WHEN}]}},
    {"big": 2**62, "neg": -(2**31), "f": 0.1, "list": [], "empty": {}},
    {"zone": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=9)))},
    {"money": Decimal("1.10")},
    {"_type_": "not", "_data_": "tagged", "third": 1},
]


@pytest.mark.parametrize("sample", SAMPLES)
def test_both_transcoders_read_each_others_bytes(sample: Any) -> None:
    """Bytes written by one transcoder decode to the same value with the other."""
    plain, fast = transcoders()
    assert sample == fast.decode(plain.encode(sample))
    assert sample == plain.decode(fast.encode(sample))
    assert sample == fast.decode(fast.encode(sample))


def test_every_message_state_round_trips(tmp_path: Any) -> None:
    """Every event and a snapshot of a message survive both transcoders."""
    service = MessageService.open(
        f"sqlite:///{tmp_path / 'x.db'}",
        snapshot_every=2,
        policy=ResendPolicy(max_attempts=5),
    )
    service.create("m1", sender="a", user_id="b", content={"text": "hi"})
    service.record_failure("m1", code=9520, retry_after=1.5)
    service.resend("m1", request_id="r", actor="user")
    service.record_delivery("m1", seq="1", server_time=WHEN)
    plain, fast = transcoders()
    stored = [
        *service.events.recorder.select_events(Message.create_id("m1")),
        *service.snapshots.recorder.select_events(Message.create_id("m1")),  # type: ignore[union-attr]
    ]
    assert len(stored) == 6
    for record in stored:
        value = fast.decode(record.state)
        assert value == plain.decode(record.state)
        assert value == plain.decode(fast.encode(value))


def test_without_orjson_the_standard_transcoder_reads_the_same_store(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written with orjson opens and reads without it, and back again."""
    url = f"sqlite:///{tmp_path / 'y.db'}"
    fast_service = MessageService.open(url)
    assert isinstance(fast_service.mapper.transcoder, OrjsonTranscoder)
    fast_service.create("m1", sender="a", user_id="b")
    monkeypatch.setitem(__import__("sys").modules, "msgstate._transcoder", None)
    plain_service = MessageService.open(url)
    assert type(plain_service.mapper.transcoder) is JSONTranscoder
    plain_service.record_failure("m1", code=6012)
    monkeypatch.undo()
    assert 2 == MessageService.open(url).get("m1").version
