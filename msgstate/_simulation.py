"""A simulated flaky transport and the resend loop that drives it (private).

Used by ``msgstate simulate`` and importable without click, so tests and
benchmarks can run it. Everything happens on a simulated clock that jumps from one
scheduled moment to the next: nothing sleeps.

The model
    Message ``i`` of a run arrives ``i * arrival_interval`` simulated seconds after
    the start and its first send starts at once. Every send (first or resend)
    fails with probability ``failure_rate``, independently; a failure carries a
    real catalog code drawn from :data:`FAILURE_MIX` (transient, network,
    session, rate-limited with a ``retry_after``, ambiguous ack timeouts and
    permanent errors). A share (:data:`LATE_ACK_SHARE`) of the ambiguous ack
    timeouts were in fact delivered: their acknowledgement arrives late, shortly
    after the failure was recorded, and is recorded with ``record_delivery``
    (which can rescue a message that was meanwhile resent and failed again, or
    even given up on).

    A resend worker polls :meth:`~msgstate.MessageService.due_resends` at most every
    ``poll_interval`` simulated seconds while failures are waiting, resends what is
    due with :meth:`~msgstate.MessageService.resend`, and gives up on what the
    policy refuses (asking :meth:`~msgstate.MessageService.check_resend` when a
    message it expected is not listed as due). The run ends when every message is
    delivered or dead and no acknowledgement is outstanding.

Reproducibility
    Each send's outcome is a pure function of ``(seed, message index, attempt)``
    (BLAKE2b), not of the order in which sends happen; so the same seed on the
    same kind of database state gives the same counts. The policy's jitter is
    keyed by ``msg_id``, so with ``jitter > 0`` only runs with the same message ids
    (the same run number, e.g. after ``fresh_start``) are guaranteed to match.
"""

from __future__ import annotations

import hashlib
import heapq
import secrets
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attrs import frozen

from msgstate.application import MessageService
from msgstate.batch import Batch
from msgstate.codes import RetryClass, lookup
from msgstate.errors import (
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    ResendRefused,
)
from msgstate.policy import ResendPolicy
from msgstate.storage import persistence_env

__all__ = [
    "FAILURE_MIX",
    "LATE_ACK_SHARE",
    "MAX_MESSAGES",
    "SendOutcome",
    "SimClock",
    "SimulationSummary",
    "fresh_start",
    "next_run",
    "run_simulation",
    "simulate",
    "transport_outcome",
]

MAX_MESSAGES = 1_000_000
"""The most messages one run creates (ids are ``sim<run>-<6 digits>``)."""

FAILURE_MIX: tuple[tuple[float, RetryClass, tuple[int, ...]], ...] = (
    (0.40, RetryClass.TRANSIENT, (6012, 20004, 90994, 70169)),
    (0.15, RetryClass.AFTER_RECONNECT, (9508, 9510, 6200)),
    (0.05, RetryClass.AFTER_RELOGIN, (6206, 70001)),
    (0.10, RetryClass.RATE_LIMITED, (60018, 10023, 7008)),
    (0.20, RetryClass.AMBIGUOUS, (9520, 9524)),
    (0.10, RetryClass.PERMANENT, (80001, 20007, 20012, 80002)),
)
"""How failures are spread: (share of failures, retry class, catalog codes)."""

LATE_ACK_SHARE = 0.5
"""Of the ambiguous ack timeouts, the share that were delivered and acked late."""

LATE_ACK_DELAY = (0.05, 3.0)
"""Seconds after the failure that a late acknowledgement arrives (uniform)."""

RETRY_AFTER = (1.0, 5.0)
"""Seconds a rate-limited failure asks the sender to wait (uniform)."""

_DUE_SLACK = 100
_BATCH = 1_000
"""Commands saved per transaction (flushed earlier before each poll)."""
"""Extra rows asked of ``due_resends`` for other runs' overdue messages."""

_ID_WIDTH = 6


def _check_mix() -> None:
    total = sum(share for share, _, _ in FAILURE_MIX)
    if abs(total - 1) > 1e-9:  # pragma: no cover - a table edit gone wrong
        raise AssertionError(f"FAILURE_MIX shares sum to {total}")
    for _, retry_class, codes in FAILURE_MIX:
        for code in codes:
            info = lookup(code)
            if info is None or info.retry_class is not retry_class:
                raise AssertionError(f"code {code} is not a catalog {retry_class}")


_check_mix()


