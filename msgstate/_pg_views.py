"""The message read model in PostgreSQL (imported only when PostgreSQL is used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresTrackingRecorder,
)
from eventsourcing.utils import TopicError, resolve_topic
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier, Literal

from msgstate._pg_store import call, unwrapped
from msgstate.policy import jitter_unit
from msgstate.projections import (
    _CREATED,
    _DELIVERED,
    _EVENT_KINDS,
    _FAILED,
    _FORGOTTEN,
    _KINDS,
    _RESENT,
    _SEND_FAIL,
    _SENDING,
    _SUCC,
    SQLMessageViews,
    ViewChange,
    plain_kinds,
    upsert_groups,
)

COPY_ROWS = 200
"""Rows of one column set from which an upsert goes through COPY (fewer: INSERT)."""

FAILED_PAGE = 10_000
"""Failed rows read per page by a rebuild, to set their jitter units in Python."""


class PostgresMessageViews(PostgresTrackingRecorder, SQLMessageViews):
    """Rows in ``<schema>.msgstate_views``, tracking in ``<schema>.msgstate_tracking``.

    Both names are built with ``psycopg.sql.Identifier`` from a validated schema.
    """

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.views_table = self.tracking_table_name.replace("_tracking", "_views")
        self.check_identifier_length(self.views_table)
        # Both names are identifiers we validated (schema) or chose (tables).
        self.qualified = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.views_table)
        )
        self.qualified_tracking = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
        )
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} ("
                    "id uuid PRIMARY KEY, msg_key bytea, status smallint, "
                    "attempts integer, last_error_code integer, failed_at double "
                    "precision, retry_after double precision, jitter_u double "
                    "precision, created_at double precision, online_user_only "
                    "smallint, updated_at double precision)"
                ).format(self.qualified),
                SQL("CREATE INDEX IF NOT EXISTS {0} ON {1} (status, failed_at)").format(
                    Identifier(self.views_table + "_status"), self.qualified
                ),
                SQL(
                    "CREATE INDEX IF NOT EXISTS {0} ON {1} (status, updated_at)"
                ).format(Identifier(self.views_table + "_started"), self.qualified),
            ]
        )

    # eventsourcing's tracking methods, with msgstate's retries (see _pg_store).

    def insert_tracking(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresTrackingRecorder.insert_tracking), self, *args, **kwargs
        )

    def max_tracking_id(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresTrackingRecorder.max_tracking_id), self, *args, **kwargs
        )

    def has_tracking_id(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresTrackingRecorder.has_tracking_id), self, *args, **kwargs
        )

    def apply(self, changes: Sequence[ViewChange], application_name: str) -> int:
        prepared = self.prepare(changes)
        with self.datastore.transaction(commit=True) as curs:
            # Lock our tracking row first, so concurrent catch-ups serialise and
            # each notification is applied exactly once.
            curs.execute(
                SQL(
                    "SELECT notification_id FROM {0} WHERE application_name = %s "
                    "FOR UPDATE"
                ).format(self.qualified_tracking),
                (application_name,),
            )
            row = curs.fetchone()
            current = row["notification_id"] if row else 0
            todo = [ch for ch in prepared if ch.notification_id > current]
            if not todo:
                return 0
            self._upsert(curs, todo)
            self._insert_tracking(
                curs, Tracking(application_name, todo[-1].notification_id)
            )
            return len(todo)

    def _upsert(self, curs: Any, changes: Sequence[ViewChange]) -> None:
        """Upsert one row per message: small groups with INSERT ... ON CONFLICT
        (executemany), large ones copied into a temporary table first (COPY),
        then upserted from it with one statement."""
        for names, rows in upsert_groups(changes, lambda aid: aid).items():
            columns = SQL(", ").join(Identifier(n) for n in ("id", *names))
            updates = SQL(", ").join(
                SQL("{0} = excluded.{0}").format(Identifier(n)) for n in names
            )
            if len(rows) < COPY_ROWS:
                marks = SQL(", ").join([SQL("%s")] * (len(names) + 1))
                curs.executemany(
                    SQL(
                        "INSERT INTO {0} ({1}) VALUES ({2}) "
                        "ON CONFLICT (id) DO UPDATE SET {3}"
                    ).format(self.qualified, columns, marks, updates),
                    rows,
                )
                continue
            curs.execute(
                SQL(
                    "CREATE TEMPORARY TABLE msgstate_views_load "
                    "(LIKE {0}) ON COMMIT DROP"
                ).format(self.qualified)
            )
            with curs.copy(
                SQL("COPY msgstate_views_load ({0}) FROM STDIN").format(columns)
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            curs.execute(
                SQL(
                    "INSERT INTO {0} ({1}) SELECT {1} FROM msgstate_views_load "
                    "ON CONFLICT (id) DO UPDATE SET {2}"
                ).format(self.qualified, columns, updates)
            )
            curs.execute("DROP TABLE msgstate_views_load")

    def rebuild(self, recorder: Any, mapper: Any, application_name: str) -> int | None:
        """Rebuild every row in one transaction, computed by PostgreSQL from the
        stored states (:func:`rows_query`), and track the last notification
        ``M``: how many message events up to ``M`` were applied.

        The tracking row is locked first, as :meth:`apply` locks it, so
        catch-ups wait for the rebuild, then go on from ``M``. Readers see the
        old rows until it commits. ``None``, with nothing changed, when the rows
        could differ from the catch-up's: an encrypted or compressed store, an
        event class with upcasters, another topic the catch-up would decode as
        a message event (or fail on), or a state the SQL can't read exactly
        (another JSON type, or a time that isn't an aware ISO one).
        """
        kinds = plain_kinds()
        if (
            mapper.cipher is not None
            or mapper.compressor is not None
            or self.cipher is not None
            or len(kinds) != len(_KINDS)
            or not self.datastore.single_row_tracking
            or not isinstance(recorder, PostgresApplicationRecorder)
            or recorder.datastore is not self.datastore
        ):
            return None
        events = SQL("{0}.{1}").format(
            Identifier(recorder.datastore.schema),
            Identifier(recorder.events_table_name),
        )
        try:
            with self.datastore.transaction(commit=True) as curs:
                return self._rebuild(curs, events, kinds, application_name)
        except _Unreadable:
            return None

    def _rebuild(
        self, curs: Any, events: Composed, kinds: dict[str, int], application_name: str
    ) -> int:
        """Lock the tracking row (made if missing), as :meth:`apply` does; read
        ``M``; count the message events up to it (and check the other topics);
        compute every row into a temporary table (``CREATE TABLE AS`` may scan
        in parallel, ``INSERT ... SELECT`` may not); copy the failed rows'
        jitter units beside it; then replace the rows (DELETE, one INSERT in id
        order) and set tracking to ``M``."""
        curs.execute(
            SQL(
                "INSERT INTO {0} (application_name, notification_id) VALUES (%s, 0) "
                "ON CONFLICT (application_name) DO NOTHING"
            ).format(self.qualified_tracking),
            (application_name,),
        )
        curs.execute(
            SQL(
                "SELECT notification_id FROM {0} WHERE application_name = %s FOR UPDATE"
            ).format(self.qualified_tracking),
            (application_name,),
        )
        curs.execute(
            SQL(
                "SELECT (SELECT max(notification_id) FROM {0}) AS last, "
                "current_setting('server_encoding') AS encoding"
            ).format(events)
        )
        row = curs.fetchone()
        last = row["last"]
        if row["encoding"] != "UTF8" or (last or 0) > _EXACT_IDS:
            raise _Unreadable  # text in other encodings; ids float8 can't hold
        if last is None:  # no events: as clear() leaves the views
            self._clear(curs, application_name)
            return 0
        applied = self._count(curs, events, last, kinds)
        try:
            curs.execute(
                SQL(
                    "CREATE TEMPORARY TABLE msgstate_views_rebuild ({0}) "
                    "ON COMMIT DROP AS {1}"
                ).format(_COLUMNS, rows_query(events, kinds, Literal(last)))
            )
        except psycopg.DataError as error:
            raise _Unreadable from error
        self._copy_jitter(curs)
        curs.execute(SQL("DELETE FROM {0}").format(self.qualified))
        curs.execute(
            SQL(
                "INSERT INTO {0} ({1}) SELECT {2} FROM msgstate_views_rebuild AS r "
                "LEFT JOIN msgstate_views_jitter AS j ON j.id = r.id ORDER BY r.id"
            ).format(
                self.qualified,
                _COLUMNS,
                SQL(", ").join(
                    SQL("j.jitter_u")
                    if name == "jitter_u"
                    else SQL("r.{0}").format(Identifier(name))
                    for name in _COLUMN_NAMES
                ),
            )
        )
        curs.execute("DROP TABLE msgstate_views_jitter, msgstate_views_rebuild")
        curs.execute(
            SQL(
                "UPDATE {0} SET notification_id = %s WHERE application_name = %s"
            ).format(self.qualified_tracking),
            (last, application_name),
        )
        return applied

    def _count(
        self, curs: Any, events: Composed, last: int, kinds: dict[str, int]
    ) -> int:
        """The message events up to ``last``; raises :class:`_Unreadable` if
        another topic is a message event's (or is unknown), as the catch-up
        would decode it with the mapper."""
        curs.execute(
            SQL(
                "SELECT topic, count(*) AS n FROM {0} WHERE notification_id <= %s "
                "GROUP BY topic"
            ).format(events),
            (last,),
        )
        applied = 0
        for row in curs.fetchall():
            if row["topic"] in kinds:
                applied += row["n"]
            elif _may_be_message_event(row["topic"]):
                raise _Unreadable
        return applied

    def _copy_jitter(self, curs: Any) -> None:
        """The jitter units of the rebuilt rows with a failure (their
        ``jitter_u`` holds the failed attempt) into ``msgstate_views_jitter``:
        blake2b, which PostgreSQL lacks, in Python, a page of rows at a time."""
        curs.execute(
            "CREATE TEMPORARY TABLE msgstate_views_jitter "
            "(id uuid, jitter_u double precision) ON COMMIT DROP"
        )
        with curs.connection.cursor(
            "msgstate_views_failed", row_factory=tuple_row
        ) as failed:
            failed.execute(
                "SELECT id, jitter_u FROM msgstate_views_rebuild "
                "WHERE jitter_u IS NOT NULL"
            )
            while page := failed.fetchmany(FAILED_PAGE):
                with curs.copy(
                    "COPY msgstate_views_jitter (id, jitter_u) FROM STDIN "
                    "(FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["uuid", "float8"])
                    for aggregate_id, attempt in page:
                        copy.write_row(
                            (aggregate_id, jitter_unit(aggregate_id, int(attempt)))
                        )

    greatest = "GREATEST"

    def _param(self, name: str) -> str:
        return f"%({name})s"

    def _table_sql(self) -> str:
        return self.qualified.as_string()

    def _query(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql.encode(), params)
            return [tuple(row.values()) for row in curs.fetchall()]

    def clear(self, application_name: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._clear(curs, application_name)

    def _clear(self, curs: Any, application_name: str) -> None:
        curs.execute(SQL("DELETE FROM {0}").format(self.qualified))
        curs.execute(
            SQL("DELETE FROM {0} WHERE application_name = %s").format(
                self.qualified_tracking
            ),
            (application_name,),
        )


class _Unreadable(Exception):
    """The SQL rebuild can't give the catch-up's rows here (rolls it back)."""


_EXACT_IDS = 2**53
"""Notification ids up to this are exact as float8 (the rebuild's arrays)."""

_ISO_SHAPES = tuple(
    f"____-__-__T__:__:__{fraction}{sign}__:__"
    for fraction in ("", ".______")
    for sign in "+-"
)
"""``datetime.isoformat()`` of an aware datetime whose offset is whole minutes,
as LIKE patterns: the times PostgreSQL reads as ``datetime.fromisoformat(text).
timestamp()`` does (not naive ones, which Python reads in its local time zone)."""


def _may_be_message_event(topic: str) -> bool:
    """Whether the catch-up could make a row change from an event of ``topic``."""
    try:
        cls = resolve_topic(topic)
    except TopicError:
        return True  # the catch-up would fail on it: let it
    if not isinstance(cls, type):
        return True
    return issubclass(cls, tuple(event_class for event_class, _ in _EVENT_KINDS))


_COLUMN_NAMES = (
    "id",
    "msg_key",
    "status",
    "attempts",
    "last_error_code",
    "failed_at",
    "retry_after",
    "jitter_u",
    "created_at",
    "online_user_only",
    "updated_at",
)
_COLUMNS = SQL(", ").join(Identifier(name) for name in _COLUMN_NAMES)


def rows_query(events: Composable, kinds: dict[str, int], last: Composable) -> Composed:
    """Every message's row (columns as :data:`_COLUMN_NAMES`), folded from its
    events up to notification ``last``.

    One scan parses each state once (``jsonb``) into a small array per event,
    ``[notification id, at, fields...]``; grouped by message, ``max`` of each
    kind's arrays is its last event, and the columns come from the last events
    that set them, as :func:`msgstate.projections._change` sets them in turn.
    ``jitter_u`` holds the failed attempt (PostgreSQL has no blake2b), for
    :meth:`PostgresMessageViews._copy_jitter`.
    A state of another shape raises a data error (nothing is guessed).
    """

    def kind_of(kind: int) -> Composable:
        topics = [Literal(t) for t, k in sorted(kinds.items()) if k == kind]
        return SQL("topic IN ({0})").format(SQL(", ").join(topics))

    def bad(what: str) -> Composable:
        # Not a constant, so only evaluated (and failing) when reached.
        return SQL("({0} || nid::text)").format(
            Literal(f"msgstate: unexpected {what} in notification ")
        )

    def typed(field: str, json_type: str, sql_type: str) -> Composable:
        return SQL(
            "(CASE jsonb_typeof(j->{0}) WHEN {1} THEN j->>{0} ELSE {2} END)::{3}"
        ).format(Literal(field), Literal(json_type), bad(field), SQL(sql_type))

    number = {
        name: SQL("{0}::float8").format(typed(name, "number", "integer"))
        for name in ("code", "attempt")
    }
    online = SQL("{0}::integer::float8").format(
        typed("online_user_only", "boolean", "boolean")
    )
    # jsonb numbers drop the sign of -0.0 (a valid retry_after): a zero is read
    # again from the text, as Python reads it (zero_text, below).
    retry_after = SQL(
        "(CASE jsonb_typeof(j->'retry_after') WHEN 'number' "
        "THEN coalesce(zero_text, j->>'retry_after') "
        "WHEN 'null' THEN NULL ELSE {0} END)::float8"
    ).format(bad("retry_after"))
    at = SQL(
        "extract(epoch FROM (CASE WHEN j->'at'->>'_type_' = 'datetime_iso' "
        "AND ({0}) THEN j->'at'->>'_data_' ELSE {1} END)::timestamptz)::float8"
    ).format(
        SQL(" OR ").join(
            SQL("j->'at'->>'_data_' LIKE {0}").format(Literal(shape))
            for shape in _ISO_SHAPES
        ),
        bad("at"),
    )
    msg_id = SQL(
        "CASE jsonb_typeof(j->'msg_id') WHEN 'string' THEN j->>'msg_id' "
        "ELSE {0}::integer::text END"
    ).format(bad("msg_id"))
    n = SQL("nid::float8")
    arrays = {
        _CREATED: [n, at, online],
        _FAILED: [n, at, number["code"], retry_after, number["attempt"]],
        _RESENT: [n, at, number["attempt"], online],
        _DELIVERED: [n, at],
        _FORGOTTEN: [n, number["attempt"]],
    }
    per_kind = SQL(" ").join(
        SQL("WHEN {0} THEN ARRAY[{1}]").format(Literal(kind), SQL(", ").join(values))
        for kind, values in arrays.items()
    )
    kind_case = SQL(" ").join(
        SQL("WHEN {0} THEN {1}").format(kind_of(kind), Literal(kind)) for kind in arrays
    )
    return SQL(
        """SELECT id, convert_to(substr(cm, 21), 'UTF8'),
    (CASE greatest(c[1], f[1], r[1], d[1]) WHEN f[1] THEN {failed_status}
        WHEN d[1] THEN {delivered_status} WHEN c[1] THEN {sending_status}
        WHEN r[1] THEN {sending_status} END)::smallint,
    (CASE greatest(c[1], r[1], g[1]) WHEN r[1] THEN r[3] WHEN g[1] THEN g[2]
        WHEN c[1] THEN 1 END)::integer,
    (CASE greatest(c[1], f[1]) WHEN f[1] THEN f[3] END)::integer,
    CASE greatest(c[1], f[1]) WHEN f[1] THEN f[2] END,
    CASE greatest(c[1], f[1]) WHEN f[1] THEN f[4] END,
    CASE greatest(c[1], f[1]) WHEN f[1] THEN f[5] END,
    c[2],
    (CASE greatest(c[1], r[1]) WHEN r[1] THEN r[4] WHEN c[1] THEN c[3] END)::smallint,
    CASE greatest(c[1], f[1], r[1], d[1]) WHEN f[1] THEN f[2] WHEN d[1] THEN d[2]
        WHEN c[1] THEN c[2] WHEN r[1] THEN r[2] END
FROM (
    SELECT originator_id AS id, max(cm COLLATE "C") AS cm,
        max(v) FILTER (WHERE k = {created}) AS c,
        max(v) FILTER (WHERE k = {failed}) AS f,
        max(v) FILTER (WHERE k = {resent}) AS r,
        max(v) FILTER (WHERE k = {delivered}) AS d,
        max(v) FILTER (WHERE k = {forgotten}) AS g
    FROM (
        SELECT originator_id, k, CASE k {per_kind} END AS v,
            CASE k WHEN {created} THEN lpad(nid::text, 20, '0') || {msg_id} END AS cm
        FROM (
            SELECT originator_id, notification_id AS nid,
                CASE {kind_case} END AS k, parsed.j,
                CASE WHEN parsed.j->'retry_after' = '0'
                    THEN convert_from(state, 'UTF8')::json->>'retry_after'
                END AS zero_text
            FROM {events}
            CROSS JOIN LATERAL unnest(ARRAY[convert_from(state, 'UTF8')::jsonb])
                AS parsed (j)
            WHERE notification_id <= {last} AND topic IN ({topics})
        ) AS stored
        OFFSET 0
    ) AS event
    GROUP BY originator_id
) AS last"""
    ).format(
        last=last,
        events=events,
        topics=SQL(", ").join(Literal(t) for t in sorted(kinds)),
        kind_case=kind_case,
        per_kind=per_kind,
        msg_id=msg_id,
        created=Literal(_CREATED),
        failed=Literal(_FAILED),
        resent=Literal(_RESENT),
        delivered=Literal(_DELIVERED),
        forgotten=Literal(_FORGOTTEN),
        failed_status=Literal(_SEND_FAIL),
        delivered_status=Literal(_SUCC),
        sending_status=Literal(_SENDING),
    )
