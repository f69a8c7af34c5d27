"""Archive writing, answer by answer: the manifest's documented fields and their
values (when, before what, which kinds), its layout on disk, and a data file of
non-ASCII ids read back as UTF-8 whatever the locale. Memory stores unless a test
needs a file-backed one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import msgstate
from msgstate import MessageService
from tests.support import FakeClock
from tests.test_archive import POLICY, make_messages
from tests.test_archive_answers import manifest_of


@pytest.fixture
def service(archive_service: MessageService) -> MessageService:
    return archive_service


@pytest.fixture
def tokyo_time() -> Iterator[None]:
    """The process's local time zone is UTC+9 (a POSIX TZ rule, no tz database)
    for the test, then whatever it was."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "JST-9"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def archive_manifest(
    service: MessageService, clock: FakeClock, path: Path, **options: Any
) -> dict[str, Any]:
    """make_messages, archived an hour later to ``path``; returns the manifest
    as read from its file."""
    make_messages(service, clock)
    clock.advance(3600)
    service.archive(to=path, **{"before": clock(), **options})
    manifest: dict[str, Any] = json.loads(manifest_of(path).read_text("utf-8"))
    return manifest


def test_the_manifest_holds_exactly_the_documented_fields(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """PATH.manifest.json names the fields of the documented table, no others."""
    manifest = archive_manifest(service, clock, tmp_path / "a.jsonl")

    expected = {
        "format",
        "archive_id",
        "file",
        "created_at",
        "before",
        "include",
        "messages",
        "events",
        "bytes",
        "sha256",
        "encrypted",
        "compressed",
    }
    assert expected == set(manifest)


def test_the_manifest_says_when_it_was_made_in_utc(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """created_at is the wall-clock moment of writing as ISO 8601 with a UTC
    offset (not the service's clock, and never a naive local time)."""
    start = datetime.now(UTC)
    manifest = archive_manifest(service, clock, tmp_path / "a.jsonl")
    end = datetime.now(UTC)

    created = datetime.fromisoformat(manifest["created_at"])

    assert timedelta(0) == created.utcoffset()
    assert start <= created <= end


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="sets the local time zone")
def test_the_manifest_before_is_the_cutoff_in_utc_whatever_the_local_zone(
    service: MessageService, clock: FakeClock, tmp_path: Path, tokyo_time: None
) -> None:
    """A cutoff given at UTC+8, in a process whose local zone is UTC+9, is
    recorded as the same moment at UTC."""
    make_messages(service, clock)
    clock.advance(7200)  # now is just after 2026-01-01T02:00Z
    cutoff = datetime(2026, 1, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    path = tmp_path / "a.jsonl"

    service.archive(before=cutoff, to=path)

    manifest = json.loads(manifest_of(path).read_text("utf-8"))
    assert "2026-01-01T01:30:00+00:00" == manifest["before"]


def test_the_manifest_include_lists_each_kind_once_in_the_order_given(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """include=("dead", "delivered", "dead") is recorded as ["dead", "delivered"]."""
    manifest = archive_manifest(
        service, clock, tmp_path / "a.jsonl", include=("dead", "delivered", "dead")
    )

    assert ["dead", "delivered"] == manifest["include"]


def test_the_manifest_is_json_indented_by_two_with_sorted_keys(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """The manifest file is its JSON object indented by two spaces, keys sorted,
    ending in a newline (stable for people and diffs)."""
    path = tmp_path / "a.jsonl"
    manifest = archive_manifest(service, clock, path)

    expected = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    assert expected == manifest_of(path).read_text("utf-8")


def test_an_archive_of_non_ascii_ids_restores_whatever_the_locale(
    clock: FakeClock, tmp_path: Path
) -> None:
    """The data file holds msg_ids unescaped as UTF-8; a process with an ASCII
    locale reads it as UTF-8 and restores the message."""
    url = f"sqlite:///{tmp_path / 'msgstate.db'}"
    service = MessageService.open(url, policy=POLICY, clock=clock)
    msg_id = "café-☕"
    service.create(msg_id, sender="s", user_id="u")
    service.record_delivery(msg_id, seq="1")
    service.create("sending", sender="s", user_id="u")  # SQLite keeps the newest
    clock.advance(60)
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    service.close()
    env = {
        **os.environ,
        "LC_ALL": "C",
        "PYTHONUTF8": "0",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONPATH": str(Path(msgstate.__file__).resolve().parent.parent),
    }
    script = (  # the id as an ASCII literal: argv would be decoded as ASCII
        "import sys\n"
        "from msgstate import MessageService\n"
        "service = MessageService.open(sys.argv[1])\n"
        "report = service.restore(sys.argv[2])\n"
        f"print(report.restored, service.get({msg_id!a}).status.name)\n"
        "service.close()\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script, url, str(path)],
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )

    assert (0, "1 SEND_SUCC\n") == (done.returncode, done.stdout), done.stderr
