"""Peak memory (RSS) of big jobs on SQLite, each in a fresh Python process.

* ``create``: open a service and create N messages with ``service.batch()``,
  1,000 per transaction;
* ``rebuild``: open a service on a store already holding E events (filled by a
  separate ``fill`` process through ``service.save`` of ``Message`` aggregates,
  as ``bench_readmodels.fill`` does) and run ``rebuild_projections()``; the same
  is done over E/10 events, so the two peaks show whether a rebuild's memory
  grows with the number of events.

A child reports its peak RSS just before its job (imports and an open service)
and after it (the job's peak), as JSON on stdout. The peak is ``VmHWM`` from
``/proc/self/status``: on Linux ``getrusage(RUSAGE_SELF).ru_maxrss`` survives
``exec``, so a child started from a big parent would report the parent's size
(``ru_maxrss`` is used only where ``/proc`` is missing). Used by
``benchmarks/run.py``; a child runs as

    python -m benchmarks.bench_memory {create,fill,rebuild} --db PATH -n COUNT
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1_000


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes vs KiB
    return round(peak / scale, 1)


def _child(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("job", choices=["create", "fill", "rebuild"])
    parser.add_argument("--db", required=True)
    parser.add_argument("-n", type=int, required=True)
    args = parser.parse_args(argv)

    from msgstate import MessageService

    service = MessageService.open(f"sqlite:///{args.db}")
    before = peak_rss_mb()
    start = time.perf_counter()
    try:
        if args.job == "create":
            for first in range(0, args.n, BATCH):
                with service.batch() as batch:
                    for i in range(first, min(first + BATCH, args.n)):
                        batch.create(f"m{i:07d}", sender="alice", user_id="bob")
            count = args.n
        elif args.job == "fill":
            from benchmarks.bench_readmodels import fill

            # fill() stores 1.25 events per message (a quarter of them fail once).
            count = fill(service, args.n * 4 // 5)
        else:
            count = service.rebuild_projections()
            if count != args.n:
                raise RuntimeError(f"rebuilt {count} events, expected {args.n}")
    finally:
        service.close()
    seconds = time.perf_counter() - start
    return {
        "job": args.job,
        "count": count,
        "seconds": round(seconds, 2),
        "per_s": round(count / seconds),
        "rss_before_mb": before,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_child(job: str, db: Path, n: int) -> dict[str, Any]:
    """Run one job in a fresh interpreter; its JSON report."""
    path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    command = [sys.executable, "-m", "benchmarks.bench_memory", job, "--db", str(db)]
    done = subprocess.run(
        [*command, "-n", str(n)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory {job} failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def measure(
    directory: Path, create_messages: int, rebuild_events: int
) -> dict[str, Any]:
    """Peak RSS of creating ``create_messages`` and of rebuilding over
    ``rebuild_events`` and over a tenth of them (SQLite)."""
    created = run_child("create", directory / "create.db", create_messages)
    rebuilds = []
    for events in (rebuild_events // 10, rebuild_events):
        db = directory / f"rebuild-{events}.db"
        filled = run_child("fill", db, events)
        rebuilt = run_child("rebuild", db, filled["count"])
        rebuilt["fill_seconds"] = filled["seconds"]
        rebuilds.append(rebuilt)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    small, large = rebuilds
    return {
        "create": created,
        "rebuild_small": small,
        "rebuild_large": large,
        # 10x the events: how much higher is the peak?
        "rebuild_peak_ratio": round(large["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "rebuild_growth_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1),
    }


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1:])))
