"""A fast smoke run of the process benchmark, so it cannot rot unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_processes
from tests import pg


def test_process_benchmark_smoke(tmp_path: Path) -> None:
    """1 and 2 processes on PostgreSQL: each run counts its commands and a rate."""
    url = pg.fresh_url()  # skips, or fails when PostgreSQL is required
    out = tmp_path / "processes.json"
    results = bench_processes.main(
        ["--url", url, "--processes", "1,2", "--messages", "5", "--json", str(out)]
    )
    assert [1, 2] == [run["processes"] for run in results["runs"]]
    for run in results["runs"]:
        assert 4 * 5 * run["processes"] == run["commands"]
        assert run["cmds_per_s"] > 0
    assert 1.0 == results["runs"][0]["speedup_vs_1"]
    assert results == json.loads(out.read_text())
