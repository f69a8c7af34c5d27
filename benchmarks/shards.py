"""Shard maps on PostgreSQL: writers, cross-shard queries and a shard move, one run.

    python benchmarks/shards.py [--quick] [--rounds N] [--json FILE] \\
        [--parts writers,queries,move] [--query-messages N] [--servers H:P,...]

Four PostgreSQL servers (``--servers``, default 127.0.0.1:5432 and the clusters
on 5433, 5434 and 5435, user postgres, trust auth); every store is a fresh
schema ``t_msgstate_shardbench_<hex>`` in the ``postgres`` database of a server,
dropped after use. A map has ``virtual_shards = 4``, one shard per server. Every
comparison is a ratio of two medians measured in the same run:

1. **Writers**: 1, 2 and 4 processes, each writing its own new messages on ONE
   database (the first server) against the same processes on a map of FOUR
   databases (one per server), a fresh store each run; contenders alternate and
   their order rotates from round to round. Two workloads: single commands
   (``create``, ``record_failure``, ``record_delivery`` per message, one
   transaction each) and batches of 100 (``with service.batch()`` of creates,
   then ``record_failures``, then ``record_deliveries``, per 100 messages).
   While each run goes, a thread samples ``pg_stat_activity`` on every server
   every ~10 ms and counts the writers (``application_name``) waiting on a
   relation lock (``wait_event_type = 'Lock'``, ``wait_event = 'relation'``: the
   events table, which every insert transaction locks EXCLUSIVE).
2. **Cross-shard queries**: ``due_resends(limit=100)`` and
   ``dead_letters(limit=100)`` on a map of 4 databases holding N messages between
   them against one database holding the same N messages (40% due, 30% dead,
   10% delivered, 20% in flight); read models caught up first; calls alternate,
   medians.
3. **A shard move**: shard 0 of that map (about N/4 messages) moved with
   ``move_shard`` to a fresh schema on the second server while one process
   writes single commands to shard 0 and another to shard 1 (the control); the
   move's seconds and ``frozen_seconds``, and the longest command and the total
   time of stalled commands (over 10x the median before the move) seen by the
   writers.

Progress goes to stderr, the tables to stdout; ``--json`` writes every figure.
``--quick`` uses tiny sizes (a smoke run under a minute; its figures mean
nothing). See benchmarks/README.md, "Shard maps".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.run import _num, table  # noqa: E402  (the same tables as run.py)

DEFAULT_SERVERS = "127.0.0.1:5432,127.0.0.1:5433,127.0.0.1:5434,127.0.0.1:5435"
DATABASE = "postgres"
SCHEMA_PREFIX = "t_msgstate_shardbench_"
APP_NAME = "msgstate-shardbench"
"""``application_name`` of every writer's connections (through ``PGAPPNAME``)."""

VIRTUAL_SHARDS = 4
PROCESS_COUNTS = (1, 2, 4)
WORKLOADS = ("single", "batch")
CONTENDERS = ("one", "map")
PARTS = ("writers", "queries", "move")
BATCH = 100
COMMANDS_PER_MESSAGE = 3  # create, record_failure, record_delivery
SAMPLE_EVERY = 0.01
STALL_FACTOR = 10.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)
QUERY_NOW = T0 + timedelta(minutes=5)

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "rounds": 8,
        # per process, untimed, before the clock starts: enough that every
        # database of a map sees several (each process has a pool per database)
        "warmup_messages": 40,
        "single_messages": 300,  # per process: 900 commands
        "batch_messages": 3_000,  # per process: 9,000 commands, 30 batches
        "query_messages": 100_000,  # 4 x 25,000 in the map
        "query_calls": 21,
        "move_before": 3.0,  # seconds the move's writers write before it starts
        "move_after": 2.0,
    },
    "quick": {
        "rounds": 2,
        "warmup_messages": 8,
        "single_messages": 10,
        "batch_messages": 200,
        "query_messages": 2_000,
        "query_calls": 5,
        "move_before": 0.5,
        "move_after": 0.3,
    },
}


def log(text: str) -> None:
    """Progress goes to stderr; the tables go to stdout."""
    print(text, file=sys.stderr, flush=True)


def base_url(server: str) -> str:
    return f"postgresql://postgres@{server}/{DATABASE}"


