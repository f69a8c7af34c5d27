"""Retention: move finished histories out of the store, and bring them back.

:func:`archive` writes the complete histories of finished messages (delivered, or
dead exactly as :meth:`~msgstate.MessageService.dead_letters` defines it) last
changed before a moment as JSON lines, with a manifest beside the file; reads the
file back and checks it; then deletes those streams, their snapshots and their
read-model rows, one transaction per chunk. Each chunk's transaction also records
the deleted stream ids in the store's ``msgstate_archived`` table, so an archived
id answers :class:`~msgstate.MessageArchived` and is never reused (a database
trigger refuses new events for it). :func:`restore` puts them back.

The archive holds the *stored* events (topic and state bytes, base64), not decoded
ones: a restore inserts byte-identical records, so versions, timestamps and every
field come back exactly, whatever the transcoder, and an encrypted or compressed
store's archive stays encrypted or compressed (it needs the same ``cipher_key`` to
be read, and never holds chat content in clear).

Crash safety: the file and its manifest are written to temporary names, synced,
and renamed (manifest first, then the data file); nothing is deleted before both
exist and the data file matches the manifest. Each chunk deletes a message only if
the store still holds exactly the events in the file, and records it as archived
in the same transaction; a crash therefore leaves every message either in the store
or in a verified archive, never neither, and never both marked. Running the same
archive again (same path) finishes an interrupted one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from attrs import frozen
from eventsourcing.persistence import IntegrityError, Notification, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from msgstate import _validate as check
from msgstate.errors import ArchiveInvalid, ErrorCode, InvalidArgument
from msgstate.projections import APPLICATION_NAME, PolicyQuery
from msgstate.status import MessageStatus
from msgstate.views import view_of

if TYPE_CHECKING:
    from msgstate.application import MessageService
    from msgstate.domain import Message

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveReport",
    "ArchivingPOPORecorder",
    "RestoreReport",
    "archive",
    "archived_file",
    "restore",
]

ARCHIVE_FORMAT = "msgstate-archive/1"
"""The ``format`` of manifests this version writes and reads."""

MANIFEST_SUFFIX = ".manifest.json"
"""The manifest of ``PATH`` is ``PATH.manifest.json``."""

ARCHIVE_CHUNK = 500
"""Messages deleted (or restored) per transaction."""

INCLUDE = ("delivered", "dead")
"""What :func:`archive` can take: delivered messages, dead letters."""

ARCHIVED_TABLE = "msgstate_archived"
"""The store's table of archived stream ids (created by the first archive)."""

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; phases ``write``, ``verify``, ``delete``,
``restore``."""

_REPORT_EVERY = 100  # messages between progress calls while writing and verifying
_SEND_SUCC = int(MessageStatus.SEND_SUCC)
_SEND_FAIL = int(MessageStatus.SEND_FAIL)


@frozen
class ArchiveReport:
    """What :func:`archive` did (or, with ``dry_run``, would do)."""

    path: str
    archive_id: str
    messages: int
    """Messages in the archive file (for a dry run: that would be)."""
    events: int
    """Events in the archive file (for a dry run: that would be)."""
    archived: int
    """Messages deleted from the store by this run."""
    already: int
    """Messages of this archive that an earlier, interrupted run had deleted."""
    kept: dict[str, int]
    """Messages in the file left in the store, by reason (see the docs)."""
    sha256: str
    dry_run: bool = False
    resumed: bool = False


@frozen
class RestoreReport:
    """What :func:`restore` did."""

    path: str
    archive_id: str
    restored: int
    """Messages put back into the store by this run."""
    events: int
    """Their events."""
    skipped: dict[str, int]
    """Messages of the file not restored, by reason (already in the store, ...)."""


@frozen
class _Record:
    """One message of an archive: its stream id and stored events."""

    id: UUID
    msg_id: str | None
    events: tuple[StoredEvent, ...]

    def to_line(self) -> str:
        line: dict[str, Any] = {"id": str(self.id)}
        if self.msg_id is not None:
            line["msg_id"] = self.msg_id
        line["events"] = [
            {
                "version": e.originator_version,
                "topic": e.topic,
                "state": base64.b64encode(e.state).decode("ascii"),
            }
            for e in self.events
        ]
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, text: str, where: str) -> _Record:
        try:
            line = json.loads(text)
            aid = UUID(line["id"])
            msg_id = line.get("msg_id")
            events = tuple(
                StoredEvent(
                    originator_id=aid,
                    originator_version=int(e["version"]),
                    topic=str(e["topic"]),
                    state=base64.b64decode(e["state"], validate=True),
                )
                for e in line["events"]
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ArchiveInvalid(f"{where}: not an archive line ({error})") from None
        versions = [e.originator_version for e in events]
        if not events or versions != list(range(1, len(events) + 1)):
            raise ArchiveInvalid(
                f"{where}: stream {aid} has versions {versions[:5]}..., "
                "not a whole history from version 1"
            )
        return cls(aid, msg_id if isinstance(msg_id, str) else None, events)

    def same_as(self, stored: Sequence[StoredEvent]) -> bool:
        return [_key(e) for e in stored] == [_key(e) for e in self.events]


def _key(e: StoredEvent) -> tuple[int, str, bytes]:
    return (e.originator_version, e.topic, bytes(e.state))


# -- the public operations ---------------------------------------------------------


def archive(
    service: MessageService,
    *,
    before: datetime,
    to: str | os.PathLike[str],
    include: Sequence[str] = INCLUDE,
    dry_run: bool = False,
    chunk: int = ARCHIVE_CHUNK,
    progress: Progress | None = None,
) -> ArchiveReport:
    """Archive finished messages last changed before ``before`` to ``to``.

    See :meth:`MessageService.archive`.
    """
    moment = check.aware_datetime("before", before)
    kinds = _check_include(include)
    check.integer("chunk", chunk, 1, 100_000)
    path, manifest_path = _paths(to)
    store = _store_for(service)
    report = _progress_or_none(progress)
    data_exists, manifest_exists = path.exists(), manifest_path.exists()
    if data_exists and not manifest_exists:
        raise ArchiveInvalid(
            f"{str(path)!r} exists and has no manifest ({manifest_path.name}); it is "
            "not a msgstate archive, or one interrupted before it was sealed (which "
            "deleted nothing): choose another path or remove the file"
        )
    resumed = data_exists and manifest_exists and not dry_run
    service.catch_up_projections()  # deletion waits for the read models
    if resumed:
        manifest = _read_manifest(manifest_path)
        _check_store_matches(service, manifest, manifest_path)
    else:
        if data_exists and dry_run:
            raise InvalidArgument(f"{str(path)!r} exists; a dry run needs a new path")
        now = service.now()
        ids = store.candidates(PolicyQuery.of(service.policy), now, moment, kinds)
        records = _finished(service, store, ids, now, moment, kinds, chunk)
        if dry_run:
            found = list(records)
            return ArchiveReport(
                path=str(path),
                archive_id="",
                messages=len(found),
                events=sum(len(r.events) for r in found),
                archived=0,
                already=0,
                kept={},
                sha256="",
                dry_run=True,
            )
        manifest = _write(service, path, manifest_path, records, moment, kinds, report)
    _verify(service, path, manifest, report)
    store.ensure()
    archived = already = 0
    kept: dict[str, int] = {}
    done = 0
    archived_at = service.now().timestamp()
    now = service.now()
    for batch in _chunks(_read_records(path), chunk):
        todo = batch
        if resumed:  # the policy or clock may differ from the first run's
            todo = [r for r in batch if _still_finished(service, r, now, manifest)]
            if len(todo) < len(batch):
                kept["no longer finished"] = (
                    kept.get("no longer finished", 0) + len(batch) - len(todo)
                )
        outcome = store.delete(todo, manifest["archive_id"], path.name, archived_at)
        for reason, count in outcome.items():
            if reason == "archived":
                archived += count
            elif reason == "already":
                already += count
            else:
                kept[reason] = kept.get(reason, 0) + count
        _forget_cached(service, [r.id for r in batch])
        done += len(batch)
        report("delete", done, manifest["messages"])
    return ArchiveReport(
        path=str(path),
        archive_id=manifest["archive_id"],
        messages=manifest["messages"],
        events=manifest["events"],
        archived=archived,
        already=already,
        kept=kept,
        sha256=manifest["sha256"],
        resumed=resumed,
    )


def restore(
    service: MessageService,
    path: str | os.PathLike[str],
    *,
    chunk: int = ARCHIVE_CHUNK,
    progress: Progress | None = None,
) -> RestoreReport:
    """Put an archive's messages back; see :meth:`MessageService.restore`."""
    check.integer("chunk", chunk, 1, 100_000)
    data_path, manifest_path = _paths(path)
    report = _progress_or_none(progress)
    if not data_path.exists():
        raise ArchiveInvalid(f"archive {str(data_path)!r} does not exist")
    if not manifest_path.exists():
        raise ArchiveInvalid(
            f"archive {str(data_path)!r} has no manifest ({manifest_path.name}); "
            "it was never sealed, so nothing of it was deleted from a store"
        )
    manifest = _read_manifest(manifest_path)
    _check_store_matches(service, manifest, manifest_path)
    _verify(service, data_path, manifest, report)
    store = _store_for(service)
    store.ensure()
    restored = events = done = 0
    skipped: dict[str, int] = {}
    for batch in _chunks(_read_records(data_path), chunk):
        outcome = store.restore(batch, manifest["archive_id"])
        for record in batch:
            reason = outcome[record.id]
            if reason == "restored":
                restored += 1
                events += len(record.events)
            else:
                skipped[reason] = skipped.get(reason, 0) + 1
        _forget_cached(service, [r.id for r in batch])
        done += len(batch)
        report("restore", done, manifest["messages"])
    if restored:
        service.catch_up_projections()
    return RestoreReport(
        path=str(data_path),
        archive_id=manifest["archive_id"],
        restored=restored,
        events=events,
        skipped=skipped,
    )


