"""Archive selection, answer by answer: the refusals of ``include``, ``to`` and
``progress`` word for word; which messages an archive takes (finished, last changed
before the moment, judged by their loaded history even when a stream changed, was
replaced or vanished after the read models proposed it); and why a written message
is kept in the store (gone, archived by another archive, not yet in the read
models, holding SQLite's newest event). Memory stores unless a test needs SQLite.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from msgstate import InvalidArgument, Message, MessageService
from msgstate.projections import APPLICATION_NAME
from tests.support import FakeClock
from tests.test_archive import PERMANENT, POLICY, make_messages, raw
from tests.test_archive_answers import FINISHED, edit_manifest

FILLERS = 100  # records written before the archive's first "write" progress call


@pytest.fixture
def service(archive_service: MessageService) -> MessageService:
    return archive_service


def refusal(service: MessageService, **arguments: Any) -> str:
    """The description of the InvalidArgument that archive(**arguments) raises."""
    with pytest.raises(InvalidArgument) as refused:
        service.archive(**arguments)
    return str(refused.value.desc)


def by_stream_id(service: MessageService, msg_ids: list[str]) -> list[str]:
    """The msg_ids in the order an archive considers them (by stream id)."""
    return sorted(msg_ids, key=service.stream_id)


def make_dead(service: MessageService, count: int) -> list[str]:
    """``count`` dead letters (a permanent failure each), in stream-id order."""
    msg_ids = [f"dead-{i:03d}" for i in range(count)]
    for m in msg_ids:
        service.create(m, sender="s", user_id="u")
        service.record_failure(m, code=PERMANENT)
    return by_stream_id(service, msg_ids)


def archived_msg_ids(path: Path) -> list[str]:
    """The msg_ids of an archive file, in file order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["msg_id"] for line in lines]


# -- refusals of the arguments -------------------------------------------------------


