"""Many OS processes opening one store at the same moment, as a deploy starts workers.

Eight processes (one spawned pool, reused for every round) meet at a barrier and
open the same store at once, twenty rounds: a *new* store each round (a fresh
SQLite file, a fresh PostgreSQL schema) and then one *existing* store. Every open
must succeed and then work: each process writes one message, and afterwards a
fresh service reads every one of them back.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from msgstate import MessageNotFound, MessageService, setup_schema
from tests import pg

PROCESSES = 8
ROUNDS = int(os.environ.get("MSGSTATE_CONCURRENT_OPEN_ROUNDS", "20"))
BARRIER_TIMEOUT = 120.0
PG_OPTIONS = "&pool_size=1&max_overflow=2&connect_timeout=30"


_barrier: Barrier | None = None


def _keep_barrier(barrier: Barrier) -> None:
    """Pool initializer: a Barrier reaches workers only by inheritance."""
    global _barrier
    _barrier = barrier


def _open_rounds(urls: Sequence[str], worker: int) -> list[tuple[int, str]]:
    """Open ``urls[r]`` in round ``r`` together with the other workers.

    Returns the failures as (round, error); a success writes message
    ``m-<round>-<worker>``.
    """
    assert _barrier is not None
    failures: list[tuple[int, str]] = []
    for round_, url in enumerate(urls):
        _barrier.wait(BARRIER_TIMEOUT)
        try:
            service = MessageService.open(url)
            try:
                service.create(f"m-{round_}-{worker}", sender="s", user_id="u")
            finally:
                service.close()
        except Exception as error:  # the test reports every kind of failure
            failures.append((round_, f"{type(error).__name__}: {error}"))
    return failures


def _open_together(urls: Sequence[str]) -> list[tuple[int, int, str]]:
    """Every worker's failures as (worker, round, error)."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    with context.Pool(PROCESSES, _keep_barrier, (barrier,)) as pool:
        results = [
            pool.apply_async(_open_rounds, (list(urls), worker))
            for worker in range(PROCESSES)
        ]
        per_worker = [r.get(timeout=BARRIER_TIMEOUT * 3) for r in results]
    return [
        (worker, round_, error)
        for worker, failures in enumerate(per_worker)
        for round_, error in failures
    ]


def _written(url: str, rounds: Sequence[int]) -> set[str]:
    """Which of the expected messages a fresh service reads back."""
    service = MessageService.open(url)
    found = set()
    try:
        for msg_id in _expected(rounds):
            try:
                found.add(service.get(msg_id).msg_id)
            except MessageNotFound:
                continue
        assert len(found) == sum(service.status_counts().values())
    finally:
        service.close()
    return found


def _expected(rounds: Sequence[int]) -> set[str]:
    return {f"m-{r}-{w}" for r in rounds for w in range(PROCESSES)}


def _urls(backend: str, directory: Path, count: int) -> list[str]:
    if backend == "sqlite":
        return [f"sqlite:///{directory / f'store-{i}.db'}" for i in range(count)]
    # Small pools and a patient connect_timeout: the test is about DDL races, and
    # the shared test server has 100 connections for every test run on it.
    return [f"{pg.fresh_url()}{PG_OPTIONS}" for _ in range(count)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_processes_opening_new_stores_at_once_all_succeed(
    backend: str, tmp_path: Path
) -> None:
    urls = _urls(backend, tmp_path, ROUNDS)
    failures = _open_together(urls)
    assert [] == failures
    for round_, url in enumerate(urls):
        assert _expected([round_]) == _written(url, [round_])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_processes_opening_an_existing_store_at_once_all_succeed(
    backend: str, tmp_path: Path
) -> None:
    (url,) = _urls(backend, tmp_path, 1)
    setup_schema(url)
    failures = _open_together([url] * ROUNDS)
    assert [] == failures
    assert _expected(range(ROUNDS)) == _written(url, range(ROUNDS))


def test_the_pool_can_fail() -> None:
    """The harness reports a failing open (so a green run means something)."""
    failures = _open_together(["nosuchscheme://x"] * 2)
    assert len(failures) == PROCESSES * 2
    assert all("unknown scheme" in error for _, _, error in failures)