def archived_file(service: MessageService, aggregate_id: UUID) -> str | None:
    """The archive file name a stream was archived to, or ``None``."""
    return _store_for(service).archived_file(aggregate_id)


# -- selection and files -----------------------------------------------------------


def _check_include(include: object) -> tuple[str, ...]:
    if isinstance(include, str) or not isinstance(include, Sequence):
        raise InvalidArgument(
            f"include must be a sequence of 'delivered' and 'dead', got {include!r}"
        )
    kinds = tuple(dict.fromkeys(include))
    if not kinds or any(k not in INCLUDE for k in kinds):
        raise InvalidArgument(
            f"include must name 'delivered', 'dead' or both, got {include!r}"
        )
    return kinds


def _paths(to: object) -> tuple[Path, Path]:
    if not isinstance(to, str | os.PathLike):
        raise InvalidArgument(f"archive path must be a str or path, got {to!r}")
    path = Path(to)
    if not str(path) or path.is_dir():
        raise InvalidArgument(f"archive path {str(path)!r} names a directory")
    if not path.parent.is_dir():
        raise InvalidArgument(
            f"archive path {str(path)!r}: directory {str(path.parent)!r} does not exist"
        )
    return path, path.with_name(path.name + MANIFEST_SUFFIX)


def _progress_or_none(progress: Progress | None) -> Progress:
    if progress is None:
        return lambda phase, done, total: None
    if not callable(progress):
        raise InvalidArgument(f"progress must be callable, got {progress!r}")
    return progress


