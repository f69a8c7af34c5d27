"""Multi-process soak: several OS processes hammer the same messages at once.

Each worker (``python -m tests.soak_worker``) runs random commands over a small
shared set of message ids; afterwards a fresh service reads every stored event
and checks it against an independent replay model and against every worker's
log of the commands that returned.

Sizes: ``MSGSTATE_SOAK_PROCESSES`` (default 4) processes of
``MSGSTATE_SOAK_COMMANDS`` (default 2000) commands each; the long run is
``MSGSTATE_SOAK_COMMANDS=20000``. ``MSGSTATE_SOAK_SEED`` fixes the workers' seeds
(printed with the figures; the interleaving still varies). Figures print with
``pytest -s`` and are written to ``soak-<backend>.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from msgstate import Message, MessageService, setup_schema
from tests import pg
from tests.soak_worker import (
    AMBIGUOUS_CODE,
    MAX_ATTEMPTS,
    PERMANENT_CODE,
    POLICY,
    RECONNECT_CODE,
    TRANSIENT_CODES,
    creation_fields,
    race_ids,
    request_id_for,
    seq_for,
)

ROOT = Path(__file__).resolve().parent.parent
SOAK_BACKENDS = ("sqlite", "postgres")
WORKER_TIMEOUT = 600.0


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


# -- the independent model: what a legal history looks like --

SENDING, SEND_SUCC, SEND_FAIL = 1, 2, 3
RESENDABLE_CODES = frozenset({*TRANSIENT_CODES, AMBIGUOUS_CODE, RECONNECT_CODE})
NEVER_RESENT_CODES = frozenset({PERMANENT_CODE})


@dataclass(frozen=True)
class Stored:
    """One stored event, reduced to what the model looks at."""

    version: int
    name: str
    data: Mapping[str, Any]


@dataclass
class Replay:
    """A stream replayed through the model; ``states[v - 1]`` is after version v."""

    msg_id: str
    states: list[tuple[int, int]] = field(default_factory=list)
    request_ids: dict[str, int] = field(default_factory=dict)
    delivered_at_version: int | None = None
    seq: str | None = None
    last_code: int | None = None
    created: Mapping[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return len(self.states)

    @property
    def status(self) -> int:
        return self.states[-1][0]

    @property
    def attempts(self) -> int:
        return self.states[-1][1]


def replay(events: Sequence[Stored], *, max_attempts: int = MAX_ATTEMPTS) -> Replay:
    """Apply ``events`` in order; AssertionError names the first illegal one."""
    assert events, "an empty stream"
    first = events[0]
    assert "Created" == first.name, f"stream starts with {first.name}"
    model = Replay(msg_id=first.data["msg_id"], created=first.data)
    status: int | None = None
    attempts = 0
    for e in events:
        where = f"{model.msg_id!r} v{e.version} {e.name}"
        assert model.version + 1 == e.version, f"{where}: expected v{model.version + 1}"
        if e.name == "Created":
            assert status is None, f"{where}: created twice"
            status, attempts = SENDING, 1
        elif e.name == "SendFailed":
            assert SENDING == status, f"{where}: failure while {status}"
            assert attempts == e.data["attempt"], f"{where}: not the current attempt"
            status, model.last_code = SEND_FAIL, e.data["code"]
        elif e.name == "ResendRequested":
            assert SEND_FAIL == status, f"{where}: resend while {status}"
            assert model.last_code not in NEVER_RESENT_CODES, (
                f"{where}: resent after permanent error {model.last_code}"
            )
            assert model.last_code in RESENDABLE_CODES, f"{where}: unknown code"
            assert attempts + 1 == e.data["attempt"], f"{where}: attempt skipped"
            assert e.data["attempt"] <= max_attempts, f"{where}: beyond max_attempts"
            request_id = e.data["request_id"]
            assert request_id not in model.request_ids, f"{where}: {request_id} again"
            model.request_ids[request_id] = e.version
            status, attempts = SENDING, e.data["attempt"]
        elif e.name == "Delivered":
            assert status in (SENDING, SEND_FAIL), f"{where}: delivered while {status}"
            assert 1 <= e.data["attempt"] <= attempts, f"{where}: unknown attempt"
            assert seq_for(model.msg_id) == e.data["seq"], f"{where}: foreign seq"
            status, model.seq = SEND_SUCC, e.data["seq"]
            model.delivered_at_version = e.version
        else:
            raise AssertionError(f"{where}: unknown event")
        model.states.append((status, attempts))
    assert len(model.request_ids) <= max_attempts - 1
    return model


# -- reading the store and the workers' logs --


def read_streams(service: MessageService) -> dict[UUID, list[Stored]]:
    """Every stored event, by stream, in the order of the application log."""
    streams: dict[UUID, list[Stored]] = defaultdict(list)
    start = 1
    while True:
        notifications = service.recorder.select_notifications(start, 500)
        if not notifications:
            return dict(streams)
        for notification in notifications:
            event = service.mapper.to_domain_event(notification)
            streams[event.originator_id].append(
                Stored(event.originator_version, type(event).__name__, vars(event))
            )
        start = notifications[-1].id + 1


def read_log(path: Path) -> list[dict[str, Any]]:
    """A worker's JSON lines; a torn last line (SIGKILL mid-write) is dropped."""
    if not path.exists():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            assert number == len(lines) - 1, f"{path}: line {number + 1} is torn"
    return records


