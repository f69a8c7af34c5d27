"""The resend worker: claim due resends, send them through a transport, record.

Every backend that resends failed messages writes the same loop; this is it, once,
with the guarantees spelled out. One pass (:meth:`ResendWorker.run_once`):

1. **Sweep stuck sends.** :meth:`~msgstate.MessageService.stuck_sends` lists sends
   in flight for longer than the policy's ``send_timeout`` (their sender died);
   each is expired with :meth:`~msgstate.MessageService.expire_send`, which records
   the msgstate-local failure ``SEND_TIMED_OUT`` (``AMBIGUOUS``), so the policy
   decides about a resend like after any other failure.
2. **Claim.** For each of :meth:`~msgstate.MessageService.due_resends` (a view
   that may be stale by the time it is used), ``resend(msg_id,
   expected_attempt=view.attempts, request_id=<worker>:<run>:<attempt>,
   actor=worker_id)``. The event store lets exactly one writer append the
   resend on top of the failure of attempt ``n``, and ``expected_attempt``
   refuses (``STALE_ATTEMPT``) a claim made from a view of any other attempt:
   so every attempt number is claimed once, by one worker, and no worker can
   claim attempt ``n + 2`` from a stale view of attempt ``n``. A refused claim
   is *skipped*.
3. **Send** the claimed view through the transport. An answer
   :class:`~msgstate.transports.Sent` is recorded with ``record_delivery``; a
   :class:`~msgstate.transports.SendError` with ``record_failure``; a transport
   that *raises* (or answers anything else) is an unknown outcome, recorded as
   the msgstate-local failure ``TRANSPORT_FAILED`` (``AMBIGUOUS``). Each report
   names ``attempt=`` the claimed attempt, so it can never fail or deliver
   another one.

A message is therefore never left ``SENDING`` by a live worker. A worker killed
between its claim and its report leaves the send ``SENDING``; after
``send_timeout`` any worker's sweep expires it and the message is resent (it may
have left: that is why the failure is ``AMBIGUOUS``).

:meth:`ResendWorker.run` repeats passes until :meth:`~ResendWorker.stop` or
SIGTERM; it then finishes (and records) the send in flight and returns.
:class:`AsyncResendWorker` does the same with an
:class:`~msgstate.transports.AsyncTransport`, ``concurrency`` sends at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from attrs import asdict, define, frozen

from msgstate import _validate as check
from msgstate.aio import AsyncMessageService
from msgstate.application import MessageService
from msgstate.errors import (
    ConcurrencyConflict,
    ErrorCode,
    InvalidArgument,
    MsgStateError,
    ResendRefused,
    StorageError,
)
from msgstate.status import MessageStatus
from msgstate.transports import AsyncTransport, SendError, Sent, Transport
from msgstate.views import MessageView

__all__ = ["AsyncResendWorker", "ResendWorker", "WorkerReport"]

MAX_WORKER_ID_CHARS = 96
"""A worker id leaves room in the 128-character request id for a run token and
an attempt number."""

RECORD_TRIES = 3
"""How often a report the store failed to take is tried before it is left for
the sweep (the send then stays SENDING until ``send_timeout``)."""


@frozen
class WorkerReport:
    """What one pass (or a whole run, summed with ``+``) did."""

    claimed: int = 0
    """Attempts this worker claimed, and so sent."""
    delivered: int = 0
    """Claimed sends recorded as delivered."""
    failed: int = 0
    """Claimed sends recorded as failed (a transport that raised included)."""
    skipped: int = 0
    """Due messages not claimed: another worker was first, or the view was stale."""
    expired: int = 0
    """Stuck sends this worker expired (``SEND_TIMED_OUT``)."""
    errors: int = 0
    """Store errors: outcomes the store refused to record (those sends stay
    ``SENDING`` until a sweep expires them), claims that failed, and passes
    (in :meth:`ResendWorker.run`) that could not read the store."""

    def __add__(self, other: WorkerReport) -> WorkerReport:
        if not isinstance(other, WorkerReport):
            return NotImplemented
        return WorkerReport(
            **{k: v + asdict(other)[k] for k, v in asdict(self).items()}
        )

    @property
    def busy(self) -> bool:
        """Whether the pass found anything to do (claims, skips or expiries)."""
        return bool(self.claimed or self.skipped or self.expired)

    def to_dict(self) -> dict[str, int]:
        """The counts as plain data (for JSON)."""
        return asdict(self)


@define
class _Tally:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    expired: int = 0
    errors: int = 0

    def report(self) -> WorkerReport:
        return WorkerReport(**asdict(self))


def _check_settings(
    worker_id: object, batch_size: object, poll_interval: object
) -> tuple[str, int, float]:
    checked_id = check.identifier("worker_id", worker_id)
    if len(checked_id) > MAX_WORKER_ID_CHARS:
        raise InvalidArgument(
            f"worker_id is {len(checked_id)} characters; at most {MAX_WORKER_ID_CHARS}"
        )
    size = check.integer("batch_size", batch_size, 1, 100_000)
    interval = check.seconds("poll_interval", poll_interval, 3600)
    return checked_id, size, interval


def transport_failure(error: BaseException) -> SendError:
    """The failure recorded when a transport raised: ``TRANSPORT_FAILED``."""
    return SendError(
        code=int(ErrorCode.TRANSPORT_FAILED),
        desc=f"transport raised {type(error).__name__}: {error}"[:1000],
    )


def _answer_of(answer: object) -> Sent | SendError:
    if isinstance(answer, Sent | SendError):
        return answer
    return SendError(
        code=int(ErrorCode.TRANSPORT_FAILED),
        desc=f"transport answered {answer!r}, not Sent or SendError"[:1000],
    )


class _Base:
    """What both workers share: settings, request ids, outcome bookkeeping."""

    def __init__(
        self, worker_id: object, batch_size: object, poll_interval: object
    ) -> None:
        self.worker_id, self.batch_size, self.poll_interval = _check_settings(
            worker_id, batch_size, poll_interval
        )
        self.run_token = secrets.token_hex(4)
        """Differs per worker object, so a restarted worker with the same id can
        never mistake an old claim's request id for its own new one."""
        self.totals = WorkerReport()
        """Everything this worker did so far, all passes summed."""
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the sends in flight are recorded.

        Safe from any thread and from signal handlers.
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (or SIGTERM received)."""
        return self._stop.is_set()

    def request_id(self, attempt: int) -> str:
        """The request id of this worker's claim of ``attempt`` (of any message)."""
        return f"{self.worker_id}:{self.run_token}:{attempt}"

    def _is_our_claim(self, claimed: MessageView, view: MessageView) -> bool:
        return (
            claimed.status is MessageStatus.SENDING
            and claimed.attempts == view.attempts + 1
            and claimed.request_id == self.request_id(view.attempts + 1)
        )


