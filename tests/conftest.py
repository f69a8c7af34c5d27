"""Shared fixtures: hypothesis profiles and the storage backend matrix.

``CI=true`` selects the ``ci`` profile (more examples, derandomized, no deadline);
``HYPOTHESIS_PROFILE`` picks any profile by name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

from msgstate import MessageService, ResendPolicy
from tests import pg, shardpg
from tests.support import FakeClock

settings.register_profile(
    "ci",
    parent=settings.get_profile("ci"),
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile("soak", max_examples=2_000, deadline=None)
# Mutation testing (tests/mutation.py): derandomized so a mutant's verdict is
# reproducible, no example database so one mutant's failure cannot leak into
# another, and no shrinking: the first failure kills the mutant, a minimal example
# of it is not needed.
settings.register_profile(
    "mutation",
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get(
        "HYPOTHESIS_PROFILE",
        "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev",
    )
)

BACKENDS = ("memory", "sqlite", "postgres")


def backend_url(backend: str, directory: Path) -> str:
    """A fresh store URL of the given kind.

    SQLite files live in ``directory``; PostgreSQL gets a new schema in the test
    database (dropped at the end of the session). Skips, or fails under
    ``MSGSTATE_REQUIRE_POSTGRES=1``, when PostgreSQL is unreachable.
    """
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{directory / 'msgstate.db'}"
    if backend == "postgres":
        return pg.fresh_url()
    raise ValueError(backend)


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas() -> Iterator[None]:
    yield
    pg.drop_test_schemas()
    shardpg.drop_schemas()


@pytest.fixture(autouse=True)
def _close_services_left_open(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every service a test opened, however the test ended.

    A test that fails before its own ``close()`` (or never calls it) must not
    leave PostgreSQL connections behind for later tests ("too many clients").
    Property tests close each example's services themselves (``tests.support.
    opened``): this net only catches them at the end of the whole test.
    """
    opened: list[MessageService] = []
    original = MessageService.__dict__["open"].__func__

    def open_and_track(cls: Any, *args: Any, **kwargs: Any) -> MessageService:
        service: MessageService = original(cls, *args, **kwargs)
        opened.append(service)
        return service

    monkeypatch.setattr(MessageService, "open", classmethod(open_and_track))
    yield
    for service in opened:
        with contextlib.suppress(Exception):
            service.close()  # closing twice is harmless


ServiceFactory = Callable[..., MessageService]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that asks for it runs once per storage backend."""
    return str(request.param)


@pytest.fixture
def ddl_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every recorder's _create_table call, from any thread (each still runs)."""
    from eventsourcing.postgres import PostgresRecorder
    from eventsourcing.sqlite import SQLiteRecorder

    calls: list[str] = []
    for cls in (SQLiteRecorder, PostgresRecorder):
        original = cls._create_table

        def spy(self: Any, cursor: Any, _original: Any = original) -> None:
            calls.append(type(self).__name__)
            _original(self, cursor)

        monkeypatch.setattr(cls, "_create_table", spy)
    return calls


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_service(clock: FakeClock) -> Iterator[MessageService]:
    """A memory store on the test's clock (default policy), closed afterwards:
    for tests of answers that do not depend on the backend."""
    service = MessageService.open("memory://", clock=clock)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def archive_service(clock: FakeClock) -> Iterator[MessageService]:
    """A memory store on the test's clock with the archive tests' policy
    (``tests.test_archive.POLICY``), closed afterwards."""
    from tests.test_archive import POLICY

    service = MessageService.open("memory://", policy=POLICY, clock=clock)
    try:
        yield service
    finally:
        service.close()


@pytest.fixture
def archived(archive_service: MessageService, clock: FakeClock, tmp_path: Path) -> Path:
    """``tests.test_archive.make_messages`` in ``archive_service``, archived an hour
    later to ``tmp_path / "a.jsonl"``; returns that path."""
    from tests.test_archive import make_messages

    make_messages(archive_service, clock)
    clock.advance(3600)
    path = tmp_path / "a.jsonl"
    archive_service.archive(before=clock(), to=path)
    return path


@pytest.fixture
def make_service(
    backend: str, tmp_path: Path, clock: FakeClock
) -> Iterator[ServiceFactory]:
    """Opens services on one fresh store per test (same store on every call)."""
    url = backend_url(backend, tmp_path)
    opened: list[MessageService] = []

    def factory(policy: ResendPolicy | None = None, **kwargs: object) -> MessageService:
        if backend == "memory" and opened:
            return opened[0]  # memory stores are private to one service
        service = MessageService.open(
            url, policy=policy, clock=kwargs.pop("clock", clock), **kwargs
        )  # type: ignore[arg-type]
        opened.append(service)
        return service

    yield factory
    for service in opened:
        service.close()


@pytest.fixture
def service(make_service: ServiceFactory) -> MessageService:
    return make_service()
