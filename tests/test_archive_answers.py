"""Archive and restore, answer by answer: the exact bytes of an archive line, every
refusal of a file or manifest word for word, restore's chunks, progress and report,
a resumed archive's use of its manifest, and the temporary names and syncs of the
write. Memory stores unless a test needs a file-backed one."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import msgstate
from msgstate import (
    ArchiveInvalid,
    InvalidArgument,
    Message,
    MessageService,
    ResendPolicy,
    RestoreReport,
)
from tests.support import FakeClock
from tests.test_archive import POLICY, TRANSIENT, make_messages, raw

FINISHED = 6  # finished messages of make_messages (3 delivered, 3 dead)


@pytest.fixture
def service(archive_service: MessageService) -> MessageService:
    return archive_service


def manifest_of(path: Path) -> Path:
    return path.with_name(path.name + ".manifest.json")


def reseal(path: Path, lines: list[dict[str, Any]]) -> None:
    """Rewrite the data file with these lines and make its manifest match them."""
    data = "".join(
        json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
        for line in lines
    ).encode("utf-8")
    path.write_bytes(data)
    manifest = json.loads(manifest_of(path).read_text(encoding="utf-8"))
    manifest.update(
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        messages=len(lines),
        events=sum(len(line["events"]) for line in lines),
    )
    manifest_of(path).write_text(json.dumps(manifest), encoding="utf-8")


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def edit_manifest(path: Path, **changes: Any) -> None:
    """Change manifest fields; a value of ``None`` removes the field."""
    manifest = json.loads(manifest_of(path).read_text(encoding="utf-8"))
    for name, value in changes.items():
        if value is None:
            manifest.pop(name, None)
        else:
            manifest[name] = value
    manifest_of(path).write_text(json.dumps(manifest), encoding="utf-8")


# -- the archive file ---------------------------------------------------------------


def test_an_archive_line_is_compact_json_in_utf8(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """One line per message: no spaces between tokens, non-ASCII ids as UTF-8
    (not escaped), states in base64."""
    msg_id = "café-☕"
    service.create(msg_id, sender="s", user_id="u")
    service.record_delivery(msg_id, seq="1")
    stored = raw(service, msg_id)
    clock.advance(60)
    path = tmp_path / "a.jsonl"

    service.archive(before=clock(), to=path)

    events = ",".join(
        f'{{"version":{version},"topic":"{topic}",'
        f'"state":"{base64.b64encode(state).decode()}"}}'
        for version, topic, state in stored
    )
    expected = (
        f'{{"id":"{Message.create_id(msg_id)}","msg_id":"{msg_id}",'
        f'"events":[{events}]}}\n'
    ).encode()
    assert expected == path.read_bytes()


def test_the_data_is_written_under_a_tmp_name_until_it_is_sealed(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """When writing has finished the data is PATH.tmp; PATH does not exist yet."""
    make_messages(service, clock)
    clock.advance(3600)
    path = tmp_path / "a.jsonl"
    seen: list[tuple[bool, bool]] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "write" and done == total:
            seen.append((path.exists(), (tmp_path / "a.jsonl.tmp").exists()))

    service.archive(before=clock(), to=path, progress=progress)

    assert [(False, True)] == seen


def synced_by_archive(
    service: MessageService,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """The paths ``os.fsync`` was called on (named through /proc) by one archive."""
    make_messages(service, clock)
    clock.advance(3600)
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    service.archive(before=clock(), to=tmp_path / "a.jsonl")
    return synced


NEEDS_PROC = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="names open files through /proc"
)


@NEEDS_PROC
def test_archive_syncs_data_manifest_and_then_their_directory(
    service: MessageService,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The renames are made durable: the directory is synced after both files."""
    folder = tmp_path.resolve()
    expected = [
        str(folder / "a.jsonl.tmp"),
        str(folder / "a.jsonl.manifest.json.tmp"),
        str(folder),
    ]
    assert expected == synced_by_archive(service, clock, tmp_path, monkeypatch)


