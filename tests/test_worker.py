"""ResendWorker, AsyncResendWorker and AsyncMessageService, in one process
(memory, SQLite and PostgreSQL through the backend fixtures)."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from msgstate import (
    AsyncMessageService,
    AsyncResendWorker,
    ErrorCode,
    InvalidArgument,
    MessageService,
    MessageStatus,
    MessageView,
    ResendPolicy,
    ResendWorker,
    StaleAttempt,
    WorkerReport,
)
from msgstate.transports import SendError, Sent, SimulatedTransport
from msgstate.worker import _expire
from tests.conftest import ServiceFactory
from tests.support import FakeClock

TRANSIENT = 6012
POLICY = ResendPolicy(max_attempts=4, send_timeout=timedelta(seconds=30))


class Recording:
    """A transport that answers from a script and records what it was asked."""

    def __init__(self, answer: Any = None) -> None:
        self.sent: list[tuple[str, int]] = []
        self.answer = answer

    def send(self, message: MessageView) -> Sent | SendError:
        self.sent.append((message.msg_id, message.attempts))
        if callable(self.answer):
            result: Sent | SendError = self.answer(message)
            return result
        return Sent(seq=f"{message.msg_id}/{message.attempts}")


def failed_messages(service: MessageService, n: int, clock: FakeClock) -> list[str]:
    ids = [f"m{k:03d}" for k in range(n)]
    for msg_id in ids:
        service.create(msg_id, sender="alice", user_id="bob")
        service.record_failure(msg_id, code=TRANSIENT)
    clock.advance(60)  # past every backoff
    return ids


def test_a_pass_claims_sends_and_records_each_due_message(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """Every due message is claimed (by this worker, with its request id) and
    its attempt sent once and recorded; the report counts it."""
    service = make_service(POLICY)
    ids = failed_messages(service, 5, clock)
    transport = Recording()
    worker = ResendWorker(service, transport, worker_id="w1")
    report = worker.run_once()
    assert WorkerReport(claimed=5, delivered=5) == report
    assert sorted((m, 2) for m in ids) == sorted(transport.sent)
    views = [service.get(m) for m in ids]
    assert {(MessageStatus.SEND_SUCC, worker.request_id(2))} == {
        (v.status, v.request_id) for v in views
    }
    actors = {e.data["actor"] for m in ids for e in service.history(m)[2:3]}
    assert {"w1"} == actors
    assert WorkerReport() == worker.run_once()
    assert report == worker.totals


def test_failures_are_recorded_with_the_claimed_attempt(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    service = make_service(POLICY)
    failed_messages(service, 1, clock)
    transport = Recording(lambda m: SendError(code=20004, desc="boom", retry_after=2))
    report = ResendWorker(service, transport, worker_id="w").run_once()
    view = service.get("m000")
    assert (WorkerReport(claimed=1, failed=1), 2, 20004, 2.0) == (
        report,
        view.attempts,
        view.last_error_code,
        view.last_retry_after,
    )


@pytest.mark.parametrize(
    "answer", [ConnectionError("socket closed"), "not an answer", None]
)
def test_a_transport_that_raises_or_misanswers_is_a_transport_failure(
    service: MessageService, clock: FakeClock, answer: object
) -> None:
    """Never left SENDING: recorded as TRANSPORT_FAILED (AMBIGUOUS)."""
    failed_messages(service, 1, clock)

    def respond(message: MessageView) -> Any:
        if isinstance(answer, Exception):
            raise answer
        return answer

    report = ResendWorker(service, Recording(respond), worker_id="w").run_once()
    view = service.get("m000")
    assert (
        WorkerReport(claimed=1, failed=1),
        MessageStatus.SEND_FAIL,
        int(ErrorCode.TRANSPORT_FAILED),
        True,
    ) == (report, view.status, view.last_error_code, view.maybe_delivered)
    if isinstance(answer, Exception):
        assert "ConnectionError: socket closed" in (view.last_error_desc or "")


def test_keyboard_interrupt_in_the_transport_is_recorded_then_raised(
    service: MessageService, clock: FakeClock
) -> None:
    failed_messages(service, 1, clock)

    def interrupt(message: MessageView) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ResendWorker(service, Recording(interrupt), worker_id="w").run_once()
    assert int(ErrorCode.TRANSPORT_FAILED) == service.get("m000").last_error_code


def test_a_stuck_send_is_expired_then_resent(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """A send left SENDING past send_timeout (its sender died) is expired by the
    sweep, then (after the policy's backoff) resent as the next attempt."""
    service = make_service(POLICY)
    service.create("orphan", sender="alice", user_id="bob")
    service.create("young", sender="alice", user_id="bob")
    clock.advance(29)
    service.create("fresh", sender="alice", user_id="bob")
    clock.advance(1)  # orphan, young: 30 s; fresh: 1 s
    service.record_delivery("young", seq="ok")
    transport = Recording()
    worker = ResendWorker(service, transport, worker_id="sweeper")
    assert (WorkerReport(expired=1), []) == (worker.run_once(), transport.sent)
    clock.advance(1)  # the policy's backoff after attempt 1
    assert (WorkerReport(claimed=1, delivered=1), [("orphan", 2)]) == (
        worker.run_once(),
        transport.sent,
    )
    events = [(e.event, e.data.get("code")) for e in service.history("orphan")]
    assert [
        ("Created", None),
        ("SendFailed", int(ErrorCode.SEND_TIMED_OUT)),
        ("ResendRequested", None),
        ("Delivered", None),
    ] == events
    assert MessageStatus.SENDING == service.get("fresh").status


def test_a_message_claimed_by_another_worker_is_skipped(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """Worker 2 claims (and fails) the message after worker 1 read its due list:
    worker 1's stale claim is refused, and it sends nothing for that message."""
    service = make_service(POLICY)
    failed_messages(service, 2, clock)
    other = ResendWorker(service, Recording(), worker_id="w2")
    sent_by_one: list[tuple[str, int]] = []

    def first_send_lets_the_other_claim(message: MessageView) -> Sent:
        sent_by_one.append((message.msg_id, message.attempts))
        rest = "m001" if message.msg_id == "m000" else "m000"
        if service.get(rest).attempts == 1:
            service.resend(rest, request_id="w2-claim", actor="w2")
            service.record_failure(rest, code=TRANSIENT, attempt=2)
        return Sent(seq="x")

    one = ResendWorker(
        service, Recording(first_send_lets_the_other_claim), worker_id="w1"
    )
    report = one.run_once()
    assert (WorkerReport(claimed=1, delivered=1, skipped=1), 1) == (
        report,
        len(sent_by_one),
    )
    assert other is not None


def test_stop_finishes_the_send_in_flight_and_claims_nothing_more(
    service: MessageService, clock: FakeClock
) -> None:
    failed_messages(service, 4, clock)
    worker: ResendWorker

    def stop_during_the_first_send(message: MessageView) -> Sent:
        worker.stop()
        return Sent(seq="s")

    worker = ResendWorker(service, Recording(stop_during_the_first_send), worker_id="w")
    assert WorkerReport(claimed=1, delivered=1) == worker.run()
    assert 0 == service.status_counts()[MessageStatus.SENDING]


def test_run_until_idle_settles_what_is_due(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """With a flaky transport every message ends delivered or out of attempts:
    the backoff of this policy is over by the time of each pass (fake clock)."""
    service = make_service(POLICY)
    ids = failed_messages(service, 20, clock)
    transport = SimulatedTransport(seed=3, failure_rate=0.5)

    def advance(report: WorkerReport) -> None:
        clock.advance(3600)

    total = ResendWorker(service, transport, worker_id="w").run(
        until_idle=True, on_pass=advance
    )
    counts = service.status_counts()
    dead = service.dead_letters(limit=100)
    assert (20, 0) == (
        counts[MessageStatus.SEND_SUCC] + len(dead),
        counts[MessageStatus.SENDING],
    )
    assert total.claimed == sum(service.get(m).attempts - 1 for m in ids)
    assert total.delivered == counts[MessageStatus.SEND_SUCC]


def test_run_returns_on_sigterm_from_another_thread() -> None:
    """run() polls until stop(); stop from another thread wakes it at once."""
    service = MessageService.open("memory://")
    worker = ResendWorker(service, Recording(), worker_id="w", poll_interval=30)
    timer = threading.Timer(0.2, worker.stop)
    timer.start()
    assert WorkerReport() == worker.run(handle_sigterm=False)
    timer.join()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"worker_id": ""}, "worker_id"),
        ({"worker_id": "x" * 97}, "worker_id"),
        ({"worker_id": "w", "batch_size": 0}, "batch_size"),
        ({"worker_id": "w", "poll_interval": -1}, "poll_interval"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], name: str) -> None:
    service = MessageService.open("memory://")
    with pytest.raises(InvalidArgument) as refused:
        ResendWorker(service, Recording(), **kwargs)
    assert name in refused.value.desc
    with pytest.raises(InvalidArgument):
        ResendWorker(service, object(), worker_id="w")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as wrong_kind:
        ResendWorker(service, SimulatedTransport().as_async(), worker_id="w")  # type: ignore[arg-type]
    assert "AsyncResendWorker" in wrong_kind.value.desc
    with pytest.raises(InvalidArgument):
        AsyncResendWorker(service, Recording(), worker_id="w")  # type: ignore[arg-type]


