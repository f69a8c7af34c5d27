"""PostgreSQL through eventsourcing, made to fail fast and recover when the server
goes away and comes back (imported only when PostgreSQL is used).

eventsourcing 9.5's recorders retry every ``OperationalError`` ten times, so while
the server is down a command took ten times ``connect_timeout`` to fail; and its
pool, whose reconnection attempts back off for up to five minutes, could take tens
of seconds to notice that the server is back. Here, through eventsourcing's
extension points (a factory subclass and recorder subclasses, no fork):

* a connection taken from the pool after it sat idle for :data:`PING_AFTER_IDLE`
  seconds or more is checked first (``POSTGRES_PRE_PING``, set by
  :mod:`msgstate.storage`), so connections broken by a restart while the service
  was quiet are dropped, not handed out; the first broken one found has the pool
  test all its idle connections at once (``pool.check()``). A connection used
  within that window is handed out unchecked, as HikariCP does
  (``aliveBypassWindowMs``, 500 ms): a check is a round trip, which would cost a
  busy service one more for every read and every save; a connection that broke
  within the window fails its operation, which is then retried once, after the
  pool has tested all its idle connections;
* a failure to get a connection within ``connect_timeout`` is raised at once (no
  retries: the time was spent); a connection lost in the middle of an operation is
  retried once on a fresh one (a lost commit reply then surfaces as the
  ``IntegrityError`` of a second insert, which the service's idempotent commands
  absorb); other operational errors (lock timeouts) keep eventsourcing's retries;
* the pool gives up a failed reconnection after :data:`RECONNECT_WINDOW` seconds
  and tries again at the next request (psycopg_pool backs off 1 s, 2 s, ... within
  that window, so a longer one could leave a request made just after the server
  came back waiting for a scheduled attempt past its own ``connect_timeout``); each
  connection attempt itself gives up after ``connect_timeout``.
"""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresFactory,
)
from eventsourcing.utils import Environment, EnvType
from psycopg_pool import PoolClosed, PoolTimeout

from msgstate.storage import is_unavailable

__all__ = [
    "PostgresStoreFactory",
    "call",
    "closed",
    "connection_lost",
    "unreachable",
    "unwrapped",
]

T = TypeVar("T")

OTHER_ATTEMPTS = 10
"""Attempts for operational errors other than connection failures (as eventsourcing)."""

OTHER_WAIT = 0.2
"""Seconds between those attempts."""

RECONNECT_WINDOW = 0.5
"""Seconds psycopg_pool keeps retrying a failed reconnection before it gives up."""

PING_AFTER_IDLE = 0.5
"""A pooled connection idle at least this many seconds is checked before use."""


def _driver_error(error: BaseException) -> BaseException | None:
    """The psycopg error behind an eventsourcing one (or None)."""
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, psycopg.Error):
        cause = cause.__cause__ or cause.__context__
    return cause


def unreachable(error: BaseException) -> bool:
    """The pool could not provide a connection within ``connect_timeout``."""
    return isinstance(_driver_error(error), PoolTimeout)


def closed(error: BaseException) -> bool:
    """The pool was closed (the service was closed): retrying cannot help."""
    return isinstance(_driver_error(error), PoolClosed)


def connection_lost(error: BaseException) -> bool:
    """The server or the network dropped the connection (or refuses new ones)."""
    return is_unavailable(error) and not unreachable(error)


