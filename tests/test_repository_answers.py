"""The repository's exact answers (``msgstate.repository``, ``service.messages``):
not-found and archived refusals word for word, sealed creations compared and
refused in words, bulk reads that go on past an absent id, how many messages are
read at once (with and without snapshots), a service without the data keys of a
store made forgettable after it opened, and a cached message gone from the store."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from msgstate import (
    DuplicateMessage,
    ErrorCode,
    MessageArchived,
    MessageNotFound,
    MessageService,
    MessageStatus,
)
from msgstate.keys import FORGOTTEN, FORGOTTEN_CONTENT
from tests.conftest import backend_url
from tests.support import FakeClock

SECRETS: dict[str, Any] = {
    "sender": "SECRET-SENDER",
    "user_id": "SECRET-USER",
    "cloud_custom_data": "SECRET-CCD",
    "content": {"text": "SECRET-CONTENT"},
}


@pytest.fixture
def forgettable(clock: FakeClock) -> Any:
    service = MessageService.open("memory://", clock=clock, forgettable=True)
    yield service
    service.close()


# -- not found / archived -------------------------------------------------------


def test_an_unknown_id_is_not_found_in_words(memory_service: MessageService) -> None:
    with pytest.raises(MessageNotFound) as refused:
        memory_service.get("nope")
    assert ErrorCode.MESSAGE_NOT_FOUND == refused.value.code
    assert "message 'nope' not found [MESSAGE_NOT_FOUND]" == str(refused.value)
    with memory_service.batch() as batch, pytest.raises(MessageNotFound) as in_batch:
        batch.get("nope")
    assert "message 'nope' not found [MESSAGE_NOT_FOUND]" == str(in_batch.value)


def test_an_archived_id_names_its_file_in_words(
    archive_service: MessageService, archived: Path
) -> None:
    expected = (
        "message 'delivered-0' was archived to 'a.jsonl'; restore that archive to "
        "read or change it (its id is never reused) [MESSAGE_ARCHIVED]"
    )
    with pytest.raises(MessageArchived) as refused:
        archive_service.get("delivered-0")
    assert ErrorCode.MESSAGE_ARCHIVED == refused.value.code
    assert (expected, "a.jsonl") == (str(refused.value), refused.value.archive_file)
    with pytest.raises(MessageArchived) as again:
        archive_service.create("delivered-0", sender="s", user_id="u")
    assert expected == str(again.value)


# -- sealed creations ---------------------------------------------------------------


def test_creating_a_forgotten_id_again_is_refused_in_words(
    forgettable: MessageService,
) -> None:
    """In the service (no key is issued) and in a batch (the cached, forgotten
    message is compared): the same refusal, word for word."""
    forgettable.create("m1", **SECRETS)
    forgettable.forget("m1", actor="dpo", reason="erasure")
    expected = (
        "message 'm1' was forgotten; its id can't be created again [DUPLICATE_MESSAGE]"
    )
    with pytest.raises(DuplicateMessage) as refused:
        forgettable.create("m1", **SECRETS)
    assert (ErrorCode.DUPLICATE_MESSAGE, expected) == (
        refused.value.code,
        str(refused.value),
    )
    with forgettable.batch() as batch, pytest.raises(DuplicateMessage) as in_batch:
        batch.create("m1", **SECRETS)
    assert (ErrorCode.DUPLICATE_MESSAGE, expected) == (
        in_batch.value.code,
        str(in_batch.value),
    )


@pytest.mark.parametrize(
    "other",
    [
        {"sender": "someone else"},
        {"content": {"text": "other"}},
        {"priority": 1},
    ],
)
def test_a_sealed_message_created_with_other_fields_is_refused_in_words(
    forgettable: MessageService, other: dict[str, Any]
) -> None:
    forgettable.create("m1", **SECRETS)
    expected = "message 'm1' exists with different fields [DUPLICATE_MESSAGE]"
    with pytest.raises(DuplicateMessage) as refused:
        forgettable.create("m1", **{**SECRETS, **other})
    assert (ErrorCode.DUPLICATE_MESSAGE, expected) == (
        refused.value.code,
        str(refused.value),
    )
    with forgettable.batch() as batch, pytest.raises(DuplicateMessage) as in_batch:
        batch.create("m1", **{**SECRETS, **other})
    assert expected == str(in_batch.value)
    assert SECRETS["sender"] == forgettable.create("m1", **SECRETS).sender


def test_a_service_without_the_data_keys_shows_sealed_fields_as_forgotten(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A service opened before the store became forgettable has no key store: it
    can't open another process's sealed fields, so it shows the markers (never the
    placeholders), and refuses their re-creation as a forgotten id."""
    url = backend_url("sqlite", tmp_path)
    plain = MessageService.open(url, clock=clock)
    keeper = MessageService.open(url, clock=clock, forgettable=True)
    try:
        keeper.create("m1", **SECRETS)
        assert not plain.forgettable
        view = plain.get("m1")
        assert (MessageStatus.SENDING, 1, True) == (
            view.status,
            view.attempts,
            view.forgotten,
        )
        assert (FORGOTTEN, FORGOTTEN, FORGOTTEN, dict(FORGOTTEN_CONTENT)) == (
            view.sender,
            view.user_id,
            view.cloud_custom_data,
            view.content,
        )
        with pytest.raises(DuplicateMessage) as refused:
            plain.create("m1", **SECRETS)
        assert (
            "message 'm1' was forgotten; its id can't be created again "
            "[DUPLICATE_MESSAGE]"
        ) == str(refused.value)
        assert SECRETS["sender"] == keeper.get("m1").sender
    finally:
        keeper.close()
        plain.close()