def test_report_sums_and_serialises() -> None:
    one = WorkerReport(claimed=1, delivered=1, expired=2)
    assert {
        "claimed": 2,
        "delivered": 2,
        "failed": 0,
        "skipped": 0,
        "expired": 4,
        "errors": 0,
    } == (one + one).to_dict()


# -- the async worker --


class AsyncRecording:
    """Counts the sends in flight at once; answers Sent after ``latency``."""

    def __init__(self, latency: float = 0.02) -> None:
        self.latency = latency
        self.in_flight = 0
        self.most_in_flight = 0
        self.sent: list[tuple[str, int]] = []

    async def send(self, message: MessageView) -> Sent | SendError:
        self.sent.append((message.msg_id, message.attempts))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            if message.msg_id.endswith("7"):
                raise OSError("reset")
            return Sent(seq="s")
        finally:
            self.in_flight -= 1


def test_the_async_worker_sends_concurrently_and_records_everything(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    service = make_service(POLICY)
    ids = failed_messages(service, 40, clock)
    transport = AsyncRecording(latency=0.3)

    async def main() -> WorkerReport:
        worker = AsyncResendWorker(service, transport, worker_id="aw", concurrency=8)
        try:
            return await worker.run_once()
        finally:
            await worker.aclose()

    report = asyncio.run(main())
    raised = [m for m in ids if m.endswith("7")]
    assert (
        WorkerReport(claimed=40, delivered=40 - len(raised), failed=len(raised))
        == report
    )
    assert sorted((m, 2) for m in ids) == sorted(transport.sent)
    # Never more than the concurrency; more than one (claims take a thread each,
    # so how many overlap depends on the store's speed and the machine's load).
    assert 2 <= transport.most_in_flight <= 8
    assert {int(ErrorCode.TRANSPORT_FAILED)} == {
        service.get(m).last_error_code for m in raised
    }
    assert 0 == service.status_counts()[MessageStatus.SENDING]


def test_the_async_worker_sweeps_and_stops(
    service: MessageService, clock: FakeClock
) -> None:
    """The async worker expires a stuck send, resends it on a later pass, then
    idles (poll_interval 30 s); stop() wakes it at once."""
    service.create("orphan", sender="alice", user_id="bob")
    clock.advance(120)
    transport = AsyncRecording(latency=0)

    async def main() -> tuple[WorkerReport, float]:
        async with AsyncMessageService(service, max_workers=2) as aservice:
            worker = AsyncResendWorker(
                aservice, transport, worker_id="aw", poll_interval=30
            )
            stopped_at = 0.0

            async def stop_when_delivered() -> None:
                nonlocal stopped_at
                deadline = time.monotonic() + 120  # generous: a loaded machine
                while worker.totals.delivered < 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.1)  # into the 30 s idle wait
                stopped_at = time.monotonic()
                worker.stop()

            stopper = asyncio.create_task(stop_when_delivered())
            report = await worker.run(
                handle_sigterm=False, on_pass=lambda _: clock.advance(1)
            )
            returned_after = time.monotonic() - stopped_at
            await stopper
            return report, returned_after

    report, returned_after = asyncio.run(main())
    assert WorkerReport(claimed=1, delivered=1, expired=1) == report
    assert returned_after < 15  # not the 30 s poll interval


