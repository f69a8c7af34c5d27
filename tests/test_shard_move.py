"""Moving a shard while real processes write to it, and SIGKILLing the move.

Two writer processes (``tests/shard_move_writer.py``) keep running lifecycles on
messages of the moving shard and of the others, logging every acknowledged
answer. The move runs in its own process (``tests/shard_move_mover.py``), which
SIGKILLs itself at a chosen progress step (or is killed at a random moment);
``python -m msgstate shards move`` then resumes it (or aborts it and moves
again). After each kill the shard is held by one database: only one accepts its
writes (the fence is probed), and any other copy is an exact prefix. Afterwards:
every acknowledged write is in the new database, none in the old, versions run
1..n, and a replay (``get_at``) answers what each writer was answered.

The unit-level tests below drive :func:`move_shard` in this process; a progress
callback that raises stands in for a crash between two steps.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from msgstate import (
    InvalidArgument,
    MessageService,
    MessageStatus,
    ShardMap,
    StorageError,
)
from msgstate._pg_shards import FROZEN, INCOMING, MOVED, OWNED, ShardTables
from msgstate.shards import move_shard
from tests import shardpg

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("copied", "frozen", "verified", "handed over", "deleted", "map written")
TOPICS = {
    "create": "Created",
    "fail": "SendFailed",
    "resend": "ResendRequested",
    "deliver": "Delivered",
}
SHARD = 3  # of 16: in the first database of shardpg.even_map (0-4)


# -- the databases, seen from outside the move --


class Db:
    """One database of the map: its shard records, events and fence."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.service = MessageService.open(url, projections="external")
        self.tables = ShardTables(self.service)

    def close(self) -> None:
        self.service.close()

    def state(self, shard: int) -> str:
        return self.tables.rows().get(shard, ("", "", 0))[0]

    def events(self, shard: int) -> dict[tuple[UUID, int], tuple[str, bytes]]:
        """(stream, version) -> (topic, state bytes) of every event of ``shard``."""
        from psycopg.sql import SQL

        with self.tables.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT originator_id, originator_version, topic, state "
                    "FROM {0} WHERE {1}(originator_id) = %s"
                ).format(self.tables.events, self.tables.function),
                (shard,),
            )
            return {
                (UUID(str(r["originator_id"])), int(r["originator_version"])): (
                    str(r["topic"]),
                    bytes(r["state"]),
                )
                for r in curs.fetchall()
            }

    def view_rows(self, shard: int) -> int:
        from psycopg.sql import SQL

        with self.tables.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT count(*) AS n FROM {0} WHERE {1}(id) = %s").format(
                    self.tables.views, self.tables.function
                ),
                (shard,),
            )
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def probe(self, shard: int) -> str:
        """Insert an event of ``shard`` and roll back: "accepted" or the hint."""
        import psycopg
        from psycopg.sql import SQL

        stream = UUID(bytes=shard.to_bytes(4, "big") + os.urandom(12))
        with self.tables.datastore.transaction(commit=False) as curs:
            try:
                curs.execute(
                    SQL(
                        "INSERT INTO {0} (originator_id, originator_version, topic, "
                        "state) VALUES (%s, 1, 'probe', '\\x00')"
                    ).format(self.tables.events),
                    (stream,),
                )
            except psycopg.Error as error:
                return str(error.diag.message_hint or error.sqlstate)
            return "accepted"


@contextmanager
def databases(urls: list[str]) -> Iterator[dict[str, Db]]:
    opened = {url: Db(url) for url in urls}
    try:
        yield opened
    finally:
        for db in opened.values():
            db.close()


