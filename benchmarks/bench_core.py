"""Core benchmark: msgstate's four commands vs a hand-written eventsourcing aggregate.

Each round sends N messages through create, record_failure, resend and
record_delivery (four commands, four events, one transaction each), once with
msgstate and once with the aggregate a user would otherwise write by hand, on the
same backend. Rounds alternate and the medians are compared, so a noisy shared
machine affects both sides alike.

    python benchmarks/bench_core.py [--messages 500] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from msgstate import MessageService


class HandMessage(Aggregate):
    """What a user would write: four events, no guards, no policy."""

    @staticmethod
    def create_id(msg_id: str) -> UUID:
        return uuid5(NAMESPACE_URL, msg_id)

    @event("Created")
    def __init__(self, msg_id: str, sender: str, user_id: str, at: datetime) -> None:
        self.msg_id = msg_id
        self.status = 1
        self.attempts = 1

    @event("SendFailed")
    def fail(self, attempt: int, code: int, at: datetime) -> None:
        self.status = 3

    @event("ResendRequested")
    def resend(self, attempt: int, request_id: str, at: datetime) -> None:
        self.status = 1
        self.attempts = attempt

    @event("Delivered")
    def deliver(self, attempt: int, seq: str, at: datetime) -> None:
        self.status = 2


class HandApp(Application[UUID]):
    name = "handwritten"

    def create(self, msg_id: str) -> None:
        self.save(HandMessage(msg_id, "alice", "bob", datetime.now(UTC)))

    def _update(self, msg_id: str, change: Callable[[HandMessage], None]) -> None:
        message: HandMessage = self.repository.get(HandMessage.create_id(msg_id))
        change(message)
        self.save(message)

    def fail(self, msg_id: str) -> None:
        self._update(msg_id, lambda m: m.fail(m.attempts, 6012, datetime.now(UTC)))

    def resend(self, msg_id: str) -> None:
        self._update(msg_id, lambda m: m.resend(m.attempts + 1, "r", datetime.now(UTC)))

    def deliver(self, msg_id: str) -> None:
        self._update(msg_id, lambda m: m.deliver(m.attempts, "1", datetime.now(UTC)))


def env_for(backend: str, directory: Path, tag: str) -> dict[str, str]:
    if backend == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": str(directory / f"{tag}.db"),
    }


def run_msgstate(backend: str, directory: Path, n: int, tag: str) -> float:
    url = "memory://" if backend == "memory" else f"sqlite:///{directory / tag}.db"
    service = MessageService.open(url)
    ids = [f"{tag}-{i}" for i in range(n)]
    start = time.perf_counter()
    for msg_id in ids:
        service.create(msg_id, sender="alice", user_id="bob")
        service.record_failure(msg_id, code=6012)
        service.resend(msg_id, request_id="r")
        service.record_delivery(msg_id, seq="1")
    elapsed = time.perf_counter() - start
    service.close()
    return 4 * n / elapsed


def run_handwritten(backend: str, directory: Path, n: int, tag: str) -> float:
    app = HandApp(env=env_for(backend, directory, tag))
    ids = [f"{tag}-{i}" for i in range(n)]
    start = time.perf_counter()
    for msg_id in ids:
        app.create(msg_id)
        app.fail(msg_id)
        app.resend(msg_id)
        app.deliver(msg_id)
    elapsed = time.perf_counter() - start
    app.close()
    return 4 * n / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="memory,sqlite")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {platform.python_implementation()} "
        f"{platform.python_version()}",
        "messages": args.messages,
        "rounds": args.rounds,
        "backends": {},
    }
    print(
        f"{'backend':<8} {'msgstate cmd/s':>15} {'hand-written cmd/s':>19} {'ratio':>6}"
    )
    for backend in args.backends.split(","):
        ours: list[float] = []
        theirs: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            for r in range(args.rounds):
                # Alternate which side goes first, so drift hurts both alike.
                pair = [
                    (ours, run_msgstate, f"ms{r}"),
                    (theirs, run_handwritten, f"hw{r}"),
                ]
                for sink, runner, tag in pair if r % 2 == 0 else reversed(pair):
                    sink.append(runner(backend, directory, args.messages, tag))
        a, b = statistics.median(ours), statistics.median(theirs)
        results["backends"][backend] = {
            "msgstate_cmds_per_s": round(a, 1),
            "handwritten_cmds_per_s": round(b, 1),
            "ratio": round(a / b, 3),
            "msgstate_rounds": [round(x, 1) for x in ours],
            "handwritten_rounds": [round(x, 1) for x in theirs],
        }
        print(f"{backend:<8} {a:>15.0f} {b:>19.0f} {a / b:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
