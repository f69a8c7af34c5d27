"""Read models: which messages are due for a resend, which are dead, how many of each.

One row per message, kept by an eventsourcing ``Projection`` from the notification
log, with tracking recorded in the same transaction as the rows (each notification
applied exactly once). Rows hold only policy-independent facts (status, attempts,
last error code, times, a jitter unit); everything that depends on the policy (retry
class, backoff, age limits) is computed at query time from the policy's parameters,
in SQL. Reopening a service with another policy therefore changes the answers at
once, and nothing needs recomputing or rebuilding.

Rows hold no message id in clear when the store has a cipher key: the ``msg_key``
column is then encrypted with the store's own cipher.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from attrs import frozen
from eventsourcing.persistence import Cipher, IntegrityError, Tracking, TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.projection import Projection
from eventsourcing.sqlite import SQLiteDatastore, SQLiteTrackingRecorder
from eventsourcing.utils import get_topic

from msgstate.codes import RetryClass, catalog, ranges
from msgstate.domain import Message
from msgstate.policy import ResendPolicy, jitter_unit
from msgstate.status import MessageStatus
from msgstate.views import MessageView

__all__ = [
    "DeadLetter",
    "MessageViews",
    "MessageViewsProjection",
    "PolicyQuery",
    "ViewChange",
    "change_for",
    "changes_for",
]

APPLICATION_NAME = "msgstate"
_SEND_FAIL = int(MessageStatus.SEND_FAIL)
_SENDING = int(MessageStatus.SENDING)
# SQL compares with this slack (seconds) and Python's exact decision has the last
# word, so float rounding in the database can never hide a due message.
_SLACK = 1e-3
_SCHEDULE_STEPS = 1_000


@frozen
class DeadLetter:
    """A failed message the policy will never resend, and why (``code``)."""

    msg_id: str
    code: Any  # ErrorCode; typed loosely to keep this module free of errors' import
    desc: str
    view: MessageView


@frozen
class ViewChange:
    """What one notification changes in one message's row."""

    notification_id: int
    aggregate_id: UUID
    columns: dict[str, Any]


def _epoch(moment: datetime) -> float:
    return moment.timestamp()


def change_for(event: Any, notification_id: int) -> ViewChange | None:
    """The row change for one stored event (``None`` for events views ignore)."""
    kind = next((k for cls, k in _EVENT_KINDS if isinstance(event, cls)), None)
    if kind is None:
        return None
    aid = event.originator_id
    return _change(kind, vars(event), _epoch(event.at), aid, notification_id)


_CREATED, _FAILED, _RESENT, _DELIVERED, _FORGOTTEN = range(5)
_EVENT_KINDS: list[tuple[type, int]] = [
    (Message.Created, _CREATED),  # CreatedSealed too (a subclass)
    (Message.SendFailed, _FAILED),
    (Message.ResendRequested, _RESENT),
    (Message.Delivered, _DELIVERED),
    (Message.Forgotten, _FORGOTTEN),
]
_KINDS: dict[str, tuple[int, type]] = {
    get_topic(cls): (kind, cls)
    for cls, kind in [*_EVENT_KINDS, (Message.CreatedSealed, _CREATED)]
}
_SUCC = int(MessageStatus.SEND_SUCC)


def changes_for(
    notifications: Sequence[Any],
    mapper: Any,
    encode_key: Callable[[str], bytes] | None = None,
) -> list[ViewChange]:
    """The row changes of many stored notifications, as :func:`change_for` makes
    them, without building domain events.

    Each state is decrypted and decompressed as the mapper would, then decoded as
    plain JSON, and only the fields a row needs are read (the transcoder's tagged
    ``datetime_iso`` values parsed where used). A notification of any other topic,
    or a state the plain decoding can't read, goes through the mapper and
    :func:`change_for` instead, so the answer is always the same. With
    ``encode_key`` (:meth:`MessageViews.encode_key`), creations carry ``msg_key``
    already, as :meth:`MessageViews.prepare` would make it.
    """
    cipher, compressor = mapper.cipher, mapper.compressor
    kinds = plain_kinds()
    changes: list[ViewChange] = []
    for n in notifications:
        kind = kinds.get(n.topic)
        change: ViewChange | None = None
        if kind is not None:
            state = n.state
            if cipher is not None:
                state = cipher.decrypt(state)
            if compressor is not None:
                state = compressor.decompress(state)
            try:
                data = _loads(state)
                at = _tagged_epoch(data["at"])
                change = _change(kind, data, at, n.originator_id, n.id)
            except (KeyError, TypeError, ValueError):
                change = None
        if change is None:
            change = change_for(mapper.to_domain_event(n), n.id)
        if change is not None:
            if encode_key is not None and "msg_id" in change.columns:
                change.columns["msg_key"] = encode_key(change.columns.pop("msg_id"))
            changes.append(change)
    return changes


