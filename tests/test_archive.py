"""Retention: archive finished histories, restore them, and refuse archived ids.

The backend matrix (memory, SQLite, PostgreSQL) comes from the ``make_service``
fixture. Stored events are compared as raw records (version, topic, state bytes),
so "identical" means byte-identical in the store, not merely equal views.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from msgstate import (
    ArchiveInvalid,
    ConcurrencyConflict,
    ErrorCode,
    InvalidArgument,
    Message,
    MessageArchived,
    MessageNotFound,
    MessageService,
    MessageStatus,
    ResendPolicy,
)
from tests.conftest import ServiceFactory, backend_url
from tests.support import FakeClock

POLICY = ResendPolicy(max_attempts=2)
PERMANENT = 6017  # a catalogued PERMANENT code
TRANSIENT = 6012  # a catalogued TRANSIENT code


def raw(service: MessageService, msg_id: str) -> list[tuple[int, str, bytes]]:
    """A message's stored events, as stored."""
    return [
        (e.originator_version, e.topic, bytes(e.state))
        for e in service.recorder.select_events(Message.create_id(msg_id))
    ]


def make_messages(service: MessageService, clock: FakeClock) -> dict[str, str]:
    """One message of each kind; returns msg_id -> kind. The newest event of the
    log belongs to an unfinished message (SQLite keeps the newest event's stream)."""
    kinds: dict[str, str] = {}
    for i in range(3):
        m = f"delivered-{i}"
        service.create(m, sender="s", user_id="u", content={"text": f"hello {i}"})
        clock.advance(1)
        service.record_failure(m, code=TRANSIENT)
        service.resend(m)
        service.record_delivery(m, seq=f"seq-{i}")
        kinds[m] = "delivered"
    for i in range(2):
        m = f"exhausted-{i}"
        service.create(m, sender="s", group_id="g")
        service.record_failure(m, code=TRANSIENT)
        service.resend(m)
        service.record_failure(m, code=TRANSIENT)
        kinds[m] = "dead"
    m = "permanent"
    service.create(m, sender="s", user_id="u")
    service.record_failure(m, code=PERMANENT)
    kinds[m] = "dead"
    m = "retryable"
    service.create(m, sender="s", user_id="u")
    service.record_failure(m, code=TRANSIENT)
    kinds[m] = "failed"
    m = "sending"
    service.create(m, sender="s", user_id="u")
    kinds[m] = "sending"
    return kinds


def archived_ids(kinds: dict[str, str], include: tuple[str, ...]) -> set[str]:
    return {m for m, k in kinds.items() if k in include}


