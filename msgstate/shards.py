"""Scale-out: messages partitioned over several PostgreSQL databases.

A :class:`ShardMap` fixes a number of *virtual shards* (a power of two, for the
store's life) and gives each to exactly one database URL, as Temporal does with
``numHistoryShards``. A message's shard is a function of its stream id
(:func:`shard_of`): the first 32 bits of the id, big-endian, modulo
``virtual_shards``. Stream ids are uuid5 (or keyed HMAC-SHA256) hashes of the
``msg_id``, so shards are uniform; the same function exists in SQL in every
database of the map (``msgstate_shard(uuid)``), where a trigger refuses any event
of a shard the database does not own (see :mod:`msgstate._pg_shards`).

``MessageService.open(shard_map)`` or ``MessageService.open("shards:///path.toml")``
returns a :class:`ShardedMessageService`: the same commands, queries and read
models, routed per message; list queries merged across databases; counts added.
:func:`move_shard` moves one shard to another database while the others keep
working (``msgstate shards move``).
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar
from uuid import UUID

from attrs import field, frozen

from msgstate import _validate as check
from msgstate.application import MessageService
from msgstate.batch import Batch
from msgstate.errors import (
    BatchPartiallySaved,
    InvalidArgument,
    MessageNotFound,
    MsgStateError,
    ShardMoved,
    ShardMoving,
    StorageError,
)
from msgstate.policy import Decision, ResendPolicy
from msgstate.projections import DeadLetter
from msgstate.readmodels import CATCH_UP_BATCH
from msgstate.status import MessageStatus
from msgstate.storage import _redact, persistence_env
from msgstate.views import HistoryEntry, MessageView
from msgstate.whatif import WhatIfReport, simulate

__all__ = [
    "MAX_VIRTUAL_SHARDS",
    "MoveReport",
    "ShardMap",
    "ShardedBatch",
    "ShardedMessageService",
    "format_shards",
    "move_shard",
    "shard_of",
    "shard_status",
]

MAX_VIRTUAL_SHARDS = 65_536
"""The most virtual shards a map may have (a power of two up to 2**16)."""

SHARDS_SCHEME = "shards:"
"""``shards:///abs/path/shards.toml``: a shard map file as a store URL."""

MOVE_WAIT = 30.0
"""Seconds a command waits for a shard move to finish before it is refused."""

T = TypeVar("T")


def shard_of(stream_id: UUID, virtual_shards: int) -> int:
    """The virtual shard of the stream ``stream_id``.

    The first four bytes of the id as a big-endian unsigned integer, modulo
    ``virtual_shards`` (a power of two). In SQL, as every database of a map has
    it: ``(('x' || substr(id::text, 1, 8))::bit(32)::bigint & (virtual_shards - 1))``.
    """
    return int.from_bytes(stream_id.bytes[:4], "big") & (virtual_shards - 1)


