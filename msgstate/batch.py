"""Batches: many commands decided one by one and saved in one transaction.

Delivery acknowledgements arrive in bursts; saving each in its own transaction
costs a commit per event. A :class:`Batch` decides each command at once (so a
refusal is raised where it happens, and later calls see earlier ones) and saves
every accepted change with one ``save(*aggregates)`` when the block ends.

Loading, the cache, new messages, saving and views are the service's
:class:`~msgstate.repository.MessageRepository` (``service.messages``), the same
unit of work its own commands use; the changes are :mod:`msgstate.commands`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError

from msgstate import _validate as check
from msgstate.commands import Change, Commands, create_args, creation
from msgstate.domain import Message
from msgstate.errors import (
    ConcurrencyConflict,
    InvalidArgument,
    MsgStateError,
)
from msgstate.views import MessageView

if TYPE_CHECKING:
    from msgstate.application import MessageService
    from msgstate.repository import MessageRepository

__all__ = ["Batch"]


class Batch:
    """Commands against one service, saved together (see ``MessageService.batch``).

    Use it as a context manager, once. Its methods take the same arguments as
    the service's commands and return the same views.
    """

    def __init__(
        self, service: MessageService, commands: Commands | None = None
    ) -> None:
        self._repository: MessageRepository = service.messages
        # The service's own, or the same commands made from its public policy/clock.
        self._commands = (
            Commands(service.policy, service.now) if commands is None else commands
        )
        self._messages: dict[str, Message] = {}
        self._missing: set[str] = set()  # known not to exist (from prefetch)
        self._unverified: set[str] = set()  # created without a read
        self._unread: set[str] = set()  # taken from the service's cache
        self._state = "new"

    def __enter__(self) -> Batch:
        if self._state != "new":
            raise InvalidArgument("a batch is used once; start a new one")
        self._state = "open"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = "closed"
        messages, self._messages = self._messages, {}
        if exc_type is not None:
            return  # the block failed: nothing is saved
        dirty = [m for m in messages.values() if m.pending_events]
        if not dirty:
            return
        try:
            self._repository.save(*dirty)
        except IntegrityError:
            for message in dirty:  # the next try reloads them from the store
                self._repository.forget_cached(message.msg_id)
            self._repository.learn(sorted(self._unverified))
            raise ConcurrencyConflict(
                f"another writer changed one of this batch's {len(dirty)} messages; "
                "nothing was saved, run the batch again"
            ) from None

    @property
    def changed(self) -> tuple[str, ...]:
        """The ids of the messages this batch will save (those with a change)."""
        return tuple(
            m for m, message in self._messages.items() if message.pending_events
        )

    @property
    def pending(self) -> int:
        """How many events the batch will save."""
        return sum(len(m.pending_events) for m in self._messages.values())

    def prefetch(self, msg_ids: Iterable[str]) -> None:
        """Load many messages at once (a few queries), before commands on them.

        Optional: commands load what they need one message at a time. Messages
        in the service's cache are taken from it, as a command would take them;
        the others are read with one query per 500 ids, and those found absent
        are then created without a doubt (see ``create``). Invalid ids are left
        for the commands to refuse.
        """
        self._check_open()
        wanted = []
        for msg_id in msg_ids:
            try:
                checked = check.identifier("msg_id", msg_id)
            except MsgStateError:
                continue
            if checked in self._messages or checked in self._missing:
                continue
            cached = self._repository.cached(checked)
            if cached is not None:  # as a command would take it: no read
                self._messages[checked] = cached
                self._unread.add(checked)
            else:
                wanted.append(checked)
        if not wanted:
            return
        for msg_id, message in self._repository.load_many(wanted).items():
            if message is None:
                self._missing.add(msg_id)
            else:
                self._messages[msg_id] = message

    def get(self, msg_id: str) -> MessageView:
        """The message as this batch sees it (its own unsaved changes included)."""
        checked = check.identifier("msg_id", msg_id)
        self._check_open()
        message = self._find(checked)
        if message is None:
            raise self._repository.not_found(checked)
        return self._repository.view(self._read(checked))

    # -- commands --

    def create(self, msg_id: str, **kwargs: Any) -> MessageView:
        """As :meth:`MessageService.create`, saved with the batch.

        An id neither cached nor prefetched is created without a read; if it
        exists after all, leaving the block raises :class:`ConcurrencyConflict`
        (nothing saved) and the rerun answers as :meth:`MessageService.create`.
        """
        checked_id, fields = creation(msg_id, **create_args(kwargs))
        self._check_open()
        message = self._known(checked_id)
        if message is None and checked_id not in self._missing:
            if self._repository.must_read(checked_id):
                message = self._find(checked_id)
                if message is None:
                    self._repository.refuse_archived(checked_id)
            else:
                # Not read: assumed new. If it exists after all, the save
                # fails, the batch learns it, and the caller reruns.
                self._unverified.add(checked_id)
        elif message is not None and checked_id in self._unread:
            # Creating an existing message writes nothing: answer from the store.
            message = self._fresh(checked_id)
            if message is None:
                self._repository.refuse_archived(checked_id, always=True)
        if message is None:
            message = self._repository.new(checked_id, fields)
            self._messages[checked_id] = message
            self._missing.discard(checked_id)
        else:
            self._repository.check_same(message, fields)
        return self._repository.view(message)

    def record_failure(self, msg_id: str, **kwargs: Any) -> MessageView:
        """As :meth:`MessageService.record_failure`, saved with the batch."""
        return self._apply(*self._commands.failure(msg_id, **kwargs))

    def resend(self, msg_id: str, **kwargs: Any) -> MessageView:
        """As :meth:`MessageService.resend`, saved with the batch."""
        return self._apply(*self._commands.resend(msg_id, **kwargs))

    def expire_send(
        self, msg_id: str, *, attempt: int, actor: str | None = None
    ) -> MessageView:
        """As :meth:`MessageService.expire_send`, saved with the batch."""
        return self._apply(*self._commands.expiry(msg_id, attempt=attempt, actor=actor))

    def record_delivery(
        self,
        msg_id: str,
        *,
        seq: str,
        server_time: datetime | None = None,
        attempt: int | None = None,
    ) -> MessageView:
        """As :meth:`MessageService.record_delivery`, saved with the batch."""
        return self._apply(
            *self._commands.delivery(
                msg_id, seq=seq, server_time=server_time, attempt=attempt
            )
        )

    # -- internals --

    def _check_open(self) -> None:
        if self._state != "open":
            raise InvalidArgument("use a batch inside its with-block")

    def _known(self, msg_id: str) -> Message | None:
        """The batch's message, else the cached one (no read), else ``None``."""
        message = self._messages.get(msg_id)
        if message is None:
            # A cached message needs no read: if another writer changed it since,
            # the save at the end fails its version check and nothing is saved.
            message = self._repository.cached(msg_id)
            if message is not None:
                self._messages[msg_id] = message
                self._unread.add(msg_id)
        return message

    def _fresh(self, msg_id: str) -> Message | None:
        """The message as the store holds it, if the batch took it from the cache
        and has not changed it (a stale copy's answer must not stand when
        nothing is written to check it); otherwise the batch's own."""
        message = self._messages.get(msg_id)
        if msg_id not in self._unread or message is None or message.pending_events:
            return message
        self._unread.discard(msg_id)
        self._repository.forget_cached(msg_id)  # read the store, not the cache
        message = self._repository.find(msg_id)
        if message is None:
            del self._messages[msg_id]
        else:
            self._messages[msg_id] = message
        return message

    def _read(self, msg_id: str) -> Message:
        message = self._fresh(msg_id)
        if message is None:
            raise self._repository.not_found(msg_id)
        return message

    def _find(self, msg_id: str) -> Message | None:
        message = self._known(msg_id)
        if message is None and msg_id not in self._missing:
            message = self._repository.find(msg_id)
            if message is not None:
                self._messages[msg_id] = message
        return message

    def _apply(self, msg_id: str, change: Change) -> MessageView:
        self._check_open()
        message = self._find(msg_id)
        if message is None:
            raise self._repository.not_found(msg_id)
        if msg_id not in self._unread or message.pending_events:
            change(message)  # refusals raise before any event is triggered
            return self._repository.view(message)
        # Decided on the cached copy: a change is checked when saved, but a
        # refusal or a repeat writes nothing, so those are decided again on
        # the store's message.
        try:
            change(message)
        except MsgStateError:
            message = self._read(msg_id)
            change(message)
            return self._repository.view(message)
        if not message.pending_events:
            message = self._read(msg_id)
            change(message)
        return self._repository.view(message)