# -- reading many ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_kind", "options"),
    [("memory", {"cache_size": 0}), ("sqlite", {"snapshot_every": 2})],
)
def test_bulk_reports_read_past_an_absent_id(
    url_kind: str, options: dict[str, Any], tmp_path: Path, clock: FakeClock
) -> None:
    """Read stream by stream (memory, snapshots), an absent id is skipped: the
    messages after it are still found."""
    url = backend_url(url_kind, tmp_path)
    maker = MessageService.open(url, clock=clock, **options)
    for msg_id in ("m1", "m2"):
        maker.create(msg_id, sender="a", user_id="b")
    service = maker if url_kind == "memory" else MessageService.open(url, **options)
    try:
        outcomes = service.record_deliveries(
            [
                {"msg_id": "absent", "seq": "1"},
                {"msg_id": "m1", "seq": "2"},
                {"msg_id": "other-absent", "seq": "3"},
                {"msg_id": "m2", "seq": "4"},
            ]
        )
        missing = [o for o in outcomes if isinstance(o, MessageNotFound)]
        assert [
            "message 'absent' not found [MESSAGE_NOT_FOUND]",
            "message 'other-absent' not found [MESSAGE_NOT_FOUND]",
        ] == [str(o) for o in missing]
        assert [("m1", "2"), ("m2", "4")] == [
            (o.msg_id, o.seq) for o in (outcomes[1], outcomes[3])
        ]
        assert all(
            service.get(m).status is MessageStatus.SEND_SUCC for m in ("m1", "m2")
        )
        with service.batch() as batch:
            batch.prefetch(["absent", "m1", "m2"])
            assert ["2", "4"] == [batch.get(m).seq for m in ("m1", "m2")]
    finally:
        service.close()
        maker.close()


@pytest.mark.parametrize("snapshot_every", [None, 2])
def test_prefetch_reads_in_bulk_unless_snapshots_are_kept(
    snapshot_every: int | None,
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/storage.md: prefetch reads the messages not cached with one query per
    500; with snapshots it reads them one by one, each from its latest snapshot."""
    import msgstate.repository as repository

    url = backend_url("sqlite", tmp_path)
    maker = MessageService.open(url, clock=clock, snapshot_every=snapshot_every)
    ids = [f"m{i}" for i in range(3)]
    for msg_id in ids:
        maker.create(msg_id, sender="a", user_id="b")
        maker.record_failure(msg_id, code=6012)
        maker.resend(msg_id)
    expected = [maker.get(m) for m in ids]
    other = MessageService.open(url, clock=clock, snapshot_every=snapshot_every)
    bulk: list[int] = []
    one_by_one: list[Any] = []
    select = repository.select_streams
    get = other.repository.get

    def counting_select(recorder: Any, wanted: Any) -> Any:
        found = select(recorder, wanted)
        if found is not None:
            bulk.append(len(wanted))
        return found

    def counting_get(aggregate_id: Any, **kwargs: Any) -> Any:
        one_by_one.append(aggregate_id)
        return get(aggregate_id, **kwargs)

    monkeypatch.setattr(repository, "select_streams", counting_select)
    monkeypatch.setattr(other.repository, "get", counting_get)
    try:
        with other.batch() as batch:
            batch.prefetch(ids)
            got = [batch.get(m) for m in ids]
    finally:
        other.close()
        maker.close()
    assert expected == got
    if snapshot_every is None:
        assert ([3], []) == (bulk, one_by_one)
    else:
        assert ([], [other.stream_id(m) for m in ids]) == (bulk, one_by_one)


# -- a cached message gone from the store ---------------------------------------------


def test_a_batch_creates_again_a_cached_message_gone_from_the_store(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A message this service cached, then removed from the store without being
    archived (the store put back from an older backup): a batch's create finds it
    gone, not archived, and creates it anew."""
    url = backend_url("sqlite", tmp_path)
    service = MessageService.open(url, clock=clock)
    try:
        service.create("m1", sender="a", user_id="b")
        service.record_failure("m1", code=6012)
        stream = service.stream_id("m1").hex
        table = service.recorder.events_table_name  # type: ignore[attr-defined]
        with closing(sqlite3.connect(tmp_path / "msgstate.db")) as db, db:
            deleted = db.execute(
                f"DELETE FROM {table} WHERE originator_id = ?", [stream]
            ).rowcount
        assert 2 == deleted
        with service.batch() as batch:
            created = batch.create("m1", sender="a", user_id="b")
        assert (1, MessageStatus.SENDING) == (created.version, created.status)
        again = service.get("m1")
        assert (1, MessageStatus.SENDING, "a") == (
            again.version,
            again.status,
            again.sender,
        )
    finally:
        service.close()
