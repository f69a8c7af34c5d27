"""AsyncMessageService mirrors MessageService: the same signatures (names, kinds
and defaults, so the two cannot drift apart), every argument passed through
(the same commands with every option give the same store), its own pool
(named threads, its size, waiting for calls in flight on close), and owning the
service only when it opened it."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from msgstate import InvalidArgument, MessageService, MsgStateError, ResendPolicy
from msgstate.aio import DEFAULT_MAX_WORKERS, AsyncMessageService
from tests.support import EPOCH, FakeClock

MIRRORED = [
    name
    for name, member in vars(AsyncMessageService).items()
    if inspect.iscoroutinefunction(member)
    and not name.startswith("_")
    and name not in ("run", "aclose")
    and hasattr(MessageService, name)  # (mutation tools add methods of their own)
]
POLICY = ResendPolicy(
    send_timeout=timedelta(seconds=60), max_age=timedelta(days=1), max_attempts=3
)


def test_every_async_method_has_the_sync_signature() -> None:
    assert len(MIRRORED) >= 18
    for name in MIRRORED:
        mine = inspect.signature(getattr(AsyncMessageService, name))
        theirs = inspect.signature(getattr(MessageService, name))
        shape = [(p.name, p.kind, p.default) for p in mine.parameters.values()]
        expected = [(p.name, p.kind, p.default) for p in theirs.parameters.values()]
        assert expected == shape, name


LATER = EPOCH + timedelta(minutes=1)
SCRIPT: list[Any] = [
    lambda s: s.create("a", sender="u", user_id="v", online_user_only=True),
    lambda s: s.create("b", sender="u", user_id="v"),
    lambda s: s.create("c", sender="u", user_id="v"),
    lambda s: s.record_failure("a", code=6012, desc="d1", attempt=1, retry_after=30.0),
    lambda s: s.check_resend("a"),
    45,  # seconds on the clock
    lambda s: s.resend(
        "a", request_id="r1", online_user_only=False, actor="ops", expected_attempt=1
    ),
    lambda s: s.record_delivery("a", seq="s1", server_time=LATER, attempt=1),
    lambda s: s.record_failures([{"msg_id": "b", "code": 9508, "desc": "d2"}]),
    lambda s: s.record_deliveries([{"msg_id": "zz", "seq": "1"}]),
    61,
    lambda s: s.expire_send("c", attempt=1, actor="sweeper"),
    lambda s: s.get("c"),
    lambda s: s.history("a"),
    lambda s: s.get_at("a", version=2),
    lambda s: s.get_at("a", at=EPOCH),
    lambda s: s.due_resends(EPOCH + timedelta(hours=2), 1),
    lambda s: s.stuck_sends(EPOCH + timedelta(hours=2), 1),
    lambda s: s.dead_letters(EPOCH + timedelta(days=3), 1, "b"),
    lambda s: s.dead_letters(EPOCH + timedelta(days=3), 1),
    lambda s: s.status_counts(),
    lambda s: s.counts_by_error_code(),
    lambda s: s.catch_up_projections(batch=2),
    lambda s: s.wait_for_projections(0.5),
]
"""The same commands and queries, every option set; a number moves the clock."""


def normal(answers: object) -> object:
    """Answers with errors as (type, desc, code): exceptions do not compare."""
    if isinstance(answers, list):
        return [normal(a) for a in answers]
    if isinstance(answers, MsgStateError):
        return (type(answers), answers.desc, answers.code)
    return answers


@pytest.fixture
def twins() -> Iterator[tuple[MessageService, FakeClock, MessageService, FakeClock]]:
    sync_clock, async_clock = FakeClock(EPOCH), FakeClock(EPOCH)
    sync = MessageService.open("memory://", clock=sync_clock, policy=POLICY)
    other = MessageService.open("memory://", clock=async_clock, policy=POLICY)
    try:
        yield sync, sync_clock, other, async_clock
    finally:
        sync.close()
        other.close()


def test_the_same_script_gives_the_same_answers(
    twins: tuple[MessageService, FakeClock, MessageService, FakeClock],
) -> None:
    sync, sync_clock, other, async_clock = twins
    expected: list[object] = []
    for step in SCRIPT:
        if isinstance(step, int):
            sync_clock.advance(step)
        else:
            expected.append(step(sync))

    async def script() -> list[object]:
        answers: list[object] = []
        async with AsyncMessageService(other) as aio:
            for step in SCRIPT:
                if isinstance(step, int):
                    async_clock.advance(step)
                else:
                    answers.append(await step(aio))
        return answers

    got = asyncio.run(script())
    assert [type(a) for a in expected] == [type(a) for a in got]
    assert normal(expected) == normal(got)
    assert sync.history("c") == other.history("c")


def test_the_pool_is_its_own_named_and_sized(
    twins: tuple[MessageService, FakeClock, MessageService, FakeClock],
) -> None:
    service = twins[0]

    async def names() -> tuple[set[str], int]:
        async with AsyncMessageService(service, max_workers=3) as aio:
            seen: set[str] = set()
            busy = 0
            peak = 0
            lock = threading.Lock()
            # Three calls at a time meet here: fewer threads never fill it (the
            # wait times out), more would let a fourth call in (peak 4).
            meet = threading.Barrier(3, timeout=10)

            def work() -> None:
                nonlocal busy, peak
                with lock:
                    busy += 1
                    peak = max(peak, busy)
                    seen.add(threading.current_thread().name)
                meet.wait()
                time.sleep(0.01)
                with lock:
                    busy -= 1

            await asyncio.gather(*(aio.run(work) for _ in range(9)))
            assert 3 == aio.max_workers
            return seen, peak

    seen, peak = asyncio.run(names())
    assert 3 == peak
    assert all(name.startswith("msgstate-aio_") for name in seen), seen


def test_max_workers_limits_and_defaults(
    twins: tuple[MessageService, FakeClock, MessageService, FakeClock],
) -> None:
    service = twins[0]
    for workers in (1, 1024):
        AsyncMessageService(service, max_workers=workers).close()
    assert DEFAULT_MAX_WORKERS == AsyncMessageService(service).max_workers
    for bad in (0, 1025):
        with pytest.raises(InvalidArgument) as refused:
            AsyncMessageService(service, max_workers=bad)
        assert refused.value.desc.startswith("max_workers must be"), refused.value.desc
    with pytest.raises(InvalidArgument) as refused:
        AsyncMessageService("memory://")  # type: ignore[arg-type]
    assert "service must be a MessageService, got 'memory://'" == refused.value.desc
    aio = AsyncMessageService(service, max_workers=2)
    assert f"AsyncMessageService({service!r}, max_workers=2)" == repr(aio)
    aio.close()


def test_close_waits_for_calls_in_flight_and_keeps_a_lent_service(
    twins: tuple[MessageService, FakeClock, MessageService, FakeClock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = twins[0]
    closed: list[int] = []
    monkeypatch.setattr(service, "close", lambda: closed.append(1))
    done: list[int] = []

    async def main() -> None:
        aio = AsyncMessageService(service)
        loop = asyncio.get_running_loop()
        call = aio.run(lambda: (time.sleep(0.2), done.append(1)))
        task = loop.create_task(call)
        await asyncio.sleep(0.02)
        aio.close()
        assert [1] == done  # close returned only after the call finished
        await task

    asyncio.run(main())
    assert [] == closed  # lent, so not closed


def test_an_opened_service_is_closed_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(EPOCH)
    aio = AsyncMessageService.open("memory://", max_workers=2, clock=clock)
    assert 2 == aio.max_workers
    assert clock.now == aio.service.now()
    closed: list[int] = []
    monkeypatch.setattr(aio.service, "close", lambda: closed.append(1))
    asyncio.run(aio.aclose())
    assert [1] == closed


class Spy:
    """Stands in for a MessageService method: records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        return "answer"


