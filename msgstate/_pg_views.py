"""The message read model in PostgreSQL (imported only when PostgreSQL is used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg.sql import SQL, Identifier

from msgstate._pg_store import call, unwrapped
from msgstate.projections import SQLMessageViews, ViewChange, upsert_groups

COPY_ROWS = 200
"""Rows of one column set from which an upsert goes through COPY (fewer: INSERT)."""


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
            curs.execute(SQL("DELETE FROM {0}").format(self.qualified))
            curs.execute(
                SQL("DELETE FROM {0} WHERE application_name = %s").format(
                    self.qualified_tracking
                ),
                (application_name,),
            )
