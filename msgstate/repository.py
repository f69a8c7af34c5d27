"""``MessageRepository``: how commands load, make and save messages.

The one collaborator :class:`~msgstate.MessageService` and :class:`~msgstate.Batch`
share for their unit of work (after cosmicpython's repository): take a message
from the cache without a read, or load one or many from the store; make a new
one (its personal fields sealed in a forgettable store); save many in one
transaction and keep copies in the cache; after a batch's lost save, learn which
ids exist. It also answers what every caller asks of a loaded message: its view
(sealed fields opened) and, for an absent id, whether it was archived.

It wraps eventsourcing's ``service.repository`` (and its aggregate cache) and
saves with ``service.save``; infrastructure errors come out as
:class:`~msgstate.StorageError` (a lost race stays ``IntegrityError``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from attrs import evolve
from eventsourcing.application import AggregateNotFoundError

from msgstate.commands import check_same_creation
from msgstate.domain import Message
from msgstate.errors import DuplicateMessage, MessageArchived, MessageNotFound
from msgstate.keys import (
    PERSONAL_FIELDS,
    UUID5,
    KeyStore,
    StreamIds,
    forgotten_fields,
    placeholders,
    seal,
    unseal,
)
from msgstate.policy import ResendPolicy
from msgstate.storage import select_streams
from msgstate.views import MessageView, view_of

if TYPE_CHECKING:
    from msgstate.application import MessageService

__all__ = ["READ_FIRST_SIZE", "MessageRepository", "project"]

READ_FIRST_SIZE = 10_000
"""Ids a service remembers to read before a batch creates them (see ``learn``)."""

StorageErrors = Callable[[], contextlib.AbstractContextManager[None]]
"""Makes the context that turns a store's own errors into ``StorageError``."""


def project(message: Message | None, events: Iterable[Any]) -> Message | None:
    """eventsourcing's projector, minus its per-event runtime protocol check."""
    for event in events:
        message = event.mutate(message)
    return message