def check_one_holder(dbs: dict[str, Db], shard: int) -> dict[str, str]:
    """The shard is held by one database; any other copy is an exact prefix.

    Only a database recording the shard ``owned`` accepts its events (the fence
    refuses everywhere else), and at most one does. The holder is the ``owned``
    database, else the ``frozen`` one (a move stopped before the handover);
    both exist only in the handover's gap (target owned, source still frozen,
    which refuses writes). Events of the shard elsewhere (an ``incoming`` copy, a
    ``moved`` copy not deleted yet) are a subset of the holder's, byte for byte.
    """
    states = {url: db.state(shard) for url, db in dbs.items()}
    probes = {url: db.probe(shard) for url, db in dbs.items()}
    accepting = sorted(u for u, p in probes.items() if p == "accepted")
    owned = sorted(u for u, s in states.items() if s == OWNED)
    frozen = sorted(u for u, s in states.items() if s == FROZEN)
    assert accepting == owned, (states, probes)
    assert len(owned) <= 1, states
    assert len(frozen) <= 1, states
    assert owned or frozen, states
    for url, probe in probes.items():
        if states[url] in (FROZEN, INCOMING):
            assert probe == "SHARD_MOVING", (url, states, probes)
        elif states[url] != OWNED:
            assert probe == "SHARD_MOVED", (url, states, probes)
    holder = (owned or frozen)[0]
    held = dbs[holder].events(shard)
    for url, db in dbs.items():
        if url == holder:
            continue
        copy = db.events(shard)
        if states[url] not in (INCOMING, MOVED, FROZEN):
            assert not copy, f"{len(copy)} events of shard {shard} in a bystander"
        stray = {k for k in copy if held.get(k) != copy[k]}
        assert not stray, f"{len(stray)} events at {states[url]} differ from holder"
    return states


# -- processes --


def python(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_move(path: Path, shard: int, to: str, *extra: str) -> Any:
    return python(
        "-m",
        "msgstate",
        "shards",
        "move",
        "--map",
        str(path),
        "--shard",
        str(shard),
        "--to",
        to,
        *extra,
    )


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


class Writers:
    """Writer processes on the map file, each with its own log."""

    def __init__(self, directory: Path, path: Path, shard: int, count: int = 2):
        self.directory = directory
        self.stop_file = directory / "stop"
        self.logs = [directory / f"writer-{i}.jsonl" for i in range(count)]
        self.shard = shard
        self.procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.shard_move_writer",
                    str(path),
                    str(i),
                    str(shard),
                    str(log),
                    str(self.stop_file),
                    "60",
                ],
                cwd=ROOT,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, log in enumerate(self.logs)
        ]

    def acks(self) -> list[dict[str, Any]]:
        return [r for log in self.logs for r in read_lines(log) if "v" in r]

    def moving_acks(self) -> int:
        return sum(1 for r in self.acks() if r["shard"] == self.shard)

    def wait_for(self, moving: int, timeout: float = 30) -> None:
        """Until each writer has ``moving`` more answers on the moving shard."""
        start = [self._moving_in(log) for log in self.logs]
        deadline = time.monotonic() + timeout
        while True:
            now = [self._moving_in(log) for log in self.logs]
            if all(n - s >= moving for n, s in zip(now, start, strict=True)):
                return
            for proc in self.procs:
                if proc.poll() is not None:
                    raise AssertionError(f"writer died: {proc.stderr.read()}")  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"writers stuck: {start} -> {now}"
            time.sleep(0.05)

    def _moving_in(self, log: Path) -> int:
        return sum(1 for r in read_lines(log) if "v" in r and r["shard"] == self.shard)

    def stop(self) -> list[dict[str, Any]]:
        self.stop_file.touch()
        for proc in self.procs:
            try:
                _, err = proc.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            assert proc.returncode == 0, err
        return self.acks()

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@contextmanager
def writing(directory: Path, path: Path, shard: int) -> Iterator[Writers]:
    writers = Writers(directory, path, shard)
    try:
        yield writers
    finally:
        writers.kill()