def _chunks(items: Iterator[_Record], size: int) -> Iterator[list[_Record]]:
    batch: list[_Record] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def is_finished(
    service: MessageService, message: Message, now: datetime, kinds: Sequence[str]
) -> bool:
    """Delivered, or dead exactly as ``dead_letters`` decides (at ``now``)."""
    view = view_of(message, service.policy)
    if view.status is MessageStatus.SEND_SUCC:
        return "delivered" in kinds
    if view.status is MessageStatus.SEND_FAIL and "dead" in kinds:
        decision = service.policy.decide(view, now)
        return not decision.allowed and decision.code is not ErrorCode.TOO_EARLY
    return False


def _finished(
    service: MessageService,
    store: _Store,
    ids: list[UUID],
    now: datetime,
    before: datetime,
    kinds: Sequence[str],
    chunk: int,
) -> Iterator[_Record]:
    """The candidates that really are finished and unchanged since ``before``.

    The read model proposes; the loaded history decides (as ``dead_letters`` does).
    """
    encrypted = service.mapper.cipher is not None
    for start in range(0, len(ids), chunk):
        wanted = ids[start : start + chunk]
        streams = store.read_streams(wanted)
        for aid in wanted:
            stored = streams.get(aid)
            if not stored:
                continue
            domain: list[Any] = [service.mapper.to_domain_event(e) for e in stored]
            last_change: datetime = getattr(domain[-1], "at", domain[-1].timestamp)
            if last_change >= before:
                continue
            message: Message | None = None
            for event in domain:
                message = event.mutate(message)
            if message is None or not is_finished(service, message, now, kinds):
                continue
            yield _Record(aid, None if encrypted else message.msg_id, tuple(stored))


def _still_finished(
    service: MessageService, record: _Record, now: datetime, manifest: dict[str, Any]
) -> bool:
    kinds = manifest.get("include", INCLUDE)
    message: Message | None = None
    for stored in record.events:
        event: Any = service.mapper.to_domain_event(stored)
        message = event.mutate(message)
    return message is not None and is_finished(service, message, now, kinds)


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover - no directory fsync there
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(
    service: MessageService,
    path: Path,
    manifest_path: Path,
    records: Iterator[_Record],
    before: datetime,
    kinds: Sequence[str],
    report: Progress,
) -> dict[str, Any]:
    """Write data and manifest under temporary names, sync, rename (manifest
    first): the data file exists under its name only once its manifest does."""
    tmp = path.with_name(path.name + ".tmp")
    digest = hashlib.sha256()
    messages = events = size = 0
    with open(tmp, "wb") as out:
        for record in records:
            data = record.to_line().encode("utf-8")
            out.write(data)
            digest.update(data)
            size += len(data)
            messages += 1
            events += len(record.events)
            if messages % _REPORT_EVERY == 0:
                report("write", messages, 0)
        out.flush()
        os.fsync(out.fileno())
    report("write", messages, messages)
    manifest = {
        "format": ARCHIVE_FORMAT,
        "archive_id": str(uuid4()),
        "file": path.name,
        "created_at": datetime.now(UTC).isoformat(),
        "before": before.astimezone(UTC).isoformat(),
        "include": list(kinds),
        "messages": messages,
        "events": events,
        "bytes": size,
        "sha256": digest.hexdigest(),
        "encrypted": service.mapper.cipher is not None,
        "compressed": service.mapper.compressor is not None,
    }
    manifest_tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    with open(manifest_tmp, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(manifest_tmp, manifest_path)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return manifest


_MANIFEST_FIELDS = {
    "format": str,
    "archive_id": str,
    "file": str,
    "messages": int,
    "events": int,
    "bytes": int,
    "sha256": str,
    "encrypted": bool,
    "compressed": bool,
}


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArchiveInvalid(
            f"manifest {str(manifest_path)!r} cannot be read: {error}"
        ) from None
    if not isinstance(manifest, dict):
        raise ArchiveInvalid(f"manifest {str(manifest_path)!r} is not a JSON object")
    for name, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(name), kind):
            raise ArchiveInvalid(
                f"manifest {str(manifest_path)!r}: field {name!r} is missing or "
                f"not a {kind.__name__}"
            )
    if manifest["format"] != ARCHIVE_FORMAT:
        raise ArchiveInvalid(
            f"manifest {str(manifest_path)!r} has format {manifest['format']!r}; "
            f"this version reads {ARCHIVE_FORMAT!r}"
        )
    return manifest


