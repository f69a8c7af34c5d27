"""A resend worker: take the failed messages that are due, claim each, send, record.

Run the demo with ``python examples/resend_worker.py``: it stores its events in the
SQLite file ``resend_worker.db`` in the current directory (made afresh on every
run), fails 20 first sends, and lets two workers (threads sharing one
:class:`~msgstate.MessageService`) race to drive them through a flaky fake
transport until every message is delivered or dead. For worker *processes*, open
one service per process on a shared PostgreSQL schema
(``postgresql://...?schema=...``; they may all start at once: the tables are
created once, under a lock); they coordinate the same way, through the store
alone.

The loop (:func:`run_worker`)
    1. ``service.due_resends(limit=batch_size)``: failed messages the policy would
       resend now, soonest first.
    2. For each, *claim* the next attempt:
       ``service.resend(msg_id, request_id=f"{worker_id}:{msg_id}:{n + 1}",
       actor=worker_id)`` where ``n`` is the attempt the worker saw failing. A
       :class:`~msgstate.ResendRefused` (``SEND_IN_PROGRESS``: another worker
       claimed it first; ``ALREADY_DELIVERED``; ``TOO_EARLY``; ...) means it is
       not ours: skip it.
    3. Call the pluggable :class:`Transport` with the claimed view
       (``view.attempts`` is the attempt being sent); it answers
       :class:`Delivered` or :class:`Failed`.
    4. Record that with ``record_delivery`` / ``record_failure``, both with
       ``attempt=`` the claimed attempt, so a late or repeated report of an older
       attempt can never fail (or deliver) a newer one.

Why a message is never sent twice for the same attempt
    Sending attempt ``n + 1`` requires the ``ResendRequested`` event with
    ``attempt=n + 1``, written on top of the message's version ``v`` (the failure
    of attempt ``n``). The event store's optimistic concurrency lets exactly one
    writer append version ``v + 1``; a worker that loses the race has its save
    rejected, reloads the message, and decides again on what it finds:
    ``SEND_IN_PROGRESS`` (the winner is sending), or a later state that the policy
    judges afresh (if the winner's send has failed already, the loser may claim
    attempt ``n + 2``: the worker sends whatever attempt its claim started). So
    every attempt number is claimed by exactly one event, and only the worker
    whose ``resend`` call wrote it sends it.

    The request id is what lets a worker tell "I wrote this claim" from "this
    claim already exists": a ``resend`` whose request id was already accepted
    writes nothing and answers the current message, which would look like a
    successful claim. Because the id starts with a ``worker_id`` unique to this
    worker and ends with the attempt number it saw (attempts only grow), no other
    worker, and no later poll of this one, can send an id that was accepted
    before: a repeated id can only be this very worker retrying the same call.
    Give each worker process its own ``worker_id`` (host, pid and a random
    suffix, say); two workers sharing one could both believe they hold a claim.

    Run workers with ``ResendPolicy(enforce_backoff=True)``: the view from
    ``due_resends`` may be stale, and without enforcement a worker that loses a
    race just after the winner's send failed would resend at once, ignoring the
    backoff (no double send, but too early).

A transport that raises is treated as an unknown outcome: the worker records
:data:`UNKNOWN_OUTCOME_CODE` (an ack timeout, ``AMBIGUOUS``: the message may have
gone out) so that the message does not stay ``SENDING`` for ever.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from msgstate import (
    MessageService,
    MessageStatus,
    MessageView,
    MsgStateError,
    ResendPolicy,
    ResendRefused,
)

UNKNOWN_OUTCOME_CODE = 9520
"""ERR_SDK_NET_WAIT_ACK_TIMEOUT: recorded when the transport raised."""


@dataclass(frozen=True)
class Delivered:
    """The server acknowledged the send and assigned ``seq``."""

    seq: str
    server_time: datetime | None = None


@dataclass(frozen=True)
class Failed:
    """The send failed with a Tencent IM error ``code``."""

    code: int
    desc: str = ""
    retry_after: float | None = None


Outcome = Delivered | Failed


class Transport(Protocol):
    """Sends one attempt of a message: ``view.attempts`` is the attempt number."""

    def __call__(self, view: MessageView) -> Outcome: ...


@dataclass
class WorkerStats:
    """What one :func:`run_worker` call did."""

    worker_id: str
    polls: int = 0
    claimed: int = 0
    """Attempts this worker claimed (and so sent)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Claims refused, by :class:`~msgstate.ErrorCode` name."""
    delivered: int = 0
    failed: int = 0
    record_errors: int = 0
    """Outcomes the service refused to record (the message stays SENDING)."""


def run_worker(
    service: MessageService,
    transport: Transport,
    *,
    worker_id: str,
    stop_when_idle: bool = True,
    batch_size: int = 20,
    poll_interval: float = 0.5,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], object] = time.sleep,
    stop: threading.Event | None = None,
) -> WorkerStats:
    """Resend due messages through ``transport`` until idle (or ``stop`` is set).

    ``clock`` is the time asked of ``due_resends`` (default: the service's clock);
    ``sleep`` waits ``poll_interval`` seconds when nothing is due (a test can pass
    a fake clock's ``advance``). With ``stop_when_idle`` the worker returns once
    nothing is due and every failed message is dead (the policy will never resend
    it): while another message waits out its backoff it keeps polling. A worker
    that records a failure polls again afterwards, so when the last worker stops
    every message it touched is delivered or dead. Without ``stop_when_idle`` it
    polls until ``stop`` is set.
    """
    stats = WorkerStats(worker_id)
    while stop is None or not stop.is_set():
        now = None if clock is None else clock()
        stats.polls += 1
        due = service.due_resends(now, limit=batch_size)
        for view in due:
            _resend_one(service, transport, view, worker_id, stats)
        if due:
            continue
        if stop_when_idle and _waiting(service, now) == 0:
            break
        sleep(poll_interval)
    return stats


def _resend_one(
    service: MessageService,
    transport: Transport,
    view: MessageView,
    worker_id: str,
    stats: WorkerStats,
) -> None:
    try:
        claimed = service.resend(
            view.msg_id,
            request_id=f"{worker_id}:{view.msg_id}:{view.attempts + 1}",
            actor=worker_id,
        )
    except ResendRefused as refusal:
        name = refusal.code.name
        stats.skipped[name] = stats.skipped.get(name, 0) + 1
        return
    if claimed.status is not MessageStatus.SENDING or claimed.attempts <= view.attempts:
        # The request id was accepted before: not a claim made by this call.
        stats.skipped["REPEATED_REQUEST"] = stats.skipped.get("REPEATED_REQUEST", 0) + 1
        return
    stats.claimed += 1
    attempt = claimed.attempts
    try:
        outcome = transport(claimed)
    except Exception as error:
        outcome = Failed(UNKNOWN_OUTCOME_CODE, f"transport raised {error!r}"[:1000])
    try:
        if isinstance(outcome, Delivered):
            service.record_delivery(
                view.msg_id,
                seq=outcome.seq,
                server_time=outcome.server_time,
                attempt=attempt,
            )
            stats.delivered += 1
        else:
            service.record_failure(
                view.msg_id,
                code=outcome.code,
                desc=outcome.desc,
                attempt=attempt,
                retry_after=outcome.retry_after,
            )
            stats.failed += 1
    except MsgStateError:
        stats.record_errors += 1


def _waiting(service: MessageService, now: datetime | None) -> int:
    """Failed messages that are not dead: they will become due (a lower bound)."""
    failed = service.status_counts()[MessageStatus.SEND_FAIL]
    if failed == 0:
        return 0
    dead = service.dead_letters(now, limit=min(failed, 100_000))
    return max(failed - len(dead), 0)


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

    def __call__(self, view: MessageView) -> Outcome:
        self.sent.append((view.msg_id, view.attempts))
        if self.on_send is not None:
            self.on_send(view)
        if self.delay:
            time.sleep(self.delay)
        if self.will_fail(view.msg_id, view.attempts):
            unit = self._unit(view.msg_id, view.attempts) / self.failure_rate
            code = self.codes[min(int(unit * len(self.codes)), len(self.codes) - 1)]
            return Failed(code, f"fake failure of attempt {view.attempts}")
        return Delivered(seq=f"{view.msg_id}-{view.attempts}")


DB = Path("resend_worker.db")

DEMO_POLICY = ResendPolicy(
    max_attempts=4,
    initial_interval=timedelta(milliseconds=20),
    maximum_interval=timedelta(milliseconds=200),
    enforce_backoff=True,
)


def main() -> None:
    for leftover in (DB, Path(f"{DB}-wal"), Path(f"{DB}-shm")):
        leftover.unlink(missing_ok=True)
    service = MessageService.open(f"sqlite:///{DB}", policy=DEMO_POLICY)
    for k in range(20):
        msg_id = f"msg-{k:02d}"
        service.create(msg_id, sender="alice", user_id="bob", content={"text": k})
        service.record_failure(msg_id, code=6012, desc="request timeout")

    results: dict[str, WorkerStats] = {}

    def work(worker_id: str) -> None:
        transport = FlakyTransport(0.5, delay=0.005)
        results[worker_id] = run_worker(
            service, transport, worker_id=worker_id, poll_interval=0.02
        )

    names = ["worker-a", "worker-b"]
    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for name in names:
        stats = results[name]
        print(
            f"{name}: claimed {stats.claimed}, delivered {stats.delivered}, "
            f"failed {stats.failed}, skipped {dict(sorted(stats.skipped.items()))}"
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
