"""Keep the read models current from a separate process (PostgreSQL).

Several backend processes can then open their services with
``projections="external"`` and never pay for catching up on a query::

    python -m msgstate.runner postgresql://user@host/db

or, from Python, :func:`run_projections`. It follows the store with eventsourcing's
``ProjectionRunner`` (LISTEN/NOTIFY on PostgreSQL) and records every event in the
read models exactly once, with tracking, in one transaction per event.
"""

from __future__ import annotations

import sys
import threading
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
from msgstate.storage import service_env

__all__ = ["run_projections"]


def run_projections(
    url: str,
    *,
    cipher_key: str | None = None,
    compress: bool = False,
    stop: threading.Event | None = None,
    ready: threading.Event | None = None,
) -> None:
    """Follow the PostgreSQL store at ``url`` until ``stop`` is set (or forever).

    ``ready`` is set once the runner is subscribed. Errors in the projection are
    raised here, so a supervisor can restart the process.
    """
    env = service_env(url, create_tables=True, cipher_key=cipher_key, compress=compress)
    module = env["PERSISTENCE_MODULE"]
    if module != "eventsourcing.postgres":
        raise InvalidArgument(
            "run_projections follows PostgreSQL only; SQLite and memory stores "
            "catch up on query (projections='catch_up')"
        )
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
        if ready is not None:
            ready.set()
        while stop is None or not stop.is_set():
            runner.run_forever(timeout=0.2)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m msgstate.runner POSTGRESQL_URL", file=sys.stderr)
        return 2
    run_projections(args[0])
    return 0  # pragma: no cover - runs until killed


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