def _check_store_matches(
    service: MessageService, manifest: dict[str, Any], manifest_path: Path
) -> None:
    encrypted = service.mapper.cipher is not None
    compressed = service.mapper.compressor is not None
    if (manifest["encrypted"], manifest["compressed"]) != (encrypted, compressed):
        raise ArchiveInvalid(
            f"archive {str(manifest_path)!r} was written by a store with "
            f"encrypted={manifest['encrypted']}, compressed={manifest['compressed']}; "
            f"this store has encrypted={encrypted}, compressed={compressed}: open "
            "it with the cipher_key and compress options the archive was made with"
        )


def _read_records(path: Path) -> Iterator[_Record]:
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            yield _Record.from_line(line, f"{path.name} line {number}")


def _verify(
    service: MessageService, path: Path, manifest: dict[str, Any], report: Progress
) -> None:
    """The file as written: its hash and counts match the manifest, every line is
    a whole history (versions from 1) and its first event decodes (with this
    store's cipher) into the creation of its own stream's message."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    if size != manifest["bytes"] or digest.hexdigest() != manifest["sha256"]:
        raise ArchiveInvalid(
            f"archive {str(path)!r} does not match its manifest (SHA-256 or size "
            "differs): it was changed or damaged after it was written"
        )
    from msgstate.domain import Message  # the domain, only to check decoding

    messages = events = 0
    seen: set[UUID] = set()
    for record in _read_records(path):
        if record.id in seen:
            raise ArchiveInvalid(f"archive {str(path)!r} holds {record.id} twice")
        seen.add(record.id)
        try:
            # The first event proves the key (AES-GCM authenticates); the hash
            # above already proves every byte is as written.
            first = service.mapper.to_domain_event(record.events[0])
        except Exception:
            raise ArchiveInvalid(
                f"archive {str(path)!r}: the events of {record.id} cannot be decoded "
                "by this store (another cipher_key, or damaged data)"
            ) from None
        if not isinstance(first, Message.Created) or (
            service._stream_ids(first.msg_id) != record.id
        ):
            raise ArchiveInvalid(
                f"archive {str(path)!r}: stream {record.id} does not start with "
                "the creation of its own message"
            )
        messages += 1
        events += len(record.events)
        if messages % _REPORT_EVERY == 0:
            report("verify", messages, manifest["messages"])
    if (messages, events) != (manifest["messages"], manifest["events"]):
        raise ArchiveInvalid(
            f"archive {str(path)!r} holds {messages} messages and {events} events; "
            f"its manifest says {manifest['messages']} and {manifest['events']}"
        )
    report("verify", messages, manifest["messages"])


def _forget_cached(service: MessageService, ids: Sequence[UUID]) -> None:
    cache = service.repository.cache
    if cache is None:
        return
    for aid in ids:
        try:
            cache.get(aid, evict=True)
        except KeyError:
            continue


# -- the stores --------------------------------------------------------------------


class _Store(ABC):
    """The raw SQL (or dict surgery) one backend needs; eventsourcing has no delete."""

    def __init__(self, service: MessageService) -> None:
        self.service = service

    @abstractmethod
    def candidates(
        self,
        query: PolicyQuery,
        now: datetime,
        before: datetime,
        kinds: Sequence[str],
    ) -> list[UUID]:
        """Read-model rows that look finished and unchanged since ``before``."""

    @abstractmethod
    def read_streams(self, ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]: ...

    @abstractmethod
    def ensure(self) -> None:
        """Create the archived table and the trigger that guards it (idempotent)."""

    @abstractmethod
    def archived_file(self, aid: UUID) -> str | None: ...

    @abstractmethod
    def delete(
        self, records: Sequence[_Record], archive_id: str, file: str, at: float
    ) -> dict[str, int]:
        """In one transaction: delete each message whose stored events are exactly
        the record's, record it as archived; count outcomes by reason."""

    @abstractmethod
    def restore(self, records: Sequence[_Record], archive_id: str) -> dict[UUID, str]:
        """In one transaction: re-insert the records this archive archived."""


def _decide(
    record: _Record,
    rows: Sequence[tuple[int, StoredEvent]],
    archived: tuple[str, str] | None,
    archive_id: str,
    tracked: int,
    newest: int | None,
) -> str:
    """Why a message is deleted now ("archived") or not."""
    if not rows:
        if archived is not None and archived[0] == archive_id:
            return "already"
        if archived is not None:
            return "archived by another archive"
        return "gone from the store"
    if not record.same_as([e for _, e in rows]):
        return "changed since written"
    if any(n > tracked for n, _ in rows):
        return "not yet in the read models"
    if newest is not None and any(n == newest for n, _ in rows):
        return "holds the newest event"
    return "archived"


