"""Archive verification, answer by answer: the written file is read back and
checked against its manifest and the store before anything is deleted (or
restored). Each refusal word for word, with nothing deleted or restored; the
progress it reports; files larger than one read; and the cache it leaves behind.
Memory stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from msgstate import (
    ArchiveInvalid,
    Message,
    MessageArchived,
    MessageService,
    generate_cipher_key,
)
from tests.support import FakeClock
from tests.test_archive import POLICY, raw
from tests.test_archive_answers import (
    FINISHED,
    edit_manifest,
    lines_of,
    manifest_of,
    reseal,
)


@pytest.fixture
def service(archive_service: MessageService) -> MessageService:
    return archive_service


def manifest_field(path: Path, name: str) -> Any:
    return json.loads(manifest_of(path).read_text(encoding="utf-8"))[name]


def stored_events(service: MessageService, path: Path) -> dict[str, int]:
    """How many events the store holds for each message of the archive."""
    return {
        line["msg_id"]: len(raw(service, line["msg_id"])) for line in lines_of(path)
    }


def nothing_stored(path: Path) -> dict[str, int]:
    return {line["msg_id"]: 0 for line in lines_of(path)}


def restore_refusal(service: MessageService, path: Path) -> str:
    """restore(path) raises ArchiveInvalid; returns its description."""
    with pytest.raises(ArchiveInvalid) as refused:
        service.restore(path)
    return str(refused.value.desc)


def mismatch(path: Path) -> str:
    return (
        f"archive {str(path)!r} does not match its manifest (SHA-256 or size "
        "differs): it was changed or damaged after it was written"
    )


# -- the file against its manifest ---------------------------------------------------


def test_restore_refuses_a_file_whose_sha256_is_not_the_manifests(
    service: MessageService, archived: Path
) -> None:
    """Same size, another SHA-256 in the manifest: refused by name, nothing is
    restored."""
    edit_manifest(archived, sha256="0" * 64)

    says = restore_refusal(service, archived)

    assert (mismatch(archived), nothing_stored(archived)) == (
        says,
        stored_events(service, archived),
    )


def test_restore_refuses_a_file_whose_size_is_not_the_manifests(
    service: MessageService, archived: Path
) -> None:
    """The right SHA-256 but one byte more in the manifest: refused by name,
    nothing is restored."""
    edit_manifest(archived, bytes=archived.stat().st_size + 1)

    says = restore_refusal(service, archived)

    assert (mismatch(archived), nothing_stored(archived)) == (
        says,
        stored_events(service, archived),
    )


def test_a_resumed_archive_of_a_changed_file_deletes_nothing(
    service: MessageService, archived: Path, clock: FakeClock
) -> None:
    """The messages are back in the store and the file's last state is changed
    (same size, still base64): rerunning the archive refuses the file and every
    message stays in the store."""
    service.restore(archived)
    before = stored_events(service, archived)
    lines = lines_of(archived)
    state = lines[-1]["events"][-1]["state"]
    lines[-1]["events"][-1]["state"] = ("B" if state[0] == "A" else "A") + state[1:]
    data = "".join(
        json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"
        for line in lines
    )
    archived.write_text(data, encoding="utf-8")
    assert manifest_field(archived, "bytes") == archived.stat().st_size

    with pytest.raises(ArchiveInvalid) as refused:
        service.archive(before=clock(), to=archived)

    assert (mismatch(archived), before) == (
        refused.value.desc,
        stored_events(service, archived),
    )


def test_a_file_larger_than_one_read_verifies(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """A file of more than 1 MiB (read in more than one block) matches its
    manifest: its messages are archived and restored."""
    for i in range(20):
        msg_id = f"big-{i:02d}"
        service.create(
            msg_id, sender="s", user_id="u", content={"text": f"{i:02d}" * 30_000}
        )
        service.record_delivery(msg_id, seq=str(i))
    clock.advance(60)
    path = tmp_path / "a.jsonl"

    archived = service.archive(before=clock(), to=path)
    restored = service.restore(path)

    assert path.stat().st_size > 1 << 20
    assert (20, 20, 20) == (archived.messages, archived.archived, restored.restored)


# -- the lines against the store -----------------------------------------------------


def test_a_stream_held_twice_is_refused_by_name(
    service: MessageService, archived: Path
) -> None:
    """A sealed file holding one line twice is refused, naming the stream;
    nothing is restored."""
    lines = lines_of(archived)
    reseal(archived, [*lines, lines[0]])

    says = restore_refusal(service, archived)

    assert (
        f"archive {str(archived)!r} holds {lines[0]['id']} twice",
        nothing_stored(archived),
    ) == (says, stored_events(service, archived))


def test_events_another_cipher_key_wrote_are_refused_by_name(
    clock: FakeClock, tmp_path: Path
) -> None:
    """An encrypted store's archive restored into a store with another key: the
    first stream cannot be decoded, and nothing is restored."""
    mine = MessageService.open(
        "memory://", policy=POLICY, clock=clock, cipher_key=generate_cipher_key()
    )
    mine.create("m", sender="s", user_id="u")
    mine.record_delivery("m", seq="1")
    clock.advance(60)
    path = tmp_path / "a.jsonl"
    mine.archive(before=clock(), to=path)
    other = MessageService.open(
        "memory://", policy=POLICY, clock=clock, cipher_key=generate_cipher_key()
    )
    stream = lines_of(path)[0]["id"]

    says = restore_refusal(other, path)

    assert (
        f"archive {str(path)!r}: the events of {stream} cannot be decoded by this "
        "store (another cipher_key, or damaged data)",
        [],
    ) == (says, raw(other, "m"))


def test_an_unknown_event_topic_is_refused_as_undecodable(
    service: MessageService, archived: Path
) -> None:
    """A sealed line whose first event names a class that does not exist cannot
    be decoded; nothing is restored."""
    lines = lines_of(archived)
    lines[2]["events"][0]["topic"] = "msgstate.domain:Message.NoSuchEvent"
    reseal(archived, lines)

    says = restore_refusal(service, archived)

    assert (
        f"archive {str(archived)!r}: the events of {lines[2]['id']} cannot be "
        "decoded by this store (another cipher_key, or damaged data)",
        nothing_stored(archived),
    ) == (says, stored_events(service, archived))


def test_a_history_under_another_stream_id_is_refused(
    service: MessageService, archived: Path
) -> None:
    """A sealed line whose events create a message of another stream (the line's
    id changed) is refused, naming the id; nothing is restored."""
    lines = lines_of(archived)
    stranger = str(Message.create_id("stranger"))
    lines[1]["id"] = stranger
    reseal(archived, lines)

    says = restore_refusal(service, archived)

    assert (
        f"archive {str(archived)!r}: stream {stranger} does not start with the "
        "creation of its own message",
        nothing_stored(archived),
    ) == (says, stored_events(service, archived))


def test_a_history_that_does_not_start_with_a_creation_is_refused(
    service: MessageService, archived: Path
) -> None:
    """A sealed line without its first event (the rest renumbered from 1) does
    not start with the creation of its message; nothing is restored."""
    lines = lines_of(archived)
    rest = lines[0]["events"][1:]
    for version, event in enumerate(rest, start=1):
        event["version"] = version
    lines[0]["events"] = rest
    reseal(archived, lines)

    says = restore_refusal(service, archived)

    assert (
        f"archive {str(archived)!r}: stream {lines[0]['id']} does not start with "
        "the creation of its own message",
        nothing_stored(archived),
    ) == (says, stored_events(service, archived))


# -- the counts ----------------------------------------------------------------------


def test_a_manifest_counting_another_number_of_messages_is_refused(
    service: MessageService, archived: Path
) -> None:
    """The file's counts and the manifest's, both in the refusal; nothing is
    restored."""
    events = manifest_field(archived, "events")
    edit_manifest(archived, messages=FINISHED + 1)

    says = restore_refusal(service, archived)

    assert (
        f"archive {str(archived)!r} holds {FINISHED} messages and {events} events; "
        f"its manifest says {FINISHED + 1} and {events}",
        nothing_stored(archived),
    ) == (says, stored_events(service, archived))


def test_a_manifest_counting_another_number_of_events_is_refused(
    service: MessageService, archived: Path
) -> None:
    """One event more in the manifest than in the file: refused with both counts;
    nothing is restored."""
    events = manifest_field(archived, "events")
    edit_manifest(archived, events=events + 1)

    says = restore_refusal(service, archived)

    assert (
        f"archive {str(archived)!r} holds {FINISHED} messages and {events} events; "
        f"its manifest says {FINISHED} and {events + 1}",
        nothing_stored(archived),
    ) == (says, stored_events(service, archived))


# -- progress ------------------------------------------------------------------------


def test_verifying_reports_every_100_messages_then_at_the_end(
    service: MessageService, clock: FakeClock, tmp_path: Path
) -> None:
    """Restoring 101 messages: (verify, 100, 101) at the 100th line read back,
    (verify, 101, 101) when the file is verified, then the restore's chunk."""
    for i in range(101):
        service.create(f"m-{i:03d}", sender="s", user_id="u")
        service.record_delivery(f"m-{i:03d}", seq=str(i))
    clock.advance(60)
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    calls: list[tuple[str, int, int]] = []

    service.restore(
        path, progress=lambda phase, done, total: calls.append((phase, done, total))
    )

    expected = [("verify", 100, 101), ("verify", 101, 101), ("restore", 101, 101)]
    assert expected == calls


# -- the cache -----------------------------------------------------------------------


def test_an_archived_message_is_not_answered_from_the_cache(
    clock: FakeClock, tmp_path: Path
) -> None:
    """With a one-message cache the first stream of the file is not cached and
    the second is: archiving evicts the second all the same, so reading it
    answers MessageArchived, not the copy in memory."""
    service = MessageService.open("memory://", policy=POLICY, clock=clock, cache_size=1)
    first, second = sorted(["a", "b"], key=Message.create_id)
    for msg_id in (first, second):  # the cache keeps the last one written
        service.create(msg_id, sender="s", user_id="u")
        service.record_delivery(msg_id, seq="1")
    clock.advance(60)
    path = tmp_path / "a.jsonl"
    service.archive(before=clock(), to=path)
    assert [str(Message.create_id(m)) for m in (first, second)] == [
        line["id"] for line in lines_of(path)
    ]

    with pytest.raises(MessageArchived) as refused:
        service.get(second)

    assert "a.jsonl" == refused.value.archive_file
