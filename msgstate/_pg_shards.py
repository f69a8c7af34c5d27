"""The PostgreSQL side of a shard map: ownership, the fence, and moving a shard.

Each database of a :class:`~msgstate.ShardMap` keeps, beside its events:

* ``msgstate_shards (shard, state, peer, copied)``: one row per virtual shard it
  owns or is taking over. ``state`` is ``owned``; ``frozen`` (owned, but a move is
  copying the last events out: writes wait); ``incoming`` (a move is copying it in
  from ``peer``); ``moved`` (it left for ``peer``). ``copied`` is an incoming
  shard's copy watermark (the source's last copied notification id);
* ``msgstate_shard(uuid)``: the shard function, in SQL, with the map's
  ``virtual_shards`` written into it (see :func:`msgstate.shards.shard_of`);
* ``msgstate_shard_fence``: a ``BEFORE INSERT`` trigger on the events table that
  refuses any event whose stream's shard this database does not own. A process
  holding an out-of-date map therefore cannot write to the wrong database, and
  nothing can be split between two. Refusals are ``RAISE`` (SQLSTATE ``P0001``)
  with the hint ``SHARD_MOVING`` (retry soon) or ``SHARD_MOVED``; msgstate turns
  them into :class:`~msgstate.ShardMoving` and :class:`~msgstate.ShardMoved`.

The mover (:func:`msgstate.shards.move_shard`) writes into an ``incoming`` shard
with the session setting ``msgstate.move`` set to the shard's number, which the
fence lets through.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from msgstate.keys import KEYS_TABLE, read_settings, record_setting
from msgstate.status import MessageStatus

if TYPE_CHECKING:
    from msgstate.application import MessageService

__all__ = [
    "FENCE",
    "SHARDS_TABLE",
    "ShardTables",
]

SHARDS_TABLE = "msgstate_shards"
"""Each database's record of the virtual shards it owns (see the module)."""

FENCE = "msgstate_shard_fence"
"""The trigger (and its function) that refuses events of shards not owned here."""

SHARD_FUNCTION = "msgstate_shard"
"""``msgstate_shard(uuid) -> integer``: the shard function in SQL."""

MOVE_SETTING = "msgstate.move"
"""The session setting with which the mover writes into an incoming shard."""

_SEND_FAIL = int(MessageStatus.SEND_FAIL)

Counts = dict[int, int]

OWNED = "owned"
FROZEN = "frozen"
INCOMING = "incoming"
MOVED = "moved"
STATES = (OWNED, FROZEN, INCOMING, MOVED)

_VERSION = "1"  # of the DDL below; a new version re-runs it once, under the lock