def _count(reasons: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason] = counts.get(reason, 0) + 1
    return counts


_GAP = StoredEvent(originator_id=UUID(int=0), originator_version=0, topic="", state=b"")


class ArchivingPOPORecorder(POPOApplicationRecorder):
    """The memory store's recorder, able to delete streams without renumbering.

    A deleted event's place in the log is kept as a gap (skipped when reading),
    so notification ids never move; archived streams refuse new events.
    """

    def __init__(self) -> None:
        super().__init__()
        self.archived: dict[UUID, tuple[str, str, float]] = {}

    def _assert_uniqueness(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        for s in stored_events:
            if UUID(str(s.originator_id)) in self.archived:
                raise IntegrityError(f"msgstate: stream {s.originator_id} was archived")
        super()._assert_uniqueness(stored_events, **kwargs)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        with self._database_lock:
            first = 1 if start is None else start + (0 if inclusive_of_start else 1)
            results = []
            position = max(first, 1)
            while position <= len(self._stored_events):
                if stop is not None and position > stop:
                    break
                s = self._stored_events[position - 1]
                if s is not _GAP and (not topics or s.topic in topics):
                    results.append(
                        Notification(
                            id=position,
                            originator_id=s.originator_id,
                            originator_version=s.originator_version,
                            topic=s.topic,
                            state=s.state,
                        )
                    )
                    if len(results) == limit:
                        break
                position += 1
            return results

    def positions(self, aid: UUID) -> list[tuple[int, StoredEvent]]:
        """(notification id, event) of a stream, in version order."""
        with self._database_lock:
            index = self._stored_events_index.get(str(aid), {})
            return [(p + 1, self._stored_events[p]) for _, p in sorted(index.items())]

    def remove(self, aid: UUID) -> None:
        with self._database_lock:
            for position in self._stored_events_index.pop(str(aid), {}).values():
                self._stored_events[position] = _GAP


class _MemoryStore(_Store):
    def recorder(self) -> ArchivingPOPORecorder:
        recorder = self.service.recorder
        if not isinstance(recorder, ArchivingPOPORecorder):  # pragma: no cover
            raise TypeError("the memory store was not opened by MessageService")
        return recorder

    def candidates(
        self,
        query: PolicyQuery,
        now: datetime,
        before: datetime,
        kinds: Sequence[str],
    ) -> list[UUID]:
        views: Any = self.service._views
        moment, limit = now.timestamp(), before.timestamp()
        return sorted(
            aid
            for aid, row in views._snapshot()
            if row["updated_at"] < limit
            and (
                ("delivered" in kinds and row["status"] == _SEND_SUCC)
                or ("dead" in kinds and query.is_dead(row, moment))
            )
        )

    def read_streams(self, ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        recorder = self.recorder()
        found = {aid: [e for _, e in recorder.positions(aid)] for aid in ids}
        return {aid: events for aid, events in found.items() if events}

    def ensure(self) -> None:
        return None

    def archived_file(self, aid: UUID) -> str | None:
        row = self.recorder().archived.get(aid)
        return None if row is None else row[1]

    def delete(
        self, records: Sequence[_Record], archive_id: str, file: str, at: float
    ) -> dict[str, int]:
        recorder = self.recorder()
        views: Any = self.service._views
        snapshots = self.service.snapshots
        reasons = []
        with recorder._database_lock, views._database_lock:
            tracked = views.max_tracking_id(APPLICATION_NAME) or 0
            for record in records:
                row = recorder.archived.get(record.id)
                reason = _decide(
                    record,
                    recorder.positions(record.id),
                    None if row is None else (row[0], row[1]),
                    archive_id,
                    tracked,
                    None,
                )
                if reason == "archived":
                    recorder.archived[record.id] = (archive_id, file, at)
                    recorder.remove(record.id)
                    views._rows.pop(record.id, None)
                    if snapshots is not None:
                        snapshot_recorder: Any = snapshots.recorder
                        with snapshot_recorder._database_lock:
                            snapshot_recorder._stored_events_index.pop(
                                str(record.id), None
                            )
                reasons.append(reason)
        return _count(reasons)

    def restore(self, records: Sequence[_Record], archive_id: str) -> dict[UUID, str]:
        recorder = self.recorder()
        outcome: dict[UUID, str] = {}
        todo: list[StoredEvent] = []
        with recorder._database_lock:
            for record in records:
                row = recorder.archived.get(record.id)
                outcome[record.id] = _restore_reason(
                    row is not None and row[0] == archive_id,
                    bool(recorder.positions(record.id)),
                    row is not None,
                )
                if outcome[record.id] == "restored":
                    del recorder.archived[record.id]
                    todo.extend(record.events)
            if todo:
                recorder.insert_events(todo)
        return outcome


def _restore_reason(ours: bool, in_store: bool, marked: bool) -> str:
    if in_store:
        return "already in the store"
    if ours:
        return "restored"
    if marked:
        return "archived by another archive"
    return "not archived by this archive"


class _SQLStore(_Store):
    """What the SQLite and PostgreSQL stores share: candidates come from the
    read-model table (``self.views``), streams from one bulk read."""

    views: Any

    def candidates(
        self,
        query: PolicyQuery,
        now: datetime,
        before: datetime,
        kinds: Sequence[str],
    ) -> list[UUID]:
        sql, params = _candidates_sql(self.views, query, kinds)
        rows = self.views._query(
            sql, {**params, "now": now.timestamp(), "before": before.timestamp()}
        )
        return sorted(UUID(str(row[0])) for row in rows)

    def read_streams(self, ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        from msgstate.storage import select_streams

        return select_streams(self.service.recorder, ids) or {}


class _SQLiteStore(_SQLStore):
    def __init__(self, service: MessageService) -> None:
        super().__init__(service)
        recorder: Any = service.recorder
        self.datastore = recorder.datastore
        self.events = recorder.events_table_name
        self.snapshots = self.events.replace("events", "snapshots")
        if service.snapshots is not None:
            self.snapshots = getattr(
                service.snapshots.recorder, "events_table_name", self.snapshots
            )
        self.views: Any = service._views

    def ensure(self) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"CREATE TABLE IF NOT EXISTS {ARCHIVED_TABLE} (id TEXT PRIMARY KEY, "
                "archive_id TEXT NOT NULL, archive_file TEXT NOT NULL, "
                "archived_at REAL NOT NULL) WITHOUT ROWID"
            )
            c.execute(
                f"CREATE TRIGGER IF NOT EXISTS {ARCHIVED_TABLE}_guard BEFORE INSERT "
                f"ON {self.events} WHEN EXISTS (SELECT 1 FROM {ARCHIVED_TABLE} "
                "WHERE id = NEW.originator_id) BEGIN SELECT RAISE(ABORT, "
                "'msgstate: this message was archived; restore it first'); END"
            )

    def archived_file(self, aid: UUID) -> str | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                [ARCHIVED_TABLE],
            )
            if c.fetchone() is None:
                return None
            c.execute(
                f"SELECT archive_file FROM {ARCHIVED_TABLE} WHERE id = ?", [aid.hex]
            )
            row = c.fetchone()
            return None if row is None else str(row[0])

    def _has_snapshots(self, c: Any) -> bool:
        c.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            [self.snapshots],
        )
        return c.fetchone() is not None

    def _rows(self, c: Any, ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        marks = ",".join("?" * len(ids))
        c.execute(
            f"SELECT rowid, originator_id, originator_version, topic, state "
            f"FROM {self.events} WHERE originator_id IN ({marks}) "
            "ORDER BY originator_id, originator_version",
            [i.hex for i in ids],
        )
        found: dict[UUID, list[Any]] = {}
        for row in c.fetchall():
            aid = UUID(row[1])
            found.setdefault(aid, []).append(
                (row[0], StoredEvent(aid, row[2], row[3], bytes(row[4])))
            )
        return found

    def _marks(self, c: Any, ids: Sequence[UUID]) -> dict[UUID, tuple[str, str]]:
        marks = ",".join("?" * len(ids))
        c.execute(
            f"SELECT id, archive_id, archive_file FROM {ARCHIVED_TABLE} "
            f"WHERE id IN ({marks})",
            [i.hex for i in ids],
        )
        return {UUID(row[0]): (str(row[1]), str(row[2])) for row in c.fetchall()}

    def delete(
        self, records: Sequence[_Record], archive_id: str, file: str, at: float
    ) -> dict[str, int]:
        ids = [r.id for r in records]
        with self.datastore.transaction(commit=True) as c:
            # Write first, so this transaction holds the write lock throughout.
            c.execute(
                "INSERT INTO tracking VALUES (?, 0) ON CONFLICT DO NOTHING",
                [APPLICATION_NAME],
            )
            c.execute(
                "SELECT notification_id FROM tracking WHERE application_name = ?",
                [APPLICATION_NAME],
            )
            tracked = int(c.fetchone()[0])
            # SQLite gives a new row max(rowid) + 1: deleting the newest event
            # would let its notification id be reused, hidden from the read models.
            c.execute(f"SELECT MAX(rowid) FROM {self.events}")
            newest = c.fetchone()[0]
            rows = self._rows(c, ids)
            marks = self._marks(c, ids)
            reasons = [
                _decide(
                    r, rows.get(r.id, []), marks.get(r.id), archive_id, tracked, newest
                )
                for r in records
            ]
            gone = [
                r.id.hex
                for r, why in zip(records, reasons, strict=True)
                if why == "archived"
            ]
            if gone:
                c.executemany(
                    f"INSERT INTO {ARCHIVED_TABLE} VALUES (?, ?, ?, ?)",
                    [(g, archive_id, file, at) for g in gone],
                )
                marks_sql = ",".join("?" * len(gone))
                c.execute(
                    f"DELETE FROM {self.events} WHERE originator_id IN ({marks_sql})",
                    gone,
                )
                if self._has_snapshots(c):
                    c.execute(
                        f"DELETE FROM {self.snapshots} "
                        f"WHERE originator_id IN ({marks_sql})",
                        gone,
                    )
                c.execute(
                    f"DELETE FROM {self.views.table} WHERE id IN ({marks_sql})",
                    [str(UUID(g)) for g in gone],
                )
        return _count(reasons)

    def restore(self, records: Sequence[_Record], archive_id: str) -> dict[UUID, str]:
        ids = [r.id for r in records]
        outcome: dict[UUID, str] = {}
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT INTO tracking VALUES (?, 0) ON CONFLICT DO NOTHING",
                [APPLICATION_NAME],
            )
            rows = self._rows(c, ids)
            marks = self._marks(c, ids)
            back: list[_Record] = []
            for record in records:
                mark = marks.get(record.id)
                reason = _restore_reason(
                    mark is not None and mark[0] == archive_id,
                    record.id in rows,
                    mark is not None,
                )
                outcome[record.id] = reason
                if reason == "restored":
                    back.append(record)
            if back:
                c.executemany(
                    f"DELETE FROM {ARCHIVED_TABLE} WHERE id = ?",
                    [(r.id.hex,) for r in back],
                )
                c.executemany(
                    f"INSERT INTO {self.events} "
                    "(originator_id, originator_version, topic, state) "
                    "VALUES (?, ?, ?, ?)",
                    [
                        (r.id.hex, e.originator_version, e.topic, e.state)
                        for r in back
                        for e in r.events
                    ],
                )
        return outcome


