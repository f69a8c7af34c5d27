"""Process benchmark: commands/second of 1, 2 and 4 processes on PostgreSQL.

Every process opens its own ``MessageService`` and sends its *own* messages
through create, record_failure, resend and record_delivery (four commands, four
events), so no two processes touch one message: this measures throughput, not
conflicts. The process counts run one after another in one invocation, on one
schema (made by ``setup_schema`` first); a process counts from a shared barrier
after a short warm-up, and a run's rate is all its commands over the time from
the first process's start to the last one's end.

    python benchmarks/bench_processes.py [--url postgresql://...] \\
        [--processes 1,2,4] [--messages 200] [--rounds 1] [--json out.json]

Without ``--url``: ``$MSGSTATE_TEST_POSTGRES_URL``, else the local ``test``
database. A URL without ``?schema=`` gets a new schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

from msgstate import MessageService, setup_schema

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def lifecycle(service: MessageService, msg_id: str) -> None:
    """Four commands: create, a transient failure, a resend, the delivery."""
    service.create(msg_id, sender="alice", user_id="bob", content={"text": "hi"})
    service.record_failure(msg_id, code=6012)
    service.resend(msg_id, request_id=f"{msg_id}-r")
    service.record_delivery(msg_id, seq=f"seq-{msg_id}")


def _process(
    url: str,
    tag: str,
    messages: int,
    warmup: int,
    barrier: Any,
    results: Any,
) -> None:
    service = MessageService.open(url, create_tables=False)
    try:
        for i in range(warmup):
            lifecycle(service, f"{tag}-warm{i}")
        barrier.wait()
        start = time.monotonic()  # CLOCK_MONOTONIC: one clock for all processes
        for i in range(messages):
            lifecycle(service, f"{tag}-{i}")
        end = time.monotonic()
    finally:
        service.close()
    results.put({"tag": tag, "start": start, "end": end, "commands": 4 * messages})


def measure(url: str, processes: int, messages: int, tag: str) -> dict[str, Any]:
    """One run of ``processes`` processes; returns its figures."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=_process,
            args=(url, f"{tag}-p{p}", messages, 3, barrier, results),
        )
        for p in range(processes)
    ]
    for worker in workers:
        worker.start()
    rows = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        if worker.exitcode != 0:
            raise RuntimeError(f"a benchmark process exited with {worker.exitcode}")
    seconds = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    commands = sum(r["commands"] for r in rows)
    return {
        "processes": processes,
        "commands": commands,
        "seconds": round(seconds, 3),
        "cmds_per_s": round(commands / seconds, 1),
        "per_process_cmds_per_s": round(
            statistics.mean(r["commands"] / (r["end"] - r["start"]) for r in rows), 1
        ),
    }


def _with_schema(url: str) -> tuple[str, str | None]:
    """``url`` with a new schema if it names none; the schema to drop, or None."""
    if "schema" in parse_qs(urlsplit(url).query):
        return url, None
    schema = f"msgstate_bench_{uuid4().hex[:12]}"
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}schema={schema}", schema


def _drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    base = parts._replace(query="").geturl()
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--messages", type=int, default=200, help="per process")
    parser.add_argument("--rounds", type=int, default=1, help="median of rounds")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    base = args.url or os.environ.get("MSGSTATE_TEST_POSTGRES_URL") or DEFAULT_URL
    url, made = _with_schema(base)
    counts = [int(n) for n in args.processes.split(",")]
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs",
        "backend": "postgresql",
        "messages_per_process": args.messages,
        "commands_per_process": 4 * args.messages,
        "rounds": args.rounds,
        "runs": [],
    }
    setup_schema(url)
    try:
        print(
            f"{'processes':>9} {'commands':>9} {'seconds':>8} {'cmd/s':>8} "
            f"{'per process':>12} {'speedup':>8}"
        )
        single: float | None = None
        for n in counts:
            rounds = [
                measure(url, n, args.messages, f"n{n}r{r}") for r in range(args.rounds)
            ]
            run = min(
                rounds,
                key=lambda x: abs(
                    x["cmds_per_s"] - statistics.median(y["cmds_per_s"] for y in rounds)
                ),
            )
            run["rounds_cmds_per_s"] = [x["cmds_per_s"] for x in rounds]
            if n == 1:
                single = run["cmds_per_s"]
            run["speedup_vs_1"] = (
                None if single is None else round(run["cmds_per_s"] / single, 2)
            )
            results["runs"].append(run)
            print(
                f"{n:>9} {run['commands']:>9} {run['seconds']:>8.2f} "
                f"{run['cmds_per_s']:>8.0f} {run['per_process_cmds_per_s']:>12.0f} "
                f"{run['speedup_vs_1'] or float('nan'):>8.2f}"
            )
    finally:
        if made is not None:
            _drop_schema(url, made)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            out.write(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
