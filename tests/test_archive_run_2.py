"""What ``service.archive`` answers: a dry run's report, the report of a run and of
a resumed run, counts summed over every chunk, and its progress while deleting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from msgstate import ArchiveReport, MessageService
from msgstate.archive import INCLUDE
from tests.support import FakeClock
from tests.test_archive import archived_ids, make_messages, raw
from tests.test_archive_answers import FINISHED, edit_manifest, manifest_of


@pytest.fixture
def service(archive_service: MessageService) -> MessageService:
    return archive_service


def manifest(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(manifest_of(path).read_text(encoding="utf-8"))
    return loaded


def test_a_dry_run_reports_its_path_and_counts_but_no_archive_nor_hash(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """A dry run answers the path it was given, what it would take, and an empty
    archive id and hash: nothing was written, archived or found archived."""
    kinds = make_messages(service, clock)
    events = sum(len(raw(service, m)) for m in archived_ids(kinds, INCLUDE))
    clock.advance(3600)
    path = tmp_path / "a.jsonl"

    report = service.archive(before=clock(), to=path, dry_run=True)

    expected = ArchiveReport(
        path=str(path),
        archive_id="",
        messages=FINISHED,
        events=events,
        archived=0,
        already=0,
        kept={},
        sha256="",
        dry_run=True,
        resumed=False,
    )
    assert expected == report


def test_the_report_names_the_file_and_the_manifest_archive_and_hash(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """The report of a run names the path it wrote and the archive id and SHA-256
    of the manifest beside it."""
    make_messages(service, clock)
    clock.advance(3600)
    path = tmp_path / "a.jsonl"

    report = service.archive(before=clock(), to=path)

    sealed = manifest(path)
    assert (str(path), sealed["archive_id"], sealed["sha256"]) == (
        report.path,
        report.archive_id,
        report.sha256,
    )


def test_archive_reports_deleting_after_each_chunk_with_the_running_total(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Deleting in chunks of 4, progress hears ("delete", done so far, total)
    after each chunk."""
    make_messages(service, clock)
    clock.advance(3600)
    calls: list[tuple[str, int, int]] = []

    service.archive(
        before=clock(),
        to=tmp_path / "a.jsonl",
        chunk=4,
        progress=lambda phase, done, total: calls.append((phase, done, total)),
    )

    assert [("delete", 4, FINISHED), ("delete", FINISHED, FINISHED)] == [
        call for call in calls if call[0] not in ("write", "verify")
    ]


def test_archived_counts_the_deletes_of_every_chunk(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """With chunks of 4, ``archived`` is the deletes of both chunks, not the last."""
    make_messages(service, clock)
    clock.advance(3600)

    report = service.archive(before=clock(), to=tmp_path / "a.jsonl", chunk=4)

    assert (FINISHED, 0, {}) == (report.archived, report.already, report.kept)


def test_a_resumed_finished_archive_counts_already_over_every_chunk(
    service: MessageService, archived: Path, clock: FakeClock
) -> None:
    """Running a finished archive again in chunks of 4: every message of it is
    ``already`` archived, counted over both chunks."""
    again = service.archive(before=clock(), to=archived, chunk=4)

    assert (True, 0, FINISHED) == (again.resumed, again.archived, again.already)


def test_a_resumed_archive_with_everything_still_finished_keeps_nothing(
    service: MessageService, archived: Path, clock: FakeClock
) -> None:
    """Resuming when every message of the file is still finished reports no kept
    reason at all (not "no longer finished": 0)."""
    again = service.archive(before=clock(), to=archived)

    assert (True, {}) == (again.resumed, again.kept)


def test_a_resumed_archive_sums_no_longer_finished_over_every_chunk(
    service: MessageService, archived: Path, clock: FakeClock
) -> None:
    """Resuming in chunks of one under a manifest include of ["dead"], the three
    delivered messages (three chunks) are all counted as "no longer finished"."""
    service.restore(archived)  # as if the deletes had not happened
    edit_manifest(archived, include=["dead"])

    again = service.archive(before=clock(), to=archived, chunk=1)

    assert (3, {"no longer finished": 3}) == (again.archived, again.kept)


def test_a_resumed_archive_sums_a_store_reason_over_every_chunk(
    service: MessageService, archived: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """Messages another archive took since are kept with that reason, counted over
    every chunk (here six chunks of one)."""
    service.restore(archived)
    other = service.archive(before=clock(), to=tmp_path / "b.jsonl")
    assert FINISHED == other.archived

    again = service.archive(before=clock(), to=archived, chunk=1)

    assert (0, 0, {"archived by another archive": FINISHED}) == (
        again.archived,
        again.already,
        again.kept,
    )