def plain_kinds() -> dict[str, int]:
    """The kind of each topic whose stored states are read as plain JSON: events
    without upcasters (``class_version`` 1). The mapper decodes the others."""
    return {
        topic: kind
        for topic, (kind, cls) in _KINDS.items()
        if getattr(cls, "class_version", 1) == 1
    }


def _change(
    kind: int, event: Mapping[str, Any], at: float, aid: UUID, notification_id: int
) -> ViewChange:
    """The row change of an event of ``kind`` with fields ``event`` (a domain
    event's, or its stored state's: the same values) recorded at ``at``."""
    if kind == _CREATED:
        columns: dict[str, Any] = {
            "msg_id": event["msg_id"],
            "status": _SENDING,
            "attempts": 1,
            "last_error_code": None,
            "failed_at": None,
            "retry_after": None,
            "jitter_u": None,
            "created_at": at,
            "online_user_only": int(event["online_user_only"]),
            "updated_at": at,
        }
    elif kind == _FAILED:
        columns = {
            "status": _SEND_FAIL,
            "last_error_code": event["code"],
            "failed_at": at,
            "retry_after": event["retry_after"],
            "jitter_u": jitter_unit(aid, event["attempt"]),
            "updated_at": at,
        }
    elif kind == _RESENT:
        columns = {
            "status": _SENDING,
            "attempts": event["attempt"],
            "online_user_only": int(event["online_user_only"]),
            "updated_at": at,
        }
    elif kind == _DELIVERED:
        columns = {"status": _SUCC, "updated_at": at}
    else:
        # Changes nothing a row holds; written (a no-op) so tracking moves past it.
        columns = {"attempts": event["attempt"]}
    return ViewChange(notification_id, aid, columns)


def _tagged_epoch(value: Any) -> float:
    """A transcoded ``datetime_iso`` value as seconds since the epoch."""
    if value["_type_"] != "datetime_iso":
        raise ValueError(value)
    return datetime.fromisoformat(value["_data_"]).timestamp()


_loads: Callable[[bytes], Any]
try:
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is the fast extra
    from json import loads as _json_loads

    _loads = _json_loads


