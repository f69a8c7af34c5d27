"""Worker benchmark: resends per second end to end, SQLite and PostgreSQL, one run.

    python benchmarks/bench_worker.py [--backends sqlite,postgres] [--url URL] \\
        [--messages 2000] [--latency-messages 600] [--latency 0.05] \\
        [--concurrency 32] [--quick] [--json out.json]

Every scenario starts from a fresh store holding ``messages`` messages whose
first send failed (a transient 6012, due at once), and times a worker from its
start until every message is delivered (a transport that never fails): each
message costs the worker its share of a due-list read, a claim (``resend`` with
``expected_attempt``), the send, and the delivery record.

- **instant transport**: the sync :class:`~msgstate.ResendWorker` and the
  :class:`~msgstate.AsyncResendWorker` (``concurrency``), against the same-run
  baseline a user could write by hand: a loop over the known ids doing
  ``resend`` + ``record_delivery`` (no due list, no sweep, no claim check).
- **transport latency** (``latency`` s per send): the sync worker, bounded by
  ``1 / latency`` msgs/s, and the async worker, bounded by ``concurrency /
  latency``; each figure is reported as a ratio to its bound.

Without ``--url``: ``$MSGSTATE_TEST_POSTGRES_URL``, else the local ``test``
database; each PostgreSQL scenario gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from msgstate import (  # noqa: E402
    AsyncResendWorker,
    MessageService,
    MessageStatus,
    ResendPolicy,
    ResendWorker,
    setup_schema,
)
from msgstate.transports import SimulatedTransport  # noqa: E402

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
POLICY = ResendPolicy(
    max_attempts=5,
    initial_interval=timedelta(milliseconds=1),
    maximum_interval=timedelta(milliseconds=1),
)


@contextmanager
def fresh_store(backend: str, base_url: str) -> Iterator[str]:
    """A new, empty store URL (a SQLite file, or a PostgreSQL schema)."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{directory}/bench.db"
        return
    schema = f"msgstate_bench_{uuid4().hex[:12]}"
    separator = "&" if urlsplit(base_url).query else "?"
    url = f"{base_url}{separator}schema={schema}"
    try:
        yield url
    finally:
        import psycopg
        from psycopg import sql

        with psycopg.connect(base_url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )


def seed(service: MessageService, count: int) -> list[str]:
    """``count`` messages whose first send failed, written in batches (untimed)."""
    ids = [f"b{k:06d}" for k in range(count)]
    for start in range(0, count, 500):
        with service.batch() as batch:
            for msg_id in ids[start : start + 500]:
                batch.create(msg_id, sender="alice", user_id="bob")
                batch.record_failure(msg_id, code=6012, attempt=1)
    service.catch_up_projections()
    time.sleep(0.01)  # past the 1 ms backoff
    return ids


def hand_loop(service: MessageService, ids: list[str], latency: float) -> None:
    transport = SimulatedTransport(failure_rate=0.0, latency=latency)
    for msg_id in ids:
        view = service.resend(msg_id, request_id=f"hand:{msg_id}")
        sent = transport.send(view)
        service.record_delivery(msg_id, seq=sent.seq, attempt=view.attempts)  # type: ignore[union-attr]


def sync_worker(service: MessageService, ids: list[str], latency: float) -> None:
    transport = SimulatedTransport(failure_rate=0.0, latency=latency)
    ResendWorker(service, transport, worker_id="bench").run(
        until_idle=True, handle_sigterm=False
    )


def async_worker(
    concurrency: int,
) -> Callable[[MessageService, list[str], float], None]:
    def run(service: MessageService, ids: list[str], latency: float) -> None:
        transport = SimulatedTransport(failure_rate=0.0, latency=latency).as_async()

        async def drive() -> None:
            worker = AsyncResendWorker(
                service, transport, worker_id="bench", concurrency=concurrency
            )
            try:
                await worker.run(until_idle=True, handle_sigterm=False)
            finally:
                await worker.aclose()

        asyncio.run(drive())

    return run


def measure(
    backend: str,
    base_url: str,
    contender: Callable[[MessageService, list[str], float], None],
    messages: int,
    latency: float,
) -> dict[str, Any]:
    with fresh_store(backend, base_url) as url:
        setup_schema(url)
        service = MessageService.open(url, policy=POLICY, create_tables=False)
        try:
            ids = seed(service, messages)
            start = time.perf_counter()
            contender(service, ids, latency)
            seconds = time.perf_counter() - start
            delivered = service.status_counts()[MessageStatus.SEND_SUCC]
        finally:
            service.close()
    if delivered != messages:
        raise RuntimeError(f"{delivered} of {messages} delivered: the run is void")
    return {
        "messages": messages,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(messages / seconds, 1),
    }


SIZES = {
    "full": {
        "messages": 2_000,
        "latency_messages_sync": 100,
        "latency_messages": 1_500,
    },
    "quick": {"messages": 30, "latency_messages_sync": 4, "latency_messages": 40},
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--url", default=None, help="PostgreSQL database URL")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sizes = SIZES["quick" if args.quick else "full"]
    base = args.url or os.environ.get("MSGSTATE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES
    c, latency = args.concurrency, args.latency
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs",
        "latency_s": latency,
        "concurrency": c,
        "sizes": sizes,
        "backends": {},
    }
    print(f"{'backend':<9} {'scenario':<38} {'msgs':>6} {'msgs/s':>9} {'ratio':>16}")
    for backend in args.backends.split(","):
        rows: dict[str, Any] = {}

        def run(
            name: str,
            contender: Any,
            n: int,
            lat: float,
            backend: str = backend,
            rows: dict[str, Any] = rows,
        ) -> dict[str, Any]:
            row = measure(backend, base, contender, n, lat)
            rows[name] = row
            return row

        hand = run("instant: hand loop (baseline)", hand_loop, sizes["messages"], 0.0)
        for name, contender in (
            ("instant: ResendWorker", sync_worker),
            (f"instant: AsyncResendWorker c={c}", async_worker(c)),
        ):
            row = run(name, contender, sizes["messages"], 0.0)
            row["ratio_to_hand_loop"] = round(row["msgs_per_s"] / hand["msgs_per_s"], 2)
        for name, contender, n, bound in (
            (
                f"{latency * 1000:g} ms: ResendWorker",
                sync_worker,
                sizes["latency_messages_sync"],
                1 / latency,
            ),
            (
                f"{latency * 1000:g} ms: AsyncResendWorker c={c}",
                async_worker(c),
                sizes["latency_messages"],
                c / latency,
            ),
        ):
            row = run(name, contender, n, latency)
            row["bound_msgs_per_s"] = round(bound, 1)
            row["ratio_to_bound"] = round(row["msgs_per_s"] / bound, 2)
        for name, row in rows.items():
            ratio = (
                f"{row['ratio_to_hand_loop']:.2f} x hand"
                if "ratio_to_hand_loop" in row
                else f"{row['ratio_to_bound']:.2f} x {row['bound_msgs_per_s']:g}"
                if "ratio_to_bound" in row
                else "1.00 (base)"
            )
            print(
                f"{backend:<9} {name:<38} {row['messages']:>6} "
                f"{row['msgs_per_s']:>9.1f} {ratio:>16}"
            )
        results["backends"][backend] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
