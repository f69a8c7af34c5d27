"""A fast smoke run of the worker benchmark, so it cannot rot unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import bench_worker
from tests import pg


def test_worker_benchmark_smoke(tmp_path: Path) -> None:
    """Every scenario on both backends delivers every message and has a rate and
    its ratio (to the hand loop, or to the latency bound)."""
    url = pg.fresh_url()  # skips, or fails when PostgreSQL is required
    out = tmp_path / "worker.json"
    results = bench_worker.main(
        ["--quick", "--url", url.split("?")[0], "--latency", "0.01", "--json", str(out)]
    )
    assert {"sqlite", "postgres"} == set(results["backends"])
    for rows in results["backends"].values():
        assert 5 == len(rows)
        for row in rows.values():
            assert row["msgs_per_s"] > 0
        bounded = [row for row in rows.values() if "ratio_to_bound" in row]
        assert [100.0, 3200.0] == [row["bound_msgs_per_s"] for row in bounded]
    assert results == json.loads(out.read_text())
