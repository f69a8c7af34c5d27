"""Read-model queries: due resends, stuck sends, dead letters, counts, and lag.

The bodies of ``MessageService``'s read-model queries and of its projection
upkeep (catch up, rebuild, wait). The read models themselves (tables, SQL, how
an event changes a row) are :mod:`msgstate.projections`; this module asks them
for ids, then loads those messages and lets the policy confirm each answer, so
an answer never rests on a row alone. With ``catch_up`` (``projections=
"catch_up"``) each query first applies the notifications not yet applied.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

from msgstate import _validate as check
from msgstate.errors import ErrorCode, ProjectionTimeout
from msgstate.policy import ResendPolicy
from msgstate.projections import (
    APPLICATION_NAME,
    DeadLetter,
    MessageViews,
    PolicyQuery,
    apply_or_skip,
    changes_for,
)
from msgstate.repository import MessageRepository
from msgstate.status import MessageStatus
from msgstate.storage import read_notifications
from msgstate.views import MessageView

if TYPE_CHECKING:
    from msgstate.application import MessageService

__all__ = ["CATCH_UP_BATCH", "REBUILD_BATCH", "ReadModels"]

CATCH_UP_BATCH = 1_000
"""Notifications read (and applied in one transaction) per catch-up step."""

REBUILD_BATCH = 10_000
"""The same for a rebuild, where fewer, larger transactions pay off."""


class ReadModels:
    """The read-model queries of one service (made by it; see its methods)."""

    def __init__(
        self,
        service: MessageService,
        views: MessageViews,
        messages: MessageRepository,
        *,
        policy: ResendPolicy,
        catch_up: bool,
    ) -> None:
        self._service = service
        self._views = views
        self._messages = messages
        self._policy = policy
        self._policy_query = PolicyQuery.of(policy)
        self._catch_up_on_query = catch_up

    def due_resends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        """See :meth:`MessageService.due_resends`."""
        moment = self._moment(now)
        check.integer("limit", limit, 1, 100_000)
        self._maybe_catch_up()
        with self._messages.storage_errors():
            ids = self._views.due(self._policy_query, moment.timestamp(), limit)
        messages = self._messages.load_streams(ids)
        due = []
        for aggregate_id in ids:
            if aggregate_id not in messages:
                continue  # the read model is never ahead of the store; be safe
            view = self._messages.view(messages[aggregate_id])
            decision = self._policy.decide(view, moment)
            if (
                decision.allowed
                and view.next_retry_at is not None
                and view.next_retry_at <= moment
            ):
                due.append(view)
        return due

    def stuck_sends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        """See :meth:`MessageService.stuck_sends`."""
        moment = self._moment(now)
        check.integer("limit", limit, 1, 100_000)
        timeout = self._policy.send_timeout
        self._maybe_catch_up()
        with self._messages.storage_errors():
            ids = self._views.stuck((moment - timeout).timestamp(), limit)
        messages = self._messages.load_streams(ids)
        stuck = []
        for aggregate_id in ids:
            if aggregate_id not in messages:
                continue  # the read model is never ahead of the store; be safe
            view = self._messages.view(messages[aggregate_id])
            if (
                view.status is MessageStatus.SENDING
                and moment - view.updated_at >= timeout
            ):
                stuck.append(view)
        return stuck

    def dead_letters(
        self,
        now: datetime | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[DeadLetter]:
        """See :meth:`MessageService.dead_letters`."""
        moment = self._moment(now)
        check.integer("limit", limit, 1, 100_000)
        after = None if after is None else check.text("after", after, max_chars=128)
        self._maybe_catch_up()
        letters: list[DeadLetter] = []
        cursor = after
        # Rows found stale (delivered or resent since the read model saw them)
        # are skipped; read on so that a short page always means the end.
        while len(letters) < limit:
            with self._messages.storage_errors():
                page = self._views.dead_page(
                    self._policy_query, moment.timestamp(), limit, cursor
                )
            messages = self._messages.load_streams(
                [aggregate_id for aggregate_id, _ in page]
            )
            for aggregate_id, msg_id in page:
                if aggregate_id not in messages:
                    continue  # the read model is never ahead of the store; be safe
                view = self._messages.view(messages[aggregate_id])
                if view.status is not MessageStatus.SEND_FAIL:
                    continue  # the row was stale: delivered or resent since
                decision = self._policy.decide(view, moment)
                if not decision.allowed and decision.code is not ErrorCode.TOO_EARLY:
                    letters.append(
                        DeadLetter(msg_id, decision.code, decision.desc, view)
                    )
                    if len(letters) == limit:
                        break
            if len(page) < limit:
                break
            cursor = page[-1][1]
        return letters

    def status_counts(self) -> dict[MessageStatus, int]:
        """See :meth:`MessageService.status_counts`."""
        self._maybe_catch_up()
        with self._messages.storage_errors():
            counts = self._views.status_counts()
        return {status: counts.get(int(status), 0) for status in MessageStatus}

    def counts_by_error_code(self) -> dict[int, int]:
        """See :meth:`MessageService.counts_by_error_code`."""
        self._maybe_catch_up()
        with self._messages.storage_errors():
            return dict(sorted(self._views.error_code_counts().items()))

    # -- upkeep --

    def lag(self) -> int:
        """See :meth:`MessageService.projection_lag`."""
        with self._messages.storage_errors():
            recorded = self._service.recorder.max_notification_id() or 0
            applied = self._views.max_tracking_id(APPLICATION_NAME) or 0
        return max(0, recorded - applied)

    def catch_up(self, *, batch: int = CATCH_UP_BATCH) -> int:
        """See :meth:`MessageService.catch_up_projections`."""
        check.integer("batch", batch, 1, 1_000_000)
        service = self._service
        applied = 0
        with self._messages.storage_errors():
            while True:
                start = (self._views.max_tracking_id(APPLICATION_NAME) or 0) + 1
                notifications = read_notifications(service.recorder, start, batch)
                if not notifications:
                    return applied
                changes = changes_for(
                    notifications, service.mapper, self._views.encode_key
                )
                applied += apply_or_skip(self._views, changes)
                if len(notifications) < batch:
                    return applied

    def rebuild(self) -> int:
        """See :meth:`MessageService.rebuild_projections`: inside the database
        where it can (:meth:`MessageViews.rebuild
        <msgstate.projections.MessageViews.rebuild>`), else clear, then catch up."""
        service = self._service
        with self._messages.storage_errors():
            applied = self._views.rebuild(
                service.recorder, service.mapper, APPLICATION_NAME
            )
            if applied is not None:
                return applied
            self._views.clear(APPLICATION_NAME)
        return self.catch_up(batch=REBUILD_BATCH)

    def wait(self, timeout: float = 10.0) -> None:
        """See :meth:`MessageService.wait_for_projections`."""
        timeout = check.seconds("timeout", timeout, 7 * 24 * 3600)
        deadline = time.monotonic() + timeout
        with self._messages.storage_errors():
            target = self._service.recorder.max_notification_id() or 0
            while (self._views.max_tracking_id(APPLICATION_NAME) or 0) < target:
                if time.monotonic() >= deadline:
                    raise ProjectionTimeout(
                        f"read models did not reach notification {target} "
                        f"within {timeout} s; is the projection process running?"
                    )
                time.sleep(0.01)

    def _moment(self, now: datetime | None) -> datetime:
        return self._service.now() if now is None else check.aware_datetime("now", now)

    def _maybe_catch_up(self) -> None:
        if self._catch_up_on_query:
            self.catch_up()
