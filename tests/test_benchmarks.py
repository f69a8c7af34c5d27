"""A fast smoke run of the benchmarks, so they cannot rot unnoticed."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_core


def test_core_benchmark_smoke(tmp_path: Path) -> None:
    """bench_core measures both sides on both backends and writes its JSON."""
    out = tmp_path / "core.json"
    results = bench_core.main(["--messages", "20", "--rounds", "1", "--json", str(out)])
    assert {"memory", "sqlite"} == set(results["backends"])
    for figures in results["backends"].values():
        assert figures["msgstate_cmds_per_s"] > 0
        assert figures["handwritten_cmds_per_s"] > 0
    assert out.read_text().startswith("{")
