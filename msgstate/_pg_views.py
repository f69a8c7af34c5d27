"""The message read model in PostgreSQL (imported only when PostgreSQL is used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier

from msgstate.projections import (
    _SEND_FAIL,
    _SLACK,
    MessageViews,
    PolicyQuery,
    ViewChange,
    _upsert,
)


class PostgresMessageViews(PostgresTrackingRecorder, MessageViews):
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
            ]
        )

    def _table(self) -> str:
        return self.qualified.as_string()

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
            _upsert(curs, self._table(), todo, "%s", lambda aid: aid)
            self._insert_tracking(
                curs, Tracking(application_name, todo[-1].notification_id)
            )
            return len(todo)

    def _query(self, sql: str, params: dict[str, Any]) -> list[Any]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(sql.encode(), params)
            return list(curs.fetchall())

    def due(self, query: PolicyQuery, now: float, limit: int) -> list[UUID]:
        next_retry = query.sql_next_retry("GREATEST")
        rows = self._query(
            f"SELECT id FROM {self._table()} WHERE status = {_SEND_FAIL} "
            f"AND attempts < %(max_attempts)s AND {query.sql_retryable()} "
            f"AND NOT {query.sql_expired('%(now)s')} "
            f"AND {next_retry} <= %(now)s + {_SLACK!r} "
            f"ORDER BY {next_retry}, id LIMIT %(limit)s",
            {"now": now, "max_attempts": query.max_attempts, "limit": limit},
        )
        return [row["id"] for row in rows]

    def dead(
        self,
        query: PolicyQuery,
        now: float,
        after: bytes | None = None,
        limit: int | None = None,
    ) -> list[tuple[UUID, bytes]]:
        page = ""
        if after is not None:
            page += " AND msg_key > %(after)s"
        if limit is not None:
            page += " ORDER BY msg_key LIMIT %(limit)s"
        rows = self._query(
            f"SELECT id, msg_key FROM {self._table()} WHERE status = {_SEND_FAIL} AND "
            f"(attempts >= %(max_attempts)s OR NOT ({query.sql_retryable()}) "
            f"OR {query.sql_expired('%(now)s')}){page}",
            {
                "now": now,
                "max_attempts": query.max_attempts,
                "after": after,
                "limit": limit,
            },
        )
        return [(row["id"], bytes(row["msg_key"])) for row in rows]

    def status_counts(self) -> dict[int, int]:
        rows = self._query(
            f"SELECT status, count(*) AS n FROM {self._table()} GROUP BY status", {}
        )
        return {int(r["status"]): int(r["n"]) for r in rows}

    def error_code_counts(self) -> dict[int, int]:
        rows = self._query(
            f"SELECT last_error_code, count(*) AS n FROM {self._table()} "
            f"WHERE status = {_SEND_FAIL} GROUP BY last_error_code",
            {},
        )
        return {int(r["last_error_code"]): int(r["n"]) for r in rows}

    def clear(self, application_name: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("DELETE FROM {0}").format(self.qualified))
            curs.execute(
                SQL("DELETE FROM {0} WHERE application_name = %s").format(
                    self.qualified_tracking
                ),
                (application_name,),
            )