def bound(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The sync method's arguments, defaults filled in, as a mapping."""
    signature = inspect.signature(getattr(MessageService, name))
    arguments = signature.bind(None, *args, **kwargs)
    arguments.apply_defaults()
    return dict(list(arguments.arguments.items())[1:])


CALLS: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("create", ("m",), {"sender": "u"}),
    (
        "create",
        ("m",),
        {
            "sender": "u",
            "user_id": "v",
            "group_id": "g",
            "elem_type": 2,
            "priority": 3,
            "online_user_only": True,
            "need_read_receipt": True,
            "cloud_custom_data": "c",
            "content": {"data": "d"},
        },
    ),
    ("record_failure", ("m",), {"code": 6012}),
    (
        "record_failure",
        ("m",),
        {"code": 6012, "desc": "d", "attempt": 2, "retry_after": 3.0},
    ),
    ("resend", ("m",), {}),
    ("record_delivery", ("m",), {"seq": "1"}),
    ("record_delivery", ("m",), {"seq": "1", "server_time": EPOCH, "attempt": 2}),
    ("expire_send", ("m",), {"attempt": 1}),
    ("expire_send", ("m",), {"attempt": 1, "actor": "ops"}),
    ("get_at", ("m",), {"version": 3}),
    ("get_at", ("m",), {"at": EPOCH}),
    ("due_resends", (), {}),
    ("due_resends", (EPOCH, 7), {}),
    ("stuck_sends", (), {}),
    ("stuck_sends", (EPOCH, 7), {}),
    ("dead_letters", (), {}),
    ("dead_letters", (EPOCH, 7, "k"), {}),
    ("catch_up_projections", (), {}),
    ("catch_up_projections", (), {"batch": 9}),
    ("wait_for_projections", (), {}),
    ("wait_for_projections", (2.5,), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), CALLS)
def test_every_argument_and_default_reaches_the_service(
    twins: tuple[MessageService, FakeClock, MessageService, FakeClock],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    service = twins[0]
    spy = Spy()
    monkeypatch.setattr(service, name, spy)

    async def call() -> object:
        async with AsyncMessageService(service) as aio:
            return await getattr(aio, name)(*args, **kwargs)

    result = asyncio.run(call())
    assert [None, "answer"][name != "wait_for_projections"] == result
    ((got_args, got_kwargs),) = spy.calls
    assert bound(name, args, kwargs) == bound(name, got_args, got_kwargs)


def test_open_opens_the_url_given(tmp_path: Path) -> None:
    path = tmp_path / "aio.db"
    aio = AsyncMessageService.open(f"sqlite:///{path}")
    try:
        assert path.exists()
    finally:
        aio.close()
