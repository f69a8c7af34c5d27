"""Collisions on a shard map between real OS processes.

Four spawned processes open the same map file (``shards:///...``, three
PostgreSQL databases) and send colliding commands over one shared set of message
ids that covers every virtual shard: creates with identical fields, failures of
the current or an older attempt, resends with request ids of their own or shared
with the other processes, deliveries with a shared or a private seq, and batches
(``record_deliveries`` and ``record_failures`` over several shards at once).
Each process logs every acknowledged answer. Afterwards the databases are read
directly:

* every stream's versions are exactly 1..n, and it lives in exactly one
  database: the one its shard maps to (and the SQL shard function agrees);
* every acknowledged answer is in the store: the message as it was after the
  acknowledged version is the acknowledged view (status, attempts, error, seq,
  request id, and the time of the event that made that version);
* no request id was accepted twice for a message, and every answer naming a
  request id tells the attempt that request was accepted for.

A second test has the four processes open a map of fresh, empty databases at the
same moment (table and fence DDL, shard claims racing) several times: every open
succeeds and the databases record exactly the map's shards.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from msgstate import (
    MessageService,
    MessageView,
    MsgStateError,
    ResendPolicy,
    ShardedMessageService,
    ShardMap,
)
from msgstate._pg_shards import ShardTables
from msgstate.shards import shard_of
from tests import shardpg

PROCESSES = 4
COMMANDS = 300
"""Commands per process (each a few milliseconds; batches count as one)."""
OPEN_ROUNDS = 8
"""Fresh maps the processes open together in the concurrent-open test."""
VIRTUAL_SHARDS = 16
PER_SHARD = 2
"""Shared message ids per virtual shard (32 in all): few, so commands collide."""
BARRIER_TIMEOUT = 120.0
POOL_OPTIONS = "&pool_size=1&max_overflow=2&connect_timeout=30"
"""Small pools: 4 processes x 3 databases, on servers other tests use too."""

POLICY = ResendPolicy(
    max_attempts=1000,
    enforce_backoff=False,
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=1),
    jitter=0.0,
)
"""Resends are allowed right after a failure, for a long time: many collisions."""

TIMEOUT = 6012  # a transient code: a resend may follow


def shared_ids() -> list[str]:
    """``PER_SHARD`` ids for each virtual shard (uuid5 stream ids, as the map's)."""
    found: dict[int, list[str]] = defaultdict(list)
    with MessageService.open("memory://") as probe:
        k = 0
        while len(found) < VIRTUAL_SHARDS or any(
            len(v) < PER_SHARD for v in found.values()
        ):
            msg_id = f"c-{k}"
            ids = found[shard_of(probe.stream_id(msg_id), VIRTUAL_SHARDS)]
            if len(ids) < PER_SHARD:
                ids.append(msg_id)
            k += 1
    return sorted(m for ids in found.values() for m in ids)


def fresh_map_file(directory: Path) -> Path:
    """A map of three fresh databases (with small pools) in ``directory``."""
    path = directory / "shards.toml"
    urls = [f"{url}{POOL_OPTIONS}" for url in shardpg.fresh_urls(3)]
    shardpg.even_map(urls, VIRTUAL_SHARDS).save(path)
    return path


# -- in the worker processes --

_barrier: Barrier | None = None


def _keep_barrier(barrier: Barrier) -> None:
    """Pool initializer: a Barrier reaches workers only by inheritance."""
    global _barrier
    _barrier = barrier


def _shown(view: MessageView) -> dict[str, Any]:
    """What an acknowledged answer says, as logged."""
    return {
        "msg_id": view.msg_id,
        "version": view.version,
        "status": int(view.status),
        "attempts": view.attempts,
        "last_error_code": view.last_error_code,
        "seq": view.seq,
        "request_id": view.request_id,
        "updated_at": view.updated_at.isoformat(),
    }


def _collide(path: str, worker: int, ids: list[str], log_path: str) -> dict[str, int]:
    """Run :data:`COMMANDS` random colliding commands; log each outcome.

    Lines: ``{"op", "asked": <request id or seq asked for>, "ok": <the answer,
    see _shown> | "refused": <error code name>}``.
    """
    assert _barrier is not None
    rng = random.Random(1000 + worker)
    counts: Counter[str] = Counter()
    service = MessageService.open(f"shards://{path}", policy=POLICY)
    try:
        assert isinstance(service, ShardedMessageService)
        _barrier.wait(BARRIER_TIMEOUT)  # every process open: start together
        with open(log_path, "w", encoding="utf-8", buffering=1) as log:

            def write(op: str, asked: str | None, answer: Any) -> None:
                line: dict[str, Any] = {"op": op, "asked": asked, "worker": worker}
                if isinstance(answer, MsgStateError):
                    line["refused"] = answer.code.name
                    counts[f"{op} refused"] += 1
                else:
                    line["ok"] = _shown(answer)
                    counts[f"{op} ok"] += 1
                log.write(json.dumps(line) + "\n")

            for k in range(COMMANDS):
                late = k >= COMMANDS * 2 // 3  # deliveries end messages: mostly late
                op = rng.choices(
                    ["create", "fail", "resend", "deliver", "deliveries", "failures"],
                    weights=[15, 30, 40, 4 if late else 0, 4 if late else 0, 8],
                )[0]
                msg_id = rng.choice(ids)
                asked: str | None = None
                try:
                    if op == "create":
                        answer: Any = service.create(msg_id, sender="s", user_id="u")
                    elif op == "fail":
                        attempt = rng.choice([None, None, 1, 2])
                        answer = service.record_failure(
                            msg_id, code=TIMEOUT, attempt=attempt
                        )
                    elif op == "resend":
                        asked = (
                            f"{msg_id}-shared-{rng.randrange(3)}"
                            if rng.random() < 0.5
                            else f"{msg_id}-w{worker}-{k}"
                        )
                        answer = service.resend(msg_id, request_id=asked)
                    elif op == "deliver":
                        asked = f"seq-{msg_id}" if rng.random() < 0.8 else f"w{worker}"
                        answer = service.record_delivery(msg_id, seq=asked)
                    else:
                        chosen = rng.sample(ids, 3)  # mostly on several shards
                        if op == "deliveries":
                            items = [{"msg_id": m, "seq": f"seq-{m}"} for m in chosen]
                            answers = service.record_deliveries(items)
                        else:
                            items = [{"msg_id": m, "code": TIMEOUT} for m in chosen]
                            answers = service.record_failures(items)
                        for item, each in zip(items, answers, strict=True):
                            write(op, item.get("seq"), each)
                        continue
                except MsgStateError as error:
                    answer = error
                write(op, asked, answer)
    finally:
        service.close()
    return dict(counts)


def _open_at_once(paths: Sequence[str], worker: int) -> list[tuple[int, str]]:
    """Open ``paths[r]`` in round ``r`` with the others; write one message per
    database. Returns the failures as (round, error)."""
    assert _barrier is not None
    failures: list[tuple[int, str]] = []
    for round_, path in enumerate(paths):
        _barrier.wait(BARRIER_TIMEOUT)
        try:
            with MessageService.open(f"shards://{path}") as service:
                for msg_id in _open_ids(worker):
                    service.create(msg_id, sender="s", user_id="u")
        except Exception as error:  # the test reports every kind of failure
            failures.append((round_, f"{type(error).__name__}: {error}"))
    return failures


def _open_ids(worker: int) -> list[str]:
    return [f"open-{worker}-{i}" for i in range(6)]


# -- the checks, in the test process --


def _pool(size: int) -> Any:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(size)
    return context.Pool(size, _keep_barrier, (barrier,))


def _streams(shard_map: ShardMap) -> dict[str, dict[Any, list[int]]]:
    """Per database URL: each stream's versions in order, read from its table;
    checks the SQL shard function agrees with :func:`shard_of` on the way."""
    found: dict[str, dict[Any, list[int]]] = {}
    with MessageService.open(shard_map, create_tables=False) as service:
        assert isinstance(service, ShardedMessageService)
        for url, database in service.databases.items():
            tables = ShardTables(database)
            streams: dict[Any, list[int]] = defaultdict(list)
            base = url.split("?")[0]
            with psycopg.connect(base, row_factory=dict_row) as connection:
                rows = connection.execute(
                    f'SELECT originator_id, originator_version, "{tables.schema_name}"'
                    f".msgstate_shard(originator_id) AS shard "
                    f'FROM "{tables.schema_name}"."{tables.events_name}" '
                    "ORDER BY originator_id, originator_version"
                ).fetchall()
            for row in rows:
                assert row["shard"] == shard_of(row["originator_id"], VIRTUAL_SHARDS)
                streams[row["originator_id"]].append(row["originator_version"])
            found[url] = dict(streams)
    return found


def _acks(directory: Path) -> list[dict[str, Any]]:
    lines = []
    for log in sorted(directory.glob("worker-*.jsonl")):
        lines.extend(json.loads(line) for line in log.read_text().splitlines())
    return lines


@pytest.mark.slow
def test_processes_colliding_on_every_shard_lose_nothing(tmp_path: Path) -> None:
    path = fresh_map_file(tmp_path)
    shard_map = ShardMap.load(path)
    ids = shared_ids()
    with MessageService.open(shard_map):  # tables and shard claims exist first
        pass
    with _pool(PROCESSES) as pool:
        results = [
            pool.apply_async(
                _collide,
                (str(path), w, ids, str(tmp_path / f"worker-{w}.jsonl")),
            )
            for w in range(PROCESSES)
        ]
        counts = [r.get(timeout=BARRIER_TIMEOUT * 3) for r in results]
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    # The run collided: answers and refusals of every kind.
    for op in ("create", "fail", "resend", "deliveries", "failures"):
        assert total[f"{op} ok"] > 0, total
    assert sum(n for k, n in total.items() if k.endswith("refused")) > 0, total

    # 1. No version gap; every stream in exactly its shard's database.
    streams = _streams(shard_map)
    homes: dict[Any, list[str]] = defaultdict(list)
    for url, found in streams.items():
        for stream_id, versions in found.items():
            assert versions == list(range(1, len(versions) + 1)), stream_id
            homes[stream_id].append(url)
            assert shard_map.database_of(shard_map.shard_of(stream_id)) == url
    assert all(len(urls) == 1 for urls in homes.values())
    assert {len(found) > 0 for found in streams.values()} == {True}

    with MessageService.open(f"shards://{path}", policy=POLICY) as service:
        assert isinstance(service, ShardedMessageService)
        stream_ids = {service.stream_id(m): m for m in ids}
        assert set(homes) <= set(stream_ids)
        length = {stream_ids[s]: len(v) for f in streams.values() for s, v in f.items()}
        histories = {m: service.history(m) for m in length}

        # 2. Every acknowledged answer is in the store, at its version.
        acks = [a for a in _acks(tmp_path) if "ok" in a]
        assert len(acks) > PROCESSES * COMMANDS // 4
        for ack in acks:
            shown = ack["ok"]
            msg_id = shown["msg_id"]
            assert shown["version"] <= length[msg_id], ack
            then = service.get_at(msg_id, version=shown["version"])
            assert _shown(then) == shown, ack
            event = histories[msg_id][shown["version"] - 1]
            assert event.recorded_at.isoformat() == shown["updated_at"], ack

        # 3. No request id accepted twice; answers name the attempt accepted.
        accepted: dict[tuple[str, str], int] = {}
        for msg_id, history in histories.items():
            for entry in history:
                if entry.event == "ResendRequested":
                    key = (msg_id, entry.data["request_id"])
                    assert key not in accepted, (key, history)
                    accepted[key] = entry.attempt
        for ack in acks:
            shown = ack["ok"]
            if ack["op"] != "resend":
                continue
            key = (shown["msg_id"], ack["asked"])
            assert key in accepted, ack  # an answered resend was accepted
            assert shown["attempts"] >= accepted[key], ack
            if shown["request_id"] == ack["asked"]:
                assert shown["attempts"] == accepted[key], ack
        collided = Counter(
            (a["ok"]["msg_id"], a["asked"])
            for a in acks
            if a["op"] == "resend" and "-shared-" in a["asked"]
        )
        assert max(collided.values(), default=0) > 1  # some id answered twice

        # The merged read models count every stream once, in its status.
        statuses = Counter(service.get(m).status for m in length)
        counts = service.status_counts()
        assert {s: n for s, n in counts.items() if n} == dict(statuses)
        assert 0 == service.projection_lag()


@pytest.mark.slow
def test_processes_opening_fresh_maps_at_once_all_succeed(tmp_path: Path) -> None:
    paths = []
    for r in range(OPEN_ROUNDS):
        directory = tmp_path / f"round-{r}"
        directory.mkdir()
        paths.append(str(fresh_map_file(directory)))
    with _pool(PROCESSES) as pool:
        results = [
            pool.apply_async(_open_at_once, (paths, w)) for w in range(PROCESSES)
        ]
        failures = [
            (w, *f) for w, r in enumerate(results) for f in r.get(BARRIER_TIMEOUT * 3)
        ]
    assert [] == failures
    written = {m for w in range(PROCESSES) for m in _open_ids(w)}
    for path in paths:
        shard_map = ShardMap.load(path)
        with MessageService.open(f"shards://{path}", create_tables=False) as service:
            assert isinstance(service, ShardedMessageService)
            for url, database in service.databases.items():
                rows = ShardTables(database).rows()
                assert dict.fromkeys(shard_map.databases[url], "owned") == {
                    s: state for s, (state, _, _) in rows.items()
                }
            assert written == {service.get(m).msg_id for m in written}
            assert len(written) == sum(service.status_counts().values())
        streams = _streams(shard_map)
        assert sum(len(f) for f in streams.values()) == len(written)
        assert all(len(f) > 0 for f in streams.values())


def test_the_harness_reports_a_failing_open(tmp_path: Path) -> None:
    """A map no process can open is reported by every process (so a green run of
    the concurrent-open test means something)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("virtual_shards = 3\n[databases]\n")
    with _pool(2) as pool:
        results = [pool.apply_async(_open_at_once, ([str(bad)], w)) for w in range(2)]
        failures = [f for r in results for f in r.get(BARRIER_TIMEOUT)]
    assert len(failures) == 2
    assert all("InvalidArgument" in error for _, error in failures)
