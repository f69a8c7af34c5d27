"""Crash safety of archiving: an archiving process killed with SIGKILL, then rerun.

Each round starts ``python -m tests.archive_worker`` (a real OS process) on the same
archive path and kills it with SIGKILL at a random point: a random delay after it
opened the store, or once its progress log reaches a random message count in a
phase (writing the file, verifying it, deleting chunks). After every kill a fresh
service checks every message: it is either in the store with every original event
byte, or gone from the store, answering ``MessageArchived``, and held whole in the
sealed, verified archive; never neither, never a part of a stream, never an
unfinished message touched. Then one run without a kill finishes the archive and a
restore brings every history back.

``MSGSTATE_ARCHIVE_KILLS`` (default 8, at least 4) sets the kills per backend;
``MSGSTATE_ARCHIVE_SEED`` fixes the kill points.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from msgstate import Message, MessageArchived, MessageService, MessageStatus
from msgstate.storage import select_streams
from tests.conftest import backend_url
from tests.support import FakeClock

ROOT = Path(__file__).resolve().parent.parent
PERMANENT = 6017
TRANSIENT = 6012
FINISHED = 300
UNFINISHED = 20
CHUNK = 5


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def populate(url: str, clock: FakeClock) -> dict[str, str]:
    """Finished (delivered, dead) and unfinished messages; msg_id -> kind."""
    service = MessageService.open(url, clock=clock)
    kinds: dict[str, str] = {}
    try:
        for start in range(0, FINISHED, 100):
            with service.batch() as batch:
                for i in range(start, start + 100):
                    m = f"done-{i:04d}"
                    batch.create(m, sender="s", user_id="u", content={"i": i})
                    if i % 3 == 0:
                        batch.record_failure(m, code=PERMANENT)
                        kinds[m] = "dead"
                    else:
                        batch.record_failure(m, code=TRANSIENT)
                        batch.resend(m)
                        batch.record_delivery(m, seq=str(i))
                        kinds[m] = "delivered"
        clock.advance(60)
        with service.batch() as batch:
            for i in range(UNFINISHED):
                m = f"open-{i:03d}"
                batch.create(m, sender="s", user_id="u")
                if i % 2:
                    batch.record_failure(m, code=TRANSIENT)
                kinds[m] = "unfinished"
    finally:
        service.close()
    return kinds


def all_raw(
    service: MessageService, msg_ids: Any
) -> dict[str, list[tuple[int, str, bytes]]]:
    """Every message's stored events, read a few hundred streams per query."""
    ids = {Message.create_id(m): m for m in msg_ids}
    streams = select_streams(service.recorder, list(ids)) or {}
    return {
        m: [
            (e.originator_version, e.topic, bytes(e.state))
            for e in streams.get(aid, [])
        ]
        for aid, m in ids.items()
    }


def archive_lines(path: Path) -> dict[str, list[tuple[int, str, bytes]]]:
    """The sealed archive's histories by msg_id, after checking its manifest."""
    import base64

    manifest = json.loads(path.with_name(path.name + ".manifest.json").read_text())
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    found = {}
    for line in data.decode().splitlines():
        record = json.loads(line)
        found[record["msg_id"]] = [
            (e["version"], e["topic"], base64.b64decode(e["state"]))
            for e in record["events"]
        ]
    assert len(found) == manifest["messages"]
    return found


def check_after_kill(
    url: str, path: Path, kinds: dict[str, str], originals: dict[str, Any]
) -> dict[str, int]:
    """Every message in the store whole, or archived whole; how many of each."""
    sealed = path.exists() and path.with_name(path.name + ".manifest.json").exists()
    in_file = archive_lines(path) if sealed else {}
    service = MessageService.open(url)
    counts = {"in store": 0, "archived": 0}
    try:
        streams = all_raw(service, kinds)
        for m, kind in kinds.items():
            now = streams[m]
            if now == originals[m]:
                counts["in store"] += 1
                service.get(m)  # not marked archived
                continue
            assert kind != "unfinished", f"{m} ({kind}) was touched: {now[:1]}"
            assert now == [], f"{m}: a part of its stream is left: {len(now)} events"
            with pytest.raises(MessageArchived):
                service.get(m)
            assert in_file.get(m) == originals[m], f"{m} is neither here nor there"
            counts["archived"] += 1
        assert service.status_counts()[MessageStatus.SEND_SUCC] == sum(
            1
            for m, k in kinds.items()
            if k == "delivered" and streams[m] == originals[m]
        )
    finally:
        service.close()
    return counts


