"""Console benchmark: server time of the overview and message pages and of a
``/metrics`` scrape on a big store, against the service calls they make.

    python benchmarks/bench_console.py --db sqlite:////tmp/console.db \\
        [--db postgresql://...] [--messages 100000] [--pending 2000] [--rounds 15]

A store with no messages is first filled by ``msgstate simulate`` (the
simulation of ``msgstate._simulation``, ``--messages`` messages); that settles
every message, so ``--pending`` failed messages are then added (once) to give the
due queue rows. Requests go through the ASGI app in-process (Starlette's test
client: no network), so a figure is the server's time per request.

Baselines, measured in the same run: for the overview and ``/metrics``, the
read-model calls they are built from (``status_counts``, ``counts_by_error_code``,
``due_resends(limit=100000)``, every page of ``dead_letters``); for the message
page, ``get`` + ``history`` + ``check_resend`` + ``get_at(version=1)`` of the
same message; and a static file, the floor of the harness itself. ``cold`` is
the first request after opening (the overview's charts and the events counter then
read the event log once); the other figures are medians over ``--rounds`` requests.
Each figure is given as wall time (``_ms``) and as this process's CPU time
(``_cpu_ms``, every thread; other processes' load does not count): on a shared
machine the wall time includes waiting for a core, so the ratios use CPU time.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script
    sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402

from msgstate import MessageService  # noqa: E402
from msgstate._simulation import simulate  # noqa: E402
from msgstate.metrics import dead_letters_by_reason  # noqa: E402
from msgstate.web import create_app  # noqa: E402


def prepare(url: str, messages: int, pending: int) -> None:
    """Fill the store once: a simulation, then ``pending`` failures left due."""
    service = MessageService.open(url)
    try:
        empty = sum(service.status_counts().values()) == 0
    finally:
        service.close()
    if empty:
        started = time.perf_counter()
        simulate(url, messages=messages, failure_rate=0.2, seed=1)
        print(f"filled {url} in {time.perf_counter() - started:.0f} s", flush=True)
    service = MessageService.open(url)
    try:
        codes = (6012, 9508, 20004, 70169)
        for i in range(pending):
            msg_id = f"bench-pending-{i:05d}"
            try:
                service.get(msg_id)
                continue
            except Exception:  # not created yet
                pass
            service.create(msg_id, sender="u1", user_id="u2", content={"text": "x"})
            service.record_failure(msg_id, code=codes[i % len(codes)])
    finally:
        service.close()


def timed(call: Callable[[], Any]) -> tuple[float, float]:
    """(wall ms, CPU ms of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return (
        statistics.median(w for w, _ in samples),
        statistics.median(c for _, c in samples),
    )


def record(
    figures: dict[str, Any], name: str, samples: list[tuple[float, float]]
) -> None:
    figures[f"{name}_ms"], figures[f"{name}_cpu_ms"] = medians(samples)


def measure(url: str, rounds: int, simulated: int) -> dict[str, Any]:
    service = MessageService.open(url)
    try:
        return _measure(service, rounds, simulated)
    finally:
        service.close()


def _measure(service: MessageService, rounds: int, simulated: int) -> dict[str, Any]:
    with TestClient(create_app(service)) as client:  # one event loop for all requests
        ok = lambda path: client.get(path).raise_for_status()  # noqa: E731
        statuses = service.status_counts()
        figures: dict[str, Any] = {
            "messages": sum(statuses.values()),
            "events": service.recorder.max_notification_id(),
        }
        record(figures, "overview_cold", [timed(lambda: ok("/"))])
        record(figures, "metrics_cold", [timed(lambda: ok("/metrics"))])
        static = [timed(lambda: ok("/static/console.css")) for _ in range(rounds)]
        record(figures, "static_file", static)

        def read_models() -> None:
            service.status_counts()
            service.counts_by_error_code()
            service.due_resends(limit=100_000)
            dead_letters_by_reason(service)

        record(figures, "read_models", [timed(read_models) for _ in range(rounds)])
        record(figures, "overview", [timed(lambda: ok("/")) for _ in range(rounds)])
        record(
            figures, "metrics", [timed(lambda: ok("/metrics")) for _ in range(rounds)]
        )
        figures["due_resends"] = len(service.due_resends(limit=100_000))
        figures["dead_letters"] = sum(dead_letters_by_reason(service).values())

        sample = random.Random(1).sample(range(simulated), rounds)
        ids = [f"sim1-{i:06d}" for i in sample]

        def direct(msg_id: str) -> None:
            service.get(msg_id)
            service.history(msg_id)
            service.check_resend(msg_id)
            service.get_at(msg_id, version=1)

        record(figures, "message_calls", [timed(lambda m=m: direct(m)) for m in ids])
        pages = [timed(lambda m=m: ok(f"/message?msg_id={m}&version=1")) for m in ids]
        record(figures, "message", pages)
        figures["ratios_cpu"] = {
            "overview_over_read_models": figures["overview_cpu_ms"]
            / figures["read_models_cpu_ms"],
            "metrics_over_read_models": figures["metrics_cpu_ms"]
            / figures["read_models_cpu_ms"],
            "message_over_calls": figures["message_cpu_ms"]
            / figures["message_calls_cpu_ms"],
        }
        return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", action="append", required=True, metavar="URL")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--pending", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "stores": {},
    }
    for url in args.db:
        prepare(url, args.messages, args.pending)
        results["stores"][url.split("://")[0]] = measure(
            url, args.rounds, args.messages
        )
        print(json.dumps(results["stores"][url.split("://")[0]], indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