# -- AsyncMessageService --


def test_the_async_service_answers_as_the_sync_one(service: MessageService) -> None:
    async def main() -> None:
        async with AsyncMessageService(service, max_workers=3) as aservice:
            created = await aservice.create("m", sender="alice", user_id="bob")
            assert created == service.get("m")
            await aservice.record_failure("m", code=TRANSIENT, attempt=1)
            with pytest.raises(StaleAttempt):
                await aservice.resend("m", expected_attempt=2)
            claimed = await aservice.resend("m", request_id="r", expected_attempt=1)
            assert "r" == claimed.request_id
            assert claimed == await aservice.get("m")
            delivered = await aservice.record_delivery("m", seq="s", attempt=2)
            assert [delivered] == [await aservice.get_at("m", version=4)]
            assert 4 == len(await aservice.history("m"))
            assert {MessageStatus.SEND_SUCC: 1} == {
                s: n for s, n in (await aservice.status_counts()).items() if n
            }
            assert [] == await aservice.due_resends()
            assert [] == await aservice.stuck_sends()
            assert [] == await aservice.dead_letters()
            assert 7 == await aservice.run(lambda a, b: a + b, 3, b=4)
            views = await asyncio.gather(*(aservice.get("m") for _ in range(10)))
            assert [delivered] * 10 == views

    asyncio.run(main())