def mover(
    path: Path, shard: int, to: str, kill_at: str, log: Path, chunk: int = 20
) -> subprocess.Popen[str]:
    """The move in its own process, which SIGKILLs itself at step ``kill_at``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.shard_move_mover",
            str(path),
            str(shard),
            to,
            kill_at,
            str(log),
            str(chunk),  # small chunks: the copy takes many transactions
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- the final checks --


def check_moved(
    path: Path,
    old_map: ShardMap,
    shard: int,
    source: str,
    target: str,
    acks: list[dict[str, Any]],
    frozen_copies: list[dict[tuple[UUID, int], tuple[str, bytes]]],
    known: tuple[str, ...] = (),
) -> None:
    """Every acknowledged write is in the new database, as a replay says."""
    new_map = ShardMap.load(path)
    assert new_map == old_map.moved(shard, target)
    with pytest.raises(StorageError, match="shard map conflict"):
        MessageService.open(old_map, projections="external")
    urls = list(old_map.databases)
    with databases(urls) as dbs:
        assert dbs[source].state(shard) == MOVED
        assert dbs[target].state(shard) == OWNED
        check_one_holder(dbs, shard)
        assert dbs[source].events(shard) == {}
        assert dbs[source].view_rows(shard) == 0
        held = dbs[target].events(shard)
        for url in urls:
            if url != target:
                assert dbs[url].events(shard) == {}
        versions: dict[UUID, list[int]] = {}
        for stream, version in held:
            versions.setdefault(stream, []).append(version)
        for stream, found in versions.items():
            assert sorted(found) == list(range(1, len(found) + 1)), stream
        for copy in frozen_copies:  # the frozen source's events, byte for byte
            assert {k: held.get(k) for k in copy} == copy

        service = MessageService.open(f"shards://{path}", projections="external")
        try:
            by_msg: dict[str, dict[int, dict[str, Any]]] = {}
            for ack in acks:
                by_msg.setdefault(ack["m"], {}).setdefault(ack["v"], ack)
            moving = 0
            for msg_id, answers in by_msg.items():
                last = answers[max(answers)]
                stream = service.stream_id(msg_id)
                owner = new_map.database_of(new_map.shard_of(stream))
                if new_map.shard_of(stream) == shard:
                    moving += 1
                    assert owner == target
                    assert versions.get(stream, [0])[-1] >= 1
                    assert max(versions[stream]) == max(answers), msg_id
                    for version, ack in answers.items():
                        topic, _ = held[(stream, version)]
                        assert topic.endswith("." + TOPICS[ack["step"]]), topic
                        then = service.get_at(msg_id, version=version)
                        assert (int(then.status), then.attempts, then.seq) == (
                            ack["st"],
                            ack["a"],
                            ack["seq"],
                        ), (msg_id, version)
                now = service.get(msg_id)
                assert (now.version, int(now.status), now.attempts, now.seq) == (
                    last["v"],
                    last["st"],
                    last["a"],
                    last["seq"],
                ), msg_id
            assert moving >= 10
            acked = {service.stream_id(m) for m in [*by_msg, *known]}
            unacked = set(versions) - acked
            assert not unacked, f"{len(unacked)} streams nobody was answered about"
        finally:
            service.close()


def frozen_copy(dbs: dict[str, Db], shard: int) -> list[Any]:
    """The frozen holder's events (nothing can change them any more)."""
    frozen = [db for db in dbs.values() if db.state(shard) == FROZEN]
    if frozen and not any(db.state(shard) == OWNED for db in dbs.values()):
        return [frozen[0].events(shard)]
    return []


# -- SIGKILL at each step, then resume or abort --