@frozen
class PolicyQuery:
    """A policy's parameters, as the SQL of the due and dead queries needs them."""

    max_attempts: int
    base_delays: tuple[float, ...]  # seconds, for attempts 1..len
    cap: float  # the base delay of every later attempt
    jitter: float
    blocked_codes: tuple[int, ...]  # non-retryable catalog codes...
    allowed_codes: tuple[int, ...]  # ...or, if unknown codes are blocked, these
    unknown_blocked: bool
    max_age: float | None
    online_only_max_age: float | None
    blocked_ranges: tuple[tuple[int, int], ...] = ()  # catalog ranges, inclusive
    allowed_ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, policy: ResendPolicy) -> PolicyQuery:
        blocked = {RetryClass.PERMANENT}
        if not policy.resend_ambiguous:
            blocked.add(RetryClass.AMBIGUOUS)
        codes = catalog()
        # The schedule until it stops changing: it reaches the cap, or (with a
        # coefficient of 1) never grows. A schedule still growing after
        # _SCHEDULE_STEPS attempts keeps its last step: a lower bound, so SQL
        # still finds every due message and the exact decision filters.
        delays: list[float] = []
        for attempt in range(1, min(policy.max_attempts, _SCHEDULE_STEPS + 1)):
            base = policy.base_delay(attempt)
            delays.append(base)
            if base >= policy.maximum_interval.total_seconds() or (
                len(delays) > 1 and base == delays[-2]
            ):
                break
        cap = delays[-1] if delays else policy.maximum_interval.total_seconds()
        return cls(
            max_attempts=policy.max_attempts,
            base_delays=tuple(delays),
            cap=cap,
            jitter=float(policy.jitter),
            blocked_codes=tuple(
                sorted(
                    c
                    for c, i in codes.items()
                    if i.last is None and i.retry_class in blocked
                )
            ),
            allowed_codes=tuple(
                sorted(
                    c
                    for c, i in codes.items()
                    if i.last is None and i.retry_class not in blocked
                )
            ),
            blocked_ranges=tuple(
                (i.code, i.last)
                for i in ranges()
                if i.last is not None and i.retry_class in blocked
            ),
            allowed_ranges=tuple(
                (i.code, i.last)
                for i in ranges()
                if i.last is not None and i.retry_class not in blocked
            ),
            unknown_blocked=policy.unknown_code_class in blocked,
            max_age=None if policy.max_age is None else policy.max_age.total_seconds(),
            online_only_max_age=(
                None
                if policy.online_only_max_age is None
                else policy.online_only_max_age.total_seconds()
            ),
        )

    # -- the same rules in Python (memory views) -------------------------------------

    def retryable(self, code: int) -> bool:
        if code in self.allowed_codes:
            return True
        if code in self.blocked_codes:
            return False
        if any(lo <= code <= hi for lo, hi in self.allowed_ranges):
            return True
        if any(lo <= code <= hi for lo, hi in self.blocked_ranges):
            return False
        return not self.unknown_blocked

    def expired(self, row: dict[str, Any], now: float) -> bool:
        age = now - row["created_at"]
        if self.max_age is not None and age > self.max_age:
            return True
        return bool(
            row["online_user_only"]
            and self.online_only_max_age is not None
            and age > self.online_only_max_age
        )

    def next_retry(self, row: dict[str, Any]) -> float:
        attempts = row["attempts"]
        base = (
            self.base_delays[attempts - 1]
            if attempts <= len(self.base_delays)
            else self.cap
        )
        wait = base * (1 + self.jitter * (2 * row["jitter_u"] - 1))
        return float(row["failed_at"] + max(wait, row["retry_after"] or 0.0))

    def is_due(self, row: dict[str, Any], now: float) -> bool:
        return (
            row["status"] == _SEND_FAIL
            and row["attempts"] < self.max_attempts
            and self.retryable(row["last_error_code"])
            and not self.expired(row, now)
            and self.next_retry(row) <= now + _SLACK
        )

    def is_dead(self, row: dict[str, Any], now: float) -> bool:
        return row["status"] == _SEND_FAIL and (
            row["attempts"] >= self.max_attempts
            or not self.retryable(row["last_error_code"])
            or self.expired(row, now)
        )

    # -- the same rules in SQL --------------------------------------------------------

    def sql_retryable(self) -> str:
        def within(spans: tuple[tuple[int, int], ...]) -> list[str]:
            return [
                f"last_error_code BETWEEN {int(lo)} AND {int(hi)}" for lo, hi in spans
            ]

        if self.unknown_blocked:
            terms = [f"last_error_code IN ({_ints(self.allowed_codes)})"]
            terms += within(self.allowed_ranges)
            return "(" + " OR ".join(terms) + ")"
        terms = []
        if self.blocked_codes:
            terms.append(f"last_error_code IN ({_ints(self.blocked_codes)})")
        terms += within(self.blocked_ranges)
        if not terms:
            return "1=1"
        return "NOT (" + " OR ".join(terms) + ")"

    def sql_expired(self, now: str) -> str:
        """``now`` is the SQL for the current time (a bound parameter)."""
        terms = []
        if self.max_age is not None:
            terms.append(f"(created_at < {now} - {self.max_age!r})")
        if self.online_only_max_age is not None:
            terms.append(
                f"(online_user_only = 1 AND created_at < {now} - "
                f"{self.online_only_max_age!r})"
            )
        return "(" + " OR ".join(terms) + ")" if terms else "(1=0)"

    def sql_next_retry(self, greatest: str) -> str:
        cases = " ".join(
            f"WHEN {i} THEN {d!r}" for i, d in enumerate(self.base_delays, start=1)
        )
        base = (
            f"(CASE attempts {cases} ELSE {self.cap!r} END)"
            if cases
            else repr(self.cap)
        )
        wait = f"{base} * (1 + {self.jitter!r} * (2 * jitter_u - 1))"
        return f"(failed_at + {greatest}({wait}, COALESCE(retry_after, 0.0)))"


def _ints(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values) or "NULL"