def test_the_async_service_opens_and_closes_its_own_store() -> None:
    async def main() -> int:
        aservice = AsyncMessageService.open("memory://", max_workers=1)
        try:
            await aservice.create("m", sender="a", user_id="b")
            return (await aservice.get("m")).version
        finally:
            await aservice.aclose()

    assert 1 == asyncio.run(main())
    with pytest.raises(InvalidArgument):
        AsyncMessageService("memory://")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        AsyncMessageService(MessageService.open("memory://"), max_workers=0)


# -- details the mutation run asked for --


def test_a_late_answer_after_expiry_never_touches_the_next_attempt(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """While w1's send 2 hangs, it is expired and another worker claims send 3;
    w1's late failure report names attempt 2, so send 3 stays SENDING; and a
    delivery's seq and server time are recorded as the transport answered."""
    service = make_service(POLICY)
    failed_messages(service, 1, clock)
    server_time = clock.now - timedelta(seconds=5)

    def meanwhile_expired_and_resent(message: MessageView) -> SendError:
        clock.advance(31)
        service.expire_send("m000", attempt=2, actor="sweeper")
        clock.advance(60)
        service.resend("m000", request_id="w2-claim", expected_attempt=2)
        return SendError(code=TRANSIENT, desc="late")

    report = ResendWorker(
        service, Recording(meanwhile_expired_and_resent), worker_id="w1"
    ).run_once()
    view = service.get("m000")
    assert (WorkerReport(claimed=1, failed=1), MessageStatus.SENDING, 3) == (
        report,
        view.status,
        view.attempts,
    )
    answer = Sent(seq="seq-3", server_time=server_time)
    other = ResendWorker(service, Recording(lambda m: answer), worker_id="w3")
    clock.advance(31)
    assert WorkerReport(expired=1) == other.run_once()
    assert "expired by w3" in (service.get("m000").last_error_desc or "")
    clock.advance(60)
    assert WorkerReport(claimed=1, delivered=1) == other.run_once()
    delivered = service.get("m000")
    assert ("seq-3", server_time, 4) == (
        delivered.seq,
        delivered.server_time,
        service.history("m000")[-1].attempt,
    )


def test_a_sweep_from_a_stale_list_counts_nothing(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """Two sweepers race for one stuck send: only the one that wrote the expiry
    counts it."""
    service = make_service(POLICY)
    service.create("stuck", sender="alice", user_id="bob")
    clock.advance(31)
    stale = service.stuck_sends()
    assert 1 == len(stale)
    first = ResendWorker(service, Recording(), worker_id="a")
    second = ResendWorker(service, Recording(), worker_id="b")
    assert WorkerReport(expired=1) == first.run_once()
    # The second sweeper acts on the list read before the first one's expiry.
    assert (False, WorkerReport()) == (
        _expire(service, stale[0], "b"),
        second.run_once(),
    )


def test_a_long_transport_error_is_cut_to_the_desc_limit(
    service: MessageService, clock: FakeClock
) -> None:
    failed_messages(service, 2, clock)

    def huge(message: MessageView) -> Any:
        if message.msg_id == "m000":
            raise OSError("x" * 5000)
        return SendError(code=20004, desc="y" * 5000)

    report = ResendWorker(service, Recording(huge), worker_id="w").run_once()
    assert WorkerReport(claimed=2, failed=2) == report
    assert [1000, 1000] == [
        len(service.get(m).last_error_desc or "") for m in ("m000", "m001")
    ]


def test_settings_defaults_and_bounds() -> None:
    service = MessageService.open("memory://")
    worker = ResendWorker(service, Recording(), worker_id="w" * 96)
    assert (100, 1.0) == (worker.batch_size, worker.poll_interval)
    transport = SimulatedTransport().as_async()
    aworker = AsyncResendWorker(service, transport, worker_id="w")
    assert (32, 100, 1.0) == (
        aworker.concurrency,
        aworker.batch_size,
        aworker.poll_interval,
    )
    for ok in ({"batch_size": 1}, {"batch_size": 100_000}, {"poll_interval": 3600}):
        ResendWorker(service, Recording(), worker_id="w", **ok)  # type: ignore[arg-type]
    for bad, name in (
        ({"batch_size": 100_001}, "batch_size"),
        ({"poll_interval": 3600.5}, "poll_interval"),
        ({"worker_id": ""}, "worker_id"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            ResendWorker(service, Recording(), **{"worker_id": "w", **bad})  # type: ignore[arg-type]
        assert refused.value.desc.startswith(name + " "), refused.value.desc
    for bad_c in (0, 10_001):
        with pytest.raises(InvalidArgument) as refused:
            AsyncResendWorker(service, transport, worker_id="w", concurrency=bad_c)
        assert refused.value.desc.startswith("concurrency ")


def test_the_async_worker_records_late_answers_with_their_attempt(
    make_service: ServiceFactory, clock: FakeClock
) -> None:
    """As for the sync worker: the claimed attempt is the one reported."""
    service = make_service(POLICY)
    failed_messages(service, 1, clock)
    server_time = clock.now - timedelta(seconds=5)

    class Late:
        async def send(self, message: MessageView) -> Sent | SendError:
            if message.attempts == 2:
                clock.advance(31)
                service.expire_send("m000", attempt=2, actor="sweeper")
                clock.advance(60)
                service.resend("m000", request_id="w2-claim", expected_attempt=2)
                return SendError(code=TRANSIENT, desc="late")
            return Sent(seq="s4", server_time=server_time)

    async def main() -> list[WorkerReport]:
        worker = AsyncResendWorker(service, Late(), worker_id="aw")
        try:
            reports = [await worker.run_once()]
            clock.advance(31)
            reports.append(await worker.run_once())
            clock.advance(60)
            reports.append(await worker.run_once())
            return reports
        finally:
            await worker.aclose()

    assert [
        WorkerReport(claimed=1, failed=1),
        WorkerReport(expired=1),
        WorkerReport(claimed=1, delivered=1),
    ] == asyncio.run(main())
    view = service.get("m000")
    assert ("s4", server_time, 4) == (view.seq, view.server_time, view.attempts)
    assert "expired by aw" in (service.history("m000")[-3].data["desc"])