def check_store(
    service: MessageService,
    logs: Iterable[dict[str, Any]],
    *,
    complete_logs: bool,
    query: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Check every invariant the store and the logs imply; return the figures.

    ``complete_logs``: every write is in some log (no process was killed), so
    the logged writes must be exactly the stored events. ``query``: which
    messages to also read through the public queries (default: all).
    """
    streams = read_streams(service)
    replays: dict[str, Replay] = {}
    for originator_id, events in streams.items():
        model = replay(events)
        assert Message.create_id(model.msg_id) == originator_id
        assert model.msg_id not in replays
        replays[model.msg_id] = model
        check_creation(model)
        if query is not None and not query(model.msg_id):
            continue
        # The public queries agree with the raw stream and with the model.
        history = service.history(model.msg_id)
        assert [(e.version, e.name) for e in events] == [
            (h.version, h.event) for h in history
        ]
        view = service.get(model.msg_id)
        assert (model.version, model.status, model.attempts, model.seq) == (
            view.version,
            int(view.status),
            view.attempts,
            view.seq,
        ), model.msg_id
        assert model.last_code == view.last_error_code
    stored = {
        (originator_id.hex, e.version): e
        for originator_id, events in streams.items()
        for e in events
    }
    check_pairs(replays)
    claims = check_logs(logs, replays, stored)
    if complete_logs:
        unclaimed = set(stored) - claims
        assert not unclaimed, f"events no command reported writing: {unclaimed}"
    statuses = Counter(
        {SENDING: "SENDING", SEND_SUCC: "SEND_SUCC", SEND_FAIL: "SEND_FAIL"}[m.status]
        for m in replays.values()
    )
    return {
        "messages": len(replays),
        "events": len(stored),
        "resends": sum(len(m.request_ids) for m in replays.values()),
        "final_statuses": dict(sorted(statuses.items())),
        "exhausted": sum(
            m.attempts == MAX_ATTEMPTS and m.status == SEND_FAIL
            for m in replays.values()
        ),
    }


def check_creation(model: Replay) -> None:
    """The Created event carries the fields every process agreed on."""
    created = model.created
    if model.msg_id.startswith("pair-"):
        assert ("pairer", "{}") == (created["sender"], created["content"])
        return
    expected = creation_fields(model.msg_id)
    assert expected["sender"] == created["sender"]
    assert expected["user_id"] == created["user_id"]
    assert expected["cloud_custom_data"] == created["cloud_custom_data"]
    assert expected["content"] == json.loads(created["content"])


def check_pairs(replays: Mapping[str, Replay]) -> None:
    """A two-message transaction stored both messages or neither."""
    for msg_id in replays:
        if msg_id.startswith("pair-"):
            stem, side = msg_id.rsplit("-", 1)
            partner = f"{stem}-{'b' if side == 'a' else 'a'}"
            assert partner in replays, f"{msg_id} stored without {partner}"


def check_logs(
    logs: Iterable[dict[str, Any]],
    replays: Mapping[str, Replay],
    stored: Mapping[tuple[str, int], Stored],
) -> set[tuple[str, int]]:
    """Every command that returned is reflected in the store; returns its writes."""
    claims: dict[tuple[str, int], tuple[int, int]] = {}
    for record in logs:
        if record.get("outcome") != "ok":
            continue
        who = (record["p"], record["i"])
        for stream, version, name in record["wrote"]:
            key = (stream, version)
            assert key in stored, f"{record}: its write is not in the store"
            assert name == stored[key].name, record
            assert key not in claims, f"{record} and {claims[key]} wrote the same event"
            claims[key] = who
            check_written(record, stored[key])
        if record["cmd"] == "pair":
            assert all(msg_id in replays for msg_id in record["msg_id"]), record
            continue
        model = replays.get(record["msg_id"])
        assert model is not None, f"{record}: returned, but the message is not stored"
        version = record["version"]
        # The view it returned is a state the stream really passed through.
        assert 1 <= version <= model.version, record
        assert tuple(model.states[version - 1]) == (
            record["status"],
            record["attempts"],
        ), record
        if record["cmd"] == "resend":
            accepted = model.request_ids.get(record["args"]["request_id"])
            assert accepted is not None, f"{record}: its request id is not stored"
            assert accepted <= version, record
        elif record["cmd"] == "record_delivery":
            assert SEND_SUCC == record["status"], record
            assert record["args"]["seq"] == model.seq == record["seq"], record
            assert model.delivered_at_version is not None
            assert model.delivered_at_version <= version, record
    return set(claims)


def check_written(record: dict[str, Any], event: Stored) -> None:
    """A write a command reported carries that command's arguments."""
    args = record["args"]
    if record["cmd"] == "record_failure":
        assert ("SendFailed", args["code"]) == (event.name, event.data["code"])
    elif record["cmd"] == "resend":
        assert ("ResendRequested", args["request_id"]) == (
            event.name,
            event.data["request_id"],
        )
    elif record["cmd"] == "record_delivery":
        assert ("Delivered", args["seq"]) == (event.name, event.data["seq"])
    else:  # create, pair
        assert "Created" == event.name


# -- running workers --


def store_url(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory / 'soak.db'}"
    return pg.fresh_url()


def open_service(url: str) -> MessageService:
    """A fresh service on an existing store: no tables created, nothing repaired."""
    return MessageService.open(url, policy=POLICY, create_tables=False)


@dataclass
class WorkerRun:
    """One worker process and its files."""

    process: subprocess.Popen[bytes]
    log: Path
    stats: Path
    ready: Path
    started: Path
    output: Path

    def failure(self) -> str:
        return f"worker {self.process.args} failed:\n{self.output.read_text()}"

    def stats_json(self) -> dict[str, Any]:
        assert self.stats.exists(), self.failure()
        value: dict[str, Any] = json.loads(self.stats.read_text())
        return value


def spawn_worker(directory: Path, name: str, **options: object) -> WorkerRun:
    """Start ``python -m tests.soak_worker --option value ...`` as a new OS process."""
    files = {
        kind: directory / f"{name}.{suffix}"
        for kind, suffix in (
            ("log", "jsonl"),
            ("stats", "json"),
            ("ready", "ready"),
            ("started", "started"),
            ("output", "out"),
        )
    }
    command = [sys.executable, "-m", "tests.soak_worker"]
    for option, value in options.items():
        command += [f"--{option.replace('_', '-')}", str(value)]
    for kind in ("log", "stats", "ready", "started"):
        command += [f"--{kind}", str(files[kind])]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with files["output"].open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    return WorkerRun(process, **files)


def wait_ready(runs: Sequence[WorkerRun], timeout: float = 120.0) -> None:
    """Wait until every worker has opened its service (or fail if one died)."""
    deadline = time.monotonic() + timeout
    for run in runs:
        while not run.ready.exists():
            assert run.process.poll() is None, run.failure()
            assert time.monotonic() < deadline, "worker never became ready"
            time.sleep(0.005)


def open_gate(gate: Path, delay: float = 0.05) -> float:
    """Tell waiting workers to start at ``now + delay``; returns that time."""
    start = time.time() + delay
    partial = gate.with_name(gate.name + ".part")
    partial.write_text(repr(start))
    partial.replace(gate)
    return start


def run_to_end(runs: Sequence[WorkerRun], gate: Path) -> float:
    """Start the waiting workers together, wait for them; returns the start time."""
    try:
        wait_ready(runs)
        start = open_gate(gate)
        deadline = time.monotonic() + WORKER_TIMEOUT
        for run in runs:
            run.process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        kill_all(runs)
    for run in runs:
        assert 0 == run.process.returncode, run.failure()
    return start


def kill_all(runs: Iterable[WorkerRun | None]) -> None:
    """Kill the workers still running (a failed test leaves none behind)."""
    for run in runs:
        if run is not None and run.process.poll() is None:
            run.process.kill()
            run.process.wait()


def all_logs(runs: Sequence[WorkerRun]) -> Iterator[dict[str, Any]]:
    for run in runs:
        yield from read_log(run.log)


# -- the tests --


@pytest.mark.slow
@pytest.mark.parametrize("backend", SOAK_BACKENDS)
def test_soak_processes_collide_and_history_stays_consistent(
    backend: str, tmp_path: Path
) -> None:
    """N processes x M random commands on shared ids: every invariant holds after."""
    processes = env_int("MSGSTATE_SOAK_PROCESSES", 4)
    commands = env_int("MSGSTATE_SOAK_COMMANDS", 2000)
    seed = env_int("MSGSTATE_SOAK_SEED", random.randrange(1_000_000))
    url = store_url(backend, tmp_path)
    setup_schema(url)
    gate = tmp_path / "gate"
    runs = [
        spawn_worker(
            tmp_path,
            f"soak-{p}",
            url=url,
            mode="soak",
            process=p,
            commands=commands,
            seed=seed + p,
            gate=gate,
            ids=4,
        )
        for p in range(processes)
    ]
    start = run_to_end(runs, gate)
    seconds = time.time() - start
    stats = [run.stats_json() for run in runs]
    service = open_service(url)
    try:
        store = check_store(service, all_logs(runs), complete_logs=True)
    finally:
        service.close()
    checked = time.time() - start - seconds

    refusals: Counter[str] = Counter()
    for s in stats:
        refusals.update(s["refusals"])
    figures = {
        "backend": backend,
        "processes": processes,
        "commands_per_process": commands,
        "seed": seed,
        "commands": sum(s["commands"] for s in stats),
        "successes": sum(s["successes"] for s in stats),
        "refusals": dict(sorted(refusals.items())),
        "conflicts_retried": sum(s["conflicts_retried"] for s in stats),
        "concurrency_conflict_raised": sum(s["concurrency_conflicts"] for s in stats),
        "create_collisions": sum(s["create_collisions"] for s in stats),
        **store,
        "seconds": round(seconds, 2),
        "check_seconds": round(checked, 2),
        "commands_per_second": round(sum(s["commands"] for s in stats) / seconds),
    }
    out = tmp_path / f"soak-{backend}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nsoak {backend}: {json.dumps(figures)}\n  -> {out}")

    assert processes * commands == figures["commands"]
    assert not [s["error_tracebacks"] for s in stats if s["unexpected_errors"]]
    assert "STORAGE_ERROR" not in refusals
    assert figures["successes"] == sum(
        1 for r in all_logs(runs) if r["outcome"] == "ok"
    )
    assert store["events"] == sum(s["events_written"] for s in stats)
    if processes > 1 and commands >= 500:
        # The run really made processes collide, and retries resolved them.
        assert figures["conflicts_retried"] + figures["create_collisions"] > 0
        assert store["resends"] > 0
        assert store["final_statuses"].get("SEND_SUCC", 0) > 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", SOAK_BACKENDS)
