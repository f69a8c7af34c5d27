"""Which driver errors mean "the database is unavailable", and msgstate's retries.

No server needed: the errors are built by hand (the fault tests in
tests/test_faults.py meet the real ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError
from psycopg import errors
from psycopg_pool import PoolClosed, PoolTimeout

from msgstate import ErrorCode, StorageError, StorageUnavailable
from msgstate import _pg_store as store
from msgstate.storage import is_unavailable, storage_errors


def wrapped(
    cause: BaseException, kind: type[Exception] = OperationalError
) -> Exception:
    """An eventsourcing error raised from ``cause``, as its datastore does."""
    try:
        raise kind(str(cause)) from cause
    except kind as error:
        return error


def only_context(cause: BaseException) -> Exception:
    """An eventsourcing error whose cause was dropped by ``raise ... from None``."""
    try:
        try:
            raise cause
        except type(cause):
            raise OperationalError("re-raised") from None
    except OperationalError as error:
        error.__cause__ = None
        return error


UNAVAILABLE = [
    psycopg.OperationalError("server closed the connection unexpectedly"),
    psycopg.InterfaceError("the connection is closed"),
    PoolTimeout("couldn't get a connection after 2.00 sec"),
    errors.AdminShutdown("terminating connection due to administrator command"),
    errors.CrashShutdown("crash"),
    errors.CannotConnectNow("the database system is starting up"),
    errors.ConnectionException("connection exception"),
    errors.ConnectionFailure("connection failure"),
]
AVAILABLE = [
    errors.LockNotAvailable("lock timeout"),
    errors.QueryCanceled("canceling statement"),
    errors.UniqueViolation("duplicate key"),
    errors.UndefinedTable("no such table"),
    PoolClosed("the pool is closed"),
    ValueError("not a database error"),
]


@pytest.mark.parametrize("cause", UNAVAILABLE, ids=lambda e: type(e).__name__)
def test_connection_failures_are_unavailable(cause: Exception) -> None:
    assert is_unavailable(cause)
    assert is_unavailable(wrapped(cause))
    assert is_unavailable(wrapped(cause, InterfaceError))
    assert is_unavailable(only_context(cause))


@pytest.mark.parametrize("cause", AVAILABLE, ids=lambda e: type(e).__name__)
def test_other_errors_are_not(cause: Exception) -> None:
    assert not is_unavailable(cause)
    assert not is_unavailable(wrapped(cause))


def test_storage_unavailable_itself_is_unavailable() -> None:
    assert is_unavailable(StorageUnavailable("down"))
    assert not is_unavailable(StorageError("damaged"))


def test_storage_errors_raise_the_subclass_for_connection_failures() -> None:
    with pytest.raises(StorageUnavailable) as raised, storage_errors("db", "pw"):
        raise wrapped(psycopg.OperationalError("no route to host pw"))
    assert ErrorCode.STORAGE_UNAVAILABLE == raised.value.code
    assert "pw" not in str(raised.value)
    assert "db is unavailable" in str(raised.value)
    with pytest.raises(StorageError) as other, storage_errors("db"):
        raise wrapped(errors.LockNotAvailable("lock timeout"))
    assert ErrorCode.STORAGE_ERROR == other.value.code
    assert not isinstance(other.value, StorageUnavailable)


def test_storage_unavailable_is_a_storage_error() -> None:
    assert issubclass(StorageUnavailable, StorageError)
    assert 1020 == ErrorCode.STORAGE_UNAVAILABLE


class Script:
    """A function that raises the given errors in turn, then answers 'ok'."""

    def __init__(self, *raises: Exception) -> None:
        self.raises = list(raises)
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        assert ("a",) == args
        assert {"k": 1} == kwargs
        if self.raises:
            raise self.raises.pop(0)
        return "ok"


def run(script: Callable[..., str]) -> str:
    return store.call(script, "a", k=1)


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds each retry would have slept (nothing sleeps)."""
    slept: list[float] = []
    monkeypatch.setattr(store.time, "sleep", slept.append)
    return slept


def lost() -> Exception:
    return wrapped(psycopg.OperationalError("server closed the connection"))


def test_a_pool_timeout_is_raised_at_once() -> None:
    script = Script(wrapped(PoolTimeout("couldn't get a connection")))
    with pytest.raises(OperationalError):
        run(script)
    assert 1 == script.calls


def test_a_closed_pool_is_raised_at_once() -> None:
    script = Script(wrapped(PoolClosed("the pool is closed")))
    with pytest.raises(OperationalError):
        run(script)
    assert 1 == script.calls


def test_a_lost_connection_is_retried_once_at_once(waits: list[float]) -> None:
    script = Script(lost())
    assert "ok" == run(script)
    assert 2 == script.calls
    assert [] == waits


def test_lost_and_unreachable_are_told_apart() -> None:
    timeout = wrapped(PoolTimeout("couldn't get a connection"))
    assert store.unreachable(timeout)
    assert not store.connection_lost(timeout)
    assert store.connection_lost(lost())
    assert not store.unreachable(lost())
    assert store.closed(wrapped(PoolClosed("closed")))
    assert not store.closed(lost())
    assert not store.connection_lost(wrapped(errors.LockNotAvailable("lock")))


def test_a_connection_lost_twice_is_raised() -> None:
    script = Script(lost(), lost(), lost())
    with pytest.raises(OperationalError):
        run(script)
    assert 2 == script.calls


def test_a_lost_connection_then_a_timeout_is_raised_without_more_tries() -> None:
    script = Script(lost(), wrapped(PoolTimeout("couldn't get a connection")))
    with pytest.raises(OperationalError):
        run(script)
    assert 2 == script.calls


def test_other_operational_errors_keep_eventsourcings_ten_attempts(
    waits: list[float],
) -> None:
    lock = wrapped(errors.LockNotAvailable("lock timeout"))
    script = Script(*[lock] * 9)
    assert "ok" == run(script)
    assert 10 == script.calls
    # eventsourcing's wait: 0.2 s with +-5 % jitter between attempts.
    assert 9 == len(waits)
    assert all(0.19 <= w <= 0.21 for w in waits), waits
    script = Script(*[lock] * 10)
    with pytest.raises(OperationalError):
        run(script)
    assert 10 == script.calls


def test_a_lost_connection_does_not_use_up_the_other_attempts() -> None:
    lock = wrapped(errors.LockNotAvailable("lock timeout"))
    script = Script(*[lock] * 9, lost())
    assert "ok" == run(script)
    assert 11 == script.calls


def test_integrity_errors_pass_through_untouched() -> None:
    script = Script(IntegrityError("duplicate"))
    with pytest.raises(IntegrityError):
        run(script)
    assert 1 == script.calls


def test_unwrapped_strips_eventsourcings_retry_decorator() -> None:
    from eventsourcing.postgres import PostgresApplicationRecorder

    method = PostgresApplicationRecorder.insert_events
    assert method is not store.unwrapped(method)
    assert method.__wrapped__ is store.unwrapped(method)  # type: ignore[attr-defined]
    assert len is store.unwrapped(len)