def _candidates_sql(
    views: Any, query: PolicyQuery, kinds: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    """The read-model rows to consider: delivered, and dead with the very terms of
    ``SQLMessageViews.dead`` (the loaded history then decides, as for dead
    letters)."""
    p = views._param
    terms = []
    if "delivered" in kinds:
        terms.append(f"status = {_SEND_SUCC}")
    if "dead" in kinds:
        terms.append(
            f"(status = {_SEND_FAIL} AND (attempts >= {p('max_attempts')} "
            f"OR NOT ({query.sql_retryable()}) OR {query.sql_expired(p('now'))}))"
        )
    sql = (
        f"SELECT id FROM {views._table_sql()} WHERE updated_at < {p('before')} "
        f"AND ({' OR '.join(terms)})"
    )
    return sql, {"max_attempts": query.max_attempts}


class _PostgresStore(_SQLStore):
    def __init__(self, service: MessageService) -> None:
        super().__init__(service)
        from psycopg.sql import SQL, Identifier

        recorder: Any = service.recorder
        self.recorder = recorder
        self.datastore = recorder.datastore
        schema = Identifier(self.datastore.schema)
        self.schema_name = self.datastore.schema
        self.events = SQL("{0}.{1}").format(
            schema, Identifier(recorder.events_table_name)
        )
        snapshots_name = recorder.events_table_name.replace("events", "snapshots")
        if service.snapshots is not None:
            snapshots_name = service.snapshots.recorder.events_table_name  # type: ignore[attr-defined]
        self.snapshots_name = snapshots_name
        self.snapshots = SQL("{0}.{1}").format(schema, Identifier(snapshots_name))
        self.archived = SQL("{0}.{1}").format(schema, Identifier(ARCHIVED_TABLE))
        self.guard = SQL("{0}.{1}").format(
            schema, Identifier(ARCHIVED_TABLE + "_guard")
        )
        self.views: Any = service._views
        self.channel = Identifier(recorder.channel_name)

    def ensure(self) -> None:
        from psycopg.sql import SQL, Identifier, Literal

        name = f"{self.schema_name}.{ARCHIVED_TABLE}"
        with self.datastore.transaction(commit=True) as curs:
            # One creator at a time; skip when done (no DDL on every archive).
            curs.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name + ".ddl",))
            curs.execute(
                "SELECT to_regclass(%s) IS NOT NULL AS present",
                (f'"{self.schema_name}"."{ARCHIVED_TABLE}"',),
            )
            row = curs.fetchone()
            if row is not None and row["present"]:
                return
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (id uuid PRIMARY KEY, "
                    "archive_id uuid NOT NULL, archive_file text NOT NULL, "
                    "archived_at double precision NOT NULL)"
                ).format(self.archived)
            )
            curs.execute(
                SQL(
                    "CREATE OR REPLACE FUNCTION {0}() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN IF EXISTS (SELECT 1 FROM {1} "
                    "WHERE id = NEW.originator_id) THEN RAISE unique_violation "
                    "USING MESSAGE = {2}; END IF; RETURN NEW; END $$"
                ).format(
                    self.guard,
                    self.archived,
                    Literal("msgstate: this message was archived; restore it first"),
                )
            )
            curs.execute(
                SQL(
                    "CREATE OR REPLACE TRIGGER {0} BEFORE INSERT ON {1} "
                    "FOR EACH ROW EXECUTE FUNCTION {2}()"
                ).format(Identifier(ARCHIVED_TABLE + "_guard"), self.events, self.guard)
            )

    def archived_file(self, aid: UUID) -> str | None:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT to_regclass(%s) IS NOT NULL AS present",
                (f'"{self.schema_name}"."{ARCHIVED_TABLE}"',),
            )
            row = curs.fetchone()
            if row is None or not row["present"]:
                return None
            curs.execute(
                SQL("SELECT archive_file FROM {0} WHERE id = %s").format(self.archived),
                (aid,),
            )
            found = curs.fetchone()
            return None if found is None else str(found["archive_file"])

    def _lock(self, curs: Any) -> None:
        from psycopg.sql import SQL

        curs.execute(
            SQL("SET LOCAL lock_timeout = '{0}s'").format(
                SQL(str(int(self.datastore.lock_timeout)))
            )
        )
        curs.execute(SQL("LOCK TABLE {0} IN EXCLUSIVE MODE").format(self.events))

    def _rows(self, curs: Any, ids: Sequence[UUID]) -> dict[UUID, list[Any]]:
        from psycopg.sql import SQL

        curs.execute(
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, "
                "state FROM {0} WHERE originator_id = ANY(%s) "
                "ORDER BY originator_id, originator_version"
            ).format(self.events),
            (list(ids),),
        )
        found: dict[UUID, list[Any]] = {}
        for row in curs.fetchall():
            aid = row["originator_id"]
            found.setdefault(aid, []).append(
                (
                    row["notification_id"],
                    StoredEvent(
                        aid,
                        row["originator_version"],
                        row["topic"],
                        bytes(row["state"]),
                    ),
                )
            )
        return found

    def _marks(self, curs: Any, ids: Sequence[UUID]) -> dict[UUID, tuple[str, str]]:
        from psycopg.sql import SQL

        curs.execute(
            SQL(
                "SELECT id, archive_id, archive_file FROM {0} WHERE id = ANY(%s)"
            ).format(self.archived),
            (list(ids),),
        )
        return {
            row["id"]: (str(row["archive_id"]), str(row["archive_file"]))
            for row in curs.fetchall()
        }

    def delete(
        self, records: Sequence[_Record], archive_id: str, file: str, at: float
    ) -> dict[str, int]:
        from psycopg.sql import SQL

        ids = [r.id for r in records]
        with self.datastore.transaction(commit=True) as curs:
            self._lock(curs)
            # The projection runner applies under this row's lock: serialise with it.
            curs.execute(
                SQL(
                    "SELECT notification_id FROM {0} WHERE application_name = %s "
                    "FOR UPDATE"
                ).format(self.views.qualified_tracking),
                (APPLICATION_NAME,),
            )
            row = curs.fetchone()
            tracked = int(row["notification_id"]) if row else 0
            rows = self._rows(curs, ids)
            marks = self._marks(curs, ids)
            reasons = [
                _decide(
                    r, rows.get(r.id, []), marks.get(r.id), archive_id, tracked, None
                )
                for r in records
            ]
            gone = [
                r.id
                for r, why in zip(records, reasons, strict=True)
                if why == "archived"
            ]
            if gone:
                curs.executemany(
                    SQL("INSERT INTO {0} VALUES (%s, %s, %s, %s)").format(
                        self.archived
                    ),
                    [(g, archive_id, file, at) for g in gone],
                )
                curs.execute(
                    SQL("DELETE FROM {0} WHERE originator_id = ANY(%s)").format(
                        self.events
                    ),
                    (gone,),
                )
                curs.execute(
                    "SELECT to_regclass(%s) IS NOT NULL AS present",
                    (f'"{self.schema_name}"."{self.snapshots_name}"',),
                )
                present = curs.fetchone()
                if present is not None and present["present"]:
                    curs.execute(
                        SQL("DELETE FROM {0} WHERE originator_id = ANY(%s)").format(
                            self.snapshots
                        ),
                        (gone,),
                    )
                curs.execute(
                    SQL("DELETE FROM {0} WHERE id = ANY(%s)").format(
                        self.views.qualified
                    ),
                    (gone,),
                )
        return _count(reasons)

    def restore(self, records: Sequence[_Record], archive_id: str) -> dict[UUID, str]:
        from psycopg.sql import SQL

        ids = [r.id for r in records]
        outcome: dict[UUID, str] = {}
        with self.datastore.transaction(commit=True) as curs:
            self._lock(curs)
            rows = self._rows(curs, ids)
            marks = self._marks(curs, ids)
            back: list[_Record] = []
            for record in records:
                mark = marks.get(record.id)
                reason = _restore_reason(
                    mark is not None and mark[0] == archive_id,
                    record.id in rows,
                    mark is not None,
                )
                outcome[record.id] = reason
                if reason == "restored":
                    back.append(record)
            if back:
                curs.execute(
                    SQL("DELETE FROM {0} WHERE id = ANY(%s)").format(self.archived),
                    ([r.id for r in back],),
                )
                curs.executemany(
                    SQL(
                        "INSERT INTO {0} (originator_id, originator_version, topic, "
                        "state) VALUES (%s, %s, %s, %s)"
                    ).format(self.events),
                    [
                        (r.id, e.originator_version, e.topic, e.state)
                        for r in back
                        for e in r.events
                    ],
                )
                curs.execute(SQL("NOTIFY {0}").format(self.channel))
        return outcome


def _store_for(service: MessageService) -> _Store:
    module = service.env.get("PERSISTENCE_MODULE", "")
    if module == "eventsourcing.popo":
        return _MemoryStore(service)
    if module == "eventsourcing.sqlite":
        return _SQLiteStore(service)
    if module == "eventsourcing.postgres":
        return _PostgresStore(service)
    raise InvalidArgument(f"archiving does not support the store {module!r}")