@pytest.mark.parametrize("kill_at", [*STEPS, "random-1", "random-2", "random-3"])
def test_a_move_killed_at_any_step_resumes_or_rolls_back(
    tmp_path: Path, kill_at: str
) -> None:
    path = shardpg.fresh_map(tmp_path)
    old_map = ShardMap.load(path)
    urls = list(old_map.databases)
    source = old_map.database_of(SHARD)
    target = urls[2] if kill_at in ("frozen", "random-2") else urls[1]
    log = tmp_path / "mover.jsonl"
    rng = random.Random(kill_at)
    frozen_copies: list[Any] = []
    with writing(tmp_path, path, SHARD) as writers, databases(urls) as dbs:
        writers.wait_for(moving=25)
        if kill_at.startswith("random"):
            # Opening both databases takes ~0.3 s after "start", the copy of
            # a few hundred events in chunks of 5 about as long again.
            proc = mover(path, SHARD, target, "-", log, chunk=5)
            deadline = time.monotonic() + 30
            while not read_lines(log) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.25, 0.8))
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
        else:
            proc = mover(path, SHARD, target, kill_at, log)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == -signal.SIGKILL, err
        reached = [r["step"] for r in read_lines(log) if "step" in r]
        states = check_one_holder(dbs, SHARD)
        frozen_copies += frozen_copy(dbs, SHARD)
        handed_over = states[target] == OWNED
        writers.wait_for(moving=0)

        if kill_at == "map written":
            assert ShardMap.load(path).database_of(SHARD) == target
        if ShardMap.load(path).database_of(SHARD) == target:
            # The map was written: the move is done, or only the old copy's
            # deletion is left, which running it again finishes.
            again = cli_move(path, SHARD, target)
            if again.returncode != 0:
                assert "already in" in again.stdout + again.stderr
                assert dbs[source].events(SHARD) == {}
        elif handed_over:
            refused = cli_move(path, SHARD, target, "--abort")
            assert refused.returncode != 0
            assert "handed over" in refused.stdout + refused.stderr
            check_one_holder(dbs, SHARD)
        elif kill_at == "frozen" or (
            kill_at.startswith("random") and rng.random() < 0.5
        ):
            aborted = cli_move(path, SHARD, target, "--abort")
            assert aborted.returncode == 0, aborted.stderr
            assert dbs[source].state(SHARD) == OWNED
            assert dbs[target].state(SHARD) == ""
            assert dbs[target].events(SHARD) == {}
            assert ShardMap.load(path) == old_map
            check_one_holder(dbs, SHARD)
            before = writers.moving_acks()
            writers.wait_for(moving=5)  # the source takes the shard's writes again
            assert writers.moving_acks() > before
            reached.append("aborted")
        if ShardMap.load(path) == old_map:
            done = cli_move(path, SHARD, target)
            assert done.returncode == 0, done.stderr
            assert "handed over" in done.stderr
        check_one_holder(dbs, SHARD)
        writers.wait_for(moving=10)  # answered by the new database
        acks = writers.stop()
    print(f"\n{kill_at}: killed after {reached}; {len(acks)} answers")
    check_moved(path, old_map, SHARD, source, target, acks, frozen_copies)


def test_writers_wait_during_a_move_of_thousands_of_messages(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    old_map = ShardMap.load(path)
    source, target = old_map.database_of(SHARD), list(old_map.databases)[1]
    service = MessageService.open(f"shards://{path}", projections="external")
    try:
        ids = (f"bulk-{i}" for i in range(1_000_000))
        wanted = []
        for msg_id in ids:
            if service.shard(msg_id) == SHARD:
                wanted.append(msg_id)
                if len(wanted) == 3000:
                    break
        for start in range(0, len(wanted), 500):
            with service.batch() as batch:
                for msg_id in wanted[start : start + 500]:
                    batch.create(msg_id, sender="s", user_id="u")
        service.record_failures(
            [{"msg_id": m, "code": 6012, "attempt": 1} for m in wanted]
        )
    finally:
        service.close()
    with writing(tmp_path, path, SHARD) as writers:
        writers.wait_for(moving=25)
        began = time.time()
        done = cli_move(path, SHARD, target, "--json")
        ended = time.time()
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        writers.wait_for(moving=10)
        acks = writers.stop()
    assert report["streams"] >= 3000
    during = [a for a in acks if a["shard"] == SHARD and began <= a["t"] <= ended]
    waits = sorted(a["dt"] for a in during) or [0.0]
    others = sorted(
        a["dt"] for a in acks if a["shard"] != SHARD and began <= a["t"] <= ended
    ) or [0.0]
    print(
        f"\nmove of {report['streams']} messages ({report['events']} events): "
        f"{report['seconds']:.2f} s, frozen {report['frozen_seconds']:.3f} s; "
        f"{len(waits)} writes to the moving shard during it: median "
        f"{statistics.median(waits) * 1000:.1f} ms, max {waits[-1] * 1000:.1f} ms; "
        f"{len(others)} to other shards: median "
        f"{statistics.median(others) * 1000:.1f} ms, max {others[-1] * 1000:.1f} ms"
    )
    assert waits[-1] < 30  # well within move_wait
    check_moved(path, old_map, SHARD, source, target, acks, [], tuple(wanted))


# -- unit level: resume and abort, in this process --


class Crash(Exception):
    """Stands in for the mover dying between two steps."""


def crash_at(step: str) -> Any:
    def progress(reached: str, _count: int) -> None:
        if reached == step:
            raise Crash(step)

    return progress


def shard_ids(service: MessageService, shard: int, count: int) -> list[str]:
    found: list[str] = []
    i = 0
    while len(found) < count:
        i += 1
        if service.shard(f"u{i}") == shard:  # type: ignore[attr-defined]
            found.append(f"u{i}")
    return found


@pytest.fixture
def small_map(tmp_path: Path) -> Iterator[tuple[Path, MessageService, list[str]]]:
    """A fresh map, its service (from the file) and 8 messages of ``SHARD``."""
    path = shardpg.fresh_map(tmp_path)
    service = MessageService.open(f"shards://{path}", projections="external")
    ids = shard_ids(service, SHARD, 8)
    for msg_id in ids:
        service.create(msg_id, sender="s", user_id="u")
        service.record_failure(msg_id, code=6012, attempt=1)
    try:
        yield path, service, ids
    finally:
        service.close()


@pytest.mark.parametrize("step", ["copied", "frozen", "verified"])
def test_abort_before_the_handover_restores_the_source(
    small_map: tuple[Path, MessageService, list[str]], step: str
) -> None:
    path, service, ids = small_map
    old_map = ShardMap.load(path)
    source, target = old_map.database_of(SHARD), list(old_map.databases)[1]
    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at(step))
    with databases(list(old_map.databases)) as dbs:
        assert dbs[target].state(SHARD) == INCOMING
        assert dbs[target].events(SHARD)  # the copy so far
        assert dbs[source].state(SHARD) == (OWNED if step == "copied" else FROZEN)
        check_one_holder(dbs, SHARD)
        before = dbs[source].events(SHARD)

        report = move_shard(path, SHARD, target, abort=True)

        assert report.resumed
        assert dbs[source].state(SHARD) == OWNED
        assert dbs[target].state(SHARD) == ""
        assert dbs[target].events(SHARD) == {}
        assert dbs[target].view_rows(SHARD) == 0
        assert dbs[source].events(SHARD) == before
        assert ShardMap.load(path) == old_map
        assert dbs[source].probe(SHARD) == "accepted"
        assert dbs[target].probe(SHARD) == "SHARD_MOVED"
        view = service.resend(ids[0], request_id="after-abort")
        assert view.version == 3
        assert len(dbs[source].events(SHARD)) == len(before) + 1
    again = move_shard(path, SHARD, target)
    assert not again.resumed
    assert again.streams == len(ids)
    assert service.get(ids[0]).version == 3
    assert service.resend(ids[1], request_id="moved").version == 3


