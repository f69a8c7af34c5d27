"""``msgstate worker``: one pass in process, a bad option, and SIGTERM for real."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from msgstate import MessageService, MessageStatus, ResendPolicy
from tests.test_cli import invoke, one_error_line

FAST = "initial_interval = 0.001\nmaximum_interval = 0.001\n"


def failed_store(tmp_path: Path, count: int) -> str:
    url = f"sqlite:///{tmp_path / 'worker.db'}"
    service = MessageService.open(url)
    with service.batch() as batch:
        for k in range(count):
            batch.create(f"m{k:03d}", sender="alice", user_id="bob")
            batch.record_failure(f"m{k:03d}", code=6012)
    service.close()
    return url


@pytest.mark.parametrize("concurrency", ["1", "8"])
def test_once_runs_one_pass_and_prints_a_json_summary(
    tmp_path: Path, concurrency: str
) -> None:
    url = failed_store(tmp_path, 30)
    policy = tmp_path / "policy.toml"
    policy.write_text(FAST, encoding="utf-8")
    time.sleep(0.01)
    result = invoke(
        "worker",
        "--db",
        url,
        "--transport",
        "simulated",
        "--failure-rate",
        "0",
        "--once",
        "--concurrency",
        concurrency,
        "--worker-id",
        "cli-1",
        "--policy",
        str(policy),
    )
    assert 0 == result.exit_code, result.stderr
    summary = json.loads(result.stdout)
    assert (30, 30, 0, 1, "cli-1", {"SEND_SUCC": 30}) == (
        summary["claimed"],
        summary["delivered"],
        summary["failed"],
        summary["passes"],
        summary["worker_id"],
        summary["status_counts"],
    )
    service = MessageService.open(url, policy=ResendPolicy.from_dict({}))
    assert {"cli-1"} == {
        e.data["actor"]
        for k in range(30)
        for e in service.history(f"m{k:03d}")
        if e.event == "ResendRequested"
    }
    service.close()


def test_an_unknown_transport_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(
        "worker", "--db", f"sqlite:///{tmp_path}/x.db", "--transport", "tcp"
    )
    assert 2 == result.exit_code
    assert "--transport" in one_error_line(result)


def test_sigterm_stops_the_worker_cleanly(tmp_path: Path) -> None:
    """A real ``msgstate worker`` process: SIGTERM mid-run exits 0, prints its
    summary, and leaves nothing SENDING."""
    url = failed_store(tmp_path, 200)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msgstate",
            "worker",
            "--db",
            url,
            "--transport",
            "simulated",
            "--latency",
            "0.1",
            "--concurrency",
            "4",
            "--poll-interval",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        service = MessageService.open(url)
        while service.status_counts()[MessageStatus.SEND_SUCC] < 4:
            assert time.monotonic() < deadline, "the worker sent nothing"
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert 0 == process.returncode, err
    summary = json.loads(out)
    counts = service.status_counts()
    service.close()
    assert 0 == counts[MessageStatus.SENDING]
    assert summary["claimed"] == summary["delivered"] + summary["failed"] > 0
    assert summary["claimed"] < 200 * 4