class MessageViews(TrackingRecorder, ABC):
    """The message read model: rows plus tracking, in one store."""

    cipher: Cipher | None = None
    """Encrypts ``msg_key`` when the store is encrypted (set by the service)."""

    def encode_key(self, msg_id: str) -> bytes:
        raw = msg_id.encode("utf-8")
        return raw if self.cipher is None else self.cipher.encrypt(raw)

    def decode_key(self, key: bytes) -> str:
        raw = bytes(key)
        return (raw if self.cipher is None else self.cipher.decrypt(raw)).decode(
            "utf-8"
        )

    def prepare(self, changes: Sequence[ViewChange]) -> list[ViewChange]:
        """Encode message ids for storage."""
        prepared = []
        for change in changes:
            if "msg_id" not in change.columns:
                prepared.append(change)  # nothing to encode: as it is
                continue
            columns = dict(change.columns)
            columns["msg_key"] = self.encode_key(columns.pop("msg_id"))
            prepared.append(
                ViewChange(change.notification_id, change.aggregate_id, columns)
            )
        return prepared

    @abstractmethod
    def apply(self, changes: Sequence[ViewChange], application_name: str) -> int:
        """Apply the changes not yet applied, with their tracking, atomically.

        Returns how many were applied (the others were already, by another process).
        """

    @abstractmethod
    def due(self, query: PolicyQuery, now: float, limit: int) -> list[UUID]:
        """Ids of failed messages due at ``now``, soonest first (a superset by
        at most a millisecond; the service's exact decision filters)."""

    @abstractmethod
    def dead(
        self,
        query: PolicyQuery,
        now: float,
        after: bytes | None = None,
        limit: int | None = None,
    ) -> list[tuple[UUID, bytes]]:
        """(id, msg_key) of failed messages the policy will never resend.

        With ``after``/``limit``: ordered by ``msg_key`` (meaningful only while
        keys are not encrypted), those after ``after``, at most ``limit``.
        """

    @abstractmethod
    def stuck(self, started_before: float, limit: int) -> list[UUID]:
        """Ids of SENDING messages whose send started at or before
        ``started_before`` (epoch seconds, a superset by at most a millisecond),
        the oldest send first, ties in id order."""

    @abstractmethod
    def status_counts(self) -> dict[int, int]: ...

    @abstractmethod
    def error_code_counts(self) -> dict[int, int]: ...

    @abstractmethod
    def clear(self, application_name: str) -> None:
        """Delete every row and the tracking position (before a rebuild)."""

    def rebuild(self, recorder: Any, mapper: Any, application_name: str) -> int | None:
        """Rebuild every row from ``recorder``'s events in one transaction inside
        the store, and track the last notification: how many message events were
        applied, as :meth:`clear` then catching up would return.

        ``None`` (here: always) when the store has no such rebuild, or when it
        can't give exactly the rows the catch-up would; nothing is changed then,
        and the caller clears and catches up instead.
        """
        return None

    def dead_page(
        self, query: PolicyQuery, now: float, limit: int, after: str | None
    ) -> list[tuple[UUID, str]]:
        """A page of dead messages ordered by message id, after ``after``.

        Unencrypted keys are UTF-8, whose byte order is code-point order, so the
        database pages; encrypted keys must all be decrypted and sorted here.
        """
        if self.cipher is None:
            start = None if after is None else after.encode("utf-8")
            page = self.dead(query, now, after=start, limit=limit)
            return [(aid, self.decode_key(key)) for aid, key in page]
        rows = [(aid, self.decode_key(key)) for aid, key in self.dead(query, now)]
        rows.sort(key=lambda row: row[1])
        if after is not None:
            rows = [row for row in rows if row[1] > after]
        return rows[:limit]