# -- stores: a fresh schema per store, dropped afterwards --


class Schemas:
    """Makes fresh schemas on the servers and drops them (all of them at the end)."""

    def __init__(self) -> None:
        self.made: list[tuple[str, str]] = []

    def fresh(self, server: str) -> str:
        """A new empty schema on ``server``; its msgstate URL."""
        schema = f"{SCHEMA_PREFIX}{uuid4().hex[:12]}"
        _execute(server, f'CREATE SCHEMA "{schema}"')
        self.made.append((server, schema))
        return f"{base_url(server)}?schema={schema}"

    def drop(self, url: str) -> None:
        base, _, schema = url.partition("?schema=")
        server = base.split("@", 1)[1].split("/", 1)[0]
        _execute(server, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        with contextlib.suppress(ValueError):
            self.made.remove((server, schema))

    def drop_all(self) -> None:
        for server, schema in list(self.made):
            try:
                _execute(server, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            except Exception as error:  # keep dropping the others
                log(f"could not drop {schema} on {server}: {error}")
        self.made.clear()


def _execute(server: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(base_url(server), autocommit=True) as connection:
        connection.execute("SET lock_timeout = '30s'")
        connection.execute(statement)


def server_problem(servers: Sequence[str]) -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'msgstate[postgres]')"
    for server in servers:
        try:
            with psycopg.connect(base_url(server), connect_timeout=3) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as error:
            return (
                f"PostgreSQL at {server} is unreachable: {' '.join(str(error).split())}"
            )
    return None


def write_map(urls: Sequence[str], path: Path) -> str:
    """A map of ``urls``, one virtual shard each, saved at ``path``; its URL."""
    from msgstate import ShardMap

    ShardMap(VIRTUAL_SHARDS, {url: str(i) for i, url in enumerate(urls)}).save(path)
    return f"shards://{path}"


@contextlib.contextmanager
def fresh_store(
    kind: str,
    servers: Sequence[str],
    schemas: Schemas,
    directory: Path,
    turn: int = 0,
) -> Iterator[str]:
    """``one``: a schema on server ``turn`` (mod 4); ``map``: one on each of four.

    The servers are not equally fast here (the main cluster on 5432 ran the same
    single commands about 18% faster than the one on 5433), so the one-database
    contender moves to the next server every round: its median is a typical
    server's, as the map's is a blend of all four.
    """
    from msgstate import setup_schema

    if kind == "one":
        urls = [schemas.fresh(servers[turn % VIRTUAL_SHARDS])]
        url = urls[0]
    else:
        urls = [schemas.fresh(s) for s in servers[:VIRTUAL_SHARDS]]
        url = write_map(urls, directory / f"shards-{uuid4().hex[:8]}.toml")
    try:
        setup_schema(url)
        yield url
    finally:
        for each in urls:
            schemas.drop(each)


def shard_of_msg(msg_id: str) -> int:
    from msgstate import Message
    from msgstate.shards import shard_of

    return shard_of(Message.create_id(msg_id), VIRTUAL_SHARDS)


# -- the workloads (run in the worker processes) --


def run_single(service: Any, ids: Sequence[str]) -> None:
    for msg_id in ids:
        service.create(msg_id, sender="alice", user_id="bob")
        service.record_failure(msg_id, code=6012)
        service.record_delivery(msg_id, seq="1")


def run_batches(service: Any, ids: Sequence[str]) -> None:
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        with service.batch() as batch:
            batch.prefetch(chunk)  # one query per database finds none exist yet
            for msg_id in chunk:
                batch.create(msg_id, sender="alice", user_id="bob")
        _check(service.record_failures([{"msg_id": m, "code": 6012} for m in chunk]))
        _check(service.record_deliveries([{"msg_id": m, "seq": "1"} for m in chunk]))


def _check(outcomes: Sequence[Any]) -> None:
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome


RUNNERS: dict[str, Callable[[Any, Sequence[str]], None]] = {
    "single": run_single,
    "batch": run_batches,
}


# -- the worker processes --


def _worker(index: int, inbox: Any, outbox: Any) -> None:
    """One long-lived process: runs jobs from ``inbox`` until it gets None."""
    os.environ["PGAPPNAME"] = APP_NAME  # libpq: every connection of this process
    handlers = {"write": _write_job, "fill": _fill_job, "stream": _stream_job}
    while True:
        job = inbox.get()
        if job is None:
            return
        try:
            handlers[job["kind"]](job, inbox, outbox)
        except BaseException:
            outbox.put({"worker": index, "error": traceback.format_exc()})


def _write_job(job: dict[str, Any], inbox: Any, outbox: Any) -> None:
    from msgstate import MessageService

    service: Any = MessageService.open(job["url"], create_tables=False)
    try:
        run = RUNNERS[job["workload"]]
        tag = job["tag"]
        run(service, [f"{tag}-warm{i}" for i in range(job["warmup"])])
        ids = [f"{tag}-{i}" for i in range(job["messages"])]
        outbox.put({"ready": job["worker"]})
        if inbox.get() != "go":
            raise RuntimeError("expected go")
        start = time.monotonic()  # CLOCK_MONOTONIC: one clock for all processes
        run(service, ids)
        end = time.monotonic()
        per_db: dict[str, int] = {}
        if hasattr(service, "shard_map"):
            for msg_id in ids:
                url = service.shard_map.database_of(service.shard(msg_id))
                per_db[url] = per_db.get(url, 0) + COMMANDS_PER_MESSAGE
    finally:
        service.close()
    outbox.put(
        {
            "worker": job["worker"],
            "start": start,
            "end": end,
            "commands": COMMANDS_PER_MESSAGE * len(ids),
            "per_db": per_db,
        }
    )


def message_mix(i: int) -> str:
    """The state of query message ``i``: due, dead, delivered or sending."""
    k = i % 10
    return "due" if k < 4 else "dead" if k < 7 else "delivered" if k == 7 else "sending"


def _fill_job(job: dict[str, Any], inbox: Any, outbox: Any) -> None:
    """Store ``messages`` query messages (1,000 per transaction per database)."""
    from benchmarks.bench_readmodels import new_message
    from msgstate import MessageService

    started = time.monotonic()
    service: Any = MessageService.open(job["url"], create_tables=False)
    try:
        if hasattr(service, "shard_map"):
            shard_map = service.shard_map

            def target(msg_id: str) -> Any:
                url = shard_map.database_of(service.shard(msg_id))
                return service.databases[url]
        else:

            def target(msg_id: str) -> Any:
                return service

        pending: dict[int, tuple[Any, list[Any]]] = {}
        for i in range(job["messages"]):
            msg_id = f"q{i:07d}"
            message = new_message(msg_id)
            kind = message_mix(i)
            if kind in ("due", "dead"):
                message.record_failure(
                    code=6012 if kind == "due" else 80001,
                    desc="",
                    attempt=None,
                    retry_after=None,
                    at=T0,
                )
            elif kind == "delivered":
                message.record_delivery(seq="1", server_time=T0, attempt=None, at=T0)
            owner = target(msg_id)
            _, batch = pending.setdefault(id(owner), (owner, []))
            batch.append(message)
            if len(batch) == 1000:
                owner.save(*batch)
                batch.clear()
        for owner, batch in pending.values():
            if batch:
                owner.save(*batch)
        filled = time.monotonic()
        service.catch_up_projections()
        lag = service.projection_lag()
    finally:
        service.close()
    outbox.put(
        {
            "worker": job["worker"],
            "fill_s": round(filled - started, 2),
            "catch_up_s": round(time.monotonic() - filled, 2),
            "lag": lag,
        }
    )


def _stream_job(job: dict[str, Any], inbox: Any, outbox: Any) -> None:
    """Single commands to messages of one shard, each timed, until told to stop."""
    from msgstate import MessageService

    service: Any = MessageService.open(job["url"], create_tables=False)
    shard = job["shard"]
    tag = job["tag"]
    counter = iter(range(10**9))

    def next_id() -> str:
        while True:
            msg_id = f"{tag}-{next(counter)}"
            if shard_of_msg(msg_id) == shard:
                return msg_id

    samples: list[tuple[float, float, bool]] = []
    errors: list[str] = []
    try:
        run_single(service, [next_id() for _ in range(3)])
        outbox.put({"ready": job["worker"]})
        if inbox.get() != "go":
            raise RuntimeError("expected go")
        stop = False
        while not stop:
            msg_id = next_id()
            steps: tuple[tuple[str, dict[str, Any]], ...] = (
                ("create", {"sender": "alice", "user_id": "bob"}),
                ("record_failure", {"code": 6012}),
                ("record_delivery", {"seq": "1"}),
            )
            for command, arguments in steps:
                begin = time.monotonic()
                try:
                    getattr(service, command)(msg_id, **arguments)
                    ok = True
                except Exception as error:  # counted, and the writer goes on
                    ok = False
                    errors.append(f"{type(error).__name__}: {error}")
                samples.append((begin, time.monotonic() - begin, ok))
                if not ok:
                    break
            with contextlib.suppress(queue.Empty):
                stop = inbox.get_nowait() == "stop"
    finally:
        service.close()
    outbox.put({"worker": job["worker"], "samples": samples, "errors": errors[:20]})


class Pool:
    """Four worker processes (spawned once), each with its own inbox."""

    def __init__(self, size: int) -> None:
        import benchmarks.shards as this  # picklable by name, as a script too

        context = multiprocessing.get_context("spawn")
        self.outbox = context.Queue()
        self.inboxes = [context.Queue() for _ in range(size)]
        self.processes = [
            context.Process(
                target=this._worker, args=(i, inbox, self.outbox), daemon=True
            )
            for i, inbox in enumerate(self.inboxes)
        ]
        for process in self.processes:
            process.start()

    def send(self, worker: int, message: Any) -> None:
        self.inboxes[worker].put(message)

    def receive(self, count: int, timeout: float = 900.0) -> list[dict[str, Any]]:
        answers = []
        for _ in range(count):
            answer = self.outbox.get(timeout=timeout)
            if "error" in answer:
                raise RuntimeError(
                    f"worker {answer['worker']} failed:\n{answer['error']}"
                )
            answers.append(answer)
        return answers

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        for process in self.processes:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()


# -- sampling lock waits and CPU --


class LockSampler(threading.Thread):
    """Every ~10 ms, on every server: writers waiting on a relation lock, active."""

    QUERY = (
        "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' "
        "AND wait_event = 'relation') AS waiting, "
        "count(*) FILTER (WHERE state = 'active') AS active "
        "FROM pg_stat_activity WHERE application_name = %s"
    )

    def __init__(self, connections: Sequence[Any]) -> None:
        super().__init__(daemon=True)
        self.connections = connections
        self.samples: list[tuple[float, int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            began = time.monotonic()
            waiting = active = 0
            for connection in self.connections:
                row = connection.execute(self.QUERY, (APP_NAME,)).fetchone()
                waiting += int(row[0])
                active += int(row[1])
            self.samples.append((began, waiting, active))
            self.halt.wait(max(0.0, SAMPLE_EVERY - (time.monotonic() - began)))

    def stop(self) -> list[tuple[float, int, int]]:
        self.halt.set()
        self.join()
        return self.samples


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0, 0
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


# -- 1. writers --


def writer_run(
    pool: Pool,
    url: str,
    workload: str,
    processes: int,
    sizes: dict[str, Any],
    tag: str,
    connections: Sequence[Any],
) -> dict[str, Any]:
    """``processes`` writers on ``url`` at once; their rate and lock waits."""
    messages = sizes["single_messages" if workload == "single" else "batch_messages"]
    for w in range(processes):
        pool.send(
            w,
            {
                "kind": "write",
                "worker": w,
                "url": url,
                "workload": workload,
                "tag": f"{tag}-p{w}",
                "messages": messages,
                "warmup": sizes["warmup_messages"],
            },
        )
    pool.receive(processes)  # every writer open and warm
    sampler = LockSampler(connections)
    sampler.start()
    busy0, total0 = cpu_times()
    for w in range(processes):
        pool.send(w, "go")
    rows = pool.receive(processes)
    busy1, total1 = cpu_times()
    samples = sampler.stop()
    first = min(r["start"] for r in rows)
    last = max(r["end"] for r in rows)
    seconds = last - first
    commands = sum(r["commands"] for r in rows)
    inside = [s for s in samples if first <= s[0] <= last] or samples
    per_db: dict[str, int] = {}
    for r in rows:
        for db, n in r["per_db"].items():
            per_db[db] = per_db.get(db, 0) + n
    if not per_db:
        per_db = {url: commands}
    return {
        "cmds_per_s": commands / seconds,
        "per_db_cmds_per_s": sorted(
            (n / seconds for n in per_db.values()), reverse=True
        ),
        "lock_samples": len(inside),
        "lock_any": sum(1 for s in inside if s[1] > 0) / len(inside),
        "lock_share": statistics.fmean(s[1] for s in inside) / processes,
        "cpu_busy": (busy1 - busy0) / (total1 - total0) if total1 > total0 else None,
    }


def measure_writers(
    pool: Pool,
    servers: Sequence[str],
    schemas: Schemas,
    directory: Path,
    sizes: dict[str, Any],
) -> dict[str, Any]:
    import psycopg

    connections = [
        psycopg.connect(base_url(s), autocommit=True) for s in servers[:VIRTUAL_SHARDS]
    ]
    rounds = sizes["rounds"]
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for r in range(rounds):
            for workload in WORKLOADS:
                for n in PROCESS_COUNTS:
                    order = list(CONTENDERS) if (r + n) % 2 == 0 else CONTENDERS[::-1]
                    for kind in order:
                        key = f"{workload}/{n}/{kind}"
                        with fresh_store(
                            kind, servers, schemas, directory, turn=r
                        ) as url:
                            figures = writer_run(
                                pool, url, workload, n, sizes, f"r{r}", connections
                            )
                        runs.setdefault(key, []).append(figures)
                        log(
                            f"  writers round {r + 1}/{rounds}: {workload}, {n} "
                            f"process(es), {kind}: {figures['cmds_per_s']:,.0f} cmd/s, "
                            f"lock waits in {figures['lock_any']:.0%} of samples"
                        )
    finally:
        for connection in connections:
            connection.close()
    results: dict[str, Any] = {}
    for workload in WORKLOADS:
        for n in PROCESS_COUNTS:
            row: dict[str, Any] = {}
            for kind in CONTENDERS:
                values = runs[f"{workload}/{n}/{kind}"]
                row[kind] = {
                    "cmds_per_s": round(
                        statistics.median(v["cmds_per_s"] for v in values), 1
                    ),
                    "rounds_cmds_per_s": [round(v["cmds_per_s"], 1) for v in values],
                    "per_db_cmds_per_s": round(
                        statistics.median(
                            statistics.fmean(v["per_db_cmds_per_s"]) for v in values
                        ),
                        1,
                    ),
                    "busiest_db_cmds_per_s": round(
                        statistics.median(v["per_db_cmds_per_s"][0] for v in values), 1
                    ),
                    "lock_wait_samples": round(
                        statistics.median(v["lock_any"] for v in values), 3
                    ),
                    "lock_wait_share": round(
                        statistics.median(v["lock_share"] for v in values), 3
                    ),
                    "samples": round(
                        statistics.median(v["lock_samples"] for v in values)
                    ),
                    "cpu_busy": _median_or_none([v["cpu_busy"] for v in values]),
                }
            row["map_over_one"] = ratio(
                row["map"]["cmds_per_s"], row["one"]["cmds_per_s"]
            )
            results[f"{workload}/{n}"] = row
    return results


def _median_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


# -- 2. cross-shard queries --


def fill_stores(
    pool: Pool, one_url: str, map_url: str, messages: int
) -> dict[str, Any]:
    """Both stores filled at once (one worker each), read models caught up."""
    for w, url in enumerate((one_url, map_url)):
        pool.send(w, {"kind": "fill", "worker": w, "url": url, "messages": messages})
    rows = {r["worker"]: r for r in pool.receive(2)}
    for row in rows.values():
        if row["lag"]:
            raise RuntimeError(f"read models still lag after catching up: {row}")
    return {"one": rows[0], "map": rows[1]}


def measure_queries(
    one_url: str, map_url: str, messages: int, calls: int
) -> dict[str, Any]:
    from msgstate import MessageService

    one: Any = MessageService.open(one_url, clock=lambda: QUERY_NOW)
    sharded: Any = MessageService.open(map_url, clock=lambda: QUERY_NOW)
    first_db = next(iter(sharded.databases.values()))
    try:
        contenders: dict[str, Any] = {
            "one": one,
            "map": sharded,
            "map_one_db": first_db,  # one database of the map: the fan-out's floor
        }
        queries: dict[str, Callable[[Any], list[Any]]] = {
            "due_resends": lambda s: s.due_resends(limit=100),
            "dead_letters": lambda s: s.dead_letters(limit=100),
        }
        answers: dict[str, dict[str, list[str]]] = {}
        for name, query in queries.items():
            for kind, service in contenders.items():
                found = query(service)  # warm-up (and catch-up, none left)
                answers.setdefault(name, {})[kind] = [x.msg_id for x in found]
        timings: dict[str, dict[str, list[float]]] = {
            q: {k: [] for k in contenders} for q in queries
        }
        kinds = list(contenders)
        for i in range(calls):
            shift = i % len(kinds)
            for name, query in queries.items():
                for kind in kinds[shift:] + kinds[:shift]:
                    begin = time.perf_counter()
                    query(contenders[kind])
                    timings[name][kind].append(time.perf_counter() - begin)
        counts = {
            "one": sum(one.status_counts().values()),
            "map_per_db": [
                sum(s.status_counts().values()) for s in sharded.databases.values()
            ],
        }
    finally:
        one.close()
        sharded.close()
    results: dict[str, Any] = {"messages": messages, "calls": calls, "counts": counts}
    for name in queries:
        row: dict[str, Any] = {
            f"{kind}_ms": round(statistics.median(values) * 1000, 2)
            for kind, values in timings[name].items()
        }
        row["map_over_one"] = ratio(row["map_ms"], row["one_ms"])
        row["rows"] = len(answers[name]["one"])
        row["same_answer"] = answers[name]["one"] == answers[name]["map"]
        results[name] = row
    return results


# -- 3. moving a shard --


def analyse_stream(
    samples: Sequence[tuple[float, float, bool]], move_start: float, move_end: float
) -> dict[str, Any]:
    before = [lat for begin, lat, _ in samples if begin + lat <= move_start]
    during = [
        (begin, lat, ok)
        for begin, lat, ok in samples
        if begin < move_end and begin + lat > move_start
    ]
    baseline = statistics.median(before) if before else None
    threshold = STALL_FACTOR * baseline if baseline else None
    stalled = [lat for _, lat, _ in during if threshold is not None and lat > threshold]
    duration = move_end - move_start
    return {
        "commands_before": len(before),
        "median_ms_before": None if baseline is None else round(baseline * 1000, 2),
        "commands_during": len(during),
        "cmds_per_s_before": (
            round(len(before) / (move_start - samples[0][0]), 1)
            if before and move_start > samples[0][0]
            else None
        ),
        "cmds_per_s_during": round(len(during) / duration, 1) if duration else None,
        "max_ms": round(max((lat for _, lat, _ in during), default=0.0) * 1000, 1),
        "stalled_commands": len(stalled),
        "stalled_total_s": round(sum(stalled), 3),
        "failed_commands": sum(1 for _, _, ok in samples if not ok),
    }


def measure_move(
    pool: Pool,
    map_path: Path,
    target_url: str,
    sizes: dict[str, Any],
) -> dict[str, Any]:
    from msgstate.shards import move_shard

    map_url = f"shards://{map_path}"
    for w, shard in enumerate((0, 1)):
        pool.send(
            w,
            {
                "kind": "stream",
                "worker": w,
                "url": map_url,
                "shard": shard,
                "tag": f"mv{shard}",
            },
        )
    pool.receive(2)
    for w in (0, 1):
        pool.send(w, "go")
    time.sleep(sizes["move_before"])
    steps: list[tuple[str, int, float]] = []
    move_start = time.monotonic()

    def progress(step: str, n: int) -> None:
        steps.append((step, n, time.monotonic() - move_start))
        log(f"  move: {step} {n:,} at {steps[-1][2]:.2f} s")

    report = move_shard(map_path, 0, target_url, progress=progress)
    move_end = time.monotonic()
    time.sleep(sizes["move_after"])
    for w in (0, 1):
        pool.send(w, "stop")
    rows = {r["worker"]: r for r in pool.receive(2)}
    at = {step: t for step, _, t in steps}
    return {
        "shard": report.shard,
        "streams": report.streams,
        "events": report.events,
        "seconds": round(report.seconds, 3),
        "frozen_seconds": round(report.frozen_seconds, 3),
        "frozen_to_map_written_s": (
            round(at["map written"] - at["frozen"], 3)
            if "map written" in at and "frozen" in at
            else None
        ),
        "steps": [{"step": s, "n": n, "at_s": round(t, 3)} for s, n, t in steps],
        "writer_moved_shard": analyse_stream(rows[0]["samples"], move_start, move_end),
        "writer_other_shard": analyse_stream(rows[1]["samples"], move_start, move_end),
        "errors": rows[0]["errors"] + rows[1]["errors"],
    }


# -- the report --


def report(results: dict[str, Any]) -> str:
    out: list[str] = []
    m = results["machine"]
    s = results["sizes"]
    out.append(
        f"machine: {m['arch']}, {m['cpu']}, {m['cpus']} CPUs, {m['python']}; "
        f"{results['rounds']} rounds, medians"
        + (" (QUICK: tiny sizes, figures mean nothing)" if results["quick"] else "")
    )
    out.append(
        f"servers: {', '.join(results['servers'])} (writers: one database on "
        "the next server each round; queries: one database on the first; "
        f"map = {VIRTUAL_SHARDS} databases, one per server, one virtual shard each)"
    )
    if "writers" in results:
        writers = results["writers"]
        out.append("")
        out.append(
            f"writers: commands/s ({COMMANDS_PER_MESSAGE} per message: create, "
            f"record_failure 6012, record_delivery; {s['single_messages']:,} messages "
            f"per process single, {s['batch_messages']:,} in batches of {BATCH}; "
            "fresh store each run)"
        )
        rows = []
        for workload in WORKLOADS:
            label = "single" if workload == "single" else f"batch {BATCH}"
            for n in PROCESS_COUNTS:
                row = writers[f"{workload}/{n}"]
                one, many = row["one"], row["map"]
                rows.append(
                    [
                        f"{label}, {n} process{'es' if n > 1 else ''}",
                        _num(one["cmds_per_s"], ",.0f"),
                        _num(many["cmds_per_s"], ",.0f"),
                        _num(row["map_over_one"], ".2f"),
                        _num(many["per_db_cmds_per_s"], ",.0f"),
                        _num(one["lock_wait_samples"], ".0%"),
                        _num(many["lock_wait_samples"], ".0%"),
                        _num(one["lock_wait_share"], ".0%"),
                        _num(many["lock_wait_share"], ".0%"),
                        _num(one["cpu_busy"], ".0%"),
                        _num(many["cpu_busy"], ".0%"),
                    ]
                )
        out += table(
            [
                "",
                "one db",
                "map of 4",
                "map/one",
                "map per db",
                "lock% one",
                "lock% map",
                "wait% one",
                "wait% map",
                "cpu one",
                "cpu map",
            ],
            rows,
        )
        out.append(
            "lock% = share of ~10 ms samples in which at least one writer waited on a "
            "relation lock (the events table); wait% = writers waiting / writers, "
            "averaged over samples; cpu = all CPUs busy during the run (writers, "
            "servers and sampler share them)"
        )
    if "queries" in results:
        q = results["queries"]
        out.append("")
        per_db = q["counts"]["map_per_db"]
        out.append(
            f"cross-shard queries, ms (median of {q['calls']} calls; one database of "
            f"{q['messages']:,} messages vs a map of {len(per_db)} databases holding "
            f"{', '.join(f'{n:,}' for n in per_db)}; read models caught up)"
        )
        out += table(
            ["", "one db", "map of 4", "map/one", "1 db of map", "same answer"],
            [
                [
                    f"{name}(limit=100)",
                    _num(q[name]["one_ms"], ".2f"),
                    _num(q[name]["map_ms"], ".2f"),
                    _num(q[name]["map_over_one"], ".2f"),
                    _num(q[name]["map_one_db_ms"], ".2f"),
                    "yes" if q[name]["same_answer"] else "NO",
                ]
                for name in ("due_resends", "dead_letters")
            ],
        )
    if "move" in results:
        mv = results["move"]
        out.append("")
        out.append(
            f"moving shard {mv['shard']} ({mv['streams']:,} messages, {mv['events']:,} "
            f"events copied) to a fresh database on another server, writers running"
        )
        written = _num(mv["frozen_to_map_written_s"], ".2f")
        out.append(
            f"move {mv['seconds']:.2f} s; frozen_seconds {mv['frozen_seconds']:.2f} s; "
            f"frozen to new map written {written} s; "
            "steps: "
            + ", ".join(f"{st['step']} {st['at_s']:.2f}" for st in mv["steps"])
        )
        out += table(
            [
                "writer (single commands)",
                "ms before",
                "cmd/s before",
                "cmd/s during",
                "max ms",
                "stalled",
                "stalled s",
                "failed",
            ],
            [
                [
                    label,
                    _num(w["median_ms_before"], ".1f"),
                    _num(w["cmds_per_s_before"], ",.0f"),
                    _num(w["cmds_per_s_during"], ",.0f"),
                    _num(w["max_ms"], ",.0f"),
                    str(w["stalled_commands"]),
                    _num(w["stalled_total_s"], ".2f"),
                    str(w["failed_commands"]),
                ]
                for label, w in (
                    ("to the moved shard", mv["writer_moved_shard"]),
                    ("to another shard (control)", mv["writer_other_shard"]),
                )
            ],
        )
        out.append(
            f"stalled = commands during the move slower than {STALL_FACTOR:g}x the "
            "writer's median before it; stalled s = their total time"
        )
        if mv["errors"]:
            out.append(f"writer errors: {mv['errors'][:3]}")
    out.append("")
    out.append(f"total run time: {results['seconds']:.0f} s")
    return "\n".join(out)


# -- main --


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.run import machine

    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument("--rounds", type=int, default=None, help="writer rounds")
    parser.add_argument(
        "--servers",
        default=DEFAULT_SERVERS,
        help="four host:port, the first also the one-database contender's",
    )
    parser.add_argument(
        "--query-messages", type=int, default=None, help="messages of parts 2 and 3"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"which measurements (default all: {','.join(PARTS)})",
    )
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - set(PARTS):
        parser.error(f"--parts: choose from {','.join(PARTS)}")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if len(servers) != VIRTUAL_SHARDS:
        parser.error(f"--servers: exactly {VIRTUAL_SHARDS} host:port")
    if problem := server_problem(servers):
        parser.error(problem)
    sizes = dict(SIZES["quick" if args.quick else "full"])
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds: at least 1")
        sizes["rounds"] = args.rounds
    if args.query_messages is not None:
        sizes["query_messages"] = args.query_messages

    messages = sizes["query_messages"]
    from msgstate import setup_schema

    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/shards.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "rounds": sizes["rounds"],
        "sizes": sizes,
        "servers": servers,
        "parts": sorted(parts, key=PARTS.index),
        "load_average_start": list(os.getloadavg()),
    }
    schemas = Schemas()
    pool = Pool(max(PROCESS_COUNTS))
    try:
        with tempfile.TemporaryDirectory(prefix="msgstate-shardbench-") as tmp:
            directory = Path(tmp)
            if "writers" in parts:
                log("1. writers: one database vs a map of four")
                results["writers"] = measure_writers(
                    pool, servers, schemas, directory, sizes
                )
            if parts & {"queries", "move"}:
                log(f"2. filling a map and one database ({messages:,} messages)")
                one_url = schemas.fresh(servers[0])
                map_urls = [schemas.fresh(s) for s in servers]
                map_path = directory / "query-shards.toml"
                map_url = write_map(map_urls, map_path)
                setup_schema(one_url)
                setup_schema(map_url)
                results["fill"] = fill_stores(pool, one_url, map_url, messages)
                log(f"  filled: {results['fill']}")
                if "queries" in parts:
                    log("2. cross-shard queries")
                    results["queries"] = measure_queries(
                        one_url, map_url, messages, sizes["query_calls"]
                    )
                schemas.drop(one_url)
                if "move" in parts:
                    log("3. moving shard 0 while writers write")
                    target_url = schemas.fresh(servers[1])
                    results["move"] = measure_move(pool, map_path, target_url, sizes)
    finally:
        pool.close()
        schemas.drop_all()
    results["load_average_end"] = list(os.getloadavg())
    results["seconds"] = round(time.perf_counter() - started, 1)
    text = report(results)
    results["table"] = text.splitlines()
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
