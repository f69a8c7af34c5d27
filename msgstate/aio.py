"""``AsyncMessageService``: the service's commands and queries as coroutines.

:class:`~msgstate.MessageService` blocks on its store (SQLite, PostgreSQL). An
asyncio backend must not call it from the event loop; this wrapper runs every call
on a bounded thread pool of its own and awaits the answer, so ``async def``
endpoints and the :class:`~msgstate.worker.AsyncResendWorker` can use msgstate
without stalling the loop. At most ``max_workers`` calls run at once; the others
wait their turn in the pool's queue. Answers and refusals are exactly the sync
service's (the same views, the same :class:`~msgstate.MsgStateError` subclasses).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from msgstate import _validate as check
from msgstate.application import CATCH_UP_BATCH, MessageService
from msgstate.errors import InvalidArgument, MsgStateError
from msgstate.policy import Decision, ResendPolicy
from msgstate.projections import DeadLetter
from msgstate.status import MessageStatus
from msgstate.views import HistoryEntry, MessageView

__all__ = ["AsyncMessageService"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_WORKERS = 8
"""Threads (so store calls in flight at once) per :class:`AsyncMessageService`."""


class AsyncMessageService:
    """A :class:`~msgstate.MessageService` whose methods are coroutines.

    Wrap an open service (``AsyncMessageService(service)``; the caller keeps
    closing it) or open one (``await``-free :meth:`open`, which closes it with
    :meth:`aclose`). Use ``async with`` to shut the thread pool down.
    """

    def __init__(
        self,
        service: MessageService,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        owns_service: bool = False,
    ) -> None:
        if not isinstance(service, MessageService):
            raise InvalidArgument(f"service must be a MessageService, got {service!r}")
        check.integer("max_workers", max_workers, 1, 1_024)
        self._service = service
        self._owns_service = owns_service
        self._max_workers = max_workers
        self._pool = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="msgstate-aio"
        )

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        max_workers: int = DEFAULT_MAX_WORKERS,
        **options: Any,
    ) -> AsyncMessageService:
        """Open a service as :meth:`MessageService.open` does (same ``options``);
        :meth:`aclose` closes it."""
        return cls(
            MessageService.open(url, **options),
            max_workers=max_workers,
            owns_service=True,
        )

    def __repr__(self) -> str:
        return (
            f"AsyncMessageService({self._service!r}, max_workers={self._max_workers})"
        )

    @property
    def service(self) -> MessageService:
        """The wrapped sync service (its non-blocking properties are safe to use)."""
        return self._service

    @property
    def policy(self) -> ResendPolicy:
        """The service's resend policy."""
        return self._service.policy

    @property
    def max_workers(self) -> int:
        """How many calls run at once, at most."""
        return self._max_workers

    async def run(
        self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run any blocking ``function(*args, **kwargs)`` on this pool; await it.

        For sync helpers built on the service (a facade such as
        :class:`~msgstate.tencent.V2TIMMessageManager`, a batch).
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, functools.partial(function, *args, **kwargs)
        )

    # -- commands --

    async def create(
        self,
        msg_id: str,
        *,
        sender: str,
        user_id: str | None = None,
        group_id: str | None = None,
        elem_type: int = 1,
        priority: int = 0,
        online_user_only: bool = False,
        need_read_receipt: bool = False,
        cloud_custom_data: str = "",
        content: Mapping[str, Any] | None = None,
    ) -> MessageView:
        """As :meth:`MessageService.create`."""
        return await self.run(
            self._service.create,
            msg_id,
            sender=sender,
            user_id=user_id,
            group_id=group_id,
            elem_type=elem_type,
            priority=priority,
            online_user_only=online_user_only,
            need_read_receipt=need_read_receipt,
            cloud_custom_data=cloud_custom_data,
            content=content,
        )

    async def record_failure(
        self,
        msg_id: str,
        *,
        code: int,
        desc: str = "",
        attempt: int | None = None,
        retry_after: float | None = None,
    ) -> MessageView:
        """As :meth:`MessageService.record_failure`."""
        return await self.run(
            self._service.record_failure,
            msg_id,
            code=code,
            desc=desc,
            attempt=attempt,
            retry_after=retry_after,
        )

    async def resend(
        self,
        msg_id: str,
        *,
        request_id: str | None = None,
        online_user_only: bool | None = None,
        actor: str | None = None,
        expected_attempt: int | None = None,
    ) -> MessageView:
        """As :meth:`MessageService.resend`."""
        return await self.run(
            self._service.resend,
            msg_id,
            request_id=request_id,
            online_user_only=online_user_only,
            actor=actor,
            expected_attempt=expected_attempt,
        )

    async def record_delivery(
        self,
        msg_id: str,
        *,
        seq: str,
        server_time: datetime | None = None,
        attempt: int | None = None,
    ) -> MessageView:
        """As :meth:`MessageService.record_delivery`."""
        return await self.run(
            self._service.record_delivery,
            msg_id,
            seq=seq,
            server_time=server_time,
            attempt=attempt,
        )

    async def expire_send(
        self, msg_id: str, *, attempt: int, actor: str | None = None
    ) -> MessageView:
        """As :meth:`MessageService.expire_send`."""
        return await self.run(
            self._service.expire_send, msg_id, attempt=attempt, actor=actor
        )

    async def record_deliveries(
        self, items: Iterable[Mapping[str, Any]]
    ) -> list[MessageView | MsgStateError]:
        """As :meth:`MessageService.record_deliveries` (one transaction)."""
        return await self.run(self._service.record_deliveries, list(items))

    async def record_failures(
        self, items: Iterable[Mapping[str, Any]]
    ) -> list[MessageView | MsgStateError]:
        """As :meth:`MessageService.record_failures` (one transaction)."""
        return await self.run(self._service.record_failures, list(items))

    # -- queries --

    async def get(self, msg_id: str) -> MessageView:
        """As :meth:`MessageService.get`."""
        return await self.run(self._service.get, msg_id)

    async def check_resend(self, msg_id: str) -> Decision:
        """As :meth:`MessageService.check_resend`."""
        return await self.run(self._service.check_resend, msg_id)

    async def history(self, msg_id: str) -> list[HistoryEntry]:
        """As :meth:`MessageService.history`."""
        return await self.run(self._service.history, msg_id)

    async def get_at(
        self,
        msg_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> MessageView:
        """As :meth:`MessageService.get_at`."""
        return await self.run(self._service.get_at, msg_id, version=version, at=at)

    async def due_resends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        """As :meth:`MessageService.due_resends`."""
        return await self.run(self._service.due_resends, now, limit)

    async def stuck_sends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        """As :meth:`MessageService.stuck_sends`."""
        return await self.run(self._service.stuck_sends, now, limit)

    async def dead_letters(
        self,
        now: datetime | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[DeadLetter]:
        """As :meth:`MessageService.dead_letters`."""
        return await self.run(self._service.dead_letters, now, limit, after)

    async def status_counts(self) -> dict[MessageStatus, int]:
        """As :meth:`MessageService.status_counts`."""
        return await self.run(self._service.status_counts)

    async def counts_by_error_code(self) -> dict[int, int]:
        """As :meth:`MessageService.counts_by_error_code`."""
        return await self.run(self._service.counts_by_error_code)

    async def catch_up_projections(self, *, batch: int = CATCH_UP_BATCH) -> int:
        """As :meth:`MessageService.catch_up_projections`."""
        return await self.run(self._service.catch_up_projections, batch=batch)

    async def wait_for_projections(self, timeout: float = 10.0) -> None:
        """As :meth:`MessageService.wait_for_projections`."""
        await self.run(self._service.wait_for_projections, timeout)

    # -- lifetime --

    async def aclose(self) -> None:
        """Wait for calls in flight, stop the pool, and close the service if this
        object opened it (:meth:`open`)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.close)

    def close(self) -> None:
        """The blocking form of :meth:`aclose` (for code outside the loop)."""
        self._pool.shutdown(wait=True)
        if self._owns_service:
            self._service.close()

    async def __aenter__(self) -> AsyncMessageService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
