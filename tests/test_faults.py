"""A database that goes away and comes back (PostgreSQL, a cluster of the tests' own).

* While it is down (a clean stop, or SIGKILL of the postmaster), every command and
  query raises :class:`StorageUnavailable` within ``connect_timeout`` and writes
  nothing; after it is back the same service object works without being
  reopened, and a running ``python -m msgstate.runner`` catches up.
* A command whose commit reply was lost (a proxy cuts the connection after
  forwarding the COMMIT) is safe to repeat: exactly one event for it.
* Writer processes running through a SIGKILL and a restart: every acknowledged
  write is there afterwards, and nothing is there twice.

Figures (commands tried during the outage, how each ended, time to raise,
recovery time) print with ``pytest -s`` and are written as JSON in the test's
tmp dir.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from msgstate import (
    ErrorCode,
    MessageNotFound,
    MessageService,
    MessageStatus,
    ResendRefused,
    StorageUnavailable,
)
from tests import faultpg
from tests.fault_writer import STEPS, TRANSIENT_CODE
from tests.faultproxy import CommitCutter

ROOT = Path(__file__).resolve().parent.parent
CONNECT_TIMEOUT = 2
RAISE_SLACK = 2.0
"""Seconds allowed past ``connect_timeout`` (a shared, loaded machine)."""
RECOVERY_LIMIT = 30.0


def _drop_schema(url: str) -> None:
    schema = url.split("schema=")[1].split("&")[0]
    with psycopg.connect(faultpg.base_url(), autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture
def fault_url() -> Iterator[str]:
    """A new schema on the fault cluster, this test holding the cluster alone."""
    with faultpg.exclusive():
        url = faultpg.fresh_url(CONNECT_TIMEOUT)
        try:
            yield url
        finally:
            faultpg.start()
            _drop_schema(url)


def _report(tmp_path: Path, name: str, figures: dict[str, Any]) -> None:
    text = json.dumps(figures, indent=2, default=str)
    (tmp_path / f"{name}.json").write_text(text)
    print(f"\n{name}: {text}")


PREPARED = ("a", "b", "c", "g", "h", "t", "k", "e")


def _prepare(service: MessageService) -> None:
    for msg_id in PREPARED:
        service.create(msg_id, sender="s", user_id="u")
    for msg_id in ("b", "k"):
        service.record_failure(msg_id, code=TRANSIENT_CODE, attempt=1)


def _commands(service: MessageService) -> list[tuple[str, Callable[[], Any]]]:
    """One of each kind, with fixed arguments (tried during and after the outage).

    Each touches its own message: commands on one message in one process queue
    behind each other (the aggregate cache's per-message lock), so run at once
    they would each wait for the others' timeouts.
    """

    def batch() -> None:
        with service.batch() as b:
            b.create("new-2", sender="s", user_id="u")

    return [
        ("create", lambda: service.create("new-1", sender="s", user_id="u")),
        (
            "record_failure",
            lambda: service.record_failure("a", code=TRANSIENT_CODE, attempt=1),
        ),
        ("resend", lambda: service.resend("b", request_id="b-r2")),
        (
            "record_delivery",
            lambda: service.record_delivery("c", seq="c-seq", attempt=1),
        ),
        ("batch", batch),
        ("get", lambda: service.get("g")),
        ("history", lambda: service.history("h")),
        ("get_at", lambda: service.get_at("t", version=1)),
        ("check_resend", lambda: service.check_resend("k")),
        ("export_history", lambda: list(service.export_history(["e"]))),
        ("due_resends", lambda: service.due_resends()),
        ("dead_letters", lambda: service.dead_letters()),
        ("status_counts", lambda: service.status_counts()),
        ("counts_by_error_code", lambda: service.counts_by_error_code()),
        ("catch_up_projections", lambda: service.catch_up_projections()),
    ]


def _versions(service: MessageService) -> dict[str, int]:
    return {m: service.get(m).version for m in PREPARED}


@pytest.mark.parametrize("outage", ["stop", "sigkill"])
def test_outage_fails_fast_writes_nothing_and_the_same_service_recovers(
    outage: str, fault_url: str, tmp_path: Path
) -> None:
    service = MessageService.open(fault_url)
    reader = MessageService.open(fault_url, projections="external")
    runner_log = tmp_path / "runner.err"
    with runner_log.open("w") as err:
        runner = subprocess.Popen(
            [sys.executable, "-m", "msgstate.runner", fault_url],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        _prepare(service)
        reader.wait_for_projections(timeout=60)
        before = _versions(service)
        went_down = time.monotonic()
        faultpg.stop() if outage == "stop" else faultpg.kill()

        # Every command and query at once (each must raise on its own in time).
        def attempt(name: str, command: Callable[[], Any]) -> dict[str, Any]:
            began = time.monotonic()
            try:
                command()
            except StorageUnavailable as error:
                code = error.code.name
            except Exception as error:  # reported, and fails the test below
                code = repr(error)
            else:
                code = "answered while the database was down"
            return {
                "command": name,
                "code": code,
                "seconds": round(time.monotonic() - began, 3),
            }

        commands = _commands(service)
        with ThreadPoolExecutor(len(commands)) as executor:
            during = list(executor.map(lambda c: attempt(*c), commands))
        assert all(d["code"] == "STORAGE_UNAVAILABLE" for d in during), during
        slowest = max(d["seconds"] for d in during)
        assert slowest <= CONNECT_TIMEOUT + RAISE_SLACK, during

        start_seconds = faultpg.start()
        up = time.monotonic()
        tries = 0
        while True:
            tries += 1
            try:
                service.get("a")
                break
            except StorageUnavailable:
                assert time.monotonic() - up < RECOVERY_LIMIT
                time.sleep(0.05)
        recovery = time.monotonic() - up

        # Nothing was written while it was down.
        assert before == _versions(service)
        for msg_id in ("new-1", "new-2"):
            with pytest.raises(MessageNotFound):
                service.get(msg_id)

        # The same service object works: the same commands, now answered.
        after = {name: command() for name, command in _commands(service)}
        assert MessageStatus.SEND_FAIL == after["record_failure"].status
        assert 2 == after["resend"].attempts
        assert MessageStatus.SEND_SUCC == after["record_delivery"].status
        assert {**before, "a": 2, "b": 3, "c": 2} == _versions(service)

        # The runner lived through it and catches up.
        reader.wait_for_projections(timeout=60)
        assert service.status_counts() == reader.status_counts()
        assert runner.poll() is None, runner_log.read_text()
        runner_retries = sum(
            "trying again" in line for line in runner_log.read_text().splitlines()
        )
        _report(
            tmp_path,
            f"faults-{outage}",
            {
                "outage": outage,
                "connect_timeout": CONNECT_TIMEOUT,
                "commands_during_outage": len(during),
                "outcomes": dict(Counter(d["code"] for d in during)),
                "seconds_to_raise_max": slowest,
                "seconds_to_raise_min": min(d["seconds"] for d in during),
                "per_command": during,
                "server_start_seconds": round(start_seconds, 3),
                "recovery_seconds_after_ready": round(recovery, 3),
                "recovery_tries": tries,
                "down_seconds": round(up - went_down, 3),
                "runner_retry_lines": runner_retries,
            },
        )
    finally:
        runner.terminate()
        runner.wait(30)
        service.close()
        reader.close()


@pytest.mark.parametrize("refuse", [False, True], ids=["retried", "raised"])
def test_a_command_whose_commit_reply_was_lost_is_safe_to_repeat(
    refuse: bool, fault_url: str, tmp_path: Path
) -> None:
    """``refuse``: the database stays unreachable after the cut, so the command
    raises StorageUnavailable; otherwise msgstate's one retry answers it."""
    proxy = CommitCutter(faultpg.port())
    proxied = fault_url.replace(f":{faultpg.port()}/", f":{proxy.port}/")
    service = MessageService.open(proxied)
    direct = MessageService.open(fault_url)
    outcomes: dict[str, str] = {}
    try:
        commands: list[tuple[str, str, Callable[[], Any]]] = [
            ("create", "m", lambda: service.create("m", sender="s", user_id="u")),
            (
                "record_failure",
                "m",
                lambda: service.record_failure("m", code=TRANSIENT_CODE, attempt=1),
            ),
            ("resend", "m", lambda: service.resend("m", request_id="m-r2")),
            (
                "record_delivery",
                "m",
                lambda: service.record_delivery("m", seq="m-seq", attempt=2),
            ),
        ]
        for expected_version, (name, msg_id, command) in enumerate(commands, 1):
            cuts = proxy.cuts
            proxy.arm(refuse=refuse)
            try:
                first = command().version
                outcomes[name] = "answered"
            except StorageUnavailable as error:
                first = None
                outcomes[name] = error.code.name
            assert cuts + 1 == proxy.cuts, "the proxy did not cut at COMMIT"
            # The commit happened: the server has the event.
            assert expected_version == len(direct.history(msg_id))
            proxy.allow()
            repeated = command().version
            assert expected_version == repeated
            assert first in (None, expected_version)
            assert expected_version == len(direct.history(msg_id))
        assert ["Created", "SendFailed", "ResendRequested", "Delivered"] == [
            h.event for h in direct.history("m")
        ]

        # A resend without request_id cannot be told from a new one; repeated
        # after a lost reply it is refused (the message is sending), not doubled.
        service.create("n", sender="s", user_id="u")
        service.record_failure("n", code=TRANSIENT_CODE, attempt=1)
        proxy.arm(refuse=refuse)
        with contextlib.suppress(StorageUnavailable):
            service.resend("n")
        proxy.allow()
        with pytest.raises(ResendRefused) as refused:
            service.resend("n")
        assert ErrorCode.SEND_IN_PROGRESS == refused.value.code
        assert 3 == len(direct.history("n"))
        expected = "STORAGE_UNAVAILABLE" if refuse else "answered"
        assert {name: expected for name, _, _ in commands} == outcomes
        _report(tmp_path, f"lost-commit-{'raised' if refuse else 'retried'}", outcomes)
    finally:
        service.close()
        direct.close()
        proxy.close()


WRITERS = 2
LIFECYCLES = 200  # enough work that both outages land mid-run on an idle machine


def test_writers_through_sigkill_and_restart_keep_every_acknowledged_write(
    fault_url: str, tmp_path: Path
) -> None:
    MessageService.open(fault_url).close()
    logs = [tmp_path / f"writer-{w}.jsonl" for w in range(WRITERS)]
    writer = [sys.executable, "-m", "tests.fault_writer"]
    writers = [
        subprocess.Popen(
            [*writer, fault_url, str(w), str(LIFECYCLES), str(logs[w])],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    rng = random.Random()
    outages = []
    try:
        # Outages begin once every writer has opened the store and written.
        deadline = time.monotonic() + 120
        while not all(p.exists() and p.stat().st_size for p in logs):
            assert time.monotonic() < deadline
            assert all(w.poll() is None for w in writers)
            time.sleep(0.1)
        for kind in ("sigkill", "stop"):
            time.sleep(rng.uniform(0.1, 0.6))
            if all(w.poll() is not None for w in writers):
                break
            began = time.monotonic()
            faultpg.kill() if kind == "sigkill" else faultpg.stop()
            time.sleep(rng.uniform(0.5, 2.5))
            faultpg.start()
            outages.append(
                {"kind": kind, "seconds": round(time.monotonic() - began, 3)}
            )
        for w in writers:
            _, err = w.communicate(timeout=400)
            assert 0 == w.returncode, err
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()

    records = [
        json.loads(line) for path in logs for line in path.read_text().splitlines()
    ]
    answered = [r for r in records if "error" not in r]
    errors = [r for r in records if "error" in r]
    assert len(outages) >= 1
    assert errors, "no outage hit a writer mid-run"
    assert WRITERS * LIFECYCLES * len(STEPS) == len(answered)
    assert {"STORAGE_UNAVAILABLE"} >= {r["error"] for r in errors}

    checker = MessageService.open(fault_url)
    try:
        for record in answered:
            history = checker.history(record["msg_id"])
            # Every acknowledged write is there, at the version it was answered with.
            assert record["version"] <= len(history)
        for w in range(WRITERS):
            for i in range(LIFECYCLES):
                events = [h.event for h in checker.history(f"w{w}-{i}")]
                # Exactly one event per step, however often a step was repeated.
                assert [
                    "Created",
                    "SendFailed",
                    "ResendRequested",
                    "Delivered",
                ] == events
    finally:
        checker.close()
    _report(
        tmp_path,
        "faults-writers",
        {
            "writers": WRITERS,
            "lifecycles_each": LIFECYCLES,
            "outages": outages,
            "answered": len(answered),
            "errors": dict(Counter(r["error"] for r in errors)),
            "error_seconds_max": max((r["seconds"] for r in errors), default=None),
        },
    )