def progress_reached(log: Path, phase: str, count: int) -> bool:
    if not log.exists():
        return False
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == phase and int(parts[1]) >= count:
            return True
    return False


def start(url: str, path: Path, before: str, log: Path) -> subprocess.Popen[bytes]:
    arguments = [url, str(path), before, str(log), str(CHUNK)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.archive_worker", *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill_plan(rng: random.Random, kills: int) -> list[tuple[str, float]]:
    """Where to kill each round: while writing (unsealed: the rerun starts over),
    while verifying (sealed: reruns resume), then at rising points while deleting
    (each rerun gets further), and once a random delay after the store opened."""
    plan: list[tuple[str, float]] = [
        ("write", rng.randrange(100, FINISHED, 100)),
        ("verify", rng.randrange(100, FINISHED, 100)),
    ]
    deletes = sorted(rng.randrange(CHUNK, FINISHED, CHUNK) for _ in range(kills - 3))
    plan += [("delete", point) for point in deletes]
    plan.append(("time", rng.uniform(0.0, 0.5)))
    return plan[:kills]


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_archive_killed_at_random_points_loses_nothing_and_doubles_nothing(
    store: str, tmp_path: Path
) -> None:
    kills = max(4, env_int("MSGSTATE_ARCHIVE_KILLS", 8))
    seed = env_int("MSGSTATE_ARCHIVE_SEED", random.randrange(1_000_000))
    rng = random.Random(seed)
    url = backend_url(store, tmp_path)
    clock = FakeClock()
    kinds = populate(url, clock)
    before = (clock() - timedelta(seconds=30)).isoformat()
    reader = MessageService.open(url)
    originals = all_raw(reader, kinds)
    reader.close()
    path = tmp_path / "archive.jsonl"
    where: list[str] = []

    for round_, (phase, point) in enumerate(kill_plan(rng, kills)):
        log = tmp_path / f"progress-{round_}.log"
        process = start(url, path, before, log)
        deadline = time.monotonic() + 120
        target = ("opened", 0) if phase == "time" else (phase, int(point))
        while process.poll() is None and not progress_reached(log, *target):
            assert time.monotonic() < deadline, f"seed {seed}: worker stuck"
            time.sleep(0.002)
        time.sleep(point if phase == "time" else rng.uniform(0, 0.02))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        output = process.communicate(timeout=60)[0].decode()
        assert process.returncode in (0, -signal.SIGKILL), f"seed {seed}: {output}"
        lines = log.read_text().splitlines() if log.exists() else []
        last = lines[-1:] or ["(not started)"]
        where.append(f"{phase}@{point:g}->{last[0]}")
        check_after_kill(url, path, kinds, originals)

    print(f"seed {seed}: killed at (aim -> last progress line) {where}")
    final = start(url, path, before, tmp_path / "progress-final.log")
    output = final.communicate(timeout=300)[0].decode()
    assert final.returncode == 0, f"seed {seed}, kills {where}: {output}"
    counts = check_after_kill(url, path, kinds, originals)
    assert counts == {"in store": UNFINISHED, "archived": FINISHED}, (seed, where)

    service = MessageService.open(url)
    try:
        report = service.restore(path)
        assert report.restored == FINISHED, (seed, where)
        assert all_raw(service, kinds) == originals
        assert service.restore(path).restored == 0
        assert sum(service.status_counts().values()) == FINISHED + UNFINISHED
    finally:
        service.close()