@pytest.mark.parametrize("step", ["handed over", "deleted"])
def test_abort_after_the_handover_is_refused_and_resume_finishes(
    small_map: tuple[Path, MessageService, list[str]], step: str
) -> None:
    path, service, ids = small_map
    old_map = ShardMap.load(path)
    source, target = old_map.database_of(SHARD), list(old_map.databases)[1]
    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at(step))
    with pytest.raises(InvalidArgument, match="handed over"):
        move_shard(path, SHARD, target, abort=True)
    with databases(list(old_map.databases)) as dbs:
        assert dbs[target].state(SHARD) == OWNED
        assert dbs[source].state(SHARD) == MOVED
        check_one_holder(dbs, SHARD)
    if ShardMap.load(path) == old_map:
        assert move_shard(path, SHARD, target).resumed
    else:  # the map is written before the old copy is deleted
        with suppress(InvalidArgument):
            assert move_shard(path, SHARD, target).resumed
    assert ShardMap.load(path) == old_map.moved(SHARD, target)
    assert service.record_delivery(ids[0], seq="d", attempt=1).version == 3
    with databases(list(old_map.databases)) as dbs:
        assert dbs[source].events(SHARD) == {}
        assert len(dbs[target].events(SHARD)) == 2 * len(ids) + 1


def test_moving_a_shard_to_its_owner_is_refused(
    small_map: tuple[Path, MessageService, list[str]],
) -> None:
    path, _, _ = small_map
    shard_map = ShardMap.load(path)
    with pytest.raises(InvalidArgument, match="already in"):
        move_shard(path, SHARD, shard_map.database_of(SHARD))
    refused = cli_move(path, SHARD, shard_map.database_of(SHARD))
    assert refused.returncode != 0
    assert "already in" in refused.stdout + refused.stderr
    assert ShardMap.load(path) == shard_map


