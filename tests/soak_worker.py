"""One OS process issuing random msgstate commands, for the soak and crash tests.

    python -m tests.soak_worker --url URL --log out.jsonl --stats out.json [options]

The parent runs :func:`msgstate.setup_schema` first; the worker opens the store
with ``create_tables=False`` and :data:`POLICY`. It writes ``--ready`` once the
service is open, waits for ``--gate`` (a file holding a Unix start time, so that
several workers start within a millisecond of each other), writes ``--started``
and runs its commands. Every command appends one JSON line to ``--log``:
``outcome`` is ``ok`` (the command returned: the view's version, status and
attempts, and ``wrote``, the events its save put in the store), ``refused`` (a
:class:`~msgstate.MsgStateError`, with its code) or ``error`` (anything else).
The log is line-buffered, so a SIGKILL loses at most the line being written. At
the end the counters go to ``--stats`` (and stdout); that file existing means
the worker finished.

Modes:

``soak``
    Random commands over a *shared* set of ``--ids`` message ids
    (``{prefix}-{k}``), so processes collide. Half the commands are what the
    last view seen of the message invites, half are drawn blindly (so refusals
    and no-ops are exercised too). A process retires an id once it sees it
    finished (delivered, or refused for good) and takes the next number, so the
    processes move through the ids together whatever their speeds; 8% of the
    commands go to a recently retired id (late reports). Creation fields,
    request ids and seqs are functions of the message id, so repeats from
    different processes agree.
``crash``
    ``soak`` mixed with two-message transactions
    (``service.save(a, b)`` of two new :class:`~msgstate.Message` aggregates,
    ``{pair-prefix}-{n}-a`` and ``-b``); a ``begin`` line precedes each command.
``race``
    Round ``r`` starts at ``start + r * spacing`` and sends
    ``resend("{prefix}-{r}", request_id="{prefix}-{r}-req")``; on even rounds
    every load is followed by a ``--load-delay`` pause, so both racers load the
    same version before either saves.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError

from msgstate import (
    ConcurrencyConflict,
    Message,
    MessageService,
    MessageView,
    MsgStateError,
    ResendPolicy,
)

MAX_ATTEMPTS = 4
POLICY = ResendPolicy(max_attempts=MAX_ATTEMPTS)

TRANSIENT_CODES = (6012, 20004, 90994, 10002)
PERMANENT_CODE = 80001  # ERR_SVR_COMM_SENSITIVE_TEXT
AMBIGUOUS_CODE = 9520  # ERR_SDK_NET_WAIT_ACK_TIMEOUT (resent: resend_ambiguous)
RECONNECT_CODE = 9508  # ERR_SDK_NET_DISCONNECT
REQUEST_POOL = 4  # request ids per message (more than the 3 resends allowed)

SENDING, SEND_SUCC, SEND_FAIL = 1, 2, 3
FINISHED_CODES = frozenset({"ALREADY_DELIVERED", "NOT_RETRYABLE", "ATTEMPTS_EXHAUSTED"})

COMMAND_WEIGHTS = {
    "create": 12,
    "record_failure": 38,
    "resend": 35,
    "record_delivery": 15,
}


# -- the worker's vocabulary, shared with the tests' checks --


def creation_fields(msg_id: str) -> dict[str, Any]:
    """What every process passes to ``create(msg_id, ...)``."""
    return {
        "sender": "alice",
        "user_id": f"user-{msg_id}",
        "cloud_custom_data": f"ccd-{msg_id}",
        "content": {"text": msg_id},
    }


def pair_ids(prefix: str, n: int) -> tuple[str, str]:
    return f"{prefix}-{n}-a", f"{prefix}-{n}-b"


def pair_message(msg_id: str) -> Message:
    """A new aggregate built directly, as a multi-aggregate transaction would."""
    return Message(
        msg_id=msg_id,
        sender="pairer",
        user_id=None,
        group_id=f"group-{msg_id}",
        elem_type=1,
        priority=0,
        online_user_only=False,
        need_read_receipt=False,
        cloud_custom_data="",
        content="{}",
        at=datetime.now(UTC),
    )


def seq_for(msg_id: str) -> str:
    return f"seq-{msg_id}"


def request_id_for(msg_id: str, k: int) -> str:
    return f"{msg_id}-r{k}"


def race_ids(prefix: str, r: int) -> tuple[str, str]:
    """(msg_id, request_id) of race round ``r``."""
    return f"{prefix}-{r}", f"{prefix}-{r}-req"


# -- the service, instrumented (the library is not modified) --


class CountingService(MessageService):
    """Counts the optimistic-concurrency losses and remembers what each save wrote."""

    name = MessageService.name  # the tables' names derive from it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.update_conflicts = 0  # IntegrityError in a command's save (_update)
        self.create_collisions = 0  # IntegrityError in create (an existing id)
        self.written: list[list[Any]] = []
        self.load_delay = 0.0
        self._in_create = False
        super().__init__(*args, **kwargs)

    def create(self, *args: Any, **kwargs: Any) -> MessageView:
        self._in_create = True
        try:
            return super().create(*args, **kwargs)
        finally:
            self._in_create = False

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        try:
            recordings = super().save(*objs, **kwargs)
        except IntegrityError:
            if self._in_create:
                self.create_collisions += 1
            else:
                self.update_conflicts += 1
            raise
        for recording in recordings:
            event = recording.domain_event
            self.written.append(
                [
                    event.originator_id.hex,
                    event.originator_version,
                    type(event).__name__,
                ]
            )
        return recordings

    def _load(self, msg_id: str) -> Message:
        message = super()._load(msg_id)
        if self.load_delay:
            time.sleep(self.load_delay)
        return message


# -- the worker --


class Worker:
    def __init__(self, args: argparse.Namespace, service: CountingService) -> None:
        self.args = args
        self.service = service
        self.rng = random.Random(args.seed)
        self.log = args.log.open("a", buffering=1, encoding="utf-8")
        self.counts: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.errors: list[str] = []
        self.start = 0.0
        self.pairs = 0
        # The shared set: the ids this process has not yet seen finished. Every
        # process retires ids as it sees them finish and takes the next number,
        # so all processes work on (nearly) the same ids whatever their speed.
        self.active = [f"{args.prefix}-{k}" for k in range(args.ids)]
        self.next = args.ids
        self.retired: deque[str] = deque(maxlen=8)
        self.known: dict[str, int] = {}

    # one command, logged

    def run(
        self,
        i: int,
        cmd: str,
        msg_id: str | list[str],
        call: Callable[[], Any],
        **args: Any,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "p": self.args.process,
            "i": i,
            "cmd": cmd,
            "msg_id": msg_id,
            "args": args,
        }
        if self.args.mode == "crash":
            self.write({"p": self.args.process, "i": i, "begin": cmd})
        self.service.written = []
        conflicts_before = self.service.update_conflicts
        self.counts["commands"] += 1
        try:
            view = call()
        except ConcurrencyConflict as error:
            self.counts["concurrency_conflicts"] += 1
            self.refusals[error.code.name] += 1
            record.update(outcome="refused", code=error.code.name)
        except MsgStateError as error:
            self.refusals[error.code.name] += 1
            record.update(outcome="refused", code=error.code.name)
        except Exception as error:
            self.counts["unexpected_errors"] += 1
            self.errors.append(traceback.format_exc())
            record.update(outcome="error", error=repr(error))
        else:
            self.counts["successes"] += 1
            record["outcome"] = "ok"
            if isinstance(view, MessageView):
                record.update(
                    version=view.version,
                    status=int(view.status),
                    attempts=view.attempts,
                    seq=view.seq,
                )
        record["conflicts"] = self.service.update_conflicts - conflicts_before
        record["wrote"] = self.service.written
        self.counts["events_written"] += len(self.service.written)
        self.write(record)
        return record

    def write(self, record: dict[str, Any]) -> None:
        self.log.write(json.dumps(record, separators=(",", ":")) + "\n")

    # the modes

    def sensible(self, msg_id: str) -> str:
        """A command that the last view this process saw of ``msg_id`` invites."""
        status = self.known.get(msg_id)
        if status is None:
            table = {"create": 8, "record_failure": 1, "resend": 1}
        elif status == SENDING:
            table = {"record_failure": 12, "record_delivery": 5, "resend": 3}
        else:  # SEND_FAIL (SEND_SUCC ids are retired)
            table = {"resend": 15, "record_delivery": 2, "record_failure": 3}
        return self.rng.choices(list(table), list(table.values()))[0]

    def learn(self, msg_id: str, record: dict[str, Any]) -> None:
        """Retire ``msg_id`` from the shared set once it is seen to be finished."""
        if record["outcome"] == "ok" and "status" in record:
            self.known[msg_id] = record["status"]
            finished = record["status"] == SEND_SUCC
        else:
            finished = record.get("code") in FINISHED_CODES
            if record.get("code") == "MESSAGE_NOT_FOUND":
                self.known.pop(msg_id, None)
        if finished and msg_id in self.active:
            self.active[self.active.index(msg_id)] = f"{self.args.prefix}-{self.next}"
            self.next += 1
            self.retired.append(msg_id)

    def random_command(self, i: int) -> None:
        rng, service = self.rng, self.service
        if self.retired and rng.random() < 0.08:
            msg_id = rng.choice(self.retired)  # a late report about a finished one
        else:
            msg_id = rng.choice(self.active)
        if rng.random() < 0.5:
            cmd = self.sensible(msg_id)
        else:
            cmd = rng.choices(list(COMMAND_WEIGHTS), list(COMMAND_WEIGHTS.values()))[0]
        attempt = None if rng.random() < 0.8 else rng.randint(1, MAX_ATTEMPTS)
        if cmd == "create":
            fields = creation_fields(msg_id)
            record = self.run(i, cmd, msg_id, lambda: service.create(msg_id, **fields))
        elif cmd == "record_failure":
            roll = rng.random()
            code = (
                rng.choice(TRANSIENT_CODES)
                if roll < 0.75
                else PERMANENT_CODE
                if roll < 0.85
                else AMBIGUOUS_CODE
                if roll < 0.95
                else RECONNECT_CODE
            )
            record = self.run(
                i,
                cmd,
                msg_id,
                lambda: service.record_failure(
                    msg_id, code=code, desc=f"code {code}", attempt=attempt
                ),
                code=code,
                attempt=attempt,
            )
        elif cmd == "resend":
            request_id = request_id_for(msg_id, rng.randrange(REQUEST_POOL))
            record = self.run(
                i,
                cmd,
                msg_id,
                lambda: service.resend(msg_id, request_id=request_id),
                request_id=request_id,
            )
        else:
            seq = seq_for(msg_id)
            record = self.run(
                i,
                cmd,
                msg_id,
                lambda: service.record_delivery(msg_id, seq=seq, attempt=attempt),
                seq=seq,
                attempt=attempt,
            )
        self.learn(msg_id, record)

    def pair(self, i: int) -> None:
        a_id, b_id = pair_ids(self.args.pair_prefix, self.pairs)
        self.pairs += 1

        self.run(
            i,
            "pair",
            [a_id, b_id],
            lambda: self.service.save(pair_message(a_id), pair_message(b_id)),
        )

    def soak(self) -> None:
        crash = self.args.mode == "crash"
        for i in range(self.args.commands):
            if crash and self.rng.random() < self.args.pair_weight:
                self.pair(i)
            else:
                self.random_command(i)

    def race(self) -> None:
        for r in range(self.args.rounds):
            msg_id, request_id = race_ids(self.args.prefix, r)
            self.service.load_delay = self.args.load_delay if r % 2 == 0 else 0.0
            pause = self.start + r * self.args.spacing - time.time()
            if pause > 0:
                time.sleep(pause)
            self.run(
                r,
                "resend",
                msg_id,
                lambda m=msg_id, q=request_id: self.service.resend(m, request_id=q),
                request_id=request_id,
            )

    def stats(self, seconds: float) -> dict[str, Any]:
        service = self.service
        return {
            "process": self.args.process,
            "pid": os.getpid(),
            "mode": self.args.mode,
            "seed": self.args.seed,
            "commands": self.counts["commands"],
            "successes": self.counts["successes"],
            "refusals": dict(sorted(self.refusals.items())),
            "concurrency_conflicts": self.counts["concurrency_conflicts"],
            # Each ConcurrencyConflict is the 4th lost race of one command; the
            # other lost races were reloaded and decided again.
            "conflicts_retried": service.update_conflicts
            - self.counts["concurrency_conflicts"],
            "lost_races": service.update_conflicts,
            "create_collisions": service.create_collisions,
            "events_written": self.counts["events_written"],
            "unexpected_errors": self.counts["unexpected_errors"],
            "error_tracebacks": self.errors[:5],
            "seconds": round(seconds, 3),
        }


def wait_for_gate(gate: Path, timeout: float = 600.0) -> float:
    """Wait for the gate file, then until the start time it holds.

    Gives up (exit status 3) if the parent process dies or after ``timeout``,
    so that a failed test never leaves a worker waiting forever.
    """
    parent = os.getppid()
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = gate.read_text()
        except FileNotFoundError:
            text = ""
        if text.strip():
            break
        if os.getppid() != parent or time.monotonic() > deadline:
            raise SystemExit(3)
        time.sleep(0.002)
    start = float(text)
    pause = start - time.time()
    if pause > 0:
        time.sleep(pause)
    return start


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("soak", "crash", "race"), default="soak")
    parser.add_argument("--process", type=int, default=0)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--stats", type=Path, required=True)
    parser.add_argument("--ready", type=Path, default=None)
    parser.add_argument("--gate", type=Path, default=None)
    parser.add_argument("--started", type=Path, default=None)
    parser.add_argument("--prefix", default="soak")
    parser.add_argument("--ids", type=int, default=4, help="ids in the shared set")
    parser.add_argument("--pair-prefix", default="pair")
    parser.add_argument("--pair-weight", type=float, default=0.25)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=0.15)
    parser.add_argument("--load-delay", type=float, default=0.03)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    service = CountingService.open(args.url, policy=POLICY, create_tables=False)
    assert isinstance(service, CountingService)
    if args.ready is not None:
        args.ready.write_text(str(os.getpid()))
    worker = Worker(args, service)
    worker.start = wait_for_gate(args.gate) if args.gate is not None else time.time()
    if args.started is not None:
        args.started.write_text(str(time.time()))
    began = time.perf_counter()
    if args.mode == "race":
        worker.race()
    else:
        worker.soak()
    stats = worker.stats(time.perf_counter() - began)
    worker.log.close()
    service.close()
    text = json.dumps(stats, indent=2)
    partial = args.stats.with_name(args.stats.name + ".part")
    partial.write_text(text + "\n")
    partial.replace(args.stats)  # appears whole: its existence means "finished"
    print(text)
    return stats


if __name__ == "__main__":
    main(sys.argv[1:])
