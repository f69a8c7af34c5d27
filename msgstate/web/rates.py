"""Failures and resends over time, read from the event log for the overview charts.

:class:`EventRates` keeps per-minute counts of ``SendFailed`` and
``ResendRequested`` events for the last day of domain time (the service clock).
The first call finds where the last day starts in the notification log by a
binary search on event times (the log is in recording order, so times are
ascending up to clock skew between writers), then every call reads only the
notifications recorded since the previous one.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from attrs import frozen

from msgstate.metrics import event_type_of

if TYPE_CHECKING:
    from msgstate.application import MessageService

__all__ = ["COUNTED", "EventRates", "Series"]

COUNTED = ("SendFailed", "ResendRequested")
"""The event types the charts count."""

_DAY = 24 * 60  # minutes
_PAGE = 1_000


@frozen
class Series:
    """Counts per bucket: ``labels[i]`` is bucket i's start (UTC, ``HH:MM``)."""

    labels: list[str]
    counts: dict[str, list[int]]
    """Event type -> count per bucket."""
    bucket_seconds: int


class EventRates:
    """Per-minute counts of failures and resends over the last day. Thread-safe."""

    def __init__(self, service: MessageService) -> None:
        self._service = service
        self._minutes: dict[int, Counter[str]] = {}
        self._last_id: int | None = None
        self._lock = threading.Lock()

    def _event_at(self, notification: Any) -> datetime:
        event = self._service.mapper.to_domain_event(notification)
        moment: datetime = event.at  # type: ignore[attr-defined]
        return moment

    def _first_id_since(self, moment: datetime) -> int:
        """The first notification id whose event is at or after ``moment``."""
        recorder: Any = self._service.recorder
        low, high = 1, (recorder.max_notification_id() or 0) + 1
        while low < high:
            middle = (low + high) // 2
            page = recorder.select_notifications(start=middle, limit=1)
            if not page:
                high = middle
            elif self._event_at(page[0]) < moment:
                low = page[0].id + 1
            else:
                high = middle
        return low

    def _read(self, since: datetime) -> None:
        recorder: Any = self._service.recorder
        if self._last_id is None:
            self._last_id = self._first_id_since(since) - 1
        while True:
            page = recorder.select_notifications(start=self._last_id + 1, limit=_PAGE)
            for notification in page:
                kind = event_type_of(notification.topic)
                if kind in COUNTED:
                    minute = int(self._event_at(notification).timestamp() // 60)
                    self._minutes.setdefault(minute, Counter())[kind] += 1
            if page:
                self._last_id = page[-1].id
            if len(page) < _PAGE:
                return

    def series(self, span: timedelta) -> Series:
        """Counts for the ``span`` (at most a day) before the service's now, in 60
        buckets for an hour or less, else in hourly buckets."""
        now = self._service.now()
        since = now - timedelta(days=1)
        with self._lock:
            self._read(since)
            oldest = int(since.timestamp() // 60)
            for minute in [m for m in self._minutes if m < oldest]:
                del self._minutes[minute]
            minutes = dict(self._minutes)
        bucket = 60 if span <= timedelta(hours=1) else 3600
        count = max(1, int(span.total_seconds() // bucket))
        end = int(now.timestamp() // bucket) + 1  # the bucket holding now, included
        first = end - count
        counts = {kind: [0] * count for kind in COUNTED}
        for minute, tally in minutes.items():
            index = minute * 60 // bucket - first
            if 0 <= index < count:
                for kind in COUNTED:
                    counts[kind][index] += tally[kind]
        labels = [
            datetime.fromtimestamp((first + i) * bucket, UTC).strftime("%H:%M")
            for i in range(count)
        ]
        return Series(labels, counts, bucket)
