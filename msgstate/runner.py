"""Keep the read models current from a separate process (PostgreSQL).

Several backend processes can then open their services with
``projections="external"`` and never pay for catching up on a query::

    python -m msgstate.runner postgresql://user@host/db
    python -m msgstate.runner shards:///etc/msgstate/shards.toml

or, from Python, :func:`run_projections`. It follows the store with eventsourcing's
``ProjectionRunner`` (LISTEN/NOTIFY on PostgreSQL) and records every event in the
read models exactly once, with tracking, in one transaction per event.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import Environment, resolve_topic

from msgstate.application import MessageService
from msgstate.errors import InvalidArgument
from msgstate.projections import (
    APPLICATION_NAME,
    MessageViews,
    MessageViewsProjection,
    views_class_for,
)
from msgstate.storage import is_unavailable, persistence_env, service_env

__all__ = ["run_projections"]


RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)
"""Seconds the runner waits before its 1st, 2nd, 3rd and later reconnection tries."""


def run_projections(
    url: str,
    *,
    cipher_key: str | None = None,
    compress: bool = False,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Follow the PostgreSQL store at ``url`` until ``stop`` is set (or forever).

    ``ready`` is set once the runner is subscribed. While the database is
    unreachable (at start, or it goes away later) the runner writes one line to
    stderr per failed try and tries again (after 0.5 s, 1 s, 2 s, then every 5 s),
    then catches up from its tracking record: nothing is missed or applied twice.
    Other errors in the projection are raised here, so a supervisor can restart
    the process.

    ``url`` may be a shard map (``shards:///path/shards.toml``): one process then
    follows every database of the map, a thread each (read models live in each
    database). A database added to the map later is followed after a restart.
    """
    if url.startswith("shards:"):
        _run_map(url, cipher_key, compress, stop, ready)
        return
    if persistence_env(url)["PERSISTENCE_MODULE"] != "eventsourcing.postgres":
        raise InvalidArgument(
            "run_projections follows PostgreSQL only; SQLite and memory stores "
            "catch up on query (projections='catch_up')"
        )
    failures = 0
    while stop is None or not stop.is_set():
        subscribed = threading.Event()
        try:
            _follow(url, cipher_key, compress, stop, ready, subscribed)
            return
        except Exception as error:
            if not is_unavailable(error):
                raise
            if subscribed.is_set():
                failures = 0
            delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
            failures += 1
            text = " ".join(str(error).split()) or type(error).__name__
            print(
                f"msgstate.runner: {text}; trying again in {delay:g} s",
                file=sys.stderr,
                flush=True,
            )
            if stop is None:
                time.sleep(delay)
            elif stop.wait(delay):
                return


def _run_map(
    url: str,
    cipher_key: str | None,
    compress: bool,
    stop: threading.Event | None,
    ready: threading.Event | None,
) -> None:
    from msgstate.shards import _map_and_path

    shard_map, _ = _map_and_path(url)
    halt = threading.Event()
    errors: list[BaseException] = []
    readies: list[threading.Event] = []

    def follow(database: str, subscribed: threading.Event) -> None:
        try:
            run_projections(
                database,
                cipher_key=cipher_key,
                compress=compress,
                stop=halt,
                ready=subscribed,
            )
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            halt.set()

    threads = []
    for database in shard_map.databases:
        subscribed = threading.Event()
        readies.append(subscribed)
        thread = threading.Thread(
            target=follow, args=(database, subscribed), daemon=True
        )
        thread.start()
        threads.append(thread)
    try:
        while not halt.is_set() and (stop is None or not stop.is_set()):
            if ready is not None and all(r.is_set() for r in readies):
                ready.set()
            halt.wait(0.1)
    finally:
        halt.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _follow(
    url: str,
    cipher_key: str | None,
    compress: bool,
    stop: threading.Event | None,
    ready: threading.Event | None,
    subscribed: threading.Event,
) -> None:
    env = service_env(url, create_tables=True, cipher_key=cipher_key, compress=compress)
    module = env["PERSISTENCE_MODULE"]
    # Create the tables once, serialised with other openers (no DDL when the
    # store is current); the runner's own recorders then run no DDL at all.
    MessageService(env).close()
    env["CREATE_TABLE"] = "n"
    cipher: Any = None
    if "CIPHER_TOPIC" in env:
        cipher = resolve_topic(env["CIPHER_TOPIC"])(Environment(APPLICATION_NAME, env))
    base = views_class_for(module)
    view_class: type[MessageViews] = type(
        f"Keyed{base.__name__}", (base,), {"cipher": cipher}
    )
    with ProjectionRunner(
        application_class=MessageService,
        projection_class=MessageViewsProjection,
        view_class=view_class,
        env=env,
    ) as runner:
        subscribed.set()
        if ready is not None:
            ready.set()
        while stop is None or not stop.is_set():
            runner.run_forever(timeout=0.2)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m msgstate.runner POSTGRESQL_URL|shards:///MAP.toml",
            file=sys.stderr,
        )
        return 2
    run_projections(args[0])
    return 0  # pragma: no cover - runs until killed


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