def format_shards(shards: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (sorted, ranges collapsed)."""
    ordered = sorted(set(shards))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _parse_shards(url: str, spec: Any) -> tuple[int, ...]:
    """Shards given as ints, ``"a-b"`` ranges, lists of them, or ``"0-3,7"``."""
    items: list[Any]
    if isinstance(spec, str):
        items = [p for p in spec.replace(" ", "").split(",") if p]
    elif isinstance(spec, int) and not isinstance(spec, bool):
        items = [spec]
    elif isinstance(spec, list | tuple):
        items = list(spec)
    else:
        raise InvalidArgument(
            f"shards of {_redact(url)!r} must be a list of shard numbers or "
            f'ranges like "0-15", got {spec!r}'
        )
    shards: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            shards.append(item)
            continue
        text = str(item).strip() if isinstance(item, str) else None
        low, dash, high = (text or "").partition("-")
        try:
            if not dash:
                shards.append(int(low))
            else:
                first, last = int(low), int(high)
                if last < first:
                    raise ValueError
                # No map has a shard >= MAX_VIRTUAL_SHARDS: stop there, and let
                # the map's range check name the first shard outside it.
                shards.extend(range(first, min(last, MAX_VIRTUAL_SHARDS) + 1))
        except ValueError:
            raise InvalidArgument(
                f"shards of {_redact(url)!r}: {item!r} is not a shard number "
                'or a range like "0-15"'
            ) from None
    return tuple(sorted(shards))


def _databases(value: Any) -> Mapping[str, tuple[int, ...]]:
    if not isinstance(value, Mapping) or not value:
        raise InvalidArgument(
            "databases must map each PostgreSQL URL to its shards, "
            f"e.g. {{'postgresql://host/db': '0-63'}}, got {value!r}"
        )
    found: dict[str, tuple[int, ...]] = {}
    for url, spec in value.items():
        if not isinstance(url, str) or not url:
            raise InvalidArgument(f"each database must be a URL (str), got {url!r}")
        found[url] = _parse_shards(url, spec)
    return MappingProxyType(found)


@frozen(repr=False)
class ShardMap:
    """Which database holds each virtual shard.

    ``ShardMap(virtual_shards=64, databases={url: "0-31", url2: "32-63"})``.
    ``virtual_shards`` is a power of two (1 to 65,536), fixed for the store's
    life; each shard ``0 .. virtual_shards - 1`` belongs to exactly one
    PostgreSQL URL. Shards are given as numbers, ``"a-b"`` ranges, or lists of
    both. A database may own no shard (one about to receive some by a move).
    """

    virtual_shards: int = field()
    databases: Mapping[str, tuple[int, ...]] = field(
        converter=_databases, hash=False, eq=False
    )
    _owner: tuple[str, ...] = field(init=False, hash=False, eq=False)

    @virtual_shards.validator
    def _check_virtual_shards(self, _: Any, value: Any) -> None:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < 1
            or value > MAX_VIRTUAL_SHARDS
            or value & (value - 1)
        ):
            raise InvalidArgument(
                f"virtual_shards must be a power of two from 1 to "
                f"{MAX_VIRTUAL_SHARDS}, got {value!r}"
            )

    def __attrs_post_init__(self) -> None:
        owner: list[str | None] = [None] * self.virtual_shards
        for url, shards in self.databases.items():
            env = persistence_env(url)  # InvalidArgument for a bad URL
            if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
                raise InvalidArgument(
                    f"shard map database {_redact(url)!r} is not PostgreSQL; "
                    "a shard map holds postgresql:// URLs only"
                )
            for shard in shards:
                if not 0 <= shard < self.virtual_shards:
                    raise InvalidArgument(
                        f"shard {shard} of {_redact(url)!r} is outside "
                        f"0-{self.virtual_shards - 1} (virtual_shards = "
                        f"{self.virtual_shards})"
                    )
                other = owner[shard]
                if other is not None:
                    raise InvalidArgument(
                        f"shard {shard} is given to two databases: "
                        f"{_redact(other)!r} and {_redact(url)!r}"
                    )
                owner[shard] = url
        missing = [s for s, url in enumerate(owner) if url is None]
        if missing:
            raise InvalidArgument(
                f"shards {format_shards(missing)} belong to no database; every "
                f"shard of 0-{self.virtual_shards - 1} needs exactly one"
            )
        object.__setattr__(self, "_owner", tuple(u for u in owner if u is not None))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShardMap):
            return NotImplemented
        return self.virtual_shards == other.virtual_shards and dict(
            self.databases
        ) == dict(other.databases)

    def __hash__(self) -> int:
        return hash((self.virtual_shards, self._owner))

    def __repr__(self) -> str:
        shown = {_redact(u): format_shards(s) for u, s in self.databases.items()}
        return f"ShardMap(virtual_shards={self.virtual_shards}, databases={shown!r})"

    # -- routing --

    def shard_of(self, stream_id: UUID) -> int:
        """The virtual shard of ``stream_id`` (see :func:`shard_of`)."""
        return shard_of(stream_id, self.virtual_shards)

    def database_of(self, shard: int) -> str:
        """The URL of the database that owns ``shard``."""
        check.integer("shard", shard, 0, self.virtual_shards - 1)
        return self._owner[shard]

    def moved(self, shard: int, to: str) -> ShardMap:
        """This map with ``shard`` given to the database ``to``."""
        check.integer("shard", shard, 0, self.virtual_shards - 1)
        databases = {
            u: [s for s in ss if s != shard] for u, ss in self.databases.items()
        }
        databases.setdefault(to, []).append(shard)
        return ShardMap(
            self.virtual_shards,
            {u: format_shards(ss) for u, ss in databases.items()},
        )

    # -- files --

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ShardMap:
        """Read a map from a TOML file: ``virtual_shards = 64`` and a
        ``[databases]`` table of ``"postgresql://..." = "0-31"`` lines (see
        docs/sharding.md)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise InvalidArgument(
                f"shard map {os.fspath(path)!r} cannot be read: {error.strerror}"
            ) from None
        return cls.loads(text, source=os.fspath(path))

    @classmethod
    def loads(cls, text: str, *, source: str = "<string>") -> ShardMap:
        """Read a map from TOML text (see :meth:`load`)."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise InvalidArgument(
                f"shard map {source!r} is not TOML: {error}"
            ) from None
        unknown = sorted(set(data) - {"virtual_shards", "databases"})
        if unknown or "virtual_shards" not in data or "databases" not in data:
            raise InvalidArgument(
                f"shard map {source!r} must have virtual_shards and a [databases] "
                f"table (and nothing else); found {sorted(data)}"
            )
        return cls(data["virtual_shards"], data["databases"])

    def dumps(self) -> str:
        """The map as TOML (what :meth:`load` reads)."""
        lines = [f"virtual_shards = {self.virtual_shards}", "", "[databases]"]
        for url, shards in self.databases.items():
            lines.append(f"{_toml_string(url)} = {_toml_string(format_shards(shards))}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the map to ``path`` atomically (a reader sees old or new)."""
        target = Path(path)
        fd, scratch = tempfile.mkstemp(dir=target.parent, prefix=".shards-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(self.dumps())
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, target)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes are not all TOML's:
    characters beyond U+FFFF must not become surrogate pairs)."""
    escaped = []
    for char in text:
        if char in '"\\':
            escaped.append("\\" + char)
        elif char < " " or char == "\x7f":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _map_and_path(
    where: ShardMap | str,
) -> tuple[ShardMap, Path | None]:
    if isinstance(where, ShardMap):
        return where, None
    if not where.startswith(SHARDS_SCHEME):
        raise InvalidArgument(f"not a shard map: {where!r}")
    rest = where[len(SHARDS_SCHEME) :]
    rest = rest[2:] if rest.startswith("//") else rest
    if not rest:
        raise InvalidArgument(
            "a shard map URL names its file: shards:///absolute/path/shards.toml"
        )
    path = Path(rest)
    return ShardMap.load(path), path


class _Database:
    """One database of an open map: its service and its shard bookkeeping."""

    def __init__(self, url: str, service: MessageService) -> None:
        from msgstate._pg_shards import ShardTables

        self.url = url
        self.shown = _redact(url)
        self.service = service
        self.tables = ShardTables(service)


class ShardedMessageService(MessageService):
    """A :class:`MessageService` over a :class:`ShardMap` of PostgreSQL databases.

    Open it with ``MessageService.open(shard_map, ...)`` or
    ``MessageService.open("shards:///path/shards.toml", ...)``; every option
    applies to every database. Commands and single-message queries go to the
    message's database; ``due_resends``, ``stuck_sends`` and ``dead_letters``
    merge the databases' answers in the single service's order; counts add up.
    ``databases`` holds each database's own service (for per-database work such
    as ``archive``).

    While a shard moves, its commands wait up to ``move_wait`` seconds (default
    :data:`MOVE_WAIT`; then :class:`ShardMoving`). Opened from a file, the
    service re-reads the map when the file changes (checked before each command)
    or a database says a shard has moved; opened from a :class:`ShardMap`, it
    raises :class:`ShardMoved`.
    """

    def __init__(
        self,
        shard_map: ShardMap | str,
        *,
        policy: ResendPolicy | None = None,
        clock: Callable[[], datetime] | None = None,
        create_tables: bool = True,
        snapshot_every: int | None = None,
        cipher_key: str | None = None,
        compress: bool = False,
        projections: str = "catch_up",
        cache_size: int = 10_000,
        forgettable: bool | None = None,
        key_store: str | None = None,
        move_wait: float = MOVE_WAIT,
    ) -> None:
        if not isinstance(shard_map, ShardMap | str):
            raise InvalidArgument(
                f"expected a ShardMap or a shards:/// URL, got {shard_map!r}"
            )
        check.seconds("move_wait", move_wait, 3600.0)
        self._map, self._path = _map_and_path(shard_map)
        self._options: dict[str, Any] = {
            "policy": policy,
            "clock": clock,
            "create_tables": create_tables,
            "snapshot_every": snapshot_every,
            "cipher_key": cipher_key,
            "compress": compress,
            "projections": projections,
            "cache_size": cache_size,
            "forgettable": forgettable,
            "key_store": key_store,
        }
        self._move_wait = float(move_wait)
        self._lock = threading.RLock()
        self._pool: ThreadPoolExecutor | None = None
        self._databases: dict[str, _Database] = {}
        self._owner: list[_Database] = []
        self._stamp = self._file_stamp()
        try:
            self._attach(self._map)
        except BaseException:
            self.close()
            raise
        first = next(iter(self._databases.values())).service
        self._policy = first.policy
        self._clock = first._clock
        self._stream_ids = first._stream_ids
        self._keys = first._keys

    @classmethod
    def open(
        cls,
        url: ShardMap | str | None = None,
        **options: Any,
    ) -> ShardedMessageService:
        """Open a map (a :class:`ShardMap` or a ``shards:///path`` URL)."""
        if url is None:
            raise InvalidArgument(
                "a sharded service needs a ShardMap or shards:/// URL"
            )
        return cls(url, **options)

    # -- opening and the map --

    def _open_database(self, url: str) -> _Database:
        database = self._databases.get(url)
        if database is None:
            service = MessageService.open(url, **self._options)
            try:
                database = _Database(url, service)
            except BaseException:
                service.close()
                raise
            self._databases[url] = database
        return database

    def _attach(self, shard_map: ShardMap) -> None:
        """Open every database of ``shard_map`` and check what each records."""
        opened = [self._open_database(url) for url in shard_map.databases]
        schemes = {d.service.stream_id_scheme for d in opened}
        if len(schemes) > 1:
            raise StorageError(
                "shard map conflict: its databases name streams differently "
                f"({', '.join(sorted(schemes))}); every database of a map must be "
                "opened with the same cipher_key from its start"
            )
        # Read every database's records first: a conflict anywhere refuses
        # the map before any database claims a shard.
        for database in opened:
            _precheck_database(database, shard_map)
        for database in opened:
            _check_database(database, shard_map, self._options["create_tables"])
        for url in list(self._databases):
            if url not in shard_map.databases:
                self._databases.pop(url).service.close()
        self._owner = [
            self._databases[shard_map.database_of(s)]
            for s in range(shard_map.virtual_shards)
        ]
        self._map = shard_map

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_ino, found.st_size)

    def _refresh(self) -> None:
        """Reload the map if its file was rewritten (a move finished elsewhere).

        Reads of cached messages never reach the old database's fence, so a
        process would otherwise answer them from its stale cache for ever.
        """
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            fresh = ShardMap.load(self._path)  # type: ignore[arg-type]
            if fresh != self._map:
                self._attach(fresh)
            self._stamp = stamp

    def _reload(self, deadline: float, seen: ShardMap) -> bool:
        """A newer map than ``seen``: re-read the file until it differs from
        ``seen`` (or ``deadline``); True if the map in force changed."""
        if self._path is None:
            return False
        with self._lock:
            while True:
                if self._map is not seen:
                    return True  # another thread has reloaded it meanwhile
                fresh = ShardMap.load(self._path)
                if fresh != seen:
                    self._attach(fresh)
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    @property
    def shard_map(self) -> ShardMap:
        """The map this service routes by (reloaded from its file after moves)."""
        return self._map

    @property
    def databases(self) -> Mapping[str, MessageService]:
        """Each database URL's own service (per-database work: archive, ...)."""
        return MappingProxyType({u: d.service for u, d in self._databases.items()})

    @property
    def messages(self) -> Any:
        raise InvalidArgument(
            "a sharded service has one repository per database: "
            "use service.databases[url].messages"
        )

    # -- routing --

    def shard(self, msg_id: str) -> int:
        """The virtual shard of ``msg_id``."""
        return self._map.shard_of(self.stream_id(msg_id))

    def _route(self, msg_id: str) -> _Database:
        return self._owner[self.shard(msg_id)]

    def _routed(self, msg_id: str, call: Callable[[MessageService], T]) -> T:
        """``call`` on ``msg_id``'s database, waiting out a move of its shard."""
        deadline = time.monotonic() + self._move_wait
        pause = 0.01
        self._refresh()
        while True:
            seen = self._map
            database = self._route(msg_id)
            try:
                return call(database.service)
            except ShardMoving:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
            except ShardMoved:
                if not self._reload(deadline, seen):
                    raise
            except MessageNotFound:
                if self._still_owned(database, msg_id) or not self._reload(
                    deadline, seen
                ):
                    raise

    def _moved_away(
        self, database: _Database, indexes: list[int], todo: list[Any]
    ) -> bool:
        """Whether any item not found in ``database`` is of a shard it gave up."""
        if self._path is None or not indexes:
            return False
        rows = database.tables.rows()
        return any(
            rows.get(self.shard(todo[i]["msg_id"]), ("", "", 0))[0]
            not in ("owned", "frozen")
            for i in indexes
        )

    def _still_owned(self, database: _Database, msg_id: str) -> bool:
        if self._path is None:
            return True
        state = database.tables.rows().get(self.shard(msg_id), ("", "", 0))[0]
        return state in ("owned", "frozen")

    # -- commands --

    def create(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._routed(msg_id, lambda s: s.create(msg_id, **kwargs))

    def record_failure(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._routed(msg_id, lambda s: s.record_failure(msg_id, **kwargs))

    def resend(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._routed(msg_id, lambda s: s.resend(msg_id, **kwargs))

    def expire_send(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._routed(msg_id, lambda s: s.expire_send(msg_id, **kwargs))

    def record_delivery(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._routed(msg_id, lambda s: s.record_delivery(msg_id, **kwargs))

    def forget(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._routed(msg_id, lambda s: s.forget(msg_id, **kwargs))

    # -- batches --

    def batch(self) -> ShardedBatch:
        """A batch over the map: atomic per database (see :class:`ShardedBatch`)."""
        return ShardedBatch(self)

    def _many(
        self, items: Iterable[Mapping[str, Any]], command: str
    ) -> list[MessageView | MsgStateError]:
        todo = list(items)
        outcomes: list[MessageView | MsgStateError | None] = [None] * len(todo)
        waiting = list(range(len(todo)))
        split: set[int] = set()  # items saved one transaction per shard
        deadline = time.monotonic() + self._move_wait
        self._refresh()
        while waiting:
            seen = self._map
            groups: dict[tuple[str, int | None], list[int]] = {}
            for index in waiting:
                item = todo[index]
                msg_id = item.get("msg_id") if isinstance(item, Mapping) else None
                try:
                    url = self._route(msg_id).url  # type: ignore[arg-type]
                    shard = self.shard(msg_id) if index in split else None  # type: ignore[arg-type]
                except MsgStateError:
                    # It refuses the item itself: alone, so no move holds it up.
                    url, shard = next(iter(self._databases)), -1
                groups.setdefault((url, shard), []).append(index)
            waiting = []
            for (url, shard), indexes in groups.items():
                database = self._databases[url]
                service = database.service
                try:
                    answers = service._many([todo[i] for i in indexes], command)
                except (ShardMoving, ShardMoved) as error:
                    if shard is None and len(indexes) > 1:
                        # One shard's move must not hold up the database's others.
                        split.update(indexes)
                        waiting.extend(indexes)
                        continue
                    if time.monotonic() < deadline and (
                        isinstance(error, ShardMoving) or self._reload(deadline, seen)
                    ):
                        time.sleep(0.05 if isinstance(error, ShardMoving) else 0)
                        waiting.extend(indexes)
                        continue
                    answers = [error] * len(indexes)
                except MsgStateError as error:
                    answers = [error] * len(indexes)
                missing = [
                    i
                    for i, a in zip(indexes, answers, strict=True)
                    if isinstance(a, MessageNotFound)
                ]
                retry = (
                    set(missing) if self._moved_away(database, missing, todo) else set()
                )
                if retry and not (
                    time.monotonic() < deadline and self._reload(deadline, seen)
                ):
                    retry = set()
                waiting.extend(sorted(retry))
                for index, answer in zip(indexes, answers, strict=True):
                    if index not in retry:
                        outcomes[index] = answer
        return [o for o in outcomes if o is not None]

    # -- queries --

    def get(self, msg_id: str) -> MessageView:
        return self._routed(msg_id, lambda s: s.get(msg_id))

    def check_resend(self, msg_id: str) -> Decision:
        return self._routed(msg_id, lambda s: s.check_resend(msg_id))

    def history(self, msg_id: str) -> list[HistoryEntry]:
        return self._routed(msg_id, lambda s: s.history(msg_id))

    def get_at(
        self,
        msg_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> MessageView:
        return self._routed(msg_id, lambda s: s.get_at(msg_id, version=version, at=at))

    # -- read models, merged --

    def _owned(self, database: _Database, msg_id: str) -> bool:
        """Whether the map gives ``msg_id`` to ``database`` (moves copy rows)."""
        return self._route(msg_id) is database

    def _each(self, ask: Callable[[_Database], T]) -> list[T]:
        """``ask`` of every database, concurrently (a thread each)."""
        databases = list(self._databases.values())
        if len(databases) == 1:
            return [ask(databases[0])]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=min(32, len(databases)),
                    thread_name_prefix="msgstate-shards",
                )
            pool = self._pool
        return list(pool.map(ask, databases))

    def _merged(
        self,
        ask: Callable[[MessageService, int], list[T]],
        key: Callable[[T], Any],
        msg_id: Callable[[T], str],
        limit: int,
    ) -> list[T]:
        """Each database's first ``limit`` answers, merged by ``key``.

        An answer from a database the map does not give its message to (a
        shard's other copy, mid-move) is dropped: the database the map names
        holds the same row, so the merge stays exact.
        """

        def owned(database: _Database) -> list[T]:
            found = ask(database.service, limit)
            return [a for a in found if self._owned(database, msg_id(a))]

        answers: list[T] = []
        for kept in self._each(owned):
            answers.extend(kept)
        return heapq.nsmallest(limit, answers, key=key)

    def due_resends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        moment = self.now() if now is None else now
        check.integer("limit", limit, 1, 100_000)
        return self._merged(
            lambda s, n: s.due_resends(moment, n),
            lambda v: (v.next_retry_at, self.stream_id(v.msg_id).bytes),
            lambda v: v.msg_id,
            limit,
        )

    def stuck_sends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        moment = self.now() if now is None else now
        check.integer("limit", limit, 1, 100_000)
        return self._merged(
            lambda s, n: s.stuck_sends(moment, n),
            lambda v: (v.updated_at, self.stream_id(v.msg_id).bytes),
            lambda v: v.msg_id,
            limit,
        )

    def dead_letters(
        self,
        now: datetime | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[DeadLetter]:
        moment = self.now() if now is None else now
        check.integer("limit", limit, 1, 100_000)
        return self._merged(
            lambda s, n: s.dead_letters(moment, n, after),
            lambda d: d.msg_id,
            lambda d: d.msg_id,
            limit,
        )

    def _counts(self) -> tuple[dict[int, int], dict[int, int]]:
        """Counts by status and failed by code, each message counted once.

        During a move the shard's rows are in two databases' read models; the
        copy that the database records as ``incoming`` or ``moved`` is left out.
        """

        def counts(database: _Database) -> tuple[dict[int, int], dict[int, int]]:
            service = database.service
            statuses = {int(k): v for k, v in service.status_counts().items()}
            codes = dict(service.counts_by_error_code())
            with service._storage_errors():
                away = [
                    shard
                    for shard, (state, _, _) in database.tables.rows().items()
                    if state in ("incoming", "moved")
                ]
                if away:
                    less, fewer = database.tables.view_counts(away)
                    for status, n in less.items():
                        statuses[status] = statuses.get(status, 0) - n
                    for code, n in fewer.items():
                        codes[code] = codes.get(code, 0) - n
            return statuses, codes

        total: dict[int, int] = {}
        by_code: dict[int, int] = {}
        for statuses, codes in self._each(counts):
            for status, n in statuses.items():
                total[status] = total.get(status, 0) + n
            for code, n in codes.items():
                by_code[code] = by_code.get(code, 0) + n
        return total, {c: n for c, n in sorted(by_code.items()) if n}

    def status_counts(self) -> dict[MessageStatus, int]:
        total, _ = self._counts()
        return {status: total.get(int(status), 0) for status in MessageStatus}

    def counts_by_error_code(self) -> dict[int, int]:
        _, by_code = self._counts()
        return by_code

    def projection_lag(self) -> int:
        return sum(d.service.projection_lag() for d in list(self._databases.values()))

    def catch_up_projections(self, *, batch: int = CATCH_UP_BATCH) -> int:
        return sum(
            d.service.catch_up_projections(batch=batch)
            for d in list(self._databases.values())
        )

    def rebuild_projections(self) -> int:
        return sum(
            d.service.rebuild_projections() for d in list(self._databases.values())
        )

    def wait_for_projections(self, timeout: float = 10.0) -> None:
        check.seconds("timeout", timeout, 86_400.0)
        deadline = time.monotonic() + timeout
        for database in list(self._databases.values()):
            left = max(0.0, deadline - time.monotonic())
            database.service.wait_for_projections(left)

    # -- audit and replay --

    def export_history(
        self, msg_ids: Iterable[str] | None = None, since: datetime | None = None
    ) -> Iterator[str]:
        """Every database's audit trail, merged by ``recorded_at``.

        Within a database, lines keep notification order; across databases they
        are interleaved by their ``recorded_at`` (there is no global log).
        """
        groups: dict[str, list[str]] | None = None
        if msg_ids is not None:
            groups = {}
            for msg_id in check.identifiers("msg_ids", msg_ids):
                groups.setdefault(self._route(msg_id).url, []).append(msg_id)
        streams = [
            d.service.export_history(
                None if groups is None else groups.get(url, []), since
            )
            for url, d in self._databases.items()
            if groups is None or url in groups
        ]
        return heapq.merge(*streams, key=lambda line: json.loads(line)["recorded_at"])

    def simulate_policy(
        self, new_policy: ResendPolicy, msg_ids: Iterable[str] | None = None
    ) -> WhatIfReport:
        if not isinstance(new_policy, ResendPolicy):
            raise InvalidArgument(
                f"new_policy must be a ResendPolicy, got {new_policy!r}"
            )
        streams: list[list[Any]] = []
        if msg_ids is not None:
            for msg_id in check.identifiers("msg_ids", msg_ids):
                streams.append(self._route(msg_id).service._history.events(msg_id))
        else:
            for database in list(self._databases.values()):
                grouped: dict[UUID, list[Any]] = {}
                for event in database.service._history.all_events():
                    grouped.setdefault(event.originator_id, []).append(event)
                streams.extend(grouped.values())
        return simulate(streams, new_policy, self._policy, self.now())

    def archive(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument(
            "archive a shard map one database at a time: "
            "service.databases[url].archive(before, to=<a file per database>)"
        )

    def restore(self, *args: Any, **kwargs: Any) -> Any:
        raise InvalidArgument(
            "restore into a shard map one database at a time: "
            "service.databases[url].restore(path)"
        )

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True)
            self._pool = None
        for database in list(getattr(self, "_databases", {}).values()):
            database.service.close()

    def __enter__(self) -> ShardedMessageService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        pass  # each database's service closes itself

    def __repr__(self) -> str:
        return f"ShardedMessageService({self._map!r})"


def _precheck_database(database: _Database, shard_map: ShardMap) -> None:
    """Refuse what :func:`_check_database` would, reading only (no claim)."""
    from msgstate._pg_shards import SHARDS_TABLE
    from msgstate.keys import read_settings

    wanted = set(shard_map.databases[database.url])
    tables = database.tables
    with database.service._storage_errors():
        recorded = read_settings(database.service.recorder).get("virtual_shards")
        present = tables._present([SHARDS_TABLE, tables.events_name])
        rows = tables.rows() if SHARDS_TABLE in present else {}
        held: set[int] = set()
        if not rows and tables.events_name in present:
            held = {
                shard_map.shard_of(stream_id)
                for stream_id in tables.last_versions_all()
            }
    conflict = ""
    if recorded not in (None, str(shard_map.virtual_shards)):
        conflict = (
            f"it was set up for virtual_shards = {recorded}, the map has "
            f"{shard_map.virtual_shards} (fixed for the store's life)"
        )
    elif rows:
        _refuse_disagreement(database, rows, wanted)
    elif held - wanted:
        conflict = (
            f"it holds messages of shards {format_shards(held - wanted)}, which "
            "the map gives to other databases"
        )
    if conflict:
        raise StorageError(
            f"shard map conflict at database {database.shown}: {conflict}"
        )


def _check_database(database: _Database, shard_map: ShardMap, create: bool) -> None:
    """Refuse a database whose records disagree with ``shard_map``."""

    wanted = set(shard_map.databases[database.url])
    try:
        with database.service._storage_errors():
            if create:
                database.tables.ensure(shard_map.virtual_shards)
            rows = database.tables.claim(sorted(wanted))
    except StorageError as error:
        text = error.desc
        if "does not exist" in text and not create:
            text = "it has no shard records; run setup_schema(shard_map) first"
        raise StorageError(
            f"database {database.shown}: {text.removeprefix('shard map conflict: ')}"
            if "shard map conflict" not in text
            else f"shard map conflict at database {database.shown}: "
            + text.removeprefix("shard map conflict: ")
        ) from None
    _refuse_disagreement(database, rows, wanted)


def _refuse_disagreement(
    database: _Database, rows: dict[int, tuple[str, str, int]], wanted: set[int]
) -> None:
    from msgstate._pg_shards import FROZEN, OWNED

    owned = {s for s, (state, _, _) in rows.items() if state in (OWNED, FROZEN)}
    if owned != wanted:
        extra = sorted(owned - wanted)
        lacking = sorted(wanted - owned)
        parts = []
        if extra:
            parts.append(
                f"it owns shards {format_shards(extra)} the map gives elsewhere"
            )
        if lacking:
            states = {rows[s][0] for s in lacking if s in rows}
            parts.append(
                f"the map gives it shards {format_shards(lacking)} it does not own"
                + (f" ({'/'.join(sorted(states))})" if states else "")
            )
        raise StorageError(
            f"shard map conflict at database {database.shown}: "
            + "; ".join(parts)
            + "; open it with the map the databases record (a move may be in "
            "progress: `msgstate shards status`)"
        )


class ShardedBatch(Batch):
    """Commands over a shard map, saved in one transaction per database.

    Each command goes to its message's database's own :class:`Batch`. Leaving
    the block saves the databases' parts one after another; if one fails,
    :class:`BatchPartiallySaved` lists the changed messages that were saved and
    those that were not (no database holds half of its part). If the first
    database to save fails, nothing was saved and its own error is raised.
    """

    def __init__(self, service: ShardedMessageService) -> None:
        self._service = service
        self._parts: dict[str, Batch] = {}
        self._state = "new"

    def __enter__(self) -> ShardedBatch:
        if self._state != "new":
            raise InvalidArgument("a batch is used once; start a new one")
        self._service._refresh()
        self._state = "open"
        return self

    def _part(self, msg_id: str) -> Batch:
        self._check_open()
        database = self._service._route(msg_id)
        part = self._parts.get(database.url)
        if part is None:
            part = database.service.batch()
            part.__enter__()
            self._parts[database.url] = part
        return part

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "closed"
        parts = list(self._parts.values())
        if exc_type is not None:
            for part in parts:
                part.__exit__(exc_type, exc, tb)
            return
        saved: list[str] = []
        for index, part in enumerate(parts):
            changed = list(part.changed)
            try:
                part.__exit__(None, None, None)
            except MsgStateError as error:
                unsaved = changed
                for rest in parts[index + 1 :]:
                    unsaved.extend(rest.changed)
                    rest.__exit__(InvalidArgument, None, None)
                if not saved:
                    raise
                raise BatchPartiallySaved(
                    f"this batch was saved in {index} of {len(parts)} databases: "
                    f"{len(saved)} messages saved, {len(unsaved)} not "
                    f"({error.desc} [{error.code.name}]); rerun the unsaved ones",
                    saved=tuple(saved),
                    unsaved=tuple(unsaved),
                    cause=error,
                ) from None
            saved.extend(changed)

    @property
    def pending(self) -> int:
        return sum(part.pending for part in self._parts.values())

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(m for part in self._parts.values() for m in part.changed)

    def prefetch(self, msg_ids: Iterable[str]) -> None:
        """As :meth:`Batch.prefetch`, each database's ids in one go; invalid
        ids are left for the commands to refuse (a lone ``str`` is refused)."""
        self._check_open()
        if isinstance(msg_ids, str | bytes | bytearray):
            check.identifiers("msg_ids", msg_ids)  # the refusal of one str
        groups: dict[str, list[str]] = {}
        for msg_id in msg_ids:
            try:
                url = self._service._route(msg_id).url
            except MsgStateError:
                continue
            groups.setdefault(url, []).append(msg_id)
        for ids in groups.values():
            self._part(ids[0]).prefetch(ids)

    def get(self, msg_id: str) -> MessageView:
        return self._part(msg_id).get(msg_id)

    def create(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._part(msg_id).create(msg_id, **kwargs)

    def record_failure(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._part(msg_id).record_failure(msg_id, **kwargs)

    def resend(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._part(msg_id).resend(msg_id, **kwargs)

    def expire_send(
        self, msg_id: str, *, attempt: int, actor: str | None = None
    ) -> MessageView:
        return self._part(msg_id).expire_send(msg_id, attempt=attempt, actor=actor)

    def record_delivery(self, msg_id: str, **kwargs: Any) -> MessageView:
        return self._part(msg_id).record_delivery(msg_id, **kwargs)


# -- moving a shard --


@frozen
class MoveReport:
    """What :func:`move_shard` did."""

    shard: int
    source: str
    target: str
    streams: int
    events: int
    seconds: float
    frozen_seconds: float
    resumed: bool


def move_shard(
    path: str | os.PathLike[str],
    shard: int,
    to: str,
    *,
    cipher_key: str | None = None,
    compress: bool = False,
    chunk: int = 2000,
    progress: Callable[[str, int], None] | None = None,
    abort: bool = False,
) -> MoveReport:
    """Move ``shard`` of the map file ``path`` to the database ``to``, online.

    1. The target records the shard ``incoming``; its streams are copied
       (versions, timestamps and bytes intact) while writers go on, and each
       copied stream's last version is compared with the source's.
    2. The source freezes the shard (in-flight inserts finish first; later ones
       wait, as :class:`ShardMoving`); the events written meanwhile are copied,
       and checked: the streams they touch have the same last version in both,
       and both hold the same number of the shard's events and streams.
    3. The target takes the shard (``owned``), then the source records it
       ``moved`` (its fence now refuses the shard's writes with ``SHARD_MOVED``).
    4. The new map is written to ``path`` (writers that follow the file go on at
       once); then the source's copy is deleted.

    Progress steps: ``copied``, ``frozen``, ``verified``, ``handed over``,
    ``map written``, ``deleted``. Each step is recorded in the databases (and
    the file), so running it again after a crash resumes where it stopped;
    ``abort=True`` instead rolls back a move that has not handed over yet.
    Read models in the target catch up from its own log.
    """
    started = time.monotonic()
    shard_map = ShardMap.load(path)
    check.integer("shard", shard, 0, shard_map.virtual_shards - 1)
    if not isinstance(to, str) or not to:
        raise InvalidArgument(f"to must be a database URL, got {to!r}")
    check.integer("chunk", chunk, 1, 100_000)
    persistence_env(to)  # InvalidArgument for a malformed URL
    say = progress or (lambda _step, _n: None)
    options: dict[str, Any] = {"cipher_key": cipher_key, "compress": compress}
    source_url = shard_map.database_of(shard)
    if source_url == to:
        # Done already, or interrupted after the map was written: the source is
        # the database that records the shard as moved.
        source_url = _moved_from(shard_map, shard, to, options) or ""
        if not source_url or abort:
            raise InvalidArgument(
                f"shard {shard} is already in {_redact(to)}"
                + (" (the move was handed over; it can't be aborted)" if abort else "")
            )
    source = _Database(source_url, MessageService.open(source_url, **options))
    try:
        target = _Database(to, MessageService.open(to, **options))
    except BaseException:
        source.service.close()
        raise
    try:
        with source.service._storage_errors(), target.service._storage_errors():
            return _move(
                path, shard_map, shard, source, target, chunk, say, abort, started
            )
    finally:
        source.service.close()
        target.service.close()


def _moved_from(
    shard_map: ShardMap, shard: int, to: str, options: dict[str, Any]
) -> str | None:
    """The map's database that records ``shard`` as moved (to ``to``), if any."""
    from msgstate._pg_shards import MOVED

    for url in shard_map.databases:
        if url == to:
            continue
        database = _Database(url, MessageService.open(url, **options))
        try:
            with database.service._storage_errors():
                state = database.tables.rows().get(shard, ("", "", 0))[0]
                held = database.tables.summary(shard)[0]
        except StorageError:
            continue  # no shard records yet: it never took part in a move
        finally:
            database.service.close()
        if state == MOVED and held:
            return url
    return None


def _move(
    path: str | os.PathLike[str],
    shard_map: ShardMap,
    shard: int,
    source: _Database,
    target: _Database,
    chunk: int,
    say: Callable[[str, int], None],
    abort: bool,
    started: float,
) -> MoveReport:
    from msgstate._pg_shards import FROZEN, INCOMING, MOVED, OWNED

    source.tables.ensure(shard_map.virtual_shards)
    target.tables.ensure(shard_map.virtual_shards)
    target.tables.claim([])  # a new database owns nothing until handed a shard
    src_state = source.tables.rows().get(shard, ("", "", 0))[0]
    tgt_state = target.tables.rows().get(shard, ("", "", 0))[0]
    resumed = tgt_state in (INCOMING, OWNED) or src_state in (FROZEN, MOVED)

    def report(streams: int, events: int, frozen: float) -> MoveReport:
        return MoveReport(
            shard,
            source.shown,
            target.shown,
            streams,
            events,
            time.monotonic() - started,
            frozen,
            resumed,
        )

    if abort:
        if tgt_state == OWNED or src_state == MOVED:
            raise InvalidArgument(
                f"shard {shard} was handed over to {target.shown} already; "
                "finish the move by running it again without abort"
            )
        target.tables.delete_shard(shard, forget=True)
        if src_state == FROZEN:
            source.tables.set_state(shard, OWNED)
        say("aborted", 0)
        return report(0, 0, 0.0)
    src_peer = source.tables.rows().get(shard, ("", "", 0))[1]
    if src_state == MOVED and (tgt_state != OWNED or src_peer != _redact(target.url)):
        raise StorageError(
            f"shard map conflict: {source.shown} handed shard {shard} over to "
            f"{src_peer or 'another database'} already; finish that move by "
            "running it again with that target"
        )
    if src_state not in (OWNED, FROZEN, MOVED):
        raise StorageError(
            f"shard map conflict: {source.shown} does not own shard {shard} "
            f"(it records {src_state or 'nothing'})"
        )
    if tgt_state not in ("", INCOMING, OWNED):
        raise StorageError(
            f"shard map conflict: {target.shown} records shard {shard} as "
            f"{tgt_state}; it cannot receive it"
        )
    copied = 0
    frozen_at: float | None = None
    if tgt_state != OWNED and src_state != MOVED:
        if tgt_state == "":
            target.tables.set_state(shard, INCOMING, _redact(source.url))
        watermark = target.tables.rows()[shard][2]
        if src_state != FROZEN:
            # 1. Copy while writers go on (up to the log's end now), and check.
            end = source.tables.max_notification_id()
            watermark, n, _ = _copy(source, target, shard, watermark, end, chunk)
            copied += n
            say("copied", copied)
            _verify(source, target, shard, source.tables.last_versions(shard, end))
            # 2. Freeze (in-flight inserts finish first), then copy the rest.
            source.tables.set_state(shard, FROZEN)
        frozen_at = time.monotonic()
        say("frozen", 0)
        watermark, n, touched = _copy(source, target, shard, watermark, None, chunk)
        copied += n
        target.tables.insert_side_rows(source.tables.side_rows(shard))
        if src_state == FROZEN:  # resumed while frozen: check every stream
            _verify(source, target, shard, source.tables.last_versions(shard))
        else:
            _verify(source, target, shard, source.tables.versions_of(touched))
        here, there = source.tables.summary(shard), target.tables.summary(shard)
        if here != there:
            raise StorageError(
                f"shard {shard}: {target.shown} holds {there[0]} events in "
                f"{there[1]} streams, {source.shown} {here[0]} in {here[1]}; "
                "nothing was handed over (abort the move, then run it again)"
            )
        say("verified", here[1])
        # 3. Hand over: the target first, then the source's fence.
        target.tables.set_state(shard, OWNED)
    if src_state != MOVED:
        source.tables.set_state(shard, MOVED, _redact(target.url))
    frozen = 0.0 if frozen_at is None else time.monotonic() - frozen_at
    say("handed over", 0)
    # 4. The new map (writers following the file go on), then the old copy goes.
    current = ShardMap.load(path)
    if current.database_of(shard) != target.url:
        current.moved(shard, target.url).save(path)
    say("map written", 0)
    streams = target.tables.summary(shard)[1]
    source.tables.delete_shard(shard)
    say("deleted", streams)
    return report(streams, copied, frozen)


def _verify(
    source: _Database, target: _Database, shard: int, here: dict[UUID, int]
) -> None:
    """Each stream in ``here`` has the same last version in the target."""
    there = target.tables.versions_of(list(here))
    differ = [k for k in here if here[k] != there.get(k)]
    if differ:
        raise StorageError(
            f"shard {shard}: the copy in {target.shown} differs from "
            f"{source.shown} in {len(differ)} of {len(here)} streams; nothing "
            "was handed over (abort the move, then run it again)"
        )


def _copy(
    source: _Database,
    target: _Database,
    shard: int,
    watermark: int,
    until: int | None,
    chunk: int,
) -> tuple[int, int, list[UUID]]:
    """Copy the shard's events after ``watermark``: (watermark, count, streams)."""
    copied = 0
    touched: set[UUID] = set()
    while True:
        rows = source.tables.events_after(shard, watermark, until, chunk)
        if not rows:
            return watermark, copied, sorted(touched)
        watermark = int(rows[-1]["notification_id"])
        target.tables.insert_copies(shard, rows, watermark)
        touched.update(UUID(str(r["originator_id"])) for r in rows)
        copied += len(rows)


def shard_status(shard_map: ShardMap | str, **options: Any) -> list[dict[str, Any]]:
    """Per database: its shards as it records them, message counts, read-model lag."""
    service = ShardedMessageService(shard_map, **options)
    try:
        report = []
        for url, database in service._databases.items():
            rows = database.tables.rows()
            counts = database.service.status_counts()
            report.append(
                {
                    "database": _redact(url),
                    "map_shards": format_shards(service.shard_map.databases[url]),
                    "owned": format_shards(
                        s for s, (st, _, _) in rows.items() if st in ("owned", "frozen")
                    ),
                    "moving": {
                        str(s): st
                        for s, (st, _, _) in sorted(rows.items())
                        if st in ("frozen", "incoming")
                    },
                    "messages": sum(counts.values()),
                    "projection_lag": database.service.projection_lag(),
                }
            )
        return report
    finally:
        service.close()