class MessageRepository:
    """The messages of one service's store, as its commands and batches use them.

    Made by :class:`~msgstate.MessageService` (``service.messages``); not meant to
    be made by hand. Safe to share between threads as the service is.
    """

    def __init__(
        self,
        service: MessageService,
        *,
        stream_ids: StreamIds,
        keys: KeyStore | None,
        policy: ResendPolicy,
        storage_errors: StorageErrors,
        read_first_size: int = READ_FIRST_SIZE,
    ) -> None:
        self._service = service
        self._stream_ids = stream_ids
        self._keys = keys
        self._policy = policy
        self._storage_errors = storage_errors
        self._read_first_size = read_first_size
        # Ids a batch reads before creating (see learn); oldest dropped first.
        self._read_first: dict[str, None] = {}
        self._read_first_lock = threading.Lock()  # services are shared by threads

    def storage_errors(self) -> contextlib.AbstractContextManager[None]:
        """A context that turns the store's own errors into ``StorageError``."""
        return self._storage_errors()

    def stream_id(self, msg_id: str) -> UUID:
        """The stream id of a checked ``msg_id`` in this store."""
        return self._stream_ids(msg_id)

    # -- loading --

    def cached(self, msg_id: str) -> Message | None:
        """A copy of the cached ``msg_id`` as this process last saw it (no read)."""
        cache = self._service.repository.cache
        if cache is None:
            return None
        try:
            message: Message = cache.get(self._stream_ids(msg_id))  # type: ignore[assignment]
        except KeyError:
            return None
        return message._copy()

    def find(self, msg_id: str) -> Message | None:
        """The message (the cache fast-forwarded, else the store), or ``None``."""
        try:
            return self._get(msg_id)
        except AggregateNotFoundError:
            return None

    def load(self, msg_id: str) -> Message:
        """As :meth:`find`; an absent id raises :meth:`not_found`'s error."""
        try:
            return self._get(msg_id)
        except AggregateNotFoundError:
            raise self.not_found(msg_id) from None

    def _get(self, msg_id: str) -> Message:
        with self._storage_errors():
            message: Message = self._service.repository.get(
                self._stream_ids(msg_id), projector_func=project
            )
        return message

    def load_many(self, msg_ids: Sequence[str]) -> dict[str, Message | None]:
        """Many messages by id (``None`` where not created yet); see load_streams."""
        ids = {self._stream_ids(msg_id): msg_id for msg_id in msg_ids}
        found = self.load_streams(list(ids))
        return {msg_id: found.get(aid) for aid, msg_id in ids.items()}

    def load_streams(self, ids: Sequence[UUID]) -> dict[UUID, Message]:
        """The messages of these streams, with a few queries (absent if none).

        Reads the streams directly when the store allows it and no snapshots
        are kept; otherwise stream by stream through the repository.
        """
        service = self._service
        with self._storage_errors():
            streams = (
                None if service.snapshots else select_streams(service.recorder, ids)
            )
            found: dict[UUID, Message] = {}
            if streams is not None:
                for aid, stored in streams.items():
                    message = project(None, map(service.mapper.to_domain_event, stored))
                    if message is not None:
                        found[aid] = message
                return found
            for aid in ids:
                try:
                    found[aid] = service.repository.get(aid, projector_func=project)
                except AggregateNotFoundError:
                    continue
            return found

    def not_found(self, msg_id: str) -> MessageNotFound:
        """:class:`MessageArchived` if ``msg_id`` was archived, else not found."""
        from msgstate.archive import archived_file

        with self._storage_errors():
            file = archived_file(self._service, self._stream_ids(msg_id))
        if file is None:
            return MessageNotFound(f"message {msg_id!r} not found")
        return MessageArchived(
            f"message {msg_id!r} was archived to {file!r}; restore that archive "
            "to read or change it (its id is never reused)",
            archive_file=file,
        )

    def forget_cached(self, msg_id: str) -> None:
        """Drop ``msg_id`` from the cache, so its next load reads the store."""
        cache = self._service.repository.cache
        if cache is not None:
            with contextlib.suppress(KeyError):
                cache.get(self._stream_ids(msg_id), evict=True)

    # -- saving --

    def save(self, *messages: Message) -> None:
        """Save ``messages`` in one transaction, then keep them in the cache.

        eventsourcing leaves a fast-forwarding cache alone at save; the messages
        just saved are the newest this process knows, so the next command (or
        batch) on them starts from memory. The cache gets copies: other threads
        fast-forward cached messages in place, and the caller keeps its own.
        A lost race raises ``IntegrityError`` (nothing saved, nothing cached).
        """
        with self._storage_errors():
            self._service.save(*messages)
        cache = self._service.repository.cache
        if cache is not None:
            for message in messages:
                cache.put(message.id, message._copy())

    # -- creating without a read (batches) --

    def must_read(self, msg_id: str) -> bool:
        """Whether a batch must read ``msg_id`` before creating it (see learn)."""
        return self._service.repository.cache is None or msg_id in self._read_first

    def learn(self, msg_ids: Sequence[str]) -> None:
        """After a batch that created ``msg_ids`` without reading them lost its
        save: cache those that exist, so the rerun decides on them; those still
        absent (archived, or not made after all) are read before their next
        creation in a batch, so an archived id is refused, not retried forever."""
        if not msg_ids:
            return
        found = self.load_many(msg_ids)
        cache = self._service.repository.cache
        for msg_id, message in found.items():
            if message is not None:
                if cache is not None:  # a batch reads anyway without a cache
                    cache.put(message.id, message)
                continue
            with self._read_first_lock:
                self._read_first[msg_id] = None
                while len(self._read_first) > self._read_first_size:
                    del self._read_first[next(iter(self._read_first))]

    @property
    def read_first(self) -> tuple[str, ...]:
        """The ids batches read before creating, oldest first (see learn)."""
        with self._read_first_lock:
            return tuple(self._read_first)

    def refuse_archived(self, msg_id: str, *, always: bool = False) -> None:
        """Raise :class:`MessageArchived` if ``msg_id`` (not in the store) was
        archived; otherwise it is new, and batches need no longer read it first.
        Asks the store only for ids a batch learnt to read first, or ``always``."""
        if msg_id not in self._read_first and not always:
            return
        missing = self.not_found(msg_id)
        if isinstance(missing, MessageArchived):
            raise missing
        with self._read_first_lock:
            self._read_first.pop(msg_id, None)

    # -- personal fields (sealed in a forgettable store) --

    def new(self, msg_id: str, fields: Mapping[str, Any]) -> Message:
        """A new Message for checked ``create`` fields, sealed if forgettable."""
        at = self._service.now()
        if self._keys is None and self._stream_ids.scheme == UUID5:
            return Message(msg_id=msg_id, at=at, **fields)
        stream_id = self._stream_ids(msg_id)
        if self._keys is None:
            return Message.create_keyed(stream_id, msg_id, at, **fields)
        with self._storage_errors():
            key = self._keys.issue(stream_id)
        if key is None:
            raise DuplicateMessage(
                f"message {msg_id!r} was forgotten; its id can't be created again"
            )
        personal = {name: fields[name] for name in PERSONAL_FIELDS}
        return Message.create_sealed(
            stream_id,
            msg_id,
            at,
            seal(key, stream_id, personal),
            **{**fields, **placeholders(personal)},
        )

    def check_same(self, message: Message, fields: Mapping[str, Any]) -> None:
        """As ``check_same_creation``, comparing sealed fields once unsealed."""
        if message.sealed is None and message.forgotten_at is None:
            check_same_creation(message, fields)
            return
        personal = self.personal(message.id, message.sealed)
        if personal is None:
            raise DuplicateMessage(
                f"message {message.msg_id!r} was forgotten; "
                "its id can't be created again"
            )
        others = {k: v for k, v in fields.items() if k not in PERSONAL_FIELDS}
        if not (
            message.same_creation(**others)
            and personal == {name: fields[name] for name in PERSONAL_FIELDS}
        ):
            raise DuplicateMessage(
                f"message {message.msg_id!r} exists with different fields"
            )

    def personal(self, stream_id: UUID, sealed: str | None) -> dict[str, Any] | None:
        """The sealed personal fields, or ``None`` if the key is gone (forgotten)."""
        if sealed is None or self._keys is None:
            return None
        with self._storage_errors():
            key = self._keys.get(stream_id)
        return None if key is None else unseal(key, stream_id, sealed)

    def view(self, message: Message) -> MessageView:
        """The view of ``message``, its sealed fields opened (or marked forgotten)."""
        view = view_of(message, self._policy)
        if message.sealed is None and message.forgotten_at is None:
            return view
        personal = self.personal(message.id, message.sealed)  # None once forgotten
        if personal is None:
            shown = forgotten_fields(
                {"user_id": view.user_id, "group_id": view.group_id}
            )
            return evolve(view, forgotten=True, **shown)
        return evolve(view, **{**personal, "content": json.loads(personal["content"])})