def call(func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` with msgstate's retries (see the module text).

    ``args[0]``, when there is one, is the recorder: before a lost connection is
    retried, its pool tests every idle connection (:func:`_purge`).
    """
    attempts = 0
    lost = 0
    while True:
        try:
            return func(*args, **kwargs)
        except (InterfaceError, OperationalError) as error:
            if unreachable(error) or closed(error):
                raise
            if connection_lost(error):
                lost += 1
                if lost > 1:
                    raise
                if args:
                    _purge(args[0])
                continue
            attempts += 1
            if attempts >= OTHER_ATTEMPTS:
                raise
            time.sleep(OTHER_WAIT * (1 + 0.1 * (random.random() - 0.5)))


def _purge(recorder: Any) -> None:
    """Have the recorder's pool test its idle connections (those used within
    :data:`PING_AFTER_IDLE` would otherwise be handed out unchecked, and a restart
    breaks them all at once)."""
    pool = getattr(getattr(recorder, "datastore", None), "pool", None)
    if pool is not None:
        pool.check()


def unwrapped(method: Any) -> Callable[..., Any]:
    """eventsourcing's method without its ``@retry`` decorator."""
    inner: Callable[..., Any] = getattr(method, "__wrapped__", method)
    return inner


class PostgresStoreAggregateRecorder(PostgresAggregateRecorder):
    """eventsourcing's aggregate recorder (snapshots) with msgstate's retries."""

    def insert_events(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresAggregateRecorder.insert_events), self, *args, **kwargs
        )

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresAggregateRecorder.select_events), self, *args, **kwargs
        )


class PostgresStoreApplicationRecorder(PostgresApplicationRecorder):
    """eventsourcing's application recorder (events) with msgstate's retries."""

    def insert_events(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresApplicationRecorder.insert_events), self, *args, **kwargs
        )

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresApplicationRecorder.select_events), self, *args, **kwargs
        )

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        return call(
            unwrapped(PostgresApplicationRecorder.select_notifications),
            self,
            *args,
            **kwargs,
        )

    def max_notification_id(self) -> Any:
        return call(unwrapped(PostgresApplicationRecorder.max_notification_id), self)


class PostgresStoreFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory with the recorders and pool set above."""

    aggregate_recorder_class = PostgresStoreAggregateRecorder
    application_recorder_class = PostgresStoreApplicationRecorder

    def __init__(self, env: Environment | EnvType | None):
        super().__init__(env)
        timeout = float(self.env.get(self.POSTGRES_CONNECT_TIMEOUT) or 5)
        pool = self.datastore.pool
        # psycopg_pool's documented knobs; the pool is not open yet.
        pool.reconnect_timeout = min(timeout, RECONNECT_WINDOW)
        if isinstance(pool.kwargs, dict):
            pool.kwargs["connect_timeout"] = max(1, round(timeout))
        if getattr(pool, "_check", None) is not None:
            # The pre-ping check, set by eventsourcing when POSTGRES_PRE_PING is
            # on: now only for connections idle PING_AFTER_IDLE or more, which
            # the pool's reset hook (run on every return) marks. psycopg_pool
            # waits 1 s, 2 s, ... between failed checks in one request, so after
            # a restart a pool of N broken connections would time out; the first
            # broken one found now sends the rest away too.
            returned: weakref.WeakKeyDictionary[Any, float] = (
                weakref.WeakKeyDictionary()
            )
            pool._check = _purging_check(pool, returned)
            pool._reset = _marking_reset(pool._reset, returned)


def _marking_reset(
    reset: Callable[[Any], None] | None, returned: weakref.WeakKeyDictionary[Any, float]
) -> Callable[[Any], None]:
    """The pool's reset hook (``reset``, if any), then the time of the return."""

    def mark(connection: Any) -> None:
        if reset is not None:
            reset(connection)
        returned[connection] = time.monotonic()

    return mark


def _purging_check(
    pool: Any, returned: weakref.WeakKeyDictionary[Any, float] | None = None
) -> Callable[[Any], None]:
    """The check before a connection is handed out: none if it was returned less
    than :data:`PING_AFTER_IDLE` ago (per ``returned``), else a ping; a failed
    ping has the pool test every idle connection."""

    def check(connection: Any) -> None:
        if returned is not None:
            since = returned.get(connection)
            if since is not None and time.monotonic() - since < PING_AFTER_IDLE:
                return
        try:
            pool.check_connection(connection)
        except Exception:
            pool.check()  # tests every idle connection, replaces broken ones
            raise

    return check
