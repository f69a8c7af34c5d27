"""The resend workers' answers, pinned where the mutation run of msgstate/worker.py
found them unchecked: the exact WorkerReport counts when several claims are
refused, are not the worker's own, or fail in the store; what is recorded (events,
attempts, codes, descs) for transports that raise, answer nonsense or answer late;
record retries; the constructors' refusals word for word and their defaults; run()
idling for poll_interval, stopping on stop() and on SIGTERM, and counting a pass
the store refused; and AsyncResendWorker's thread pool and stop() after its loop.

All on in-memory stores with a FakeClock and hand-written transports. A store that
fails is simulated by replacing one method of the service object (monkeypatch).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from types import FrameType
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
    WorkerReport,
)
from msgstate.errors import StorageError
from msgstate.transports import SendError, Sent
from msgstate.worker import _expire, transport_failure
from tests.support import EPOCH, FakeClock

TRANSIENT = 6012
POLICY = ResendPolicy(max_attempts=4, send_timeout=timedelta(seconds=30))
TRANSPORT_FAILED = int(ErrorCode.TRANSPORT_FAILED)

Answer = Callable[[MessageView], Any]


class Halt(BaseException):
    """Not an Exception: like KeyboardInterrupt or CancelledError for the worker."""


class Scripted:
    """A transport that records (msg_id, attempt) and answers ``answer(message)``
    (default: Sent with seq ``<msg_id>/<attempt>``)."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.sent: list[tuple[str, int]] = []
        self.answer = answer

    def __repr__(self) -> str:
        return "Scripted()"

    def send(self, message: MessageView) -> Any:
        self.sent.append((message.msg_id, message.attempts))
        if self.answer is None:
            return Sent(seq=f"{message.msg_id}/{message.attempts}")
        return self.answer(message)


