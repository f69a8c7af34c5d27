"""The transport answers and the simulated transport: every refusal word for word,
the boundaries each check allows, answers fixed for a seed (the same in any
process, forever: benchmarks and demos are compared across runs), latency slept
or awaited, and the async twin answering the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from msgstate import (
    InvalidArgument,
    MessageService,
    MessageView,
    SendError,
    Sent,
    SimulatedTransport,
)

GOLDEN = {
    ("m0", 1): SendError(
        code=9520, desc="send timed out waiting for the server's ack", retry_after=None
    ),
    ("m0", 2): Sent(seq="sim-b155cab241e917c4"),
    ("m1", 2): SendError(code=9508, desc="network disconnected"),
    ("m2", 1): SendError(code=6012, desc="request timeout"),
    ("m6", 1): SendError(code=60018, desc="request rate limited", retry_after=1.107),
    ("m15", 2): SendError(code=20004, desc="server internal error"),
}


def test_answers_are_fixed_for_a_seed() -> None:
    transport = SimulatedTransport(seed=7, failure_rate=0.5)
    answers = {key: transport.outcome(*key) for key in GOLDEN}
    assert GOLDEN == answers
    other_seed = SimulatedTransport(seed=8, failure_rate=0.5)
    assert any(other_seed.outcome(*key) != GOLDEN[key] for key in GOLDEN)


def test_the_failure_rate_decides_how_many_fail() -> None:
    keys = [(f"m{i}", a) for i in range(400) for a in (1, 2, 3)]
    never = SimulatedTransport(failure_rate=0)
    always = SimulatedTransport(failure_rate=1)
    assert all(isinstance(never.outcome(*k), Sent) for k in keys)
    assert all(isinstance(always.outcome(*k), SendError) for k in keys)
    half = SimulatedTransport(seed=3, failure_rate=0.5)
    failed = sum(isinstance(half.outcome(*k), SendError) for k in keys)
    assert 0.45 < failed / len(keys) < 0.55
    waits = [
        answer.retry_after
        for k in keys
        if isinstance(answer := always.outcome(*k), SendError) and answer.code == 60018
    ]
    assert waits
    assert all(w is not None and 1.0 <= w < 5.0 for w in waits)
    assert len(set(waits)) > 1


@pytest.fixture
def view() -> Iterator[MessageView]:
    service = MessageService.open("memory://")
    try:
        service.create("m6", sender="u", user_id="v")
        yield service.get("m6")
    finally:
        service.close()


def test_send_answers_the_views_current_attempt_after_the_latency(
    view: MessageView,
) -> None:
    transport = SimulatedTransport(seed=7, failure_rate=0.5, latency=0.05)
    started = time.monotonic()
    answer = transport.send(view)
    assert time.monotonic() - started >= 0.05
    assert GOLDEN[("m6", 1)] == answer


def test_the_async_twin_answers_the_same_after_awaiting_the_latency(
    view: MessageView,
) -> None:
    transport = SimulatedTransport(seed=7, failure_rate=0.5, latency=0.05)
    twin = transport.as_async()
    assert twin.inner is transport  # type: ignore[attr-defined]

    async def send() -> tuple[float, Sent | SendError]:
        started = time.monotonic()
        answer = await twin.send(view)
        return time.monotonic() - started, answer

    waited, answer = asyncio.run(send())
    assert waited >= 0.05
    assert GOLDEN[("m6", 1)] == answer
    instant = SimulatedTransport(seed=7, failure_rate=0.5).as_async()
    assert GOLDEN[("m6", 1)] == asyncio.run(instant.send(view))


def test_reprs_say_how_to_build_it_again() -> None:
    transport = SimulatedTransport(seed=3, failure_rate=0.25, latency=0.5)
    assert "SimulatedTransport(seed=3, failure_rate=0.25, latency=0.5)" == repr(
        transport
    )
    assert repr(transport) + ".as_async()" == repr(transport.as_async())


def test_limits_are_inclusive() -> None:
    for rate in (0, 1, 0.0, 1.0):
        assert float(rate) == SimulatedTransport(failure_rate=rate).failure_rate
    assert 0.0 == SimulatedTransport(latency=0).latency
    assert 0.0 == SendError(code=6012, retry_after=0).retry_after
    assert "x" == Sent(seq="x").seq
    assert -1 == SendError(code=-1).code


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: Sent(seq=""), "seq must be a non-empty string, got ''"),
        (lambda: Sent(seq=5), "seq must be a non-empty string, got 5"),
        (lambda: SendError(code=0), "code must be a non-zero int, got 0"),
        (lambda: SendError(code=True), "code must be a non-zero int, got True"),
        (lambda: SendError(code="6012"), "code must be a non-zero int, got '6012'"),
        (
            lambda: SendError(code=1, retry_after=-0.5),
            "retry_after must be a finite number of seconds >= 0 or None, got -0.5",
        ),
        (
            lambda: SendError(code=1, retry_after=float("inf")),
            "retry_after must be a finite number of seconds >= 0 or None, got inf",
        ),
        (
            lambda: SendError(code=1, retry_after=True),
            "retry_after must be a finite number of seconds >= 0 or None, got True",
        ),
        (
            lambda: SendError(code=1, retry_after="1"),
            "retry_after must be a finite number of seconds >= 0 or None, got '1'",
        ),
        (lambda: SimulatedTransport(seed=True), "seed must be an int, got True"),
        (lambda: SimulatedTransport(seed=1.5), "seed must be an int, got 1.5"),
        (
            lambda: SimulatedTransport(failure_rate=1.01),
            "failure_rate must be a number from 0 to 1, got 1.01",
        ),
        (
            lambda: SimulatedTransport(failure_rate=-0.01),
            "failure_rate must be a number from 0 to 1, got -0.01",
        ),
        (
            lambda: SimulatedTransport(failure_rate=True),
            "failure_rate must be a number from 0 to 1, got True",
        ),
        (
            lambda: SimulatedTransport(failure_rate="0.5"),
            "failure_rate must be a number from 0 to 1, got '0.5'",
        ),
        (
            lambda: SimulatedTransport(latency=-1),
            "latency must be a finite number of seconds >= 0, got -1",
        ),
        (
            lambda: SimulatedTransport(latency=float("nan")),
            "latency must be a finite number of seconds >= 0, got nan",
        ),
        (
            lambda: SimulatedTransport(latency=True),
            "latency must be a finite number of seconds >= 0, got True",
        ),
        (
            lambda: SimulatedTransport(latency="0"),
            "latency must be a finite number of seconds >= 0, got '0'",
        ),
    ],
)
def test_bad_answers_and_settings_are_refused_word_for_word(
    build: object, says: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        build()  # type: ignore[operator]
    assert says == refused.value.desc


def test_defaults_and_any_string_id() -> None:
    transport = SimulatedTransport()
    assert (0, 0.2, 0.0) == (transport.seed, transport.failure_rate, transport.latency)
    assert SimulatedTransport(seed=0).outcome("m0", 1) == transport.outcome("m0", 1)
    # outcome() takes any str, a lone surrogate included (the hash never fails).
    assert transport.outcome("m\ud800", 1) == transport.outcome("m\ud800", 1)