def test_include_given_as_one_string_is_refused_as_not_a_sequence(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """include="dead" (a str, not a sequence of names) is refused, naming it."""
    desc = refusal(service, before=clock(), to=tmp_path / "a.jsonl", include="dead")

    assert "include must be a sequence of 'delivered' and 'dead', got 'dead'" == desc


def test_include_naming_an_unknown_kind_is_refused_naming_the_argument(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    desc = refusal(
        service, before=clock(), to=tmp_path / "a.jsonl", include=("delivered", "sent")
    )

    expected = (
        "include must name 'delivered', 'dead' or both, got ('delivered', 'sent')"
    )
    assert expected == desc


def test_a_path_that_is_neither_str_nor_path_is_refused_naming_it(
    service: MessageService, clock: FakeClock
) -> None:
    desc = refusal(service, before=clock(), to=5)

    assert "archive path must be a str or path, got 5" == desc


def test_a_path_naming_a_directory_is_refused_naming_it(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    desc = refusal(service, before=clock(), to=tmp_path)

    assert f"archive path {str(tmp_path)!r} names a directory" == desc


def test_a_path_in_a_missing_directory_is_refused_naming_both(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "missing" / "a.jsonl"

    desc = refusal(service, before=clock(), to=path)

    expected = (
        f"archive path {str(path)!r}: directory {str(path.parent)!r} does not exist"
    )
    assert expected == desc
    assert not path.parent.exists()


def test_a_progress_that_is_not_callable_is_refused_naming_it(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    desc = refusal(service, before=clock(), to=tmp_path / "a.jsonl", progress=5)

    assert "progress must be callable, got 5" == desc
    assert [] == list(tmp_path.iterdir())


# -- what is finished ----------------------------------------------------------------


def test_a_resumed_archive_under_delivered_only_keeps_the_dead_letters(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Resuming with a manifest include of ["delivered"]: a dead letter of the file
    is not finished under it, so the three dead ones stay in the store."""
    make_messages(service, clock)
    clock.advance(3600)
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    service.restore(path)  # as if the deletes had not happened
    edit_manifest(path, include=["delivered"])

    again = service.archive(before=clock(), to=path)

    assert (True, 3, {"no longer finished": 3}, 2) == (
        again.resumed,
        again.archived,
        again.kept,
        len(raw(service, "permanent")),
    )


# -- what the loaded history decides ---------------------------------------------------


def test_a_stream_gone_before_it_is_read_is_left_out_and_the_rest_archived(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """The read models still propose a stream the store no longer holds (the first
    one considered): the archive leaves it out and takes every other one."""
    dead = make_dead(service, 3)
    service.catch_up_projections()
    service.recorder.remove(service.stream_id(dead[0]))  # type: ignore[attr-defined]
    clock.advance(60)

    report = service.archive(before=clock(), to=tmp_path / "a.jsonl")

    assert (dead[1:], 2) == (archived_msg_ids(tmp_path / "a.jsonl"), report.archived)


def forgotten_later(
    service: MessageService, clock: FakeClock, msg_id: str, after: float
) -> None:
    """Deliver ``msg_id`` now and forget it ``after`` seconds later: its read-model
    row keeps the delivery time, its history ends with the Forgotten event."""
    service.create(msg_id, sender="s", user_id="u")
    service.record_delivery(msg_id, seq="1")
    clock.advance(after)
    service.forget(msg_id, actor="dpo", reason="erasure request")


@pytest.fixture
def forgettable(clock: FakeClock) -> MessageService:
    return MessageService.open(
        "memory://", policy=POLICY, clock=clock, forgettable=True
    )


def test_a_message_forgotten_after_the_moment_is_not_archived(
    forgettable: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Delivered before the moment but forgotten after it: last changed after."""
    delivered = clock()
    forgotten_later(forgettable, clock, "m", 20)

    report = forgettable.archive(
        before=delivered + timedelta(seconds=10), to=tmp_path / "a.jsonl"
    )

    assert (0, 3) == (report.messages, len(raw(forgettable, "m")))


def test_a_message_forgotten_exactly_at_the_moment_is_not_archived(
    forgettable: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Only messages last changed strictly before the moment are archived."""
    forgotten_later(forgettable, clock, "m", 20)
    moment = clock()
    clock.advance(60)

    report = forgettable.archive(before=moment, to=tmp_path / "a.jsonl")

    assert (0, 3) == (report.messages, len(raw(forgettable, "m")))


def test_a_message_changed_after_the_moment_does_not_stop_the_others(
    forgettable: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """The first message considered was forgotten after the moment: it stays, and
    the next one, delivered before the moment, is archived."""
    first, second = by_stream_id(forgettable, ["a", "b"])
    forgettable.create(second, sender="s", user_id="u")
    forgettable.record_delivery(second, seq="2")
    forgotten_later(forgettable, clock, first, 20)

    report = forgettable.archive(
        before=clock() - timedelta(seconds=10), to=tmp_path / "a.jsonl"
    )

    assert ([second], 3) == (
        archived_msg_ids(tmp_path / "a.jsonl"),
        len(raw(forgettable, first)),
    )
    assert 1 == report.archived


def archive_with_a_change_while_writing(
    service: MessageService,
    clock: FakeClock,
    tmp_path: Path,
    change: Any,
) -> tuple[list[str], list[str]]:
    """FILLERS + 2 dead letters, archived (dead only, in chunks of FILLERS) with
    ``change(msg_id)`` run on the first of the last two when the first FILLERS
    records are written, before the last two streams are read. Returns (the last
    two, the msg_ids archived)."""
    dead = make_dead(service, FILLERS + 2)
    changed: list[str] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "write" and done == FILLERS and not changed:
            changed.append(dead[FILLERS])
            change(dead[FILLERS])

    service.archive(
        before=clock() + timedelta(days=1),
        to=tmp_path / "a.jsonl",
        include=("dead",),
        chunk=FILLERS,  # streams are read FILLERS at a time
        progress=progress,
    )
    assert [dead[FILLERS]] == changed
    return dead[FILLERS:], archived_msg_ids(tmp_path / "a.jsonl")


def test_a_dead_letter_delivered_while_writing_is_left_out_of_a_dead_only_archive(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Proposed as dead, delivered before its stream is read: under include
    ("dead",) it is not finished, so it is left out; the next one is archived."""
    (late, last), written = archive_with_a_change_while_writing(
        service,
        clock,
        tmp_path,
        lambda m: service.record_delivery(m, seq="late"),
    )

    assert (FILLERS + 1, False, True) == (
        len(written),
        late in written,
        last in written,
    )


def test_a_stream_replaced_by_a_bare_creation_while_writing_is_left_out(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """A proposed stream is replaced, before it is read, by its creation alone
    (one event, SENDING): it is left out, the next one is archived."""
    recorder: Any = service.recorder

    def replace(msg_id: str) -> None:
        aid = service.stream_id(msg_id)
        creation = recorder.positions(aid)[0][1]
        recorder.remove(aid)
        recorder.insert_events([creation])

    (replaced, last), written = archive_with_a_change_while_writing(
        service, clock, tmp_path, replace
    )

    assert (FILLERS + 1, False, True) == (
        len(written),
        replaced in written,
        last in written,
    )


# -- why a written message is kept ---------------------------------------------------


def archive_with_a_change_after_verifying(
    service: MessageService, clock: FakeClock, tmp_path: Path, change: Any
) -> Any:
    """make_messages, archived an hour later with ``change()`` run once the file
    is verified (before anything is deleted); returns the report."""
    make_messages(service, clock)
    clock.advance(3600)
    done_once: list[bool] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "verify" and done == total and not done_once:
            done_once.append(True)
            change()

    return service.archive(before=clock(), to=tmp_path / "a.jsonl", progress=progress)


def test_a_message_gone_from_the_store_before_deleting_is_kept_as_gone(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    recorder: Any = service.recorder

    report = archive_with_a_change_after_verifying(
        service,
        clock,
        tmp_path,
        lambda: recorder.remove(Message.create_id("permanent")),
    )

    assert (FINISHED - 1, {"gone from the store": 1}) == (
        report.archived,
        report.kept,
    )


def test_messages_another_archive_took_first_are_kept_as_archived_by_it(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Another archive (another path) deletes them between verifying and
    deleting: this one deletes nothing and says who has them."""
    others: list[Any] = []

    report = archive_with_a_change_after_verifying(
        service,
        clock,
        tmp_path,
        lambda: others.append(
            service.archive(before=clock(), to=tmp_path / "other.jsonl")
        ),
    )

    assert (FINISHED, 0, {"archived by another archive": FINISHED}) == (
        others[0].archived,
        report.archived,
        report.kept,
    )


def test_messages_the_read_models_have_not_caught_up_with_are_kept(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """The memory read models are cleared between verifying and deleting: none of
    the messages is in them, so each stays, kept as not yet in the read models."""
    views: Any = service._views

    report = archive_with_a_change_after_verifying(
        service, clock, tmp_path, lambda: views.clear(APPLICATION_NAME)
    )

    assert (0, {"not yet in the read models": FINISHED}) == (
        report.archived,
        report.kept,
    )
    assert 2 == len(raw(service, "permanent"))


def test_on_sqlite_the_message_holding_the_newest_event_is_kept(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Of two delivered messages the one written last stays (SQLite would reuse
    its newest rowid); the other is archived."""
    service = MessageService.open(
        f"sqlite:///{tmp_path / 'msgstate.db'}", policy=POLICY, clock=clock
    )
    try:
        for m in ("older", "newer"):
            service.create(m, sender="s", user_id="u")
            service.record_delivery(m, seq=m)
        clock.advance(60)

        report = service.archive(before=clock(), to=tmp_path / "a.jsonl")

        assert (1, {"holds the newest event": 1}, 0, 2) == (
            report.archived,
            report.kept,
            len(raw(service, "older")),
            len(raw(service, "newer")),
        )
    finally:
        service.close()