@frozen
class SendOutcome:
    """What the simulated transport answers for one send."""

    delivered: bool
    code: int | None = None
    """The failure's catalog code (``None`` when delivered)."""
    retry_class: RetryClass | None = None
    desc: str = ""
    retry_after: float | None = None
    """Seconds the server asks to wait (rate-limited failures only)."""
    late_ack_after: float | None = None
    """Seconds after the failure that an ack arrives anyway (ambiguous only)."""


def _uniforms(seed: int, index: int, attempt: int) -> tuple[float, ...]:
    digest = hashlib.blake2b(
        f"{seed}:{index}:{attempt}".encode("ascii"),
        digest_size=40,
        person=b"msgstate.sim",
    ).digest()
    return tuple(
        int.from_bytes(digest[k : k + 8], "big") / 2**64 for k in range(0, 40, 8)
    )


def transport_outcome(
    seed: int, index: int, attempt: int, failure_rate: float
) -> SendOutcome:
    """The outcome of send ``attempt`` of message ``index``: a pure function."""
    u_fail, u_class, u_code, u_late, u_delay = _uniforms(seed, index, attempt)
    if u_fail >= failure_rate:
        return SendOutcome(delivered=True)
    cumulative = 0.0
    share, retry_class, codes = FAILURE_MIX[-1]
    for share, retry_class, codes in FAILURE_MIX:  # noqa: B007 - last one kept
        cumulative += share
        if u_class < cumulative:
            break
    code = codes[min(int(u_code * len(codes)), len(codes) - 1)]
    info = lookup(code)
    desc = "" if info is None else info.desc
    retry_after = None
    late_ack_after = None
    if retry_class is RetryClass.RATE_LIMITED:
        low, high = RETRY_AFTER
        retry_after = round(low + (high - low) * u_delay, 3)
    elif retry_class is RetryClass.AMBIGUOUS and u_late < LATE_ACK_SHARE:
        low, high = LATE_ACK_DELAY
        late_ack_after = round(low + (high - low) * u_delay, 3)
    return SendOutcome(
        delivered=False,
        code=code,
        retry_class=retry_class,
        desc=desc,
        retry_after=retry_after,
        late_ack_after=late_ack_after,
    )