class AsyncScripted:
    """:class:`Scripted` with an async send."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.sent: list[tuple[str, int]] = []
        self.answer = answer

    def __repr__(self) -> str:
        return "AsyncScripted()"

    async def send(self, message: MessageView) -> Any:
        self.sent.append((message.msg_id, message.attempts))
        await asyncio.sleep(0)
        if self.answer is None:
            return Sent(seq=f"{message.msg_id}/{message.attempts}")
        return self.answer(message)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EPOCH)


@pytest.fixture
def service(clock: FakeClock) -> MessageService:
    return MessageService.open("memory://", policy=POLICY, clock=clock)


def failed_messages(service: MessageService, clock: FakeClock, n: int) -> list[str]:
    """``n`` messages whose first send failed, all due (past the backoff)."""
    ids = [f"m{k:03d}" for k in range(n)]
    for msg_id in ids:
        service.create(msg_id, sender="alice", user_id="bob")
        service.record_failure(msg_id, code=TRANSIENT)
    clock.advance(60)
    return ids


def run_async(worker: AsyncResendWorker, **kwargs: Any) -> WorkerReport:
    """``worker.run(**kwargs)`` in a fresh loop, then ``aclose``."""

    async def main() -> WorkerReport:
        try:
            return await worker.run(**kwargs)
        finally:
            await worker.aclose()

    return asyncio.run(main())


def once_async(worker: AsyncResendWorker) -> WorkerReport:
    """``worker.run_once()`` in a fresh loop, then ``aclose``."""

    async def main() -> WorkerReport:
        try:
            return await worker.run_once()
        finally:
            await worker.aclose()

    return asyncio.run(main())


def last_event(service: MessageService, msg_id: str) -> tuple[str, int, Any, Any]:
    entry = service.history(msg_id)[-1]
    return (entry.event, entry.attempt, entry.data.get("code"), entry.data.get("desc"))


# -- what a transport answered, as recorded --


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    ("answer", "desc"),
    [
        ("not an answer", "transport answered 'not an answer', not Sent or SendError"),
        (None, "transport answered None, not Sent or SendError"),
    ],
)
def test_an_answer_that_is_neither_sent_nor_send_error_is_recorded_by_its_repr(
    service: MessageService, clock: FakeClock, kind: str, answer: object, desc: str
) -> None:
    failed_messages(service, clock, 1)
    if kind == "sync":
        report = ResendWorker(
            service, Scripted(lambda m: answer), worker_id="w"
        ).run_once()
    else:
        report = once_async(
            AsyncResendWorker(service, AsyncScripted(lambda m: answer), worker_id="w")
        )
    assert WorkerReport(claimed=1, failed=1) == report
    assert ("SendFailed", 2, TRANSPORT_FAILED, desc) == last_event(service, "m000")


def test_an_async_transport_that_raises_is_recorded_with_the_error(
    service: MessageService, clock: FakeClock
) -> None:
    failed_messages(service, clock, 1)

    def refuse(message: MessageView) -> Any:
        raise OSError("connection reset")

    report = once_async(
        AsyncResendWorker(service, AsyncScripted(refuse), worker_id="w")
    )
    assert WorkerReport(claimed=1, failed=1) == report
    assert (
        "SendFailed",
        2,
        TRANSPORT_FAILED,
        "transport raised OSError: connection reset",
    ) == last_event(service, "m000")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_base_exception_in_the_transport_is_recorded_then_raised(
    service: MessageService, clock: FakeClock, kind: str
) -> None:
    """Neither an Exception nor an answer (KeyboardInterrupt, CancelledError...):
    the send is recorded as TRANSPORT_FAILED, naming the exception, and the
    exception then goes on up."""
    failed_messages(service, clock, 1)

    def halt(message: MessageView) -> Any:
        raise Halt("shutting down")

    with pytest.raises(Halt):
        if kind == "sync":
            ResendWorker(service, Scripted(halt), worker_id="w").run_once()
        else:
            once_async(AsyncResendWorker(service, AsyncScripted(halt), worker_id="w"))
    assert (
        "SendFailed",
        2,
        TRANSPORT_FAILED,
        "transport raised Halt: shutting down",
    ) == last_event(service, "m000")
    assert MessageStatus.SEND_FAIL == service.get("m000").status


def test_transport_failure_cuts_its_desc_to_1000_characters() -> None:
    """``msgstate.worker.transport_failure`` (a module-level helper, not in
    ``__all__``) answers at most 1000 characters; through a worker the desc is
    cut again when recorded, so only a direct call shows this."""
    answer = transport_failure(OSError("x" * 5000))
    assert (TRANSPORT_FAILED, "transport raised OSError: " + "x" * 974) == (
        answer.code,
        answer.desc,
    )


def test_a_late_delivery_is_recorded_for_the_attempt_the_worker_claimed(
    service: MessageService, clock: FakeClock
) -> None:
    """While w1's send 2 hangs it is expired and w2 claims send 3; w1's late Sent
    is recorded as the delivery of attempt 2 (the message did arrive), not 3."""
    failed_messages(service, clock, 1)

    def late(message: MessageView) -> Sent:
        clock.advance(31)
        service.expire_send("m000", attempt=2, actor="sweeper")
        clock.advance(60)
        service.resend("m000", request_id="w2-claim", expected_attempt=2)
        return Sent(seq="late-2")

    report = ResendWorker(service, Scripted(late), worker_id="w1").run_once()
    assert WorkerReport(claimed=1, delivered=1) == report
    view = service.get("m000")
    assert (MessageStatus.SEND_SUCC, 3, "late-2") == (
        view.status,
        view.attempts,
        view.seq,
    )
    assert [
        ("Created", 1),
        ("SendFailed", 1),
        ("ResendRequested", 2),
        ("SendFailed", 2),
        ("ResendRequested", 3),
        ("Delivered", 2),
    ] == [(e.event, e.attempt) for e in service.history("m000")]


# -- claims refused, not the worker's own, or failed in the store --


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_claims_from_a_stale_due_list_are_skipped_and_write_nothing(
    service: MessageService, clock: FakeClock, kind: str
) -> None:
    """During the first send another worker claims and fails the two other due
    messages, and the backoff passes: the worker's claims, made from its view of
    attempt 1, are refused (expected_attempt), counted as skipped, and write
    nothing: the messages stay failed at attempt 2."""
    ids = failed_messages(service, clock, 3)

    def others_move_on(message: MessageView) -> Sent:
        others = [m for m in ids if m != message.msg_id]
        if all(service.get(m).attempts == 1 for m in others):
            for other in others:
                service.resend(other, request_id=f"w2:{other}", actor="w2")
                service.record_failure(other, code=TRANSIENT, attempt=2)
            clock.advance(3600)  # past every backoff
        return Sent(seq="s")

    if kind == "sync":
        transport = Scripted(others_move_on)
        report = ResendWorker(service, transport, worker_id="w1").run_once()
        sent = transport.sent
    else:
        atransport = AsyncScripted(others_move_on)
        report = once_async(
            AsyncResendWorker(service, atransport, worker_id="w1", concurrency=1)
        )
        sent = atransport.sent
    assert WorkerReport(claimed=1, delivered=1, skipped=2) == report
    first = sent[0][0]
    assert [(first, 2)] == sent
    others = [m for m in ids if m != first]
    assert [(MessageStatus.SEND_FAIL, 2, 4)] * 2 == [
        (service.get(m).status, service.get(m).attempts, len(service.history(m)))
        for m in others
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_answer_to_a_repeated_request_id_that_is_not_this_claim_is_skipped(
    service: MessageService, clock: FakeClock, kind: str
) -> None:
    """A claim whose request id was already used answers the current view without
    writing. If that view is not this worker's claim in flight (not SENDING, or
    SENDING for another attempt and request), nothing is sent: skipped."""
    ids = failed_messages(service, clock, 3)
    worker: ResendWorker | AsyncResendWorker

    def others_used_our_request_id(message: MessageView) -> Sent:
        others = [m for m in ids if m != message.msg_id]
        if all(service.get(m).attempts == 1 for m in others):
            taken = others[1]  # the other one, others[0], stays failed
            for other in others:
                service.resend(other, request_id=worker.request_id(2), actor="x")
                service.record_failure(other, code=TRANSIENT, attempt=2)
            clock.advance(3600)
            service.resend(taken, request_id="w2-claim", expected_attempt=2)
        return Sent(seq="s")

    if kind == "sync":
        transport = Scripted(others_used_our_request_id)
        worker = ResendWorker(service, transport, worker_id="w1")
        report = worker.run_once()
        sent = transport.sent
    else:
        atransport = AsyncScripted(others_used_our_request_id)
        worker = AsyncResendWorker(service, atransport, worker_id="w1", concurrency=1)
        report = once_async(worker)
        sent = atransport.sent
    assert WorkerReport(claimed=1, delivered=1, skipped=2) == report
    first = sent[0][0]
    assert [(first, 2)] == sent
    done, taken = (m for m in ids if m != first)
    assert (
        (MessageStatus.SEND_FAIL, 2, worker.request_id(2)),
        (MessageStatus.SENDING, 3, "w2-claim"),
    ) == tuple(
        (service.get(m).status, service.get(m).attempts, service.get(m).request_id)
        for m in (done, taken)
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_claims_the_store_failed_are_counted_as_errors_and_not_sent(
    service: MessageService,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    ids = failed_messages(service, clock, 2)

    def store_away(msg_id: str, **kwargs: Any) -> MessageView:
        raise StorageError("the store went away")

    monkeypatch.setattr(service, "resend", store_away)
    if kind == "sync":
        transport = Scripted()
        report = ResendWorker(service, transport, worker_id="w").run_once()
        sent = transport.sent
    else:
        atransport = AsyncScripted()
        report = once_async(AsyncResendWorker(service, atransport, worker_id="w"))
        sent = atransport.sent
    assert (WorkerReport(errors=2), []) == (report, sent)
    assert [(MessageStatus.SEND_FAIL, 1)] * 2 == [
        (service.get(m).status, service.get(m).attempts) for m in ids
    ]


# -- recording the outcome --


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_report_the_store_refused_once_is_tried_again_soon(
    service: MessageService,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """One StorageError while recording: the delivery is recorded on the next
    try, a short wait later (well under a second), and no error is counted."""
    failed_messages(service, clock, 1)
    real = service.record_delivery
    tries: list[int | None] = []

    def flaky(msg_id: str, **kwargs: Any) -> MessageView:
        tries.append(kwargs.get("attempt"))
        if len(tries) == 1:
            raise StorageError("the store blinked")
        return real(msg_id, **kwargs)

    monkeypatch.setattr(service, "record_delivery", flaky)
    started = time.monotonic()
    if kind == "sync":
        report = ResendWorker(service, Scripted(), worker_id="w").run_once()
    else:
        report = once_async(AsyncResendWorker(service, AsyncScripted(), worker_id="w"))
    elapsed = time.monotonic() - started
    assert (WorkerReport(claimed=1, delivered=1), [2, 2]) == (report, tries)
    assert (MessageStatus.SEND_SUCC, "m000/2") == (
        service.get("m000").status,
        service.get("m000").seq,
    )
    assert elapsed < 1.0


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_reports_the_store_keeps_refusing_are_errors_after_three_tries(
    service: MessageService,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """Each send's report is tried three times, then counted in errors; the sends
    stay SENDING (for the sweep)."""
    ids = failed_messages(service, clock, 2)
    tries: list[str] = []

    def store_away(msg_id: str, **kwargs: Any) -> MessageView:
        tries.append(msg_id)
        raise StorageError("the store went away")

    monkeypatch.setattr(service, "record_delivery", store_away)
    if kind == "sync":
        report = ResendWorker(service, Scripted(), worker_id="w").run_once()
    else:
        report = once_async(AsyncResendWorker(service, AsyncScripted(), worker_id="w"))
    assert WorkerReport(claimed=2, errors=2) == report
    assert sorted(ids * 3) == sorted(tries)
    assert [(MessageStatus.SENDING, 2)] * 2 == [
        (service.get(m).status, service.get(m).attempts) for m in ids
    ]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_delivery_that_conflicts_with_another_seq_is_an_error(
    service: MessageService, clock: FakeClock, kind: str
) -> None:
    """While the worker sends, the same attempt is recorded delivered with another
    seq; the worker's own delivery is refused (DeliveryConflict): an error each,
    and the first seq stays."""
    ids = failed_messages(service, clock, 2)

    def delivered_meanwhile(message: MessageView) -> Sent:
        service.record_delivery(message.msg_id, seq="theirs", attempt=message.attempts)
        return Sent(seq="ours")

    if kind == "sync":
        report = ResendWorker(
            service, Scripted(delivered_meanwhile), worker_id="w"
        ).run_once()
    else:
        report = once_async(
            AsyncResendWorker(
                service,
                AsyncScripted(delivered_meanwhile),
                worker_id="w",
                concurrency=1,
            )
        )
    assert WorkerReport(claimed=2, errors=2) == report
    assert [(MessageStatus.SEND_SUCC, "theirs")] * 2 == [
        (service.get(m).status, service.get(m).seq) for m in ids
    ]


# -- sweeping stuck sends --


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_every_stuck_send_expired_in_a_pass_is_counted(
    service: MessageService, clock: FakeClock, kind: str
) -> None:
    for msg_id in ("a", "b", "c"):
        service.create(msg_id, sender="alice", user_id="bob")
    clock.advance(31)
    if kind == "sync":
        report = ResendWorker(service, Scripted(), worker_id="sweeper").run_once()
    else:
        report = once_async(
            AsyncResendWorker(service, AsyncScripted(), worker_id="sweeper")
        )
    assert WorkerReport(expired=3) == report
    assert [("SendFailed", 1, int(ErrorCode.SEND_TIMED_OUT))] * 3 == [
        last_event(service, m)[:3] for m in ("a", "b", "c")
    ]


def test_expiring_a_send_that_is_not_overdue_counts_nothing(
    service: MessageService, clock: FakeClock
) -> None:
    """The private helper ``_expire`` (what a sweep does per stuck send) answers
    False when the store refuses the expiry (SendNotOverdue): a sweep whose list
    went stale must not count it. Only a direct call reaches this refusal
    deterministically (it needs the list and the store to disagree)."""
    service.create("young", sender="alice", user_id="bob")
    clock.advance(29)
    view = service.get("young")
    assert (False, MessageStatus.SENDING, 1) == (
        _expire(service, view, "sweeper"),
        service.get("young").status,
        len(service.history("young")),
    )


# -- run() --


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_run_until_idle_reports_each_pass_and_returns_their_sum(
    service: MessageService, clock: FakeClock, kind: str
) -> None:
    failed_messages(service, clock, 1)
    passes: list[WorkerReport] = []
    if kind == "sync":
        worker = ResendWorker(service, Scripted(), worker_id="w")
        total = worker.run(until_idle=True, handle_sigterm=False, on_pass=passes.append)
    else:
        total = run_async(
            AsyncResendWorker(service, AsyncScripted(), worker_id="w"),
            until_idle=True,
            handle_sigterm=False,
            on_pass=passes.append,
        )
    assert [WorkerReport(claimed=1, delivered=1), WorkerReport()] == passes
    assert WorkerReport(claimed=1, delivered=1) == total


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_pass_the_store_refused_counts_one_error(
    service: MessageService,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """run() survives a StorageError while reading the due list: that pass is
    reported as one error (and, having done nothing, ends an until_idle run)."""
    failed_messages(service, clock, 1)

    def store_away(*args: Any, **kwargs: Any) -> list[MessageView]:
        raise StorageError("the store went away")

    monkeypatch.setattr(service, "due_resends", store_away)
    passes: list[WorkerReport] = []
    if kind == "sync":
        worker = ResendWorker(service, Scripted(), worker_id="w")
        total = worker.run(until_idle=True, handle_sigterm=False, on_pass=passes.append)
    else:
        total = run_async(
            AsyncResendWorker(service, AsyncScripted(), worker_id="w"),
            until_idle=True,
            handle_sigterm=False,
            on_pass=passes.append,
        )
    assert ([WorkerReport(errors=1)], WorkerReport(errors=1)) == (passes, total)
    assert MessageStatus.SEND_FAIL == service.get("m000").status


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_run_idles_for_poll_interval_between_passes_until_stopped(
    service: MessageService, kind: str
) -> None:
    """By default run() does not return when idle: it waits poll_interval (0.05 s
    here) and passes again, until stop()."""
    passes: list[WorkerReport] = []
    started = time.monotonic()
    if kind == "sync":
        worker = ResendWorker(service, Scripted(), worker_id="w", poll_interval=0.05)
        timer = threading.Timer(0.25, worker.stop)
        timer.start()
        total = worker.run(handle_sigterm=False, on_pass=passes.append)
        timer.join()
    else:
        aworker = AsyncResendWorker(
            service, AsyncScripted(), worker_id="w", poll_interval=0.05
        )

        async def main() -> WorkerReport:
            async def stop_later() -> None:
                await asyncio.sleep(0.25)
                aworker.stop()

            stopper = asyncio.create_task(stop_later())
            try:
                return await aworker.run(handle_sigterm=False, on_pass=passes.append)
            finally:
                await stopper
                await aworker.aclose()

        total = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert WorkerReport() == total
    assert {WorkerReport()} == set(passes)
    assert 2 <= len(passes) <= elapsed / 0.05 + 2, (len(passes), elapsed)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_sigterm_stops_run_by_default(service: MessageService, kind: str) -> None:
    """On the main thread, run() handles SIGTERM by default: a SIGTERM during the
    first pass ends the run after it (the handler installed before never sees
    it). Both workers put that handler back on return."""
    received: list[int] = []
    passes: list[WorkerReport] = []
    worker: ResendWorker | AsyncResendWorker
    if kind == "sync":
        worker = ResendWorker(service, Scripted(), worker_id="w", poll_interval=0.05)
    else:
        worker = AsyncResendWorker(
            service, AsyncScripted(), worker_id="w", poll_interval=1.0
        )

    def ours(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        worker.stop()  # so that a run that ignores SIGTERM still ends

    def on_pass(report: WorkerReport) -> None:
        passes.append(report)
        if len(passes) == 1:
            signal.raise_signal(signal.SIGTERM)
        else:
            worker.stop()  # SIGTERM did not stop the run: end it anyway

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        if isinstance(worker, ResendWorker):
            total = worker.run(on_pass=on_pass)
        else:
            total = run_async(worker, on_pass=on_pass)
        assert ours == signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (WorkerReport(), 1, []) == (total, len(passes), received)


def test_stop_after_the_async_run_s_loop_closed_is_harmless(
    service: MessageService,
) -> None:
    worker = AsyncResendWorker(service, AsyncScripted(), worker_id="w")
    assert WorkerReport() == run_async(worker, until_idle=True, handle_sigterm=False)
    worker.stop()
    assert worker.stopping


# -- request ids --


def test_request_ids_name_the_worker_and_a_token_of_its_own(
    service: MessageService, clock: FakeClock
) -> None:
    """``<worker_id>:<run token>:<attempt>``, the token differing per worker
    object; with the longest worker id (96) every attempt's request id fits the
    store's 128 characters, so such a worker can claim."""
    failed_messages(service, clock, 1)
    long_id = "w" * 96
    one = ResendWorker(service, Scripted(), worker_id=long_id)
    again = ResendWorker(service, Scripted(), worker_id=long_id)
    assert f"{long_id}:{one.run_token}:2" == one.request_id(2)
    assert one.request_id(2) != again.request_id(2)
    assert len(one.request_id(1_000_000)) <= 128
    assert WorkerReport(claimed=1, delivered=1) == one.run_once()
    assert one.request_id(2) == service.get("m000").request_id
    assert long_id == service.history("m000")[2].data["actor"]