@NEEDS_PROC
def test_on_windows_archive_syncs_the_files_but_not_their_directory(
    service: MessageService,
    clock: FakeClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows cannot open a directory to sync it: only the two files are synced."""
    monkeypatch.setattr(sys, "platform", "win32")
    folder = tmp_path.resolve()
    expected = [
        str(folder / "a.jsonl.tmp"),
        str(folder / "a.jsonl.manifest.json.tmp"),
    ]
    assert expected == synced_by_archive(service, clock, tmp_path, monkeypatch)


def test_archive_reports_writing_every_100_messages(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Writing reports (write, n, 0) at each 100th message, then (write, n, n)."""
    for i in range(100):
        service.create(f"m-{i:03d}", sender="s", user_id="u")
        service.record_delivery(f"m-{i:03d}", seq=str(i))
    clock.advance(60)
    calls: list[tuple[str, int, int]] = []

    service.archive(
        before=clock(),
        to=tmp_path / "a.jsonl",
        progress=lambda phase, done, total: calls.append((phase, done, total)),
    )

    assert [("write", 100, 0), ("write", 100, 100)] == [
        call for call in calls if call[0] == "write"
    ]


# -- lines the reader refuses --------------------------------------------------------


def test_a_state_with_a_character_outside_base64_is_refused(
    service: MessageService, archived: Path
) -> None:
    """A sealed file whose state holds a stray character is not an archive line
    (not silently decoded without it); nothing is restored."""
    lines = lines_of(archived)
    state = lines[0]["events"][0]["state"]
    lines[0]["events"][0]["state"] = state[:4] + "*" + state[4:]
    reseal(archived, lines)

    with pytest.raises(ArchiveInvalid) as refused:
        service.restore(archived)

    assert (
        "a.jsonl line 1: not an archive line (Only base64 data is allowed)"
        == refused.value.desc
    )
    assert [] == raw(service, lines[0]["msg_id"])


def test_a_history_with_a_version_gap_is_refused_with_its_first_versions(
    clock: FakeClock, tmp_path: Path
) -> None:
    """Versions 1..5, 7: not a whole history; the message shows five versions."""
    service = MessageService.open(
        "memory://", policy=ResendPolicy(max_attempts=5), clock=clock
    )
    service.create("long", sender="s", user_id="u")
    for _ in range(2):
        service.record_failure("long", code=TRANSIENT)
        service.resend("long")
    service.record_delivery("long", seq="1")
    clock.advance(60)
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    lines = lines_of(path)
    lines[0]["events"][-1]["version"] = 7
    reseal(path, lines)

    with pytest.raises(ArchiveInvalid) as refused:
        service.restore(path)

    assert (
        f"a.jsonl line 1: stream {Message.create_id('long')} has versions "
        "[1, 2, 3, 4, 5]..., not a whole history from version 1"
    ) == refused.value.desc
    assert [] == raw(service, "long")


# -- restore's refusals --------------------------------------------------------------


def test_restore_refuses_a_chunk_above_100000_by_name(
    service: MessageService, archived: Path
) -> None:
    """chunk is checked first, and the refusal names it and its bounds."""
    with pytest.raises(InvalidArgument) as refused:
        service.restore(archived, chunk=100_001)

    assert "chunk must be between 1 and 100000, got 100001" == refused.value.desc


def test_restore_accepts_a_chunk_of_one(
    service: MessageService, archived: Path
) -> None:
    """chunk=1 (the smallest allowed) restores one message per transaction."""
    report = service.restore(archived, chunk=1)

    assert (FINISHED, {}) == (report.restored, report.skipped)


def test_restoring_a_missing_file_names_it(
    service: MessageService, tmp_path: Path
) -> None:
    path = tmp_path / "none.jsonl"

    with pytest.raises(ArchiveInvalid) as refused:
        service.restore(path)

    assert f"archive {str(path)!r} does not exist" == refused.value.desc


def test_restoring_a_file_without_a_manifest_says_it_was_never_sealed(
    service: MessageService, tmp_path: Path
) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("")

    with pytest.raises(ArchiveInvalid) as refused:
        service.restore(path)

    assert (
        f"archive {str(path)!r} has no manifest (x.jsonl.manifest.json); it was "
        "never sealed, so nothing of it was deleted from a store"
    ) == refused.value.desc


def test_restoring_into_a_store_with_other_options_names_manifest_and_fix(
    archived: Path, clock: FakeClock
) -> None:
    """A plain store's archive into a compressing store: the manifest's path, both
    option sets, and what to do."""
    other = MessageService.open("memory://", clock=clock, compress=True)

    with pytest.raises(ArchiveInvalid) as refused:
        other.restore(archived)

    assert (
        f"archive {str(manifest_of(archived))!r} was written by a store with "
        "encrypted=False, compressed=False; this store has encrypted=False, "
        "compressed=True: open it with the cipher_key and compress options the "
        "archive was made with"
    ) == refused.value.desc


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "cannot be read: Expecting value: line 1 column 1 (char 0)"),
        ("[]", "is not a JSON object"),
        ("{}", "field 'format' is missing or not a str"),
    ],
    ids=["not-json", "not-an-object", "no-format"],
)
def test_an_unreadable_manifest_is_refused_by_name(
    service: MessageService, archived: Path, text: str, says: str
) -> None:
    manifest_of(archived).write_text(text)

    with pytest.raises(ArchiveInvalid) as refused:
        service.restore(archived)

    separator = ": " if says.startswith("field") else " "
    assert (
        f"manifest {str(manifest_of(archived))!r}{separator}{says}"
        == refused.value.desc
    )


