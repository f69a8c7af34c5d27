"""One resend worker OS process, for the process tests (tests/test_worker_processes.py).

``python -m tests.worker_proc URL LOG WORKER_ID [--latency S] [--hang-first]
[--concurrency N] [--send-timeout S]`` runs a :class:`~msgstate.ResendWorker`
(or, with ``--concurrency`` > 1, an :class:`~msgstate.AsyncResendWorker`) over a
flaky transport that appends ``msg_id attempt worker_id`` to LOG (one ``write``
of the whole line, before it answers) for every send it is asked to make. It
stops when every message is delivered or dead and nothing is SENDING (or on
SIGTERM), then prints its report as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import timedelta

from msgstate import (
    AsyncResendWorker,
    MessageService,
    MessageStatus,
    MessageView,
    ResendPolicy,
    ResendWorker,
    WorkerReport,
)
from msgstate.transports import SendError, Sent, SimulatedTransport


def policy(send_timeout: float) -> ResendPolicy:
    return ResendPolicy(
        max_attempts=4,
        initial_interval=timedelta(milliseconds=1),
        maximum_interval=timedelta(milliseconds=10),
        send_timeout=timedelta(seconds=send_timeout),
    )


class LoggingTransport:
    """SimulatedTransport answers (without retry_after), each send logged first."""

    def __init__(self, log: str, worker_id: str, latency: float, hang_first: bool):
        self.fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.worker_id = worker_id
        self.latency = latency
        self.hang = hang_first
        self.simulated = SimulatedTransport(seed=7, failure_rate=0.4)

    def _log(self, message: MessageView) -> None:
        line = f"{message.msg_id} {message.attempts} {self.worker_id}\n"
        os.write(self.fd, line.encode())

    def _answer(self, message: MessageView) -> Sent | SendError:
        answer = self.simulated.outcome(message.msg_id, message.attempts)
        if isinstance(answer, SendError):
            return SendError(code=answer.code, desc=answer.desc)
        return answer

    def send(self, message: MessageView) -> Sent | SendError:
        self._log(message)
        if self.hang:
            time.sleep(3600)  # killed here, mid-send
        time.sleep(self.latency)
        return self._answer(message)

    def as_async(self) -> AsyncLogging:
        return AsyncLogging(self)


class AsyncLogging:
    def __init__(self, inner: LoggingTransport) -> None:
        self.inner = inner

    async def send(self, message: MessageView) -> Sent | SendError:
        self.inner._log(message)
        await asyncio.sleep(self.inner.latency)
        return self.inner._answer(message)


def settled(service: MessageService) -> bool:
    counts = service.status_counts()
    if counts[MessageStatus.SENDING]:
        return False
    failed = counts[MessageStatus.SEND_FAIL]
    return failed == len(service.dead_letters(limit=max(failed, 1)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("log")
    parser.add_argument("worker_id")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--hang-first", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--send-timeout", type=float, default=1.0)
    args = parser.parse_args()
    service = MessageService.open(
        args.url, policy=policy(args.send_timeout), create_tables=False
    )
    transport = LoggingTransport(
        args.log, args.worker_id, args.latency, args.hang_first
    )

    def stop_when_settled(worker: ResendWorker | AsyncResendWorker) -> None:
        if settled(service):
            worker.stop()

    report: WorkerReport
    if args.concurrency == 1:
        worker = ResendWorker(
            service,
            transport,
            worker_id=args.worker_id,
            batch_size=20,
            poll_interval=0.05,
        )
        report = worker.run(on_pass=lambda _: stop_when_settled(worker))
    else:
        aworker = AsyncResendWorker(
            service,
            transport.as_async(),
            worker_id=args.worker_id,
            concurrency=args.concurrency,
            batch_size=20,
            poll_interval=0.05,
        )

        async def drive() -> WorkerReport:
            try:
                return await aworker.run(on_pass=lambda _: stop_when_settled(aworker))
            finally:
                await aworker.aclose()

        report = asyncio.run(drive())
    service.close()
    print(json.dumps(report.to_dict()), flush=True)


if __name__ == "__main__":
    main()