class SimClock:
    """The simulated clock: moved only by the simulation, never backwards."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def move_to(self, moment: datetime) -> None:
        """Jump forward to ``moment`` (an earlier moment leaves the clock as is)."""
        self.now = max(self.now, moment)


@frozen
class SimulationSummary:
    """The result of one run. :meth:`counts` is what the seed reproduces."""

    run: int
    prefix: str
    """Every message id of the run starts with it (``sim<run>-``)."""
    seed: int
    messages: int
    failure_rate: float
    delivered: int
    dead: int
    dead_by_reason: dict[str, int]
    """Dead messages by the policy's refusal (an ErrorCode name)."""
    sends_histogram: dict[int, int]
    """Messages by number of sends (the first included)."""
    failures: int
    failures_by_class: dict[str, int]
    late_acks: int
    """Acknowledgements recorded after the send had been reported failed."""
    late_ack_deliveries: int
    """Of those, the ones that delivered a message not yet delivered."""
    resends: int
    events_written: int
    commands: int
    """create, record_failure, resend and record_delivery calls."""
    simulated_seconds: float
    wall_seconds: float
    policy: dict[str, Any]

    @property
    def commands_per_second(self) -> float:
        """Commands per second of wall-clock time."""
        return self.commands / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def counts(self) -> dict[str, Any]:
        """The outcome counts: equal for equal seeds, settings and message ids."""
        return {
            "messages": self.messages,
            "delivered": self.delivered,
            "dead": self.dead,
            "dead_by_reason": dict(self.dead_by_reason),
            "sends_histogram": dict(self.sends_histogram),
            "failures": self.failures,
            "failures_by_class": dict(self.failures_by_class),
            "late_acks": self.late_acks,
            "late_ack_deliveries": self.late_ack_deliveries,
            "resends": self.resends,
            "events_written": self.events_written,
            "commands": self.commands,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able (histogram keys become strings in JSON)."""
        return {
            "run": self.run,
            "prefix": self.prefix,
            "seed": self.seed,
            "failure_rate": self.failure_rate,
            **self.counts(),
            "simulated_seconds": self.simulated_seconds,
            "wall_seconds": self.wall_seconds,
            "commands_per_second": self.commands_per_second,
            "policy": dict(self.policy),
        }


Progress = Callable[[int, int], None]
"""Called with (messages settled, messages in the run) as the run goes."""

_LATE_ACK = 0
_ARRIVAL = 1
_POLL = 2


def fresh_start(url: str) -> list[Path]:
    """Delete the SQLite store at ``url`` (with its ``-wal``/``-shm``/``-journal``).

    Nothing to do for in-memory stores. PostgreSQL is refused (its tables may be
    shared); so is a file that is not an SQLite database. Returns what was deleted.
    """
    env = persistence_env(url)
    module = env["PERSISTENCE_MODULE"]
    if module == "eventsourcing.postgres":
        raise InvalidArgument(
            "--fresh only deletes SQLite files; on PostgreSQL drop msgstate's "
            "tables yourself or use a new schema (?schema=NAME)"
        )
    name = env.get("SQLITE_DBNAME", "")
    if module != "eventsourcing.sqlite" or name.startswith("file:"):
        return []  # in memory: every run starts fresh anyway
    path = Path(name)
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as file:
            header = file.read(16)
        if header != b"SQLite format 3\x00":
            raise InvalidArgument(
                f"--fresh refuses to delete {str(path)!r}: it is not an SQLite database"
            )
    deleted = []
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(f"{path}{suffix}")
        if candidate.is_file():
            candidate.unlink()
            deleted.append(candidate)
    return deleted


def _message_id(run: int, index: int) -> str:
    return f"sim{run}-{index:0{_ID_WIDTH}d}"


def next_run(service: MessageService) -> int:
    """The first run number whose first message does not exist in the store."""
    run = 1
    while True:
        try:
            service.get(_message_id(run, 0))
        except MessageNotFound:
            return run
        run += 1


def simulate(
    url: str,
    *,
    messages: int = 10_000,
    failure_rate: float = 0.2,
    seed: int | None = None,
    policy: ResendPolicy | None = None,
    fresh: bool = False,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Open the store at ``url`` on a simulated clock, run once, close it.

    ``seed=None`` picks a random seed (reported in the summary). ``fresh`` deletes
    an SQLite store first (see :func:`fresh_start`).
    """
    _check_settings(messages, failure_rate)
    if fresh:
        fresh_start(url)
    clock = SimClock(datetime.now(UTC))
    service = MessageService.open(url, policy=policy, clock=clock)
    try:
        return run_simulation(
            service,
            clock,
            messages=messages,
            failure_rate=failure_rate,
            seed=secrets.randbelow(2**31) if seed is None else seed,
            progress=progress,
        )
    finally:
        service.close()


def _check_settings(messages: object, failure_rate: object) -> None:
    if (
        not isinstance(messages, int)
        or isinstance(messages, bool)
        or not 1 <= messages <= MAX_MESSAGES
    ):
        raise InvalidArgument(
            f"messages must be a whole number from 1 to {MAX_MESSAGES:,}, "
            f"got {messages!r}"
        )
    if (
        not isinstance(failure_rate, int | float)
        or isinstance(failure_rate, bool)
        or not 0 <= failure_rate <= 1
    ):
        raise InvalidArgument(
            f"failure_rate must be a number from 0 to 1, got {failure_rate!r}"
        )


def run_simulation(
    service: MessageService,
    clock: SimClock,
    *,
    messages: int,
    failure_rate: float,
    seed: int,
    arrival_interval: float = 0.001,
    poll_interval: float = 0.25,
    progress: Progress | None = None,
) -> SimulationSummary:
    """Run one batch of ``messages`` on ``service``, whose clock must be ``clock``.

    Picks the next free run number (message ids ``sim<run>-000000``...), so a
    store that already holds runs gets a new batch.
    """
    _check_settings(messages, failure_rate)
    run = _Run(service, clock, messages, failure_rate, seed, progress)
    return run.execute(arrival_interval, poll_interval)


class _Run:
    """One run's state; see the module docstring for the model."""

    def __init__(
        self,
        service: MessageService,
        clock: SimClock,
        messages: int,
        failure_rate: float,
        seed: int,
        progress: Progress | None,
    ) -> None:
        self.service = service
        self.clock = clock
        self.n = messages
        self.failure_rate = failure_rate
        self.seed = seed
        self.progress = progress
        self.policy = service.policy
        self.run = next_run(service)
        self.token = secrets.token_hex(8)  # tells concurrent runs' messages apart
        self.ids: list[str] = []
        self.attempts = [1] * messages
        self.versions = [0] * messages
        self.delivered = [False] * messages
        self.dead: dict[int, ErrorCode] = {}
        self.settled = 0
        # (moment, tie-breaker, index, attempt) of resends waiting for a moment
        self.waiting: list[tuple[datetime, int, int, int]] = []
        # (moment, tie-breaker, index, attempt) of acks on their way
        self.acks: list[tuple[datetime, int, int, int]] = []
        self.order = 0
        self.commands = 0
        self.events = 0
        self.resends = 0
        self.failures: Counter[str] = Counter()
        self.late_acks = 0
        self.late_ack_deliveries = 0
        # Commands go into batches (one transaction per up to _BATCH commands),
        # flushed before every read of the store (polls use the read models).
        self._batch: Batch | None = None
        self._batched = 0

    # -- batching --

    def _target(self) -> Batch:
        if self._batch is not None and self._batched >= _BATCH:
            self._flush()
        if self._batch is None:
            self._batch = self.service.batch().__enter__()
            self._batched = 0
        self._batched += 1
        return self._batch

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.__exit__(None, None, None)

    # -- the loop --

    def execute(
        self, arrival_interval: float, poll_interval: float
    ) -> SimulationSummary:
        start = self.clock.now
        arrival_step = timedelta(seconds=arrival_interval)
        poll_step = timedelta(seconds=poll_interval)
        last_poll = start - poll_step
        started = time.perf_counter()
        next_index = 0
        reported = -1
        while True:
            candidates: list[tuple[datetime, int]] = []
            if self.acks:
                candidates.append((self.acks[0][0], _LATE_ACK))
            if next_index < self.n:
                candidates.append((start + next_index * arrival_step, _ARRIVAL))
            if self.waiting:
                candidates.append(
                    (max(self.waiting[0][0], last_poll + poll_step), _POLL)
                )
            if not candidates:
                self._flush()
                break
            moment, kind = min(candidates)
            self.clock.move_to(moment)
            if kind == _LATE_ACK:
                _, _, index, attempt = heapq.heappop(self.acks)
                self._late_ack(index, attempt)
            elif kind == _ARRIVAL:
                self._arrive(next_index)
                next_index += 1
            else:
                last_poll = self.clock.now
                self._poll()
            if self.progress is not None and self.settled != reported:
                reported = self.settled
                self.progress(self.settled, self.n)
        wall = time.perf_counter() - started
        return self._summary(start, wall)

    def _arrive(self, index: int) -> None:
        if index == 0:
            self._create_first()
        else:
            msg_id = _message_id(self.run, index)
            self.ids.append(msg_id)
            self._create(index)
        self._send(index, 1)

    def _create_first(self) -> None:
        """Create message 0, moving to the next run number if another run took it."""
        while True:
            self.ids[:] = [_message_id(self.run, 0)]
            try:
                self._create(0)
            except DuplicateMessage:
                self.run += 1
                continue
            return

    def _create(self, index: int) -> None:
        self.commands += 1
        view = self._target().create(
            self.ids[index],
            sender=f"sim-user-{index % 97}",
            user_id=f"sim-peer-{index % 89}",
            content={"text": f"simulated message {index}", "run": self.token},
        )
        self._wrote(index, view.version)

    def _poll(self) -> None:
        """Resend every waiting message whose moment has come, if the policy allows."""
        now = self.clock.now
        ready: list[int] = []
        while self.waiting and self.waiting[0][0] <= now:
            _, _, index, attempt = heapq.heappop(self.waiting)
            if not self.delivered[index] and self.attempts[index] == attempt:
                ready.append(index)
        if not ready:
            return
        self._flush()  # the read models must see every command so far
        due = self.service.due_resends(limit=min(100_000, len(ready) + _DUE_SLACK))
        due_ids = {view.msg_id for view in due}
        for index in ready:
            if self.ids[index] in due_ids:
                self._resend(index)
                continue
            decision = self.service.check_resend(self.ids[index])
            if decision.allowed:
                self._resend(index)  # beyond due_resends' limit
            elif decision.code is ErrorCode.TOO_EARLY and decision.not_before:
                self._wait(index, decision.not_before)
            else:
                self._give_up(index, decision.code)

    def _resend(self, index: int) -> None:
        attempt = self.attempts[index] + 1
        msg_id = self.ids[index]
        self.commands += 1
        try:
            view = self._target().resend(
                msg_id, request_id=f"{msg_id}.{attempt}", actor="simulator"
            )
        except ResendRefused as refusal:
            if refusal.code is ErrorCode.TOO_EARLY:
                current = self._target().get(msg_id)
                decision = self.policy.decide(current, self.clock.now)
                if decision.not_before is not None:
                    self._wait(index, decision.not_before)
                    return
            self._give_up(index, refusal.code)
            return
        self.resends += 1
        self.attempts[index] = view.attempts
        self._wrote(index, view.version)
        self._send(index, view.attempts)

    def _send(self, index: int, attempt: int) -> None:
        """Send ``attempt`` through the flaky transport and record what it says."""
        outcome = transport_outcome(self.seed, index, attempt, self.failure_rate)
        msg_id = self.ids[index]
        self.commands += 1
        if outcome.delivered:
            view = self._target().record_delivery(
                msg_id, seq=self._seq(index), attempt=attempt
            )
            self._wrote(index, view.version)
            self._deliver(index)
            return
        assert outcome.code is not None
        assert outcome.retry_class is not None
        self.failures[outcome.retry_class.name] += 1
        view = self._target().record_failure(
            msg_id,
            code=outcome.code,
            desc=outcome.desc,
            attempt=attempt,
            retry_after=outcome.retry_after,
        )
        self._wrote(index, view.version)
        if outcome.late_ack_after is not None:
            self.order += 1
            heapq.heappush(
                self.acks,
                (
                    self.clock.now + timedelta(seconds=outcome.late_ack_after),
                    self.order,
                    index,
                    attempt,
                ),
            )
        decision = self.policy.decide(view, self.clock.now)
        if decision.allowed or decision.code is ErrorCode.TOO_EARLY:
            assert view.next_retry_at is not None
            self._wait(index, view.next_retry_at)
        else:
            self._give_up(index, decision.code)

    def _late_ack(self, index: int, attempt: int) -> None:
        """An acknowledgement for a send already reported as failed."""
        self.commands += 1
        self.late_acks += 1
        view = self._target().record_delivery(
            self.ids[index], seq=self._seq(index), attempt=attempt
        )
        self._wrote(index, view.version)
        if not self.delivered[index]:
            self.late_ack_deliveries += 1
            self._deliver(index)

    # -- bookkeeping --

    def _seq(self, index: int) -> str:
        """The server's sequence number for the message (one per message)."""
        return f"{self.run}{index:0{_ID_WIDTH}d}"

    def _wait(self, index: int, moment: datetime) -> None:
        self.order += 1
        heapq.heappush(self.waiting, (moment, self.order, index, self.attempts[index]))

    def _deliver(self, index: int) -> None:
        if self.delivered[index]:
            return
        self.delivered[index] = True
        if self.dead.pop(index, None) is None:
            self.settled += 1

    def _give_up(self, index: int, code: ErrorCode) -> None:
        if index not in self.dead:
            self.settled += 1
        self.dead[index] = code

    def _wrote(self, index: int, version: int) -> None:
        self.events += max(version - self.versions[index], 0)
        self.versions[index] = max(version, self.versions[index])

    def _summary(self, start: datetime, wall: float) -> SimulationSummary:
        unsettled = [
            i for i in range(self.n) if not self.delivered[i] and i not in self.dead
        ]
        if unsettled:  # pragma: no cover - the loop settles every message
            raise AssertionError(f"{len(unsettled)} messages were left unsettled")
        reasons = Counter(code.name for code in self.dead.values())
        histogram = Counter(self.attempts)
        return SimulationSummary(
            run=self.run,
            prefix=f"sim{self.run}-",
            seed=self.seed,
            messages=self.n,
            failure_rate=self.failure_rate,
            delivered=sum(self.delivered),
            dead=len(self.dead),
            dead_by_reason=dict(sorted(reasons.items())),
            sends_histogram=dict(sorted(histogram.items())),
            failures=sum(self.failures.values()),
            failures_by_class={
                retry_class.name: self.failures[retry_class.name]
                for _, retry_class, _ in FAILURE_MIX
            },
            late_acks=self.late_acks,
            late_ack_deliveries=self.late_ack_deliveries,
            resends=self.resends,
            events_written=self.events,
            commands=self.commands,
            simulated_seconds=(self.clock.now - start).total_seconds(),
            wall_seconds=wall,
            policy=self.policy.to_dict(),
        )