class ResendWorker(_Base):
    """Resends due messages through a :class:`~msgstate.transports.Transport`.

    ``worker_id`` names the worker in every claim (``actor``) and request id;
    give each worker process its own. ``batch_size`` bounds the due and stuck
    messages read per pass; ``poll_interval`` is the wait after a pass that
    found nothing to do.
    """

    def __init__(
        self,
        service: MessageService,
        transport: Transport,
        *,
        worker_id: str,
        batch_size: int = 100,
        poll_interval: float = 1.0,
    ) -> None:
        if not isinstance(service, MessageService):
            raise InvalidArgument(f"service must be a MessageService, got {service!r}")
        send = getattr(transport, "send", None)
        if not callable(send):
            raise InvalidArgument(
                f"transport must have a send(message) method, got {transport!r}"
            )
        if inspect.iscoroutinefunction(send):
            raise InvalidArgument(
                f"{transport!r} is an AsyncTransport (async send); use "
                "AsyncResendWorker with it"
            )
        super().__init__(worker_id, batch_size, poll_interval)
        self.service = service
        self.transport = transport

    def __repr__(self) -> str:
        return f"ResendWorker(worker_id={self.worker_id!r}, {self.transport!r})"

    def run_once(self) -> WorkerReport:
        """One pass: expire stuck sends, then claim, send and record due resends.

        After :meth:`stop`, no new claim is made; the send in flight is finished.
        """
        tally = _Tally()
        self._sweep(tally)
        for view in self.service.due_resends(limit=self.batch_size):
            if self.stopping:
                break
            self._resend_one(view, tally)
        report = tally.report()
        self.totals += report
        return report

    def run(
        self,
        *,
        until_idle: bool = False,
        handle_sigterm: bool = True,
        on_pass: Callable[[WorkerReport], object] | None = None,
    ) -> WorkerReport:
        """Passes until :meth:`stop` or SIGTERM (or, ``until_idle``, the first
        pass with nothing to do); returns the sum of their reports.

        With ``handle_sigterm`` (and on the main thread) SIGTERM calls
        :meth:`stop` for the duration of the call; the previous handler is put
        back on return. ``on_pass`` is called with each pass's report (for
        progress displays and metrics).
        """
        total = WorkerReport()
        with _sigterm_stops(self.stop, enabled=handle_sigterm):
            while not self.stopping:
                try:
                    report = self.run_once()
                except StorageError:
                    report = WorkerReport(errors=1)  # the store is away: wait
                total += report
                if on_pass is not None:
                    on_pass(report)
                if not report.busy:
                    if until_idle:
                        break
                    self._stop.wait(self.poll_interval)
        return total

    # -- one pass --

    def _sweep(self, tally: _Tally) -> None:
        for view in self.service.stuck_sends(limit=self.batch_size):
            if self.stopping:
                return
            tally.expired += _expire(self.service, view, self.worker_id)

    def _resend_one(self, view: MessageView, tally: _Tally) -> None:
        try:
            claimed = self.service.resend(
                view.msg_id,
                request_id=self.request_id(view.attempts + 1),
                expected_attempt=view.attempts,
                actor=self.worker_id,
            )
        except (ResendRefused, ConcurrencyConflict):
            tally.skipped += 1
            return
        except StorageError:
            # Written or not, we don't know: not sent; if it was written, the
            # sweep expires it after send_timeout.
            tally.errors += 1
            return
        if not self._is_our_claim(claimed, view):
            tally.skipped += 1
            return
        tally.claimed += 1
        interrupted: BaseException | None = None
        try:
            answer = _answer_of(self.transport.send(claimed))
        except Exception as error:
            answer = transport_failure(error)
        except BaseException as error:  # KeyboardInterrupt, SystemExit: record, then go
            answer, interrupted = transport_failure(error), error
        self._record(claimed, answer, tally)
        if interrupted is not None:
            raise interrupted

    def _record(
        self, claimed: MessageView, answer: Sent | SendError, tally: _Tally
    ) -> None:
        for tries_left in reversed(range(RECORD_TRIES)):
            try:
                _record_sync(self.service, claimed, answer)
            except (StorageError, ConcurrencyConflict):
                if tries_left:
                    time.sleep(0.05)
                    continue
                tally.errors += 1
            except MsgStateError:
                tally.errors += 1  # e.g. DeliveryConflict: delivered with another seq
            else:
                if isinstance(answer, Sent):
                    tally.delivered += 1
                else:
                    tally.failed += 1
            return


