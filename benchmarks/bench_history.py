"""Loading one long history: ``get`` and ``get_at(version=...)``, with and without
snapshots.

One message gets ``events`` events (created, then failure/resend pairs, ending
with a failure) under a policy that allows that many attempts. The history is
built on two fresh stores of the same backend: one opened with
``snapshot_every`` (a snapshot every that many events), one without. Both are
opened with ``cache_size=0``, so every call loads from the store. Rounds
alternate which store goes first; each round times ``calls`` calls of each kind
and keeps their median, and the figure is the median over rounds.

Used by ``benchmarks/run.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_commands import fresh_store
from benchmarks.bench_readmodels import new_message
from msgstate import MessageService, ResendPolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MSG_ID = "long-history"
SAVE_EVERY = 500
"""Events per save while the history is built (snapshots are taken on save)."""


def build_history(service: MessageService, events: int) -> None:
    """Store ``events`` events of one message, ``SAVE_EVERY`` per transaction."""
    policy = service.policy
    message = new_message(MSG_ID)
    for version in range(2, events + 1):
        at = T0 + timedelta(seconds=version)
        if version % 2 == 0:
            message.record_failure(
                code=6012, desc="", attempt=None, retry_after=None, at=at
            )
        else:
            message.request_resend(
                policy=policy,
                now=at,
                request_id=f"r{version}",
                actor=None,
                online_user_only=None,
            )
        if len(message.pending_events) >= SAVE_EVERY:
            service.save(message)
    if message.pending_events:
        service.save(message)


def _median_ms(call: Callable[[], Any], calls: int) -> float:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def measure(
    backend: str,
    directory: Path,
    postgres: str,
    *,
    events: int,
    snapshot_every: int,
    rounds: int,
    calls: int,
) -> dict[str, Any]:
    """ms per ``get`` and per ``get_at(version=events // 2)``, both store kinds."""
    policy = ResendPolicy(max_attempts=events + 1)
    kinds = {"no_snapshots": None, "snapshots": snapshot_every}
    samples: dict[str, list[float]] = {}
    with (
        fresh_store(backend, directory, postgres) as plain_store,
        fresh_store(backend, directory, postgres) as snap_store,
    ):
        services = {
            kind: MessageService.open(
                store.url, policy=policy, snapshot_every=every, cache_size=0
            )
            for (kind, every), store in zip(
                kinds.items(), [plain_store, snap_store], strict=True
            )
        }
        try:
            for service in services.values():
                build_history(service, events)
                view = service.get(MSG_ID)  # warm-up, and a check
                assert view.version == events, (view.version, events)
            middle = events // 2
            for r in range(rounds):
                order = list(services) if r % 2 == 0 else list(reversed(services))
                for kind in order:
                    service = services[kind]
                    for name, call in [
                        ("get", lambda s=service: s.get(MSG_ID)),
                        (
                            "get_at",
                            lambda s=service: s.get_at(MSG_ID, version=middle),
                        ),
                    ]:
                        samples.setdefault(f"{name}_{kind}", []).append(
                            _median_ms(call, calls)
                        )
        finally:
            for service in services.values():
                service.close()
    figures: dict[str, Any] = {
        "events": events,
        "snapshot_every": snapshot_every,
        "get_at_version": events // 2,
    }
    for key, values in samples.items():
        figures[f"{key}_ms"] = round(statistics.median(values), 3)
        figures[f"{key}_rounds_ms"] = [round(v, 3) for v in values]
    return figures
