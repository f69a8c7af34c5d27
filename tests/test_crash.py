"""Crash safety: a writer process killed with SIGKILL at random moments.

Each round starts a writer (``python -m tests.soak_worker --mode crash``: single
commands mixed with two-message transactions ``service.save(a, b)``), waits
until it has started working, sleeps a fresh random delay and kills it with
SIGKILL. Then a fresh service opens the store, with no repair step, and every
invariant of the soak test is checked again over the whole store: streams have
no version gaps and replay legally, each pair was stored whole or not at all,
and every command the writer logged as returned is in the store.

``MSGSTATE_CRASH_KILLS`` (default 20) sets the kills per backend;
``MSGSTATE_CRASH_SEED`` fixes the delays and the writers' seeds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from msgstate import MessageStatus, setup_schema
from tests.soak_worker import seq_for
from tests.test_soak import (
    SOAK_BACKENDS,
    WorkerRun,
    check_store,
    env_int,
    kill_all,
    open_gate,
    open_service,
    read_log,
    read_streams,
    spawn_worker,
    store_url,
    wait_ready,
)

MAX_DELAY = 0.3  # seconds after the writer starts working


def start_writer(directory: Path, url: str, round_: int, seed: int) -> WorkerRun:
    """A writer that would run for minutes; it waits at its own gate first."""
    return spawn_worker(
        directory,
        f"writer-{round_}",
        url=url,
        mode="crash",
        process=round_,
        commands=1_000_000,
        seed=seed,
        prefix=f"crash-{round_}",
        pair_prefix=f"pair-{round_}",
        ids=4,
        gate=directory / f"gate-{round_}",
    )


def wait_started(run: WorkerRun, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not run.started.exists():
        assert run.process.poll() is None, run.failure()
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.001)


@pytest.mark.slow
@pytest.mark.parametrize("backend", SOAK_BACKENDS)
def test_store_survives_writers_killed_mid_work(backend: str, tmp_path: Path) -> None:
    """SIGKILL at random moments never leaves a torn pair, a gap or a lost write."""
    kills = env_int("MSGSTATE_CRASH_KILLS", 20)
    seed = env_int("MSGSTATE_CRASH_SEED", random.randrange(1_000_000))
    rng = random.Random(seed)
    url = store_url(backend, tmp_path)
    setup_schema(url)
    began = time.time()
    records: list[dict[str, Any]] = []
    survived = interrupted = inside_command = inside_pair = 0
    done_per_kill: list[int] = []
    # The next writer is started while the current one works, so that its
    # interpreter start-up is off the clock; it waits at its gate until its turn.
    upcoming = start_writer(tmp_path, url, 0, rng.randrange(1_000_000))
    run: WorkerRun | None = None
    try:
        for round_ in range(kills):
            run = upcoming
            wait_ready([run])
            open_gate(tmp_path / f"gate-{round_}", delay=0.0)
            if round_ + 1 < kills:
                upcoming = start_writer(
                    tmp_path, url, round_ + 1, rng.randrange(1_000_000)
                )
            wait_started(run)
            time.sleep(rng.uniform(0, MAX_DELAY))
            os.kill(run.process.pid, signal.SIGKILL)
            run.process.wait()
            assert -signal.SIGKILL == run.process.returncode, run.failure()

            log = read_log(run.log)
            finished = run.stats.exists()
            interrupted += run.started.exists() and not finished
            last = log[-1] if log else {}
            inside_command += "begin" in last
            inside_pair += last.get("begin") == "pair"
            done = [r for r in log if "outcome" in r]
            done_per_kill.append(len(done))
            assert not [
                r
                for r in done
                if r["outcome"] == "error" or r.get("code") == "STORAGE_ERROR"
            ], f"round {round_}: the writer hit errors"
            records.extend(log)

            # A fresh service opens the store as the kill left it: no repair.
            service = open_service(url)
            try:
                mine = (f"crash-{round_}-", f"pair-{round_}-")
                figures = check_store(
                    service,
                    records,
                    complete_logs=False,
                    query=lambda msg_id, mine=mine: msg_id.startswith(mine),
                )
            finally:
                service.close()
            survived += 1
    finally:
        kill_all([run, upcoming])

    # Every message left behind can still be written to, and all still holds.
    service = open_service(url)
    try:
        finished_off = 0
        stored = [events[0].data["msg_id"] for events in read_streams(service).values()]
        for msg_id in sorted(stored):
            view = service.get(msg_id)
            if view.status is not MessageStatus.SEND_SUCC:
                service.record_delivery(msg_id, seq=seq_for(msg_id))
                finished_off += 1
        figures = check_store(service, records, complete_logs=False)
        assert figures["messages"] == figures["final_statuses"].get("SEND_SUCC")
    finally:
        service.close()

    result = {
        "backend": backend,
        "seed": seed,
        "kills": kills,
        "kills_survived": survived,
        "kills_interrupting_work": interrupted,
        "kills_inside_a_command": inside_command,
        "kills_inside_a_pair_transaction": inside_pair,
        "commands_before_kill_median": statistics.median(done_per_kill),
        "commands_before_kill_range": [min(done_per_kill), max(done_per_kill)],
        "pairs_stored": sum(
            1 for r in records if r.get("cmd") == "pair" and r.get("outcome") == "ok"
        ),
        "messages_finished_after": finished_off,
        **figures,
        "seconds": round(time.time() - began, 2),
    }
    out = tmp_path / f"crash-{backend}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ncrash {backend}: {json.dumps(result)}\n  -> {out}")
    assert kills == survived
    assert kills == interrupted, "some kill landed before or after the work"
    assert result["pairs_stored"] > 0
