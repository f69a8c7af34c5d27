"""msgstate's benchmark suite: every figure in one run, as ratios to same-run baselines.

    python benchmarks/run.py [--quick] [--backends memory,sqlite,postgres] \\
        [--json benchmarks/results.json]

On each backend: msgstate's four commands (create, failure 6012, resend,
delivery) one per transaction, against a hand-written eventsourcing aggregate
and a plain-SQL status row; msgstate in batches of 1,000 written as a plain
loop, and with ``prefetch`` / ``record_*s`` (also in batches of 100), against
the strongest hand-written eventsourcing batch (aggregates held in memory, one
save per 1,000) and one that reads them through eventsourcing's cache;
rebuilding the read models against a raw SELECT of the same events; ``get`` /
``get_at`` of a 5,000-event history with and without snapshots. On SQLite also
the peak RSS of creating 100,000 messages and of rebuilding over 1,000,000
events (and over a tenth of them). Contenders alternate over at least 3 rounds
and every figure is a median; a final table checks each target. ``--quick`` uses
tiny sizes (a smoke run: its figures mean nothing). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks.*` importable
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_history, bench_memory, bench_readmodels  # noqa: E402
from benchmarks.bench_commands import (  # noqa: E402
    BACKENDS,
    Store,
    fresh_store,
    handwritten_batch,
    handwritten_batch_memory,
    handwritten_single,
    msgstate_batch,
    msgstate_batch_loop,
    msgstate_single,
    plain_sql_single,
    postgres_problem,
)

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

SIZES: dict[str, dict[str, int]] = {
    "full": {
        # Short rounds, many of them: the disk's commit latency drifts a lot on
        # a shared machine, so alternating often beats measuring long.
        "rounds": 5,
        "warmup_messages": 5,  # untimed, before each contender's clock starts
        "single_messages": 300,  # 1,200 commands per contender and round
        "single_messages_memory": 3_000,  # in memory 300 take ~0.1 s: too noisy
        "batch_messages": 3_000,  # 12,000 commands per contender and round
        "rebuild_messages": 100_000,  # 125,000 events
        "history_events": 5_000,
        "snapshot_every": 100,
        "history_calls": 10,
        "memory_create_messages": 100_000,
        "memory_rebuild_events": 1_000_000,
    },
    "quick": {
        "rounds": 3,
        "warmup_messages": 1,
        "single_messages": 3,
        "single_messages_memory": 3,
        "batch_messages": 50,
        "rebuild_messages": 200,
        "history_events": 250,
        "snapshot_every": 100,
        "history_calls": 2,
        "memory_create_messages": 1_000,
        "memory_rebuild_events": 2_000,
    },
}
BATCH_SIZES = (100, 1_000)
BIG_BATCH = BATCH_SIZES[-1]

LABELS = {
    "msgstate": "msgstate, 1 command per transaction",
    "handwritten": "hand-written eventsourcing, 1 per transaction",
    "plain_sql": "plain SQL status row, 1 per transaction",
    f"msgstate_loop_{BIG_BATCH}": f"msgstate, batches of {BIG_BATCH:,}, plain loop",
    **{
        f"msgstate_batch_{n}": f"msgstate, batches of {n:,}, prefetch / record_*s"
        for n in BATCH_SIZES
    },
    f"handwritten_memory_{BIG_BATCH}": (
        f"hand-written eventsourcing, held in memory, batches of {BIG_BATCH:,}"
    ),
    f"handwritten_batch_{BIG_BATCH}": (
        f"hand-written eventsourcing, read via its cache, batches of {BIG_BATCH:,}"
    ),
}


def log(text: str) -> None:
    """Progress goes to stderr; the tables go to stdout."""
    print(text, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "arch": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "system": platform.system(),
        "packages": _packages(),
    }


def _packages() -> dict[str, str | None]:
    """Versions that move the figures: orjson (msgstate's faster transcoder when
    installed) and psycopg's implementation (pure Python, c or binary)."""
    from importlib import metadata

    found: dict[str, str | None] = {}
    for name in ("msgstate", "eventsourcing", "orjson", "psycopg"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        import psycopg

        found["psycopg_impl"] = psycopg.pq.__impl__
    except ImportError:
        found["psycopg_impl"] = None
    return found


# -- measuring --


def contenders(
    backend: str, sizes: dict[str, int]
) -> dict[str, Callable[[Store], float]]:
    single = sizes[
        "single_messages_memory" if backend == "memory" else "single_messages"
    ]
    many = sizes["batch_messages"]
    warm = sizes["warmup_messages"]
    runners: dict[str, Callable[[Store], float]] = {
        "msgstate": lambda s: msgstate_single(s, single, warm),
        "handwritten": lambda s: handwritten_single(s, single, warm),
    }
    if backend != "memory":
        runners["plain_sql"] = lambda s: plain_sql_single(s, single, warm)
    runners[f"msgstate_loop_{BIG_BATCH}"] = lambda s: msgstate_batch_loop(
        s, many, BIG_BATCH, warm
    )
    for size in BATCH_SIZES:
        runners[f"msgstate_batch_{size}"] = lambda s, k=size: msgstate_batch(
            s, many, k, warm
        )
    runners[f"handwritten_memory_{BIG_BATCH}"] = lambda s: handwritten_batch_memory(
        s, many, BIG_BATCH, warm
    )
    runners[f"handwritten_batch_{BIG_BATCH}"] = lambda s: handwritten_batch(
        s, many, BIG_BATCH, warm
    )
    return runners


def measure_commands(
    backend: str, directory: Path, postgres: str, sizes: dict[str, int]
) -> dict[str, Any]:
    """Every contender once per round, a fresh store each; the order rotates."""
    runners = contenders(backend, sizes)
    names = list(runners)
    rounds = sizes["rounds"]
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = (r * len(names)) // rounds
        for name in names[shift:] + names[:shift]:
            with fresh_store(backend, directory, postgres) as store:
                samples[name].append(runners[name](store))
            rate = samples[name][-1]
            log(f"  {backend} round {r + 1}/{rounds}: {name} {rate:,.0f} cmd/s")
    return {
        name: {
            "cmds_per_s": round(statistics.median(values), 1),
            "rounds_cmds_per_s": [round(v, 1) for v in values],
        }
        for name, values in samples.items()
    }


def measure_rebuild(
    backend: str, directory: Path, postgres: str, sizes: dict[str, int]
) -> dict[str, Any] | None:
    if backend == "memory":
        return None  # no SQL to compare with
    with fresh_store(backend, directory, postgres) as store:
        return bench_readmodels.measure(
            backend, store.url, sizes["rebuild_messages"], sizes["rounds"]
        )


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def ratios(commands: dict[str, Any]) -> dict[str, float | None]:
    def rate(name: str) -> float | None:
        return commands[name]["cmds_per_s"] if name in commands else None

    big = rate(f"msgstate_batch_{BIG_BATCH}")
    loop = rate(f"msgstate_loop_{BIG_BATCH}")
    strongest = rate(f"handwritten_memory_{BIG_BATCH}")
    return {
        "single_vs_handwritten": ratio(rate("msgstate"), rate("handwritten")),
        "loop_vs_strongest_batch": ratio(loop, strongest),
        "loop_vs_handwritten_single": ratio(loop, rate("handwritten")),
        "batch_vs_strongest_batch": ratio(big, strongest),
        "batch_vs_loop": ratio(big, loop),
        "single_vs_plain_sql": ratio(rate("msgstate"), rate("plain_sql")),
        "batch_vs_handwritten_single": ratio(big, rate("handwritten")),
        "batch_vs_handwritten_batch": ratio(
            big, rate(f"handwritten_batch_{BIG_BATCH}")
        ),
        "batch_vs_plain_sql": ratio(big, rate("plain_sql")),
        "batch_100_vs_handwritten_single": ratio(
            rate(f"msgstate_batch_{BATCH_SIZES[0]}"), rate("handwritten")
        ),
    }


# -- targets --

TARGETS: list[tuple[str, str, tuple[str, ...], str, float, float | None]] = [
    # key, what, backends, comparison, goal, floor
    (
        "single_vs_handwritten",
        "single commands: msgstate / hand-written",
        BACKENDS,
        ">=",
        1.0,
        None,
    ),
    (
        "loop_vs_strongest_batch",
        f"plain-loop batches of {BIG_BATCH:,} / strongest hand-written batch",
        ("sqlite", "postgres"),
        ">=",
        0.8,
        None,
    ),
    (
        "loop_vs_handwritten_single",
        f"plain-loop batches of {BIG_BATCH:,} / hand-written single",
        ("sqlite", "postgres"),
        ">=",
        10.0,
        None,
    ),
    (
        "batch_vs_strongest_batch",
        f"prefetch / record_*s batches of {BIG_BATCH:,} / strongest hand-written",
        ("sqlite", "postgres"),
        ">=",
        0.8,
        None,
    ),
    (
        "batch_vs_handwritten_single",
        f"batches of {BIG_BATCH:,} / hand-written single",
        ("sqlite", "postgres"),
        ">=",
        10.0,
        6.0,
    ),
    (
        "batch_vs_handwritten_batch",
        f"batches of {BIG_BATCH:,} / hand-written batch",
        ("sqlite", "postgres"),
        ">=",
        0.8,
        None,
    ),
    (
        "batch_vs_plain_sql",
        f"batches of {BIG_BATCH:,} / plain SQL single",
        ("sqlite", "postgres"),
        ">=",
        1.0,
        None,
    ),
    (
        "rebuild_vs_select",
        "rebuild / raw SELECT",
        ("sqlite", "postgres"),
        ">=",
        0.3,
        None,
    ),
    (
        "rebuild_peak_ratio",
        "rebuild peak RSS: 10x events / 1x",
        ("sqlite",),
        "<=",
        1.25,
        None,
    ),
]


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, what, backends, op, goal, floor in TARGETS:
        for backend in backends:
            if backend not in results["backends"]:
                continue
            figures = results["backends"][backend]
            if key == "rebuild_vs_select":
                value = (figures.get("rebuild") or {}).get("rebuild_over_select")
            elif key == "rebuild_peak_ratio":
                value = (results.get("memory") or {}).get(key)
            else:
                value = figures["ratios"].get(key)
            if value is None:
                status = "n/a"
            elif value >= goal if op == ">=" else value <= goal:
                status = "PASS"
            elif floor is not None and value >= floor:
                status = "MISS (floor met)"
            else:
                status = "MISS"
            wanted = f"{op} {goal:g}" + (f" (floor {floor:g})" if floor else "")
            rows.append(
                {
                    "target": key,
                    "what": what,
                    "backend": backend,
                    "ratio": value,
                    "goal": wanted,
                    "status": status,
                }
            )
    return rows


# -- printing --


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    columns = zip(headers, *rows, strict=True)
    widths = [max(len(str(x)) for x in column) for column in columns]

    def line(cells: list[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [f"{first:<{widths[0]}}"]
            + [f"{c:>{w}}" for c, w in zip(rest, widths[1:], strict=True)]
        )

    return [line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows]


def _num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> str:
    backends = list(results["backends"])
    out: list[str] = []
    m = results["machine"]
    out.append(
        f"machine: {m['arch']}, {m['cpu']}, {m['cpus']} CPUs, {m['python']}; "
        f"{results['rounds']} rounds, medians"
        + (" (QUICK: tiny sizes, figures mean nothing)" if results["quick"] else "")
    )
    p = m["packages"]
    out.append(
        f"packages: eventsourcing {p['eventsourcing']}, orjson {p['orjson']}, "
        f"psycopg {p['psycopg']} ({p['psycopg_impl']} implementation)"
    )
    s = results["sizes"]
    out.append("")
    out.append(
        f"commands/s (4 per message; {s['single_messages']:,} messages single "
        f"({s['single_messages_memory']:,} in memory), {s['batch_messages']:,} "
        "batched; fresh store each)"
    )
    names = list(LABELS)
    rows = []
    for name in names:
        rows.append(
            [LABELS[name]]
            + [
                _num(
                    results["backends"][b]["commands"].get(name, {}).get("cmds_per_s"),
                    ",.0f",
                )
                for b in backends
            ]
        )
    out += table(["", *backends], rows)
    out.append("")
    out.append("ratios (same run, medians)")
    ratio_labels = {
        "single_vs_handwritten": "msgstate single / hand-written single",
        "single_vs_plain_sql": "msgstate single / plain SQL single",
        "batch_100_vs_handwritten_single": (
            f"msgstate batch {BATCH_SIZES[0]:,} / hand-written single"
        ),
        "batch_vs_handwritten_single": (
            f"msgstate batch {BIG_BATCH:,} / hand-written single"
        ),
        "batch_vs_handwritten_batch": (
            f"msgstate batch {BIG_BATCH:,} / hand-written batch {BIG_BATCH:,}"
        ),
        "batch_vs_plain_sql": f"msgstate batch {BIG_BATCH:,} / plain SQL single",
        "loop_vs_strongest_batch": (
            f"msgstate plain loop {BIG_BATCH:,} / hand-written in memory {BIG_BATCH:,}"
        ),
        "loop_vs_handwritten_single": (
            f"msgstate plain loop {BIG_BATCH:,} / hand-written single"
        ),
        "batch_vs_strongest_batch": (
            f"msgstate batch {BIG_BATCH:,} / hand-written in memory {BIG_BATCH:,}"
        ),
        "batch_vs_loop": f"msgstate batch {BIG_BATCH:,} / plain loop {BIG_BATCH:,}",
    }
    out += table(
        ["", *backends],
        [
            [label]
            + [_num(results["backends"][b]["ratios"][key], ".2f") for b in backends]
            for key, label in ratio_labels.items()
        ],
    )
    rebuilt = {
        b: results["backends"][b]["rebuild"]
        for b in backends
        if results["backends"][b].get("rebuild")
    }
    if rebuilt:
        out.append("")
        out.append(f"read models ({s['rebuild_messages']:,} messages; events/s, ms)")
        keys = [
            ("events", "events in the log", ",.0f"),
            ("select_rows_per_s", "raw SELECT rows/s", ",.0f"),
            ("rebuild_events_per_s", "rebuild_projections events/s", ",.0f"),
            ("rebuild_over_select", "rebuild / SELECT", ".2f"),
            ("due_resends_100_ms", "due_resends(limit=100) ms", ".2f"),
            ("dead_letters_100_ms", "dead_letters(limit=100) ms", ".2f"),
            ("status_counts_ms", "status_counts() ms", ".2f"),
        ]
        out += table(
            ["", *rebuilt],
            [
                [label] + [_num(f.get(k), spec) for f in rebuilt.values()]
                for k, label, spec in keys
            ],
        )
    out.append("")
    out.append(
        f"loading a {s['history_events']:,}-event history, ms per call "
        f"(cache_size=0; snapshots every {s['snapshot_every']})"
    )
    history_keys = [
        ("get_no_snapshots_ms", "get, no snapshots"),
        ("get_snapshots_ms", "get, snapshots"),
        (
            "get_at_no_snapshots_ms",
            f"get_at(version={s['history_events'] // 2:,}), no snapshots",
        ),
        (
            "get_at_snapshots_ms",
            f"get_at(version={s['history_events'] // 2:,}), snapshots",
        ),
    ]
    out += table(
        ["", *backends],
        [
            [label]
            + [_num(results["backends"][b]["history"].get(k), ".2f") for b in backends]
            for k, label in history_keys
        ],
    )
    memory = results.get("memory")
    if memory:
        out.append("")
        out.append("peak RSS on SQLite, fresh process each (MiB)")
        create, small, large = (
            memory["create"],
            memory["rebuild_small"],
            memory["rebuild_large"],
        )
        out += table(
            ["", "before", "peak", "per s"],
            [
                [
                    f"create {create['count']:,} messages in batches of 1,000",
                    f"{create['rss_before_mb']:.1f}",
                    f"{create['peak_rss_mb']:.1f}",
                    f"{create['per_s']:,}",
                ],
                *[
                    [
                        f"rebuild over {r['count']:,} events",
                        f"{r['rss_before_mb']:.1f}",
                        f"{r['peak_rss_mb']:.1f}",
                        f"{r['per_s']:,}",
                    ]
                    for r in (small, large)
                ],
            ],
        )
        out.append(
            f"rebuild peak at 10x the events: x{memory['rebuild_peak_ratio']:.2f} "
            f"({memory['rebuild_growth_mb']:+.1f} MiB)"
        )
    out.append("")
    out.append("targets")
    out += table(
        ["", "backend", "measured", "target", "result"],
        [
            [t["what"], t["backend"], _num(t["ratio"], ".2f"), t["goal"], t["status"]]
            for t in results["targets"]
        ],
    )
    out.append("")
    out.append(f"total run time: {results['seconds']:.0f} s")
    return "\n".join(out)


# -- main --


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--backends", default="memory,sqlite,postgres")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("MSGSTATE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES,
        help="PostgreSQL database (a fresh schema is made and dropped per store)",
    )
    parser.add_argument("--rounds", type=int, default=None, help="at least 3")
    parser.add_argument(
        "--memory-rebuild-events",
        type=int,
        default=None,
        help="events of the big rebuild-RSS run (default 1,000,000)",
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(BACKENDS)
    if unknown or not backends:
        parser.error(f"--backends: choose from {','.join(BACKENDS)}")
    if "postgres" in backends and (problem := postgres_problem(args.postgres)):
        parser.error(problem)
    sizes = dict(SIZES["quick" if args.quick else "full"])
    if args.rounds is not None:
        if args.rounds < 3:
            parser.error("--rounds: at least 3 (medians of alternating rounds)")
        sizes["rounds"] = args.rounds
    if args.memory_rebuild_events is not None:
        sizes["memory_rebuild_events"] = args.memory_rebuild_events

    started = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/run.py", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "rounds": sizes["rounds"],
        "sizes": sizes,
        "batch_sizes": list(BATCH_SIZES),
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="msgstate-bench-") as tmp:
        directory = Path(tmp)
        for backend in backends:
            log(f"{backend}: commands")
            commands = measure_commands(backend, directory, args.postgres, sizes)
            log(f"{backend}: read-model rebuild")
            rebuild = measure_rebuild(backend, directory, args.postgres, sizes)
            log(f"{backend}: get / get_at")
            history = bench_history.measure(
                backend,
                directory,
                args.postgres,
                events=sizes["history_events"],
                snapshot_every=sizes["snapshot_every"],
                rounds=sizes["rounds"],
                calls=sizes["history_calls"],
            )
            results["backends"][backend] = {
                "commands": commands,
                "ratios": ratios(commands),
                "rebuild": rebuild,
                "history": history,
            }
        if "sqlite" in backends:
            log("sqlite: peak RSS (fresh processes)")
            results["memory"] = bench_memory.measure(
                directory,
                sizes["memory_create_messages"],
                sizes["memory_rebuild_events"],
            )
    results["targets"] = check_targets(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    text = report(results)
    results["table"] = text.splitlines()
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