def test_archive_removes_finished_and_restore_brings_them_back(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    before_raw = {m: raw(service, m) for m in kinds}
    before_history = {m: service.history(m) for m in kinds}
    counts = service.status_counts()
    dead = [letter.msg_id for letter in service.dead_letters()]
    clock.advance(3600)

    report = service.archive(before=clock(), to=tmp_path / "a.jsonl")

    gone = archived_ids(kinds, ("delivered", "dead"))
    assert (report.messages, report.archived, report.kept) == (len(gone), len(gone), {})
    assert report.events == sum(len(before_raw[m]) for m in gone)
    for m in kinds:
        if m in gone:
            assert raw(service, m) == []
            with pytest.raises(MessageArchived) as caught:
                service.get(m)
            assert caught.value.code is ErrorCode.MESSAGE_ARCHIVED
            assert caught.value.archive_file == "a.jsonl"
        else:
            assert raw(service, m) == before_raw[m]
    assert service.status_counts()[MessageStatus.SEND_SUCC] == 0
    assert service.status_counts()[MessageStatus.SEND_FAIL] == 1
    assert service.dead_letters() == []

    restored = service.restore(tmp_path / "a.jsonl")

    assert (restored.restored, restored.events) == (len(gone), report.events)
    assert {m: raw(service, m) for m in kinds} == before_raw
    assert {m: service.history(m) for m in kinds} == before_history
    assert service.status_counts() == counts
    assert [letter.msg_id for letter in service.dead_letters()] == dead
    assert service.rebuild_projections() > 0
    assert service.status_counts() == counts


def test_restoring_twice_restores_nothing_the_second_time(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    first = service.restore(tmp_path / "a.jsonl")
    after_first = {m: raw(service, m) for m in kinds}

    second = service.restore(tmp_path / "a.jsonl")

    assert second.restored == 0
    assert second.skipped == {"already in the store": first.restored}
    assert {m: raw(service, m) for m in kinds} == after_first


@pytest.mark.parametrize(
    "call",
    [
        lambda s, m: s.get(m),
        lambda s, m: s.history(m),
        lambda s, m: s.get_at(m, version=1),
        lambda s, m: s.get_at(m, at=datetime(2030, 1, 1).astimezone()),
        lambda s, m: s.check_resend(m),
        lambda s, m: s.resend(m),
        lambda s, m: s.record_failure(m, code=TRANSIENT),
        lambda s, m: s.record_delivery(m, seq="late"),
        lambda s, m: s.create(m, sender="s", user_id="u"),
    ],
    ids=[
        "get",
        "history",
        "get_at_version",
        "get_at_time",
        "check_resend",
        "resend",
        "record_failure",
        "record_delivery",
        "create",
    ],
)
def test_an_archived_id_answers_message_archived_and_is_never_reused(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path, call: Any
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")

    with pytest.raises(MessageArchived) as caught:
        call(service, "exhausted-0")

    assert isinstance(caught.value, MessageNotFound)
    assert raw(service, "exhausted-0") == []
    assert kinds["exhausted-0"] == "dead"


def test_a_batch_refuses_archived_ids(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")

    with pytest.raises(MessageArchived), service.batch() as batch:
        batch.record_delivery("permanent", seq="late")

    assert raw(service, "permanent") == []


def test_a_batch_create_of_an_archived_id_is_refused_on_its_rerun(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    """A batch creates without reading: the store's guard fails the save
    (ConcurrencyConflict, nothing saved); the rerun reads the id and is refused
    with MessageArchived; after a restore the same create finds the message."""
    service = make_service(POLICY)
    make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")

    with pytest.raises(ConcurrencyConflict), service.batch() as batch:
        batch.create("permanent", sender="s", user_id="u")
    with pytest.raises(MessageArchived), service.batch() as batch:
        batch.create("permanent", sender="s", user_id="u")
    assert raw(service, "permanent") == []

    service.restore(tmp_path / "a.jsonl")
    with service.batch() as batch:
        view = batch.create("permanent", sender="s", user_id="u")
    assert view == service.get("permanent")
    assert 1 < view.version


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_another_service_with_a_cached_copy_cannot_write_to_an_archived_stream(
    store: str, tmp_path: Path, clock: FakeClock
) -> None:
    """A second service's cache still holds the message; the store refuses."""
    url = backend_url(store, tmp_path)
    first = MessageService.open(url, policy=POLICY, clock=clock)
    other = MessageService.open(url, policy=POLICY, clock=clock)
    try:
        make_messages(first, clock)
        other.get("exhausted-1")  # now in other's cache
        clock.advance(3600)
        first.archive(before=clock(), to=tmp_path / "a.jsonl")

        with pytest.raises(MessageArchived):
            other.record_delivery("exhausted-1", seq="late")  # allowed after failure

        assert raw(first, "exhausted-1") == []
    finally:
        first.close()
        other.close()


def test_include_chooses_delivered_or_dead(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    clock.advance(3600)

    report = service.archive(
        before=clock(), to=tmp_path / "a.jsonl", include=("delivered",)
    )

    assert report.archived == len(archived_ids(kinds, ("delivered",)))
    for m, kind in kinds.items():
        assert (raw(service, m) == []) == (kind == "delivered")


def test_only_messages_last_changed_before_the_moment_are_archived(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    service.create("old", sender="s", user_id="u")
    service.record_delivery("old", seq="1")
    clock.advance(60)
    moment = clock()
    service.create("new", sender="s", user_id="u")
    service.record_delivery("new", seq="2")
    service.create("unfinished-last", sender="s", user_id="u")
    clock.advance(60)

    report = service.archive(before=moment, to=tmp_path / "a.jsonl")

    assert report.archived == 1
    assert raw(service, "old") == []
    assert len(raw(service, "new")) == 2


def test_the_manifest_counts_and_hashes_the_file(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    clock.advance(3600)
    path = tmp_path / "a.jsonl"

    report = service.archive(before=clock(), to=path)

    manifest = json.loads((tmp_path / "a.jsonl.manifest.json").read_text())
    data = path.read_bytes()
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert manifest["format"] == "msgstate-archive/1"
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest() == report.sha256
    assert manifest["bytes"] == len(data)
    assert manifest["messages"] == len(lines) == report.messages
    assert manifest["events"] == sum(len(line["events"]) for line in lines)
    assert {line["msg_id"] for line in lines} == archived_ids(
        kinds, ("delivered", "dead")
    )
    assert all(UUID(line["id"]) == Message.create_id(line["msg_id"]) for line in lines)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_dry_run_only_counts(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    before_raw = {m: raw(service, m) for m in kinds}
    clock.advance(3600)

    report = service.archive(before=clock(), to=tmp_path / "a.jsonl", dry_run=True)

    gone = archived_ids(kinds, ("delivered", "dead"))
    assert report.dry_run
    assert (report.messages, report.archived) == (len(gone), 0)
    assert report.events == sum(len(before_raw[m]) for m in gone)
    assert list(tmp_path.iterdir()) == [] or backend_files_only(tmp_path)
    assert {m: raw(service, m) for m in kinds} == before_raw


def backend_files_only(directory: Path) -> bool:
    return all(p.name.startswith("msgstate.db") for p in directory.iterdir())


def test_a_damaged_archive_is_refused_and_nothing_is_restored(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    make_messages(service, clock)
    clock.advance(3600)
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    data = bytearray(path.read_bytes())
    data[40] ^= 1
    path.write_bytes(bytes(data))

    with pytest.raises(ArchiveInvalid) as caught:
        service.restore(path)

    assert caught.value.code is ErrorCode.ARCHIVE_INVALID
    assert raw(service, "permanent") == []


def test_a_message_changed_after_it_was_written_stays_in_the_store(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    """A late delivery lands between writing the file and deleting: kept."""
    service = make_service(POLICY)
    make_messages(service, clock)
    clock.advance(3600)
    moment = clock()
    changed: list[bool] = []

    def late_delivery(phase: str, done: int, total: int) -> None:
        if phase == "verify" and not changed:
            changed.append(True)
            service.record_delivery("permanent", seq="late")

    report = service.archive(
        before=moment, to=tmp_path / "a.jsonl", progress=late_delivery
    )

    assert report.kept == {"changed since written": 1}
    assert service.get("permanent").status is MessageStatus.SEND_SUCC
    restored = service.restore(tmp_path / "a.jsonl")
    assert restored.skipped == {"already in the store": 1}
    assert len(raw(service, "permanent")) == 3


def test_rerunning_with_the_same_path_finishes_and_archives_nothing_twice(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    clock.advance(3600)
    first = service.archive(before=clock(), to=tmp_path / "a.jsonl")

    again = service.archive(before=clock(), to=tmp_path / "a.jsonl")

    assert again.resumed
    assert (again.archived, again.already) == (0, first.archived)
    assert again.sha256 == first.sha256
    assert len(archived_ids(kinds, ("delivered", "dead"))) == first.archived


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"before": datetime(2030, 1, 1)}, InvalidArgument),  # naive
        ({"include": ("delivered", "sent")}, InvalidArgument),
        ({"include": "dead"}, InvalidArgument),
        ({"include": ()}, InvalidArgument),
        ({"to": "/nonexistent-dir-i12r/a.jsonl"}, InvalidArgument),
        ({"chunk": 0}, InvalidArgument),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    make_service: ServiceFactory,
    clock: FakeClock,
    tmp_path: Path,
    kwargs: dict[str, Any],
    error: type[Exception],
) -> None:
    service = make_service(POLICY)
    make_messages(service, clock)
    arguments: dict[str, Any] = {
        "before": clock() + timedelta(days=1),
        "to": tmp_path / "a.jsonl",
        **kwargs,
    }

    with pytest.raises(error):
        service.archive(**arguments)

    assert len(raw(service, "permanent")) == 2
    assert not (tmp_path / "a.jsonl").exists()


def test_an_existing_file_without_a_manifest_is_not_overwritten(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    make_messages(service, clock)
    path = tmp_path / "notes.txt"
    path.write_text("mine\n")

    with pytest.raises(ArchiveInvalid):
        service.archive(before=clock() + timedelta(days=1), to=path)

    assert path.read_text() == "mine\n"
    assert len(raw(service, "permanent")) == 2


def test_an_encrypted_compressed_archive_restores_only_with_its_key(
    tmp_path: Path, clock: FakeClock
) -> None:
    from msgstate import generate_cipher_key

    url = f"sqlite:///{tmp_path / 'enc.db'}"
    key = generate_cipher_key()
    options: dict[str, Any] = {"cipher_key": key, "compress": True}
    service = MessageService.open(url, policy=POLICY, clock=clock, **options)
    kinds = make_messages(service, clock)
    before_raw = {m: raw(service, m) for m in kinds}
    clock.advance(3600)
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    service.close()
    assert b"hello" not in path.read_bytes()  # still encrypted, ids not in clear
    assert b"delivered-0" not in path.read_bytes()

    other = f"sqlite:///{tmp_path / 'other.db'}"
    wrong = MessageService.open(
        other, clock=clock, cipher_key=generate_cipher_key(), compress=True
    )
    with pytest.raises(ArchiveInvalid, match="cannot be decoded"):
        wrong.restore(path)
    wrong.close()
    plain = MessageService.open(f"sqlite:///{tmp_path / 'plain.db'}", clock=clock)
    with pytest.raises(ArchiveInvalid, match="encrypted=True, compressed=True"):
        plain.restore(path)
    plain.close()
    right = MessageService.open(url, policy=POLICY, clock=clock, **options)
    right.restore(path)
    assert {m: raw(right, m) for m in kinds} == before_raw
    right.close()


def test_archive_and_restore_with_snapshots(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY, snapshot_every=2)
    kinds = make_messages(service, clock)
    histories = {m: service.history(m) for m in kinds}
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    assert service.snapshots is not None
    assert list(service.snapshots.get(Message.create_id("delivered-0"))) == []

    service.restore(tmp_path / "a.jsonl")

    assert {m: service.history(m) for m in kinds} == histories
    assert service.get("delivered-0").status is MessageStatus.SEND_SUCC


def test_read_models_follow_new_events_across_the_gaps(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    """Deleted events leave gaps in notification ids; none is ever reused."""
    service = make_service(POLICY)
    make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    newest = service.recorder.max_notification_id() or 0

    service.create("after", sender="s", user_id="u")
    service.record_failure("after", code=TRANSIENT)

    assert (service.recorder.max_notification_id() or 0) > newest
    counts = service.status_counts()
    assert counts[MessageStatus.SEND_FAIL] == 2  # "retryable" and "after"
    assert counts[MessageStatus.SENDING] == 1
    service.wait_for_projections(timeout=5)
    assert service.rebuild_projections() == 5  # the events left in the log
    assert service.status_counts() == counts


def test_the_projection_runner_follows_across_the_gaps(
    tmp_path: Path, clock: FakeClock
) -> None:
    """PostgreSQL's runner (LISTEN/NOTIFY) keeps working after an archive."""
    import threading

    from msgstate.runner import run_projections

    url = backend_url("postgres", tmp_path)
    service = MessageService.open(
        url, policy=POLICY, clock=clock, projections="external"
    )
    stop, ready = threading.Event(), threading.Event()
    runner = threading.Thread(
        target=run_projections, args=(url,), kwargs={"stop": stop, "ready": ready}
    )
    runner.start()
    try:
        assert ready.wait(60)
        make_messages(service, clock)
        service.wait_for_projections(timeout=60)
        clock.advance(3600)
        report = service.archive(before=clock(), to=tmp_path / "a.jsonl")
        service.create("after", sender="s", user_id="u")
        service.record_delivery("after", seq="1")
        service.wait_for_projections(timeout=60)

        assert report.kept == {}
        counts = service.status_counts()
        assert counts[MessageStatus.SEND_SUCC] == 1
        assert sum(counts.values()) == 3
        service.restore(tmp_path / "a.jsonl")
        service.wait_for_projections(timeout=60)
        assert sum(service.status_counts().values()) == 9
    finally:
        stop.set()
        runner.join(60)
        service.close()


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_batch_in_another_service_gets_message_archived_on_its_next_try(
    store: str, tmp_path: Path, clock: FakeClock
) -> None:
    url = backend_url(store, tmp_path)
    first = MessageService.open(url, policy=POLICY, clock=clock)
    other = MessageService.open(url, policy=POLICY, clock=clock)
    try:
        make_messages(first, clock)
        other.get("exhausted-1")  # now in other's cache
        clock.advance(3600)
        first.archive(before=clock(), to=tmp_path / "a.jsonl")

        with pytest.raises(ConcurrencyConflict), other.batch() as batch:
            batch.record_delivery("exhausted-1", seq="x")  # decided on the cache
        with pytest.raises(MessageArchived), other.batch() as batch:
            batch.record_delivery("exhausted-1", seq="x")
        outcomes = other.record_deliveries([{"msg_id": "exhausted-1", "seq": "x"}])

        assert [type(o) for o in outcomes] == [MessageArchived]
        assert raw(first, "exhausted-1") == []
    finally:
        first.close()
        other.close()


def test_an_id_never_created_is_plainly_not_found(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    make_messages(service, clock)
    clock.advance(3600)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")

    with pytest.raises(MessageNotFound) as caught:
        service.get("never-created")

    assert type(caught.value) is MessageNotFound
    assert caught.value.code is ErrorCode.MESSAGE_NOT_FOUND


def test_an_older_archive_does_not_restore_what_a_newer_one_holds(
    make_service: ServiceFactory, clock: FakeClock, tmp_path: Path
) -> None:
    service = make_service(POLICY)
    kinds = make_messages(service, clock)
    clock.advance(3600)
    first = service.archive(before=clock(), to=tmp_path / "a.jsonl")
    service.restore(tmp_path / "a.jsonl")
    service.create("newest", sender="s", user_id="u")  # SQLite keeps the newest
    service.archive(before=clock(), to=tmp_path / "b.jsonl")

    again = service.restore(tmp_path / "a.jsonl")

    assert again.restored == 0
    assert again.skipped == {"archived by another archive": first.archived}
    with pytest.raises(MessageArchived) as caught:
        service.get("permanent")
    assert caught.value.archive_file == "b.jsonl"
    assert service.restore(tmp_path / "b.jsonl").restored == first.archived
    assert all(raw(service, m) for m in kinds)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_resumed_archive_keeps_what_is_no_longer_finished(
    store: str, tmp_path: Path, clock: FakeClock
) -> None:
    """Rerun (same path) under a policy that would resend the exhausted ones."""
    url = backend_url(store, tmp_path)
    service = MessageService.open(url, policy=POLICY, clock=clock)
    kinds = make_messages(service, clock)
    clock.advance(3600)
    first = service.archive(before=clock(), to=tmp_path / "a.jsonl")
    service.restore(tmp_path / "a.jsonl")  # as if the deletes had not happened
    service.create("newest", sender="s", user_id="u")  # SQLite keeps the newest
    service.close()
    lenient = MessageService.open(url, policy=ResendPolicy(max_attempts=5), clock=clock)
    try:
        again = lenient.archive(before=clock(), to=tmp_path / "a.jsonl")

        assert again.resumed
        assert again.kept == {"no longer finished": 2}  # exhausted-0, exhausted-1
        assert again.archived == first.archived - 2
        assert raw(lenient, "exhausted-0") != []
        assert raw(lenient, "delivered-0") == []
        assert kinds["exhausted-0"] == "dead"
    finally:
        lenient.close()