def test_a_manifest_of_another_format_is_refused_naming_both_formats(
    service: MessageService, archived: Path
) -> None:
    edit_manifest(archived, format="msgstate-archive/2")

    with pytest.raises(ArchiveInvalid) as refused:
        service.restore(archived)

    assert (
        f"manifest {str(manifest_of(archived))!r} has format 'msgstate-archive/2'; "
        "this version reads 'msgstate-archive/1'"
    ) == refused.value.desc


def test_a_utf8_manifest_is_read_as_utf8_whatever_the_locale(
    clock: FakeClock, tmp_path: Path
) -> None:
    """An archive named café.jsonl whose manifest holds the name unescaped (as any
    JSON tool may write it) restores in a process with an ASCII locale."""
    url = f"sqlite:///{tmp_path / 'msgstate.db'}"
    service = MessageService.open(url, policy=POLICY, clock=clock)
    make_messages(service, clock)
    clock.advance(3600)
    path = tmp_path / "café.jsonl"
    service.archive(before=clock(), to=path)
    service.close()
    manifest = json.loads(manifest_of(path).read_text(encoding="utf-8"))
    manifest_of(path).write_text(
        json.dumps(manifest, ensure_ascii=False), encoding="utf-8"
    )
    env = {
        **os.environ,
        "LC_ALL": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONPATH": str(Path(msgstate.__file__).resolve().parent.parent),
    }
    script = (
        "import sys\n"
        "from msgstate import MessageService\n"
        "service = MessageService.open(sys.argv[1])\n"
        "print(service.restore(sys.argv[2]).restored)\n"
        "service.close()\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script, url, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert (0, f"{FINISHED}\n") == (done.returncode, done.stdout), done.stderr


# -- what restore does and reports ---------------------------------------------------


def test_restore_reports_progress_after_each_chunk(
    service: MessageService, archived: Path
) -> None:
    """(restore, messages so far, messages in the file) once per chunk."""
    calls: list[tuple[str, int, int]] = []

    service.restore(
        archived,
        chunk=4,
        progress=lambda phase, done, total: calls.append((phase, done, total)),
    )

    expected = [
        ("verify", FINISHED, FINISHED),
        ("restore", 4, FINISHED),
        ("restore", FINISHED, FINISHED),
    ]
    assert expected == calls


def test_the_restore_report_names_the_file_and_the_archive(
    service: MessageService, archived: Path
) -> None:
    archive_id = json.loads(manifest_of(archived).read_text())["archive_id"]
    events = sum(len(line["events"]) for line in lines_of(archived))

    report = service.restore(archived)

    expected = RestoreReport(
        path=str(archived),
        archive_id=archive_id,
        restored=FINISHED,
        events=events,
        skipped={},
    )
    assert expected == report


def test_another_store_restores_nothing_it_did_not_archive(
    archived: Path, clock: FakeClock
) -> None:
    """A store that never archived these messages skips each of them, saying so."""
    other = MessageService.open("memory://", policy=POLICY, clock=clock)

    report = other.restore(archived)

    assert (0, {"not archived by this archive": FINISHED}) == (
        report.restored,
        report.skipped,
    )


# -- a resumed archive and its manifest ----------------------------------------------


def test_a_resumed_archive_keeps_what_the_manifest_include_leaves_out(
    service: MessageService, archived: Path, clock: FakeClock
) -> None:
    """Resuming decides "still finished" with the manifest's include: under
    ["dead"] the delivered messages of the file stay in the store."""
    service.restore(archived)  # as if the deletes had not happened
    edit_manifest(archived, include=["dead"])

    again = service.archive(before=clock(), to=archived)

    assert (True, 3, {"no longer finished": 3}) == (
        again.resumed,
        again.archived,
        again.kept,
    )
    assert 4 == len(raw(service, "delivered-0"))


def test_a_resumed_archive_whose_manifest_has_no_include_takes_both_kinds(
    service: MessageService, archived: Path, clock: FakeClock
) -> None:
    """A manifest without include (it is optional) means delivered and dead."""
    service.restore(archived)
    edit_manifest(archived, include=None)

    again = service.archive(before=clock(), to=archived)

    assert (True, FINISHED, {}) == (again.resumed, again.archived, again.kept)