class ShardTables:
    """The names and statements of one database's shard bookkeeping."""

    def __init__(self, service: MessageService) -> None:
        from psycopg.sql import SQL, Identifier

        recorder: Any = service.recorder
        self.service = service
        self.datastore: Any = recorder.datastore
        self.schema_name: str = self.datastore.schema or "public"
        schema = Identifier(self.schema_name)
        self.events_name: str = recorder.events_table_name
        self.events = SQL("{0}.{1}").format(schema, Identifier(self.events_name))
        self.snapshots_name = self.events_name.replace("events", "snapshots")
        self.snapshots = SQL("{0}.{1}").format(schema, Identifier(self.snapshots_name))
        self.shards = SQL("{0}.{1}").format(schema, Identifier(SHARDS_TABLE))
        self.function = SQL("{0}.{1}").format(schema, Identifier(SHARD_FUNCTION))
        self.fence = SQL("{0}.{1}").format(schema, Identifier(FENCE))
        self.keys_name = KEYS_TABLE
        self.keys = SQL("{0}.{1}").format(schema, Identifier(KEYS_TABLE))
        self.archived_name = "msgstate_archived"
        self.archived = SQL("{0}.{1}").format(schema, Identifier(self.archived_name))
        views: Any = getattr(service, "_views")  # noqa: B009 - same package
        self.views_name: str = views.views_table
        self.views = views.qualified
        self.channel = Identifier(recorder.channel_name)
        self.id_type: str = self.datastore.originator_id_type

    # -- set-up and ownership --

    def ensure(self, virtual_shards: int) -> None:
        """Record ``virtual_shards`` and make the table, function and fence."""
        recorded = record_setting(
            self.service.recorder, "virtual_shards", str(virtual_shards)
        )
        if recorded != str(virtual_shards):
            raise _conflict(
                f"it was set up for virtual_shards = {recorded}, "
                f"the map has {virtual_shards} (fixed for the store's life)"
            )
        if read_settings(self.service.recorder).get("shard_ddl") == _VERSION and (
            self._fenced()
        ):
            return
        self._create(virtual_shards)

    def _fenced(self) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT count(*) AS n FROM pg_catalog.pg_trigger t "
                "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE t.tgname = %s AND c.relname = %s AND n.nspname = %s",
                (FENCE, self.events_name, self.schema_name),
            )
            row = curs.fetchone()
            return bool(row and row["n"])

    def _create(self, virtual_shards: int) -> None:
        from psycopg.sql import SQL, Identifier, Literal

        mask = virtual_shards - 1
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema_name),)
            )
            curs.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0} (shard integer PRIMARY KEY, "
                    "state text NOT NULL CHECK (state IN ('owned', 'frozen', "
                    "'incoming', 'moved')), peer text NOT NULL DEFAULT '', "
                    "copied bigint NOT NULL DEFAULT 0)"
                ).format(self.shards)
            )
            curs.execute(
                SQL(
                    "CREATE OR REPLACE FUNCTION {0}(stream {1}) RETURNS integer "
                    "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT "
                    "((('x' || substr(stream::text, 1, 8))::bit(32)::bigint) "
                    "& {2})::integer $$"
                ).format(self.function, SQL(self.id_type), Literal(mask))
            )
            curs.execute(
                SQL(
                    "CREATE OR REPLACE FUNCTION {fence}() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ DECLARE s integer; st text; "
                    "BEGIN s := {function}(NEW.originator_id); "
                    "SELECT state INTO st FROM {shards} WHERE shard = s; "
                    "IF st = 'owned' THEN RETURN NEW; END IF; "
                    "IF st = 'incoming' AND "
                    "current_setting({setting}, true) = s::text THEN RETURN NEW; "
                    "END IF; "
                    "IF st IN ('frozen', 'incoming') THEN RAISE EXCEPTION "
                    "'msgstate: shard % is moving', s USING HINT = 'SHARD_MOVING'; "
                    "END IF; "
                    "RAISE EXCEPTION 'msgstate: shard % is not in this database', s "
                    "USING HINT = 'SHARD_MOVED', DETAIL = coalesce((SELECT peer "
                    "FROM {shards} WHERE shard = s), ''); END $$"
                ).format(
                    fence=self.fence,
                    function=self.function,
                    shards=self.shards,
                    setting=Literal(MOVE_SETTING),
                )
            )
            curs.execute(
                SQL(
                    "CREATE OR REPLACE TRIGGER {0} BEFORE INSERT ON {1} "
                    "FOR EACH ROW EXECUTE FUNCTION {2}()"
                ).format(Identifier(FENCE), self.events, self.fence)
            )
        record_setting(self.service.recorder, "shard_ddl", _VERSION)

    def rows(self) -> dict[int, tuple[str, str, int]]:
        """Shard -> (state, peer, copied), as this database records them."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT shard, state, peer, copied FROM {0}").format(self.shards)
            )
            return {
                int(r["shard"]): (str(r["state"]), str(r["peer"]), int(r["copied"]))
                for r in curs.fetchall()
            }

    def claim(self, shards: Sequence[int]) -> dict[int, tuple[str, str, int]]:
        """Record ``shards`` as owned if this database records none yet.

        A database that already holds events (a single-database store joining a
        map) may claim only shards covering every stream it holds.
        """
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                "SELECT pg_advisory_xact_lock(%s)", (_lock_key(self.schema_name),)
            )
            curs.execute(SQL("SELECT count(*) AS n FROM {0}").format(self.shards))
            row = curs.fetchone()
            if row is None or not row["n"]:
                curs.execute(
                    SQL("SELECT DISTINCT {0}(originator_id) AS s FROM {1}").format(
                        self.function, self.events
                    )
                )
                held = {int(r["s"]) for r in curs.fetchall()}
                stray = sorted(held - set(shards))
                if stray:
                    raise _conflict(
                        f"it holds messages of shards {_ranges(stray)}, which the "
                        "map gives to other databases; give it those shards, or "
                        "start from it alone and move them with `msgstate shards move`"
                    )
                curs.executemany(
                    SQL("INSERT INTO {0} (shard, state) VALUES (%s, 'owned')").format(
                        self.shards
                    ),
                    [(s,) for s in shards],
                )
        return self.rows()

    # -- moving a shard --

    def set_state(self, shard: int, state: str, peer: str = "") -> None:
        """Record ``shard`` in ``state`` (``frozen`` waits for in-flight writes)."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=True) as curs:
            if state == FROZEN:
                # SHARE conflicts with the ROW EXCLUSIVE of every insert: this
                # waits for those in flight, and the fence of any later insert
                # reads the frozen state.
                curs.execute(SQL("LOCK TABLE {0} IN SHARE MODE").format(self.events))
            curs.execute(
                SQL(
                    "INSERT INTO {0} (shard, state, peer) VALUES (%s, %s, %s) "
                    "ON CONFLICT (shard) DO UPDATE SET state = excluded.state, "
                    "peer = excluded.peer"
                ).format(self.shards),
                (shard, state, peer),
            )

    def max_notification_id(self) -> int:
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT coalesce(max(notification_id), 0) AS n FROM {0}").format(
                    self.events
                )
            )
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def events_after(
        self, shard: int, after: int, until: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Stored events of ``shard`` after notification ``after``, in order."""
        from psycopg.sql import SQL

        bound = SQL("") if until is None else SQL(" AND notification_id <= %s")
        params: tuple[Any, ...] = (shard, after)
        if until is not None:
            params += (until,)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id, originator_id, originator_version, "
                    "topic, state FROM {0} WHERE {1}(originator_id) = %s "
                    "AND notification_id > %s{2} ORDER BY notification_id LIMIT {3}"
                ).format(self.events, self.function, bound, SQL(str(int(limit)))),
                params,
            )
            return list(curs.fetchall())

    def insert_copies(
        self, shard: int, rows: Sequence[dict[str, Any]], watermark: int
    ) -> None:
        """Insert copied events (idempotent) and advance the copy watermark."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SELECT set_config(%s, %s, true)", (MOVE_SETTING, str(shard)))
            # As eventsourcing's own inserts: notification ids commit in order.
            curs.execute(SQL("LOCK TABLE {0} IN EXCLUSIVE MODE").format(self.events))
            curs.execute(SQL("NOTIFY {0}").format(self.channel))
            if rows:
                curs.executemany(
                    SQL(
                        "INSERT INTO {0} (originator_id, originator_version, topic, "
                        "state) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
                    ).format(self.events),
                    [
                        (
                            r["originator_id"],
                            r["originator_version"],
                            r["topic"],
                            r["state"],
                        )
                        for r in rows
                    ],
                )
            curs.execute(
                SQL("UPDATE {0} SET copied = %s WHERE shard = %s").format(self.shards),
                (watermark, shard),
            )

    def side_rows(self, shard: int) -> dict[str, list[tuple[Any, ...]]]:
        """The shard's snapshots, data keys and archive records, by table."""
        found: dict[str, list[tuple[Any, ...]]] = {}
        for name, table, column in self._side_tables():
            from psycopg.sql import SQL

            with self.datastore.transaction(commit=False) as curs:
                curs.execute(
                    SQL("SELECT * FROM {0} WHERE {1}({2}) = %s").format(
                        table, self.function, SQL(column)
                    ),
                    (shard,),
                )
                found[name] = [tuple(r.values()) for r in curs.fetchall()]
        return found

    def insert_side_rows(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        from psycopg.sql import SQL

        tables = {name: table for name, table, _ in self._side_tables()}
        with self.datastore.transaction(commit=True) as curs:
            for name, values in rows.items():
                if not values or name not in tables:
                    continue
                marks = SQL(", ").join([SQL("%s")] * len(values[0]))
                curs.executemany(
                    SQL("INSERT INTO {0} VALUES ({1}) ON CONFLICT DO NOTHING").format(
                        tables[name], marks
                    ),
                    values,
                )

    def _side_tables(self) -> Iterator[tuple[str, Any, str]]:
        present = self._present(
            [self.snapshots_name, self.keys_name, self.archived_name]
        )
        if self.snapshots_name in present:
            yield "snapshots", self.snapshots, "originator_id"
        if self.keys_name in present:
            yield "keys", self.keys, "stream_id"
        if self.archived_name in present:
            yield "archived", self.archived, "id"

    def _present(self, names: Sequence[str]) -> set[str]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT tablename FROM pg_catalog.pg_tables "
                "WHERE schemaname = %s AND tablename = ANY(%s)",
                (self.schema_name, list(names)),
            )
            return {str(r["tablename"]) for r in curs.fetchall()}

    def last_versions(self, shard: int, until: int | None = None) -> dict[UUID, int]:
        """Each stream of ``shard`` here and its last version (up to ``until``)."""
        from psycopg.sql import SQL

        bound = SQL("") if until is None else SQL(" AND notification_id <= %s")
        params: tuple[Any, ...] = (shard,) if until is None else (shard, until)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT originator_id, max(originator_version) AS v FROM {0} "
                    "WHERE {1}(originator_id) = %s{2} GROUP BY originator_id"
                ).format(self.events, self.function, bound),
                params,
            )
            return {UUID(str(r["originator_id"])): int(r["v"]) for r in curs.fetchall()}

    def last_versions_all(self) -> set[UUID]:
        """Every stream id in the events table (read only)."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT DISTINCT originator_id FROM {0}").format(self.events)
            )
            return {UUID(str(r["originator_id"])) for r in curs.fetchall()}

    def delete_shard(self, shard: int, *, forget: bool = False) -> None:
        """Delete the shard's events, snapshots, read-model rows and keys here
        (and with ``forget``, this database's record of the shard: one
        transaction)."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=True) as curs:
            if forget:
                curs.execute(
                    SQL("DELETE FROM {0} WHERE shard = %s").format(self.shards),
                    (shard,),
                )
            curs.execute(
                SQL("DELETE FROM {0} WHERE {1}(originator_id) = %s").format(
                    self.events, self.function
                ),
                (shard,),
            )
            curs.execute(
                SQL("DELETE FROM {0} WHERE {1}(id) = %s").format(
                    self.views, self.function
                ),
                (shard,),
            )
            for _, table, column in self._side_tables():
                curs.execute(
                    SQL("DELETE FROM {0} WHERE {1}({2}) = %s").format(
                        table, self.function, SQL(column)
                    ),
                    (shard,),
                )

    def summary(self, shard: int) -> tuple[int, int]:
        """``(events, streams)`` of ``shard`` here."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT count(*) AS e, count(DISTINCT originator_id) AS s "
                    "FROM {0} WHERE {1}(originator_id) = %s"
                ).format(self.events, self.function),
                (shard,),
            )
            row = curs.fetchone()
            return (int(row["e"]), int(row["s"])) if row else (0, 0)

    def versions_of(self, streams: Sequence[UUID]) -> dict[UUID, int]:
        """The last version of each of ``streams`` here (absent: not here)."""
        from psycopg.sql import SQL

        if not streams:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT originator_id, max(originator_version) AS v FROM {0} "
                    "WHERE originator_id = ANY(%s) GROUP BY originator_id"
                ).format(self.events),
                (list(streams),),
            )
            return {UUID(str(r["originator_id"])): int(r["v"]) for r in curs.fetchall()}

    def view_counts(
        self, shards: Sequence[int]
    ) -> tuple[dict[int, int], dict[int, int]]:
        """Read-model counts of ``shards`` only: by status, and failed by code."""
        from psycopg.sql import SQL

        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT status, last_error_code, count(*) AS n FROM {0} "
                    "WHERE {1}(id) = ANY(%s) GROUP BY status, last_error_code"
                ).format(self.views, self.function),
                (list(shards),),
            )
            statuses: dict[int, int] = {}
            codes: dict[int, int] = {}
            for r in curs.fetchall():
                status, n = int(r["status"]), int(r["n"])
                statuses[status] = statuses.get(status, 0) + n
                if status == _SEND_FAIL and r["last_error_code"] is not None:
                    code = int(r["last_error_code"])
                    codes[code] = codes.get(code, 0) + n
            return statuses, codes


def fence_refusal(error: BaseException) -> tuple[str, str, str] | None:
    """``(hint, message, peer)`` if ``error`` is the fence refusing an insert."""
    cause: BaseException | None = error
    seen = 0
    while cause is not None and seen < 10:
        diag = getattr(cause, "diag", None)
        if diag is not None and getattr(cause, "sqlstate", None) == "P0001":
            hint = diag.message_hint or ""
            if hint in ("SHARD_MOVING", "SHARD_MOVED"):
                return hint, diag.message_primary or "", diag.message_detail or ""
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return None


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"msgstate-shards:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _conflict(text: str) -> Exception:
    from msgstate.errors import StorageError

    return StorageError(f"shard map conflict: {text}")


def _ranges(shards: Sequence[int]) -> str:
    from msgstate.shards import format_shards

    return format_shards(shards)
