"""Resend workers as real OS processes over one store (PostgreSQL and SQLite).

Each worker is ``python -m tests.worker_proc``: a ResendWorker (or
AsyncResendWorker) whose flaky transport appends ``msg_id attempt worker`` to a
log, in one ``write``, for every send it is asked to make, before answering.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from msgstate import ErrorCode, MessageService, MessageStatus, setup_schema
from tests import pg
from tests.worker_proc import policy

ROOT = Path(__file__).resolve().parent.parent
TRANSIENT = 6012


@pytest.fixture(params=["postgres", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        url = pg.fresh_url()
    else:
        url = f"sqlite:///{tmp_path}/workers.db"
    setup_schema(url)
    return url


def seed_failed(url: str, count: int) -> list[str]:
    service = MessageService.open(url, policy=policy(1.0), create_tables=False)
    ids = [f"w{k:03d}" for k in range(count)]
    with service.batch() as batch:
        for msg_id in ids:
            batch.create(msg_id, sender="alice", user_id="bob")
            batch.record_failure(msg_id, code=TRANSIENT, attempt=1)
    service.close()
    return ids


class Worker:
    def __init__(self, url: str, log: Path, worker_id: str, *args: str) -> None:
        self.worker_id = worker_id
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.worker_proc",
                url,
                str(log),
                worker_id,
                *args,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self, timeout: float) -> dict[str, Any]:
        out, err = self.process.communicate(timeout=timeout)
        assert 0 == self.process.returncode, err
        report: dict[str, Any] = json.loads(out.splitlines()[-1])
        return report

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def sends(log: Path) -> list[tuple[str, int, str]]:
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines()]
    return [(m, int(a), w) for m, a, w in rows]


def claims(service: MessageService, ids: list[str]) -> list[tuple[str, int, str]]:
    """Every ResendRequested: (msg_id, attempt, actor)."""
    return [
        (m, e.data["attempt"], e.data["actor"])
        for m in ids
        for e in service.history(m)
        if e.event == "ResendRequested"
    ]


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def cleanup() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def test_three_workers_one_killed_mid_send_one_killed_at_random(
    store: str, tmp_path: Path, cleanup: list[Worker]
) -> None:
    """Three workers over 60 failed messages. w1 is SIGKILLed while its first send
    hangs, w2 at a random moment; w3 expires their stuck sends and finishes. No
    (msg_id, attempt) is ever sent twice; every send is a claim by its sender's
    worker; only a killed worker may hold a claim it never sent (at most the one
    in flight); every message ends delivered or dead; w1's hung send is expired
    (SEND_TIMED_OUT) and resent by another worker."""
    ids = seed_failed(store, 60)
    log = tmp_path / "sends.log"
    w1 = Worker(store, log, "w1", "--hang-first")
    w2 = Worker(store, log, "w2", "--latency", "0.01")
    w3 = Worker(store, log, "w3", "--latency", "0.01")
    cleanup.extend([w1, w2, w3])
    wait_for(lambda: any(w == "w1" for _, _, w in sends(log)), 120, "w1's send")
    w1.kill()
    delay = random.Random().uniform(0.0, 1.0)
    time.sleep(delay)
    w2.kill()
    report = w3.finish(timeout=240)

    sent = sends(log)
    twice = [pair for pair, n in Counter((m, a) for m, a, _ in sent).items() if n > 1]
    assert [] == twice, f"w2 killed after {delay:.2f} s"
    service = MessageService.open(store, policy=policy(1.0), create_tables=False)
    try:
        claimed = claims(service, ids)
        assert set(sent) <= set(claimed)
        unsent = Counter(w for c in set(claimed) - set(sent) for w in [c[2]])
        assert {"w1", "w2"} >= set(unsent)
        assert all(n <= 1 for n in unsent.values()), unsent
        counts = service.status_counts()
        dead = service.dead_letters(limit=100)
        assert (60, 0) == (
            counts[MessageStatus.SEND_SUCC] + len(dead),
            counts[MessageStatus.SENDING],
        )
        hung = next((m, a) for m, a, w in sent if w == "w1")
        history = service.history(hung[0])
        expiry = [
            e
            for e in history
            if e.event == "SendFailed"
            and e.attempt == hung[1]
            and e.data["code"] == int(ErrorCode.SEND_TIMED_OUT)
        ]
        assert 1 == len(expiry)
        resent_by = [
            e.data["actor"]
            for e in history
            if e.event == "ResendRequested" and e.attempt == hung[1] + 1
        ]
        assert resent_by in (["w2"], ["w3"])
        expired_by = expiry[0].data["desc"].rsplit(" ", 1)[-1]
        assert expired_by in ("w2", "w3")
        assert expired_by == "w2" or report["expired"] >= 1
    finally:
        service.close()


@pytest.mark.parametrize("concurrency", ["1", "4"])
def test_sigterm_exits_zero_with_every_send_recorded(
    store: str, tmp_path: Path, cleanup: list[Worker], concurrency: str
) -> None:
    """SIGTERM mid-run: the worker finishes its sends in flight, records them and
    exits 0: nothing is left SENDING, and every logged send has its outcome."""
    ids = seed_failed(store, 40)
    log = tmp_path / "sends.log"
    worker = Worker(store, log, "t1", "--latency", "0.3", "--concurrency", concurrency)
    cleanup.append(worker)
    wait_for(lambda: len(sends(log)) >= 2, 120, "two sends")
    worker.process.send_signal(signal.SIGTERM)
    report = worker.finish(timeout=120)
    service = MessageService.open(store, policy=policy(1.0), create_tables=False)
    try:
        sent = sends(log)
        assert 0 == service.status_counts()[MessageStatus.SENDING]
        outcomes = {
            (m, e.attempt)
            for m in ids
            for e in service.history(m)
            if e.event in ("SendFailed", "Delivered")
        }
        assert set() == {(m, a) for m, a, _ in sent} - outcomes
        assert len(sent) == report["claimed"] < 40 * 3
        assert report["claimed"] == report["delivered"] + report["failed"]
    finally:
        service.close()
    assert os.path.exists(log)
