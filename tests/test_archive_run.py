"""``archive()`` run by run: the module function's defaults, its argument refusals
word for word, a dry run's whole report, and the refusals of an existing path
(unsealed file, dry run onto an archive, a resumed archive from another store).
Memory stores."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from msgstate import ArchiveInvalid, InvalidArgument, MessageService
from msgstate.archive import ArchiveReport, archive
from tests.support import FakeClock
from tests.test_archive import POLICY, make_messages, raw

FINISHED = 6  # finished messages of make_messages (3 delivered, 3 dead)


@pytest.fixture
def service(archive_service: MessageService) -> MessageService:
    return archive_service


@pytest.fixture
def finished(service: MessageService, clock: FakeClock) -> int:
    """make_messages, an hour old; returns the events of its finished messages."""
    kinds = make_messages(service, clock)
    clock.advance(3600)
    done = [m for m, kind in kinds.items() if kind in ("delivered", "dead")]
    return sum(len(raw(service, m)) for m in done)


def manifest_of(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def test_the_module_function_archives_for_real_by_default(
    service: MessageService, clock: FakeClock, finished: int, tmp_path: Path
) -> None:
    """``msgstate.archive.archive`` without ``dry_run`` deletes what it archives."""
    path = tmp_path / "a.jsonl"

    report = archive(service, before=clock(), to=path)

    assert (False, FINISHED, []) == (
        report.dry_run,
        report.archived,
        raw(service, "delivered-0"),
    )


def test_a_naive_before_is_refused_by_name(
    service: MessageService, tmp_path: Path
) -> None:
    """``before`` without a timezone: the refusal names the argument."""
    with pytest.raises(InvalidArgument) as refused:
        service.archive(before=datetime(2030, 1, 1), to=tmp_path / "a.jsonl")

    assert (
        "before must be timezone-aware, got datetime.datetime(2030, 1, 1, 0, 0)"
        == refused.value.desc
    )


def test_a_chunk_of_zero_is_refused_by_name(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """chunk=0: the refusal names chunk and its bounds."""
    with pytest.raises(InvalidArgument) as refused:
        service.archive(before=clock(), to=tmp_path / "a.jsonl", chunk=0)

    assert "chunk must be between 1 and 100000, got 0" == refused.value.desc


def test_a_chunk_above_100000_is_refused(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """chunk=100001 is one above the limit and is refused, writing nothing."""
    path = tmp_path / "a.jsonl"

    with pytest.raises(InvalidArgument) as refused:
        service.archive(before=clock(), to=path, chunk=100_001)

    assert ("chunk must be between 1 and 100000, got 100001", False) == (
        refused.value.desc,
        path.exists(),
    )


def test_a_file_without_a_manifest_is_refused_word_for_word(
    service: MessageService, clock: FakeClock, finished: int, tmp_path: Path
) -> None:
    """An existing data file without its manifest: path, manifest name, what it
    may be and what to do; nothing is deleted."""
    path = tmp_path / "x.jsonl"
    path.write_text("")
    kept = raw(service, "delivered-0")

    with pytest.raises(ArchiveInvalid) as refused:
        service.archive(before=clock(), to=path)

    assert (
        f"{str(path)!r} exists and has no manifest (x.jsonl.manifest.json); it is "
        "not a msgstate archive, or one interrupted before it was sealed (which "
        "deleted nothing): choose another path or remove the file",
        kept,
    ) == (refused.value.desc, raw(service, "delivered-0"))


def test_a_dry_run_onto_a_sealed_archive_is_refused_word_for_word(
    service: MessageService, clock: FakeClock, finished: int, tmp_path: Path
) -> None:
    """A dry run needs a new path even when the path is a whole archive: it is
    refused by name, and it neither resumes nor restores anything."""
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)

    with pytest.raises(InvalidArgument) as refused:
        service.archive(before=clock(), to=path, dry_run=True)

    assert (f"{str(path)!r} exists; a dry run needs a new path", []) == (
        refused.value.desc,
        raw(service, "delivered-0"),
    )


def test_a_dry_run_reports_counts_only(
    service: MessageService, clock: FakeClock, finished: int, tmp_path: Path
) -> None:
    """The whole dry-run report: the path, counts of what would be archived, and
    empty id, kept and hash; no file is written."""
    path = tmp_path / "a.jsonl"

    report = service.archive(before=clock(), to=path, dry_run=True)

    assert (
        ArchiveReport(
            path=str(path),
            archive_id="",
            messages=FINISHED,
            events=finished,
            archived=0,
            already=0,
            kept={},
            sha256="",
            dry_run=True,
        ),
        False,
    ) == (report, path.exists())


def test_resuming_in_a_store_with_other_options_names_the_manifest(
    service: MessageService, clock: FakeClock, finished: int, tmp_path: Path
) -> None:
    """Running again onto an archive made by a plain store, from a compressing
    store: refused before anything is deleted, naming the manifest's path."""
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    other = MessageService.open("memory://", policy=POLICY, clock=clock, compress=True)
    try:
        with pytest.raises(ArchiveInvalid) as refused:
            other.archive(before=clock(), to=path)
    finally:
        other.close()

    assert (
        f"archive {str(manifest_of(path))!r} was written by a store with "
        "encrypted=False, compressed=False; this store has encrypted=False, "
        "compressed=True: open it with the cipher_key and compress options the "
        "archive was made with"
    ) == refused.value.desc
