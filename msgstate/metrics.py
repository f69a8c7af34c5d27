"""Prometheus metrics of a store: :class:`MsgStateCollector` (``pip install
'msgstate[web]'``).

Register the collector in your own registry, or let ``msgstate serve`` publish it
at ``/metrics``::

    from prometheus_client import CollectorRegistry, generate_latest
    from msgstate.metrics import MsgStateCollector

    registry = CollectorRegistry()
    registry.register(MsgStateCollector(service))
    text = generate_latest(registry)

Every value is read at scrape time from the service's public read models
(``status_counts``, ``counts_by_error_code``, ``due_resends``, ``dead_letters``,
``stuck_sends``, ``projection_lag``) and from the event log
(events by type, counted incrementally: each scrape reads only the notifications
recorded since the previous one). Names follow Prometheus' conventions: the
``msgstate_`` prefix, ``_total`` for counters, labels with few values (statuses,
retry classes, event types and ``ErrorCode`` names; never message ids).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as missing:  # pragma: no cover - the web extra is not installed
    raise ImportError(
        f"msgstate.metrics needs prometheus_client ({missing}); "
        "install it with: pip install 'msgstate[web]'"
    ) from None

from msgstate.codes import RetryClass

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from msgstate.application import MessageService

__all__ = [
    "EVENT_TYPES",
    "READ_LIMIT",
    "EventTally",
    "MsgStateCollector",
    "dead_letters_by_reason",
    "event_type_of",
]

READ_LIMIT = 100_000
"""The most due resends (or stuck sends) one scrape counts (the read models' cap)."""

EVENT_TYPES = ("Created", "SendFailed", "ResendRequested", "Delivered")
"""Event types always exported (with 0 until one is recorded); others when seen."""

_PAGE = 1_000


def event_type_of(topic: str) -> str:
    """The event class name in a stored topic (``"msgstate.domain:Message.Delivered"``
    -> ``"Delivered"``)."""
    return topic.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


class EventTally:
    """Events recorded in a store, by type, counted incrementally.

    Each :meth:`counts` reads only the notifications recorded since the previous
    call (their topics; no event is decrypted or decoded). Thread-safe.
    """

    def __init__(self, service: MessageService) -> None:
        self._service = service
        self._counts: Counter[str] = Counter()
        self._last_id = 0
        self._lock = threading.Lock()

    def counts(self) -> dict[str, int]:
        """Every event type seen so far and how many were recorded."""
        with self._lock:
            recorder: Any = self._service.recorder
            while True:
                page = recorder.select_notifications(
                    start=self._last_id + 1, limit=_PAGE
                )
                for notification in page:
                    self._counts[event_type_of(notification.topic)] += 1
                if page:
                    self._last_id = page[-1].id
                if len(page) < _PAGE:
                    return dict(self._counts)


def dead_letters_by_reason(service: MessageService) -> dict[str, int]:
    """Every dead letter now, counted by the policy's refusal (an ErrorCode name)."""
    counts: Counter[str] = Counter()
    moment = service.now()
    after: str | None = None
    while True:
        page = service.dead_letters(now=moment, limit=_PAGE, after=after)
        for letter in page:
            counts[letter.code.name] += 1
        if len(page) < _PAGE:
            return dict(sorted(counts.items()))
        after = page[-1].msg_id


class MsgStateCollector(Collector):
    """A ``prometheus_client`` collector of one :class:`~msgstate.MessageService`.

    Metrics (all gauges unless named ``_total``):

    - ``msgstate_messages{status}``: messages in each ``MessageStatus``;
    - ``msgstate_due_resends``: failed messages the policy would resend now;
    - ``msgstate_dead_letters{reason}``: failed messages the policy will never
      resend, by refusal (``ATTEMPTS_EXHAUSTED``, ``NOT_RETRYABLE``, ``EXPIRED``);
    - ``msgstate_stuck_sends``: sends left in flight past the policy's
      ``send_timeout``;
    - ``msgstate_failed_messages{retry_class}``: messages in SEND_FAIL by the
      retry class of their last error;
    - ``msgstate_events_recorded_total{event}``: events in the store by type;
    - ``msgstate_read_model_lag_notifications``: notifications recorded but not
      yet applied to the read models (measured before this scrape catches up).
    """

    def __init__(self, service: MessageService) -> None:
        self._service = service
        self._tally = EventTally(service)

    def describe(self) -> Iterator[Metric]:
        """Nothing: the metrics are read at collect time, not at registration."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        """Read every metric from the service (one scrape)."""
        service = self._service
        lag = GaugeMetricFamily(
            "msgstate_read_model_lag_notifications",
            "Notifications recorded but not yet applied to the read models.",
        )
        lag.add_metric([], service.projection_lag())

        messages = GaugeMetricFamily(
            "msgstate_messages", "Messages in each status.", labels=["status"]
        )
        for status, count in service.status_counts().items():
            messages.add_metric([status.name], count)

        failed = GaugeMetricFamily(
            "msgstate_failed_messages",
            "Messages in SEND_FAIL by the retry class of their last error.",
            labels=["retry_class"],
        )
        by_class = dict.fromkeys(RetryClass, 0)
        for code, count in service.counts_by_error_code().items():
            by_class[service.policy.classify(code)] += count
        for retry_class, count in by_class.items():
            failed.add_metric([retry_class.name], count)

        moment = service.now()
        due = GaugeMetricFamily(
            "msgstate_due_resends",
            "Failed messages the policy would resend now "
            f"(counted up to {READ_LIMIT}).",
        )
        due.add_metric([], len(service.due_resends(now=moment, limit=READ_LIMIT)))

        dead = GaugeMetricFamily(
            "msgstate_dead_letters",
            "Failed messages the policy will never resend, by refusal.",
            labels=["reason"],
        )
        for reason, count in dead_letters_by_reason(service).items():
            dead.add_metric([reason], count)

        events = CounterMetricFamily(
            "msgstate_events_recorded",
            "Events recorded in the store, by type.",
            labels=["event"],
        )
        tally = dict.fromkeys(EVENT_TYPES, 0) | self._tally.counts()
        for event, count in sorted(tally.items()):
            events.add_metric([event], count)

        stuck = GaugeMetricFamily(
            "msgstate_stuck_sends",
            "Sends in flight past the policy's send_timeout "
            f"(counted up to {READ_LIMIT}).",
        )
        stuck.add_metric([], len(service.stuck_sends(now=moment, limit=READ_LIMIT)))
        yield from (lag, messages, failed, due, dead, events, stuck)