def _record_sync(
    service: MessageService, claimed: MessageView, answer: Sent | SendError
) -> MessageView:
    if isinstance(answer, Sent):
        return service.record_delivery(
            claimed.msg_id,
            seq=answer.seq,
            server_time=answer.server_time,
            attempt=claimed.attempts,
        )
    return service.record_failure(
        claimed.msg_id,
        code=answer.code,
        desc=answer.desc[:1000],
        attempt=claimed.attempts,
        retry_after=answer.retry_after,
    )


class AsyncResendWorker(_Base):
    """:class:`ResendWorker` for asyncio: ``concurrency`` sends in flight at once.

    ``service`` is an :class:`~msgstate.aio.AsyncMessageService`, or a
    :class:`~msgstate.MessageService` (then wrapped in one with
    ``min(concurrency, 8)`` threads, closed by :meth:`aclose`). The store calls
    run on that thread pool; the transport's ``send`` coroutines on the loop.
    """

    def __init__(
        self,
        service: AsyncMessageService | MessageService,
        transport: AsyncTransport,
        *,
        worker_id: str,
        concurrency: int = 32,
        batch_size: int = 100,
        poll_interval: float = 1.0,
    ) -> None:
        if not inspect.iscoroutinefunction(getattr(transport, "send", None)):
            raise InvalidArgument(
                f"transport must have an async send(message) method, got {transport!r}"
            )
        self.concurrency = check.integer("concurrency", concurrency, 1, 10_000)
        super().__init__(worker_id, batch_size, poll_interval)
        self._owns_service = isinstance(service, MessageService)
        if isinstance(service, MessageService):
            service = AsyncMessageService(service, max_workers=min(concurrency, 8))
        elif not isinstance(service, AsyncMessageService):
            raise InvalidArgument(
                f"service must be an AsyncMessageService or a MessageService, "
                f"got {service!r}"
            )
        self.service = service
        self.transport = transport
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (
            f"AsyncResendWorker(worker_id={self.worker_id!r}, {self.transport!r}, "
            f"concurrency={self.concurrency})"
        )

    def stop(self) -> None:
        """Ask :meth:`run` to return after the sends in flight are recorded.

        Safe from any thread and from signal handlers.
        """
        super().stop()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(wake.set)

    async def run_once(self) -> WorkerReport:
        """One pass, as :meth:`ResendWorker.run_once`, ``concurrency`` at a time."""
        tally = _Tally()
        await self._sweep(tally)
        due = await self.service.due_resends(limit=self.batch_size)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(view: MessageView) -> None:
            async with gate:
                if not self.stopping:
                    await self._resend_one(view, tally)

        await asyncio.gather(*(one(view) for view in due))
        report = tally.report()
        self.totals += report
        return report

    async def run(
        self,
        *,
        until_idle: bool = False,
        handle_sigterm: bool = True,
        on_pass: Callable[[WorkerReport], object] | None = None,
    ) -> WorkerReport:
        """As :meth:`ResendWorker.run`; SIGTERM is handled through the loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.stopping:
            self._wake.set()
        total = WorkerReport()
        with _loop_sigterm_stops(self._loop, self.stop, enabled=handle_sigterm):
            while not self.stopping:
                try:
                    report = await self.run_once()
                except StorageError:
                    report = WorkerReport(errors=1)  # the store is away: wait
                total += report
                if on_pass is not None:
                    on_pass(report)
                if not report.busy:
                    if until_idle:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_interval)
        return total

    async def aclose(self) -> None:
        """Close the thread pool this worker made (if it wrapped a sync service)."""
        if self._owns_service:
            await self.service.aclose()

    # -- one pass --

    async def _sweep(self, tally: _Tally) -> None:
        for view in await self.service.stuck_sends(limit=self.batch_size):
            if self.stopping:
                return
            ours = await self.service.run(
                _expire, self.service.service, view, self.worker_id
            )
            tally.expired += ours

    async def _resend_one(self, view: MessageView, tally: _Tally) -> None:
        try:
            claimed = await self.service.resend(
                view.msg_id,
                request_id=self.request_id(view.attempts + 1),
                expected_attempt=view.attempts,
                actor=self.worker_id,
            )
        except (ResendRefused, ConcurrencyConflict):
            tally.skipped += 1
            return
        except StorageError:
            tally.errors += 1  # as in ResendWorker: not sent, swept if written
            return
        if not self._is_our_claim(claimed, view):
            tally.skipped += 1
            return
        tally.claimed += 1
        interrupted: BaseException | None = None
        try:
            answer = _answer_of(await self.transport.send(claimed))
        except Exception as error:
            answer = transport_failure(error)
        except BaseException as error:  # CancelledError and friends: record, then go
            answer, interrupted = transport_failure(error), error
        for tries_left in reversed(range(RECORD_TRIES)):
            try:
                await self.service.run(
                    _record_sync, self.service.service, claimed, answer
                )
            except (StorageError, ConcurrencyConflict):
                if tries_left:
                    await asyncio.sleep(0.05)
                    continue
                tally.errors += 1
            except MsgStateError:
                tally.errors += 1
            else:
                if isinstance(answer, Sent):
                    tally.delivered += 1
                else:
                    tally.failed += 1
            break
        if interrupted is not None:
            raise interrupted


def _expire(service: MessageService, view: MessageView, worker_id: str) -> bool:
    """Expire ``view``'s send; whether this call wrote the expiry."""
    try:
        with service.batch() as batch:
            batch.expire_send(view.msg_id, attempt=view.attempts, actor=worker_id)
            return batch.pending > 0
    except MsgStateError:
        return False  # not overdue after all, or another writer was first


@contextlib.contextmanager
def _sigterm_stops(stop: Callable[[], None], *, enabled: bool) -> Iterator[None]:
    """SIGTERM calls ``stop`` inside the block (main thread only)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    previous: Any = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        # None: the handler was not set from Python and cannot be put back.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


@contextlib.contextmanager
def _loop_sigterm_stops(
    loop: asyncio.AbstractEventLoop, stop: Callable[[], None], *, enabled: bool
) -> Iterator[None]:
    """SIGTERM calls ``stop`` through the loop inside the block, where supported."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, stop)
    except (NotImplementedError, RuntimeError):  # Windows, or not the main loop
        with _sigterm_stops(stop, enabled=True):
            yield
        return
    try:
        yield
    finally:
        # remove_signal_handler resets SIGTERM to SIG_DFL: put the caller's back.
        loop.remove_signal_handler(signal.SIGTERM)
        if previous is not None:  # None: not set from Python, left at SIG_DFL
            signal.signal(signal.SIGTERM, previous)