# -- constructors --


class AsyncOnly:
    def __repr__(self) -> str:
        return "AsyncOnly()"

    async def send(self, message: MessageView) -> Sent | SendError:
        return Sent(seq="s")


def test_the_sync_worker_refuses_bad_arguments_word_for_word(
    service: MessageService,
) -> None:
    refusals = []
    for args in (("memory://", Scripted()), (service, 42), (service, AsyncOnly())):
        with pytest.raises(InvalidArgument) as refused:
            ResendWorker(*args, worker_id="w")
        refusals.append(refused.value.desc)
    assert [
        "service must be a MessageService, got 'memory://'",
        "transport must have a send(message) method, got 42",
        "AsyncOnly() is an AsyncTransport (async send); use AsyncResendWorker with it",
    ] == refusals


def test_the_async_worker_refuses_bad_arguments_word_for_word(
    service: MessageService,
) -> None:
    refusals = []
    for args, kwargs in (
        ((service, 42), {}),
        ((service, Scripted()), {}),
        (("memory://", AsyncOnly()), {}),
        ((service, AsyncOnly()), {"concurrency": 0}),
    ):
        with pytest.raises(InvalidArgument) as refused:
            AsyncResendWorker(*args, worker_id="w", **kwargs)  # type: ignore[arg-type]
        refusals.append(refused.value.desc)
    assert [
        "transport must have an async send(message) method, got 42",
        "transport must have an async send(message) method, got Scripted()",
        "service must be an AsyncMessageService or a MessageService, got 'memory://'",
        "concurrency must be between 1 and 10000, got 0",
    ] == refusals