class POPOMessageViews(POPOTrackingRecorder, MessageViews):
    """In-memory rows, for the memory store."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self._rows: dict[UUID, dict[str, Any]] = {}

    def apply(self, changes: Sequence[ViewChange], application_name: str) -> int:
        with self._database_lock:
            current = self._max_tracking_ids[application_name] or 0
            todo = [c for c in self.prepare(changes) if c.notification_id > current]
            if not todo:
                return 0
            for aggregate_id, columns in merge(todo).items():
                self._rows.setdefault(aggregate_id, {}).update(columns)
            self._insert_tracking(Tracking(application_name, todo[-1].notification_id))
            return len(todo)

    def _snapshot(self) -> list[tuple[UUID, dict[str, Any]]]:
        with self._database_lock:
            return [(aid, dict(row)) for aid, row in self._rows.items()]

    def due(self, query: PolicyQuery, now: float, limit: int) -> list[UUID]:
        due = [
            (query.next_retry(r), aid)
            for aid, r in self._snapshot()
            if query.is_due(r, now)
        ]
        due.sort()
        return [aid for _, aid in due[:limit]]

    def dead(
        self,
        query: PolicyQuery,
        now: float,
        after: bytes | None = None,
        limit: int | None = None,
    ) -> list[tuple[UUID, bytes]]:
        rows = [
            (aid, r["msg_key"]) for aid, r in self._snapshot() if query.is_dead(r, now)
        ]
        if after is None and limit is None:
            return rows
        rows.sort(key=lambda row: row[1])
        return [r for r in rows if after is None or r[1] > after][:limit]

    def stuck(self, started_before: float, limit: int) -> list[UUID]:
        rows = sorted(
            (r["updated_at"], aid)
            for aid, r in self._snapshot()
            if r["status"] == _SENDING and r["updated_at"] <= started_before + _SLACK
        )
        return [aid for _, aid in rows[:limit]]

    def status_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for _, row in self._snapshot():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        return counts

    def error_code_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for _, row in self._snapshot():
            if row["status"] == _SEND_FAIL:
                code = row["last_error_code"]
                counts[code] = counts.get(code, 0) + 1
        return counts

    def clear(self, application_name: str) -> None:
        with self._database_lock:
            self._rows.clear()
            self._max_tracking_ids.pop(application_name, None)


class SQLMessageViews(MessageViews):
    """The read-model queries, written once for every SQL database.

    A database supplies its parameter style (``_param``), its two-argument
    maximum (``greatest``), the qualified table name and a ``_query`` that
    returns tuples.
    """

    greatest = "max"

    @abstractmethod
    def _param(self, name: str) -> str: ...

    @abstractmethod
    def _table_sql(self) -> str: ...

    @abstractmethod
    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]: ...

    def due(self, query: PolicyQuery, now: float, limit: int) -> list[UUID]:
        p = self._param
        next_retry = query.sql_next_retry(self.greatest)
        rows = self._query(
            f"SELECT id FROM {self._table_sql()} WHERE status = {_SEND_FAIL} "
            f"AND attempts < {p('max_attempts')} AND {query.sql_retryable()} "
            f"AND NOT {query.sql_expired(p('now'))} "
            f"AND {next_retry} <= {p('now')} + {_SLACK!r} "
            f"ORDER BY {next_retry}, id LIMIT {p('limit')}",
            {"now": now, "max_attempts": query.max_attempts, "limit": limit},
        )
        return [_uuid(row[0]) for row in rows]

    def dead(
        self,
        query: PolicyQuery,
        now: float,
        after: bytes | None = None,
        limit: int | None = None,
    ) -> list[tuple[UUID, bytes]]:
        p = self._param
        page = ""
        if after is not None:
            page += f" AND msg_key > {p('after')}"
        if limit is not None:
            page += f" ORDER BY msg_key LIMIT {p('limit')}"
        rows = self._query(
            f"SELECT id, msg_key FROM {self._table_sql()} WHERE status = "
            f"{_SEND_FAIL} AND (attempts >= {p('max_attempts')} "
            f"OR NOT ({query.sql_retryable()}) OR {query.sql_expired(p('now'))})"
            f"{page}",
            {
                "now": now,
                "max_attempts": query.max_attempts,
                "after": after,
                "limit": limit,
            },
        )
        return [(_uuid(row[0]), bytes(row[1])) for row in rows]

    def stuck(self, started_before: float, limit: int) -> list[UUID]:
        # A SENDING row's updated_at is when its current send started: only
        # Created and ResendRequested leave a message SENDING.
        p = self._param
        rows = self._query(
            f"SELECT id FROM {self._table_sql()} WHERE status = {_SENDING} "
            f"AND updated_at <= {p('before')} + {_SLACK!r} "
            f"ORDER BY updated_at, id LIMIT {p('limit')}",
            {"before": started_before, "limit": limit},
        )
        return [_uuid(row[0]) for row in rows]

    def status_counts(self) -> dict[int, int]:
        rows = self._query(
            f"SELECT status, count(*) FROM {self._table_sql()} GROUP BY status", {}
        )
        return {int(r[0]): int(r[1]) for r in rows}

    def error_code_counts(self) -> dict[int, int]:
        rows = self._query(
            f"SELECT last_error_code, count(*) FROM {self._table_sql()} "
            f"WHERE status = {_SEND_FAIL} GROUP BY last_error_code",
            {},
        )
        return {int(r[0]): int(r[1]) for r in rows}


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


class SQLiteMessageViews(SQLiteTrackingRecorder, SQLMessageViews):
    """Rows in the table ``msgstate_views`` of the SQLite file."""

    table = "msgstate_views"

    def __init__(self, datastore: SQLiteDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.create_table_statements.extend(
            [
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                "id TEXT PRIMARY KEY, msg_key BLOB, status INTEGER, attempts INTEGER, "
                "last_error_code INTEGER, failed_at REAL, retry_after REAL, "
                "jitter_u REAL, created_at REAL, online_user_only INTEGER, "
                "updated_at REAL) WITHOUT ROWID",
                f"CREATE INDEX IF NOT EXISTS {self.table}_status "
                f"ON {self.table} (status, failed_at)",
                f"CREATE INDEX IF NOT EXISTS {self.table}_started "
                f"ON {self.table} (status, updated_at)",
            ]
        )

    def apply(self, changes: Sequence[ViewChange], application_name: str) -> int:
        prepared = self.prepare(changes)
        with self.datastore.transaction(commit=True) as c:
            # Write first: a deferred transaction that read before writing fails
            # at once ("database is locked") if another connection committed in
            # between; writing first takes the lock (waiting up to the timeout).
            c.execute(
                "INSERT INTO tracking VALUES (?, 0) ON CONFLICT DO NOTHING",
                [application_name],
            )
            current = self._max_tracking_id(application_name, c) or 0
            todo = [ch for ch in prepared if ch.notification_id > current]
            if not todo:
                return 0
            _upsert(c, self.table, todo, "?", str)
            # Fails (and rolls all back) if another writer moved past us meanwhile.
            self._insert_tracking(
                c, Tracking(application_name, todo[-1].notification_id)
            )
            return len(todo)

    def _param(self, name: str) -> str:
        return f":{name}"

    def _table_sql(self) -> str:
        return self.table

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(row) for row in c.fetchall()]

    def clear(self, application_name: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {self.table}")
            c.execute(
                "DELETE FROM tracking WHERE application_name = ?", [application_name]
            )


def merge(changes: Sequence[ViewChange]) -> dict[UUID, dict[str, Any]]:
    """One row update per message: later changes' columns override earlier ones."""
    rows: dict[UUID, dict[str, Any]] = {}
    for change in changes:
        rows.setdefault(change.aggregate_id, {}).update(change.columns)
    return rows


