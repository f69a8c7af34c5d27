"""A resend worker: msgstate's :class:`~msgstate.ResendWorker` over your transport.

Run the demo with ``python examples/resend_worker.py``: it stores its events in the
SQLite file ``resend_worker.db`` in the current directory (made afresh on every
run), fails 20 first sends, and lets two workers (threads sharing one
:class:`~msgstate.MessageService`) race to drive them through a flaky fake
transport until every message is delivered or dead.

What is left to write is the transport: an object with ``send(message)`` that
sends ``message`` (``message.attempts`` is the attempt being sent) and answers
:class:`~msgstate.transports.Sent` or :class:`~msgstate.transports.SendError`
(see :class:`FlakyTransport`). The worker does the rest, each pass:

1. expires sends left ``SENDING`` past the policy's ``send_timeout`` (their sender
   died): ``service.expire_send`` records ``SEND_TIMED_OUT``;
2. claims each due resend with ``service.resend(msg_id,
   expected_attempt=<the attempt it saw fail>, request_id=..., actor=worker_id)``:
   a claim from a stale view is refused (``STALE_ATTEMPT``), so no attempt is
   ever claimed twice, by two workers or from an old list;
3. sends, and records the answer with ``attempt=`` the claimed attempt (a
   transport that raises is recorded as ``TRANSPORT_FAILED``, never left
   ``SENDING``).

For worker *processes*, open one service per process on a shared PostgreSQL
schema (``postgresql://...?schema=...``; they may all start at once: the tables
are created once, under a lock), give each its own
``worker_id``, or run ``msgstate worker --db URL --transport simulated``. See
docs/worker.md.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from msgstate import (
    MessageService,
    MessageStatus,
    MessageView,
    ResendPolicy,
    ResendWorker,
    WorkerReport,
)
from msgstate.transports import SendError, Sent


class FlakyTransport:
    """A fake transport: fails some attempts, delivers the rest, deterministically.

    Whether attempt ``n`` of a message fails depends only on ``(msg_id, n)`` and
    ``seed``, so every process agrees. ``failure_rate`` of the attempts fail with
    ``codes[...]`` (a transient timeout by default); ``delay`` seconds are spent per
    send, like a network call. ``sent`` lists ``(msg_id, attempt)`` in order.
    """

    def __init__(
        self,
        failure_rate: float = 0.4,
        *,
        codes: tuple[int, ...] = (6012,),
        seed: str = "",
        delay: float = 0.0,
        on_send: Callable[[MessageView], object] | None = None,
    ) -> None:
        self.failure_rate = failure_rate
        self.codes = codes
        self.seed = seed
        self.delay = delay
        self.on_send = on_send
        self.sent: list[tuple[str, int]] = []

    def _unit(self, msg_id: str, attempt: int) -> float:
        key = f"{self.seed}:{msg_id}:{attempt}".encode()
        digest = hashlib.blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def will_fail(self, msg_id: str, attempt: int) -> bool:
        """Whether sending ``attempt`` of ``msg_id`` fails."""
        return self._unit(msg_id, attempt) < self.failure_rate

    def send(self, message: MessageView) -> Sent | SendError:
        """Send ``message`` (its current attempt): the msgstate Transport protocol."""
        self.sent.append((message.msg_id, message.attempts))
        if self.on_send is not None:
            self.on_send(message)
        if self.delay:
            time.sleep(self.delay)
        if self.will_fail(message.msg_id, message.attempts):
            unit = self._unit(message.msg_id, message.attempts) / self.failure_rate
            code = self.codes[min(int(unit * len(self.codes)), len(self.codes) - 1)]
            return SendError(code=code, desc=f"fake failure of {message.attempts}")
        return Sent(seq=f"{message.msg_id}-{message.attempts}")


def settled(service: MessageService) -> bool:
    """Nothing in flight and every failed message dead: no work will come."""
    counts = service.status_counts()
    failed = counts[MessageStatus.SEND_FAIL]
    if counts[MessageStatus.SENDING]:
        return False
    return failed == 0 or failed == len(service.dead_letters(limit=failed))


def run_until_settled(worker: ResendWorker) -> WorkerReport:
    """Run ``worker`` until :func:`settled` (or SIGTERM, or ``worker.stop()``)."""

    def check(report: WorkerReport) -> None:
        if not report.busy and settled(worker.service):
            worker.stop()

    return worker.run(on_pass=check)


DB = Path("resend_worker.db")

DEMO_POLICY = ResendPolicy(
    max_attempts=4,
    initial_interval=timedelta(milliseconds=20),
    maximum_interval=timedelta(milliseconds=200),
)


def main() -> None:
    for leftover in (DB, Path(f"{DB}-wal"), Path(f"{DB}-shm")):
        leftover.unlink(missing_ok=True)
    service = MessageService.open(f"sqlite:///{DB}", policy=DEMO_POLICY)
    for k in range(20):
        msg_id = f"msg-{k:02d}"
        service.create(
            msg_id, sender="alice", user_id="bob", content={"text": f"hello {k}"}
        )
        service.record_failure(msg_id, code=6012, desc="request timeout")

    results: dict[str, WorkerReport] = {}

    def work(worker_id: str) -> None:
        worker = ResendWorker(
            service,
            FlakyTransport(0.5, delay=0.005),
            worker_id=worker_id,
            poll_interval=0.02,
        )
        results[worker_id] = run_until_settled(worker)

    names = ["worker-a", "worker-b"]
    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for name in names:
        report = results[name]
        print(
            f"{name}: claimed {report.claimed}, delivered {report.delivered}, "
            f"failed {report.failed}, skipped {report.skipped}"
        )
    counts = service.status_counts()
    dead = service.dead_letters()
    print(
        f"final: {counts[MessageStatus.SEND_SUCC]} delivered, {len(dead)} dead, "
        f"{counts[MessageStatus.SENDING]} sending"
    )
    for letter in dead:
        print(f"  dead {letter.msg_id}: {letter.code.name}")
    service.close()


if __name__ == "__main__":
    main()
