"""Read-model benchmark: rebuild speed vs a raw SELECT, and due_resends on a big store.

    python benchmarks/bench_readmodels.py [--messages 100000] [--backends sqlite]

The store is filled through the Message aggregate, 1,000 aggregates per
transaction; a fifth of the messages fail with a transient code, a twentieth with
a permanent one. Then, in the same run: a plain SELECT of every stored event
(the baseline), ``rebuild_projections()`` over the same events (ratio =
rebuild events/s over SELECT rows/s), and ``due_resends`` / ``dead_letters``
timed on the full store.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

from msgstate import Message, MessageService

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def new_message(msg_id: str) -> Message:
    """A new Message aggregate (attempt 1 in flight), built without the service."""
    return Message(
        msg_id=msg_id,
        sender="alice",
        user_id="bob",
        group_id=None,
        elem_type=1,
        priority=0,
        online_user_only=False,
        need_read_receipt=False,
        cloud_custom_data="",
        content='{"text":"hello"}',
        at=T0,
    )


def fill(service: MessageService, messages: int) -> int:
    """Store ``messages`` messages in transactions of 1,000; return events."""
    events = 0
    batch: list[Message] = []
    for i in range(messages):
        message = new_message(f"m{i:07d}")
        events += 1
        if i % 5 == 0:
            message.record_failure(
                code=6012, desc="", attempt=None, retry_after=None, at=T0
            )
            events += 1
        elif i % 20 == 1:
            message.record_failure(
                code=80001, desc="", attempt=None, retry_after=None, at=T0
            )
            events += 1
        batch.append(message)
        if len(batch) == 1000:
            service.save(*batch)
            batch = []
    if batch:
        service.save(*batch)
    return events


def raw_select(backend: str, url: str) -> tuple[int, float]:
    """Read every stored event with the database driver alone."""
    start = time.perf_counter()
    if backend == "sqlite":
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            rows = connection.execute(
                "SELECT rowid, originator_id, originator_version, topic, "
                "state FROM stored_events ORDER BY rowid"
            ).fetchall()
    else:
        import psycopg

        base, _, schema = url.partition("?schema=")
        with psycopg.connect(base) as connection:
            rows = connection.execute(
                f"SELECT notification_id, originator_id, originator_version, topic, "
                f'state FROM "{schema}".msgstate_events ORDER BY notification_id'
            ).fetchall()
    return len(rows), time.perf_counter() - start


def measure(backend: str, url: str, messages: int, rounds: int) -> dict[str, Any]:
    service = MessageService.open(url, clock=lambda: T0 + timedelta(minutes=5))
    events = fill(service, messages)
    selects, rebuilds = [], []
    for r in range(rounds):
        pair = ["select", "rebuild"] if r % 2 == 0 else ["rebuild", "select"]
        for what in pair:
            if what == "select":
                rows, seconds = raw_select(backend, url)
                assert rows == events
                selects.append(rows / seconds)
            else:
                start = time.perf_counter()
                applied = service.rebuild_projections()
                seconds = time.perf_counter() - start
                assert applied == events
                rebuilds.append(events / seconds)
    timings = {}
    for name, call in [
        ("due_resends_100", lambda: service.due_resends(limit=100)),
        ("dead_letters_100", lambda: service.dead_letters(limit=100)),
        ("status_counts", service.status_counts),
    ]:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            result = call()
            samples.append(time.perf_counter() - start)
        assert result
        timings[name + "_ms"] = round(statistics.median(samples) * 1000, 2)
    service.close()
    select_rate = statistics.median(selects)
    rebuild_rate = statistics.median(rebuilds)
    return {
        "messages": messages,
        "events": events,
        "select_rows_per_s": round(select_rate),
        "rebuild_events_per_s": round(rebuild_rate),
        "rebuild_over_select": round(rebuild_rate / select_rate, 3),
        **timings,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} Python {platform.python_version()}",
        "backends": {},
    }
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            else:
                url = f"{args.postgres}?schema=t_msgstate_bench_{uuid4().hex[:8]}"
            figures = measure(backend, url, args.messages, args.rounds)
            if backend == "postgres":
                _drop_schema(url)
        results["backends"][backend] = figures
        print(backend, json.dumps(figures))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _drop_schema(url: str) -> None:
    import psycopg

    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