def _upsert(
    cursor: Any,
    table: str,
    changes: Sequence[ViewChange],
    mark: str,
    render_id: Any,
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE, one row per message, grouped by columns."""
    for names, rows in upsert_groups(changes, render_id).items():
        placeholders = ", ".join([mark] * (len(names) + 1))
        updates = ", ".join(f"{n} = excluded.{n}" for n in names)
        statement = (
            f"INSERT INTO {table} (id, {', '.join(names)}) VALUES ({placeholders}) "
            f"ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        cursor.executemany(statement, rows)


def upsert_groups(
    changes: Sequence[ViewChange], render_id: Any
) -> dict[tuple[str, ...], list[list[Any]]]:
    """One row per message (``[id, *values]``), grouped by the columns it sets."""
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for aggregate_id, columns in merge(changes).items():
        names = tuple(sorted(columns))
        groups.setdefault(names, []).append(
            [render_id(aggregate_id), *(columns[n] for n in names)]
        )
    return groups


class MessageViewsProjection(Projection[MessageViews]):
    """Keeps :class:`MessageViews` from the notification log (one event at a time).

    Used by eventsourcing's ``ProjectionRunner`` in a separate process; the service
    catches up in batches through :meth:`MessageViews.apply` instead.
    """

    name = APPLICATION_NAME

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        change = change_for(domain_event, tracking.notification_id)
        if change is None:
            try:
                self.view.insert_tracking(tracking)
            except IntegrityError:
                # A retry (after a lost reply) of an insert that had committed,
                # or another runner ahead of this one: tracked either way.
                if not self.view.has_tracking_id(
                    tracking.application_name, tracking.notification_id
                ):
                    raise
        else:
            self.view.apply([change], tracking.application_name)


def views_class_for(persistence_module: str) -> type[MessageViews]:
    if persistence_module == "eventsourcing.popo":
        return POPOMessageViews
    if persistence_module == "eventsourcing.sqlite":
        return SQLiteMessageViews
    if persistence_module == "eventsourcing.postgres":
        from msgstate._pg_views import PostgresMessageViews

        return PostgresMessageViews
    msg = f"no read model for {persistence_module}"
    raise ValueError(msg)


def apply_or_skip(views: MessageViews, changes: Sequence[ViewChange]) -> int:
    """Apply a batch; if another process got there first, apply nothing."""
    try:
        return views.apply(changes, APPLICATION_NAME)
    except IntegrityError:
        return 0