def test_moving_a_shard_to_its_owner_in_a_new_map_is_refused(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    shard_map = ShardMap.load(path)
    with pytest.raises(InvalidArgument, match="already in"):
        move_shard(path, SHARD, shard_map.database_of(SHARD))


def test_moving_a_shard_the_map_gives_to_a_database_without_it_is_refused(
    small_map: tuple[Path, MessageService, list[str]],
) -> None:
    path, _, ids = small_map
    real = ShardMap.load(path)
    a, b, c = list(real.databases)
    assert real.database_of(SHARD) == a
    # A map that gives SHARD to b, which never had it (and shard 5 to a).
    wrong = ShardMap(
        real.virtual_shards,
        {a: "0-2,4-5", b: f"{SHARD},6-9", c: "10-15"},
    )
    wrong.save(path)
    with pytest.raises(StorageError, match="does not own shard"):
        move_shard(path, SHARD, c)
    with databases([a, b, c]) as dbs:
        assert dbs[a].state(SHARD) == OWNED
        assert dbs[c].state(SHARD) == ""
        assert dbs[c].events(SHARD) == {}
        assert len(dbs[a].events(SHARD)) == 2 * len(ids)
    assert ShardMap.load(path) == wrong


# -- found while writing these: open bugs (xfail) and fixed ones (regressions) --


def test_a_move_after_an_aborted_one_keeps_every_event(
    small_map: tuple[Path, MessageService, list[str]],
) -> None:
    path, service, ids = small_map
    target = list(ShardMap.load(path).databases)[1]
    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at("copied"))
    for msg_id in ids:  # every stream gets an event after the watermark
        service.resend(msg_id, request_id="r")
    # The abort deletes the copy and the target's record in one transaction.
    move_shard(path, SHARD, target, abort=True)
    try:
        move_shard(path, SHARD, target)  # run again: resumes
    except StorageError:  # refusing is fine too (nothing handed over)
        move_shard(path, SHARD, target, abort=True)
        move_shard(path, SHARD, target)
    with databases([target]) as dbs:
        held = dbs[target].events(SHARD)
    assert len(held) == 3 * len(ids)
    assert [h.version for h in service.history(ids[0])] == [1, 2, 3]


def test_resuming_a_handed_over_move_with_another_target_is_refused(
    small_map: tuple[Path, MessageService, list[str]],
) -> None:
    path, _, _ = small_map
    old_map = ShardMap.load(path)
    _, b, c = list(old_map.databases)
    with pytest.raises(Crash):
        move_shard(path, SHARD, b, progress=crash_at("handed over"))
    with pytest.raises(StorageError):
        move_shard(path, SHARD, c)
    assert ShardMap.load(path) == old_map


def test_a_process_with_the_old_map_reads_what_the_new_database_holds(
    small_map: tuple[Path, MessageService, list[str]],
) -> None:
    path, service, ids = small_map
    assert service.get(ids[0]).version == 2  # cached in this process
    move_shard(path, SHARD, list(ShardMap.load(path).databases)[1])
    other = MessageService.open(f"shards://{path}", projections="external")
    assert other.resend(ids[0], request_id="elsewhere").version == 3
    other.close()
    assert service.get(ids[0]).version == 3


def test_bulk_commands_with_the_old_map_follow_a_moved_shard(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    writer = MessageService.open(f"shards://{path}", projections="external")
    ids = shard_ids(writer, SHARD, 4)
    for msg_id in ids:
        writer.create(msg_id, sender="s", user_id="u")
    writer.close()
    old = MessageService.open(f"shards://{path}", projections="external", cache_size=0)
    move_shard(path, SHARD, list(ShardMap.load(path).databases)[1])
    answers = old.record_failures(
        [{"msg_id": m, "code": 6012, "attempt": 1} for m in ids]
    )
    old.close()
    assert [getattr(a, "version", a) for a in answers] == [2] * len(ids)


def test_counts_during_a_move_count_each_message_once(
    small_map: tuple[Path, MessageService, list[str]],
) -> None:
    path, _, ids = small_map
    target = list(ShardMap.load(path).databases)[1]
    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at("verified"))
    reader = MessageService.open(f"shards://{path}")  # read models catch up
    try:
        assert sum(reader.status_counts().values()) == len(ids)
        assert reader.status_counts()[MessageStatus.SEND_FAIL] == len(ids)
        assert reader.counts_by_error_code() == {6012: len(ids)}
    finally:
        reader.close()