def test_simultaneous_resends_with_one_request_id_make_one_event(
    backend: str, tmp_path: Path
) -> None:
    """Two processes send resend(request_id=same) at the same instant, 10 rounds.

    On even rounds each load is followed by a short pause in the worker, so both
    load the same version before either saves and the loser must retry.
    """
    rounds = 10
    url = store_url(backend, tmp_path)
    setup_schema(url)
    service = open_service(url)
    try:
        for r in range(rounds):
            msg_id, _ = race_ids("race", r)
            service.create(msg_id, **creation_fields(msg_id))
            service.record_failure(msg_id, code=TRANSIENT_CODES[0])
    finally:
        service.close()
    gate = tmp_path / "gate"
    runs = [
        spawn_worker(
            tmp_path,
            f"race-{p}",
            url=url,
            mode="race",
            process=p,
            prefix="race",
            rounds=rounds,
            gate=gate,
        )
        for p in range(2)
    ]
    run_to_end(runs, gate)
    records = list(all_logs(runs))
    service = open_service(url)
    try:
        check_store(service, records, complete_logs=False)  # setup is not logged
        raced = 0
        for r in range(rounds):
            msg_id, request_id = race_ids("race", r)
            resends = [
                h for h in service.history(msg_id) if h.event == "ResendRequested"
            ]
            assert [request_id] == [h.data["request_id"] for h in resends]
            answers = [x for x in records if x["msg_id"] == msg_id]
            assert 2 == len(answers)
            # Both callers were told the same thing: the resend is attempt 2.
            assert all(
                ("ok", 3, SENDING, 2)
                == (x["outcome"], x["version"], x["status"], x["attempts"])
                for x in answers
            ), answers
            assert 1 == sum(len(x["wrote"]) for x in answers)
            raced += any(x["conflicts"] for x in answers)
    finally:
        service.close()
    print(f"\nresend race {backend}: {raced}/{rounds} rounds lost a race and retried")
    assert raced >= 1, "no round made the two processes collide"


