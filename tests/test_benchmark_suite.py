"""A fast smoke run of the benchmark suite (``benchmarks/run.py --quick``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import run
from tests import pg

STATUSES = {"PASS", "MISS", "MISS (floor met)"}


def _check_backend(figures: dict[str, Any], *, plain_sql: bool) -> None:
    commands = figures["commands"]
    assert plain_sql == ("plain_sql" in commands)
    for name, numbers in commands.items():
        assert numbers["cmds_per_s"] > 0, name
        assert 3 == len(numbers["rounds_cmds_per_s"]), name
    assert figures["ratios"]["single_vs_handwritten"] > 0
    assert figures["ratios"]["batch_vs_handwritten_batch"] > 0
    for key in ("loop_vs_strongest_batch", "batch_vs_strongest_batch", "batch_vs_loop"):
        assert figures["ratios"][key] > 0, key
    assert {"msgstate_loop_1000", "handwritten_memory_1000"} <= set(commands)
    history = figures["history"]
    for key in ("get", "get_at"):
        for kind in ("no_snapshots", "snapshots"):
            assert history[f"{key}_{kind}_ms"] > 0


def test_quick_suite_memory_and_sqlite(tmp_path: Path) -> None:
    """Every section runs on memory and SQLite, and the JSON matches the result."""
    out = tmp_path / "results.json"
    results = run.main(["--quick", "--backends", "memory,sqlite", "--json", str(out)])
    assert ["memory", "sqlite"] == list(results["backends"])
    _check_backend(results["backends"]["memory"], plain_sql=False)
    _check_backend(results["backends"]["sqlite"], plain_sql=True)
    assert results["backends"]["memory"]["rebuild"] is None
    rebuild = results["backends"]["sqlite"]["rebuild"]
    assert rebuild["rebuild_over_select"] > 0
    memory = results["memory"]
    assert 10 * memory["rebuild_small"]["count"] == memory["rebuild_large"]["count"]
    assert memory["create"]["peak_rss_mb"] > 0
    targets = {(t["target"], t["backend"]): t for t in results["targets"]}
    assert ("single_vs_handwritten", "memory") in targets
    assert ("rebuild_peak_ratio", "sqlite") in targets
    assert {t["status"] for t in results["targets"]} <= STATUSES
    assert results == json.loads(out.read_text())
    assert any(line.startswith("targets") for line in results["table"])


def test_quick_suite_postgres() -> None:
    """The same on PostgreSQL (skips without a server, fails if it is required)."""
    pg.require()
    results = run.main(["--quick", "--backends", "postgres", "--postgres", pg.BASE_URL])
    figures = results["backends"]["postgres"]
    _check_backend(figures, plain_sql=True)
    assert figures["rebuild"]["rebuild_over_select"] > 0
    assert "memory" not in results  # peak RSS is measured on SQLite only
    assert {t["status"] for t in results["targets"]} <= STATUSES
