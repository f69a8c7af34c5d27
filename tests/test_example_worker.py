"""examples/resend_worker.py: one worker in process, two worker processes on
PostgreSQL, and the demo as a user runs it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import multiprocessing
import queue
import subprocess
import sys
import time
import warnings
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from msgstate import (
    ErrorCode,
    MessageService,
    MessageStatus,
    MessageView,
    ResendPolicy,
    ResendWorker,
    setup_schema,
)
from tests import pg
from tests.support import FakeClock

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODULE_NAME = "msgstate_example_resend_worker"


def load_example() -> ModuleType:
    """The example module, imported by path (``examples/`` is not a package)."""
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    spec = importlib.util.spec_from_file_location(
        MODULE_NAME, EXAMPLES / "resend_worker.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


resend_worker = load_example()

TRANSIENT = 6012  # ERR_SDK_NET_REQUEST_TIMEOUT
PERMANENT = 80001  # ERR_SVR_COMM_SENSITIVE_TEXT

# Backoffs of milliseconds: in the process test every resend is due almost at once.
FAST_POLICY = ResendPolicy(
    max_attempts=4,
    initial_interval=timedelta(milliseconds=1),
    maximum_interval=timedelta(milliseconds=8),
    enforce_backoff=True,
)


def store_url(kind: str, directory: Path) -> str:
    return "memory://" if kind == "memory" else f"sqlite:///{directory}/w.db"


def resends(service: MessageService, msg_id: str) -> list[dict[str, Any]]:
    """The data of every ResendRequested event of ``msg_id``."""
    return [
        entry.data
        for entry in service.history(msg_id)
        if entry.event == "ResendRequested"
    ]


def advancing(clock: FakeClock, worker: Any) -> Any:
    """An on_pass that moves the fake clock past any backoff, and stops the worker
    once the store is settled (the example's own helper decides that)."""

    def on_pass(report: Any) -> None:
        clock.advance(3600)
        if not report.busy and resend_worker.settled(worker.service):
            worker.stop()

    return on_pass


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_the_worker_drives_failed_messages_to_delivered_or_dead(
    kind: str, tmp_path: Path
) -> None:
    """Every failed message ends delivered or dead, each attempt sent once, in the
    order the flaky transport dictates; the permanent failure is never resent."""
    clock = FakeClock()
    policy = ResendPolicy(max_attempts=3)
    service = MessageService.open(store_url(kind, tmp_path), policy=policy, clock=clock)
    try:
        transient = [f"m-{k}" for k in range(10)]
        for msg_id in [*transient, "m-perm", "m-ok"]:
            service.create(msg_id, sender="alice", user_id="bob")
        for msg_id in transient:
            service.record_failure(msg_id, code=TRANSIENT, attempt=1)
        service.record_failure("m-perm", code=PERMANENT, attempt=1)
        service.record_delivery("m-ok", seq="1")
        clock.advance(60)

        transport = resend_worker.FlakyTransport(0.5, seed="in-process")
        worker = ResendWorker(service, transport, worker_id="w1")
        stats = worker.run(on_pass=advancing(clock, worker))

        expected_sent = []
        expected_delivered = set()
        for msg_id in transient:
            for attempt in (2, 3):
                expected_sent.append((msg_id, attempt))
                if not transport.will_fail(msg_id, attempt):
                    expected_delivered.add(msg_id)
                    break
        assert sorted(expected_sent) == sorted(transport.sent)
        assert 0 < len(expected_delivered) < len(transient)  # the seed mixes both

        statuses = {m: service.get(m).status for m in [*transient, "m-perm"]}
        assert {
            m: MessageStatus.SEND_SUCC
            if m in expected_delivered
            else MessageStatus.SEND_FAIL
            for m in statuses
        } == statuses
        dead = {d.msg_id: d.code.name for d in service.dead_letters()}
        assert {
            **{
                m: "ATTEMPTS_EXHAUSTED"
                for m in transient
                if m not in expected_delivered
            },
            "m-perm": "NOT_RETRYABLE",
        } == dead
        assert [] == service.due_resends(clock.advance(3600))

        recorded = sorted(
            (m, e["attempt"], e["actor"], e["request_id"])
            for m in transient
            for e in resends(service, m)
        )
        assert (
            sorted((m, a, "w1", worker.request_id(a)) for m, a in transport.sent)
            == recorded
        )
        assert (len(transport.sent), len(expected_delivered)) == (
            stats.claimed,
            stats.delivered,
        )
        assert (stats.claimed - stats.delivered, 0, 0) == (
            stats.failed,
            stats.skipped,
            stats.errors,
        )
    finally:
        service.close()


def test_a_message_claimed_by_another_worker_is_skipped() -> None:
    """A message another worker claims after the poll is refused and not sent."""
    clock = FakeClock()
    service = MessageService.open("memory://", clock=clock)
    for msg_id in ("a", "b"):
        service.create(msg_id, sender="alice", user_id="bob")
        service.record_failure(msg_id, code=TRANSIENT)
    clock.advance(60)

    def other_worker_takes_the_other_message(view: MessageView) -> None:
        other = "b" if view.msg_id == "a" else "a"
        if service.get(other).status is MessageStatus.SEND_FAIL:
            service.resend(other, request_id="w2:claim", actor="w2")
            service.record_delivery(other, seq="by-w2")

    transport = resend_worker.FlakyTransport(
        0.0, on_send=other_worker_takes_the_other_message
    )
    worker = ResendWorker(service, transport, worker_id="w1")
    stats = worker.run(on_pass=advancing(clock, worker))
    assert 1 == len(transport.sent)
    assert (1, 1, 1) == (stats.claimed, stats.delivered, stats.skipped)
    (sent_id, _), other = transport.sent[0], "b" if transport.sent[0][0] == "a" else "a"
    assert ["w1"] == [e["actor"] for e in resends(service, sent_id)]
    assert ["w2"] == [e["actor"] for e in resends(service, other)]
    service.close()


def test_a_transport_that_raises_records_an_ambiguous_failure() -> None:
    """An exception from the transport is an unknown outcome: recorded as
    TRANSPORT_FAILED (AMBIGUOUS), so the message is not left SENDING."""
    clock = FakeClock()
    service = MessageService.open(
        "memory://", policy=ResendPolicy(max_attempts=2), clock=clock
    )
    service.create("m", sender="alice", user_id="bob")
    service.record_failure("m", code=TRANSIENT)
    clock.advance(60)

    class Broken:
        def send(self, view: MessageView) -> Any:
            raise ConnectionError("socket closed")

    worker = ResendWorker(service, Broken(), worker_id="w1")
    stats = worker.run(on_pass=advancing(clock, worker))
    view = service.get("m")
    assert (MessageStatus.SEND_FAIL, 2, int(ErrorCode.TRANSPORT_FAILED)) == (
        view.status,
        view.attempts,
        view.last_error_code,
    )
    assert "socket closed" in (view.last_error_desc or "")
    assert (1, 1) == (stats.claimed, stats.failed)
    service.close()


def test_the_demo_runs_and_ends_every_message_delivered_or_dead(
    tmp_path: Path,
) -> None:
    """resend_worker.py, run as a user would: two workers share the 20 messages and
    the deterministic fake transport leaves 18 delivered and 2 out of attempts."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "resend_worker.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.splitlines()
    assert "final: 18 delivered, 2 dead, 0 sending" in lines, result.stdout
    assert ["ATTEMPTS_EXHAUSTED", "ATTEMPTS_EXHAUSTED"] == [
        line.split()[-1] for line in lines if line.startswith("  dead ")
    ]
    assert 2 == sum(line.startswith("worker-") for line in lines)
    assert (tmp_path / "resend_worker.db").stat().st_size > 0


# -- two worker processes on one PostgreSQL schema --

MESSAGES = 50


def _worker_process(
    url: str, worker_id: str, directory: str, ready: Any, go: Any, seed: str
) -> None:
    """One worker OS process (spawned): says it is ready, waits for ``go`` (so both
    start together), logs every send, then writes its stats."""
    example = load_example()
    service = MessageService.open(url, policy=FAST_POLICY, create_tables=False)
    log_path = Path(directory) / f"{worker_id}.sends"
    with log_path.open("a", buffering=1, encoding="utf-8") as log:

        def log_send(view: MessageView) -> None:
            log.write(f"{view.msg_id} {view.attempts} {worker_id}\n")

        transport = example.FlakyTransport(
            0.4, seed=seed, delay=0.002, on_send=log_send
        )
        ready.put(worker_id)
        if not go.wait(60):
            raise TimeoutError("no go signal")
        worker = ResendWorker(
            service, transport, worker_id=worker_id, batch_size=10, poll_interval=0.01
        )
        stats = example.run_until_settled(worker)
    service.close()
    (Path(directory) / f"{worker_id}.json").write_text(
        json.dumps(
            {
                "claimed": stats.claimed,
                "delivered": stats.delivered,
                "failed": stats.failed,
                "skipped": stats.skipped,
                "record_errors": stats.errors,
            }
        )
    )


def test_two_worker_processes_never_send_an_attempt_twice(tmp_path: Path) -> None:
    """Two worker processes on one PostgreSQL schema, 50 failed messages all due:
    no (msg_id, attempt) is sent twice, every send is exactly one ResendRequested
    event of its worker (and every such event was sent), and every message ends
    delivered or dead."""
    url = pg.fresh_url()
    setup_schema(url)
    service = MessageService.open(url, policy=FAST_POLICY, create_tables=False)
    msg_ids = [f"pg-{k:02d}" for k in range(MESSAGES)]
    for msg_id in msg_ids:
        service.create(msg_id, sender="alice", user_id="bob")
        service.record_failure(msg_id, code=TRANSIENT, attempt=1)

    context = multiprocessing.get_context("spawn")
    ready, go = context.Queue(), context.Event()
    workers = ["worker-1", "worker-2"]
    processes = [
        context.Process(
            target=_worker_process,
            args=(url, worker_id, str(tmp_path), ready, go, "two-processes"),
        )
        for worker_id in workers
    ]
    for process in processes:
        process.start()
    try:
        waiting = set(workers)
        deadline = time.monotonic() + 60
        while waiting and time.monotonic() < deadline:
            assert [None, None] == [p.exitcode for p in processes], "a worker died"
            with contextlib.suppress(queue.Empty):
                waiting.discard(ready.get(timeout=0.2))
        assert set() == waiting
        go.set()
        for process in processes:
            process.join(60)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    assert [0, 0] == [process.exitcode for process in processes]

    sends = [
        (msg_id, int(attempt), worker)
        for worker_id in workers
        for msg_id, attempt, worker in (
            line.split()
            for line in (tmp_path / f"{worker_id}.sends").read_text().splitlines()
        )
    ]
    twice = [pair for pair, n in Counter((m, a) for m, a, _ in sends).items() if n > 1]
    assert [] == twice

    events = [
        (msg_id, e["attempt"], e["actor"], e["request_id"])
        for msg_id in msg_ids
        for e in resends(service, msg_id)
    ]
    assert sorted(sends) == sorted((m, a, actor) for m, a, actor, _ in events)
    assert [] == [
        e for e in events if not e[3].startswith(f"{e[2]}:")
    ]  # each claim carries its own worker's request id

    statuses = Counter(service.get(m).status for m in msg_ids)
    dead = service.dead_letters(limit=MESSAGES)
    assert (MESSAGES, 0) == (
        statuses[MessageStatus.SEND_SUCC] + len(dead),
        statuses[MessageStatus.SENDING],
    )
    assert {"ATTEMPTS_EXHAUSTED"} >= {d.code.name for d in dead}

    stats = {w: json.loads((tmp_path / f"{w}.json").read_text()) for w in workers}
    per_worker = Counter(worker for _, _, worker in sends)
    assert {w: per_worker[w] for w in workers} == {
        w: stats[w]["claimed"] for w in workers
    }
    assert [0, 0] == [stats[w]["record_errors"] for w in workers]
    if 0 in per_worker.values() or len(per_worker) < 2:
        # Not an invariant: one process may have been starved of CPU.
        warnings.warn(f"only one worker sent anything: {stats}", stacklevel=1)
    service.close()