@pytest.mark.parametrize(
    ("concurrency", "expected"),
    [(None, (32, 8)), (1, (1, 1)), (3, (3, 3)), (9, (9, 8))],
)
def test_the_async_worker_s_own_pool_has_min_concurrency_8_threads(
    service: MessageService, concurrency: int | None, expected: tuple[int, int]
) -> None:
    """Wrapping a MessageService, the worker makes an AsyncMessageService with
    ``min(concurrency, 8)`` threads (concurrency 1 included)."""
    kwargs: dict[str, int] = {} if concurrency is None else {"concurrency": concurrency}
    worker = AsyncResendWorker(service, AsyncOnly(), worker_id="w", **kwargs)
    assert isinstance(worker.service, AsyncMessageService)
    assert expected == (worker.concurrency, worker.service.max_workers)
    assert service is worker.service.service
    worker.service.close()


def test_aclose_closes_the_pool_the_worker_made_and_no_other(
    service: MessageService,
) -> None:
    service.create("m", sender="alice", user_id="bob")

    async def main() -> None:
        own = AsyncResendWorker(service, AsyncOnly(), worker_id="w")
        await own.aclose()
        with pytest.raises(RuntimeError):
            await own.service.get("m")
        async with AsyncMessageService(service, max_workers=2) as given:
            lent = AsyncResendWorker(given, AsyncOnly(), worker_id="w")
            await lent.aclose()
            assert "m" == (await given.get("m")).msg_id

    asyncio.run(main())
    assert MessageStatus.SENDING == service.get("m").status


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_sigterm_handler_not_set_from_python_is_left_at_the_default(
    service: MessageService, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """signal reports a handler installed outside Python as None, which cannot be
    put back: run() then leaves SIGTERM at the default action instead of failing
    on return."""
    saved = signal.getsignal(signal.SIGTERM)
    real_signal = signal.signal
    calls: list[object] = []

    def first_unknown(signum: int, handler: Any) -> Any:
        old = real_signal(signum, handler)
        calls.append(handler)
        return None if len(calls) == 1 else old

    monkeypatch.setattr(signal, "signal", first_unknown)
    monkeypatch.setattr(signal, "getsignal", lambda signum: None)
    try:
        if kind == "sync":
            worker: ResendWorker | AsyncResendWorker = ResendWorker(
                service, Scripted(), worker_id="w"
            )
            total = worker.run(until_idle=True)  # type: ignore[union-attr]
        else:
            total = run_async(
                AsyncResendWorker(service, AsyncScripted(), worker_id="w"),
                until_idle=True,
            )
        monkeypatch.undo()
        assert WorkerReport() == total
        assert signal.SIG_DFL == signal.getsignal(signal.SIGTERM)
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGTERM, saved)