# -- the checks themselves can fail --


def _events(*specs: tuple[str, dict[str, Any]], msg_id: str = "m") -> list[Stored]:
    base = {"msg_id": msg_id}
    return [
        Stored(v, name, {**base, **data}) for v, (name, data) in enumerate(specs, 1)
    ]


CREATED = ("Created", {})
FAILED_1 = ("SendFailed", {"attempt": 1, "code": TRANSIENT_CODES[0]})


def _resend(attempt: int, request_id: str = "") -> tuple[str, dict[str, Any]]:
    return (
        "ResendRequested",
        {"attempt": attempt, "request_id": request_id or request_id_for("m", attempt)},
    )


def _failed(attempt: int, code: int = TRANSIENT_CODES[0]) -> tuple[str, dict[str, Any]]:
    return ("SendFailed", {"attempt": attempt, "code": code})


DELIVERED = ("Delivered", {"attempt": 1, "seq": seq_for("m")})


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([Stored(1, *FAILED_1)], id="no-created"),
        pytest.param(_events(CREATED, CREATED), id="created-twice"),
        pytest.param(_events(CREATED, _resend(2)), id="resend-while-sending"),
        pytest.param(_events(CREATED, FAILED_1, _failed(1)), id="failed-twice"),
        pytest.param(
            _events(CREATED, _failed(1, PERMANENT_CODE), _resend(2)),
            id="resend-after-permanent",
        ),
        pytest.param(_events(CREATED, FAILED_1, _resend(3)), id="attempt-skipped"),
        pytest.param(
            _events(
                CREATED,
                *[e for a in (1, 2, 3) for e in (_failed(a), _resend(a + 1))],
                _failed(4),
                _resend(5),
            ),
            id="beyond-max-attempts",
        ),
        pytest.param(
            _events(CREATED, FAILED_1, _resend(2, "x"), _failed(2), _resend(3, "x")),
            id="request-id-twice",
        ),
        pytest.param(_events(CREATED, DELIVERED, _failed(1)), id="fail-after-success"),
        pytest.param(
            _events(CREATED, ("Delivered", {"attempt": 1, "seq": "other"})),
            id="foreign-seq",
        ),
        pytest.param(
            [Stored(1, "Created", {"msg_id": "m"}), Stored(3, *DELIVERED)],
            id="version-gap",
        ),
    ],
)
def test_replay_model_rejects_illegal_histories(events: list[Stored]) -> None:
    """The model the soak relies on refuses each kind of corrupted history."""
    with pytest.raises(AssertionError):
        replay(events)


def test_replay_model_accepts_a_full_legal_history() -> None:
    model = replay(
        _events(
            CREATED,
            *[e for a in (1, 2, 3) for e in (_failed(a), _resend(a + 1))],
            _failed(4, AMBIGUOUS_CODE),
            ("Delivered", {"attempt": 2, "seq": seq_for("m")}),
        )
    )
    assert (SEND_SUCC, 4, 9) == (model.status, model.attempts, model.version)
    assert [(SENDING, 1), (SEND_FAIL, 1), (SENDING, 2)] == model.states[:3]
