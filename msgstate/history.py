"""History queries: what a message's stream recorded, and what it was then.

``MessageService.history``, ``get_at`` and ``export_history`` (and the replay
behind ``simulate_policy``) read the event streams, never the read models; their
bodies live here. Sealed personal fields are opened as in views (or shown as the
``FORGOTTEN`` markers).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from attrs import evolve
from eventsourcing.application import AggregateNotFoundError

from msgstate import _validate as check
from msgstate.domain import Message
from msgstate.errors import InvalidArgument, MessageNotFound
from msgstate.keys import forgotten_fields
from msgstate.repository import MessageRepository, project
from msgstate.views import HistoryEntry, MessageView

if TYPE_CHECKING:
    from msgstate.application import MessageService

__all__ = ["History", "history_entry"]

_EVENT_BASE_FIELDS = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic", "at"}
)


class History:
    """The history queries of one service (made by it; see its methods).

    ``page`` notifications are read per query when walking the whole log.
    """

    def __init__(
        self, service: MessageService, messages: MessageRepository, *, page: int
    ) -> None:
        self._service = service
        self._messages = messages
        self._page = page

    def history(self, msg_id: str) -> list[HistoryEntry]:
        """See :meth:`MessageService.history`."""
        msg_id = check.identifier("msg_id", msg_id)
        events = self.events(msg_id)
        if not events:
            raise self._messages.not_found(msg_id)
        return [self.entry(e) for e in events]

    def get_at(
        self,
        msg_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> MessageView:
        """See :meth:`MessageService.get_at`."""
        messages = self._messages
        msg_id = check.identifier("msg_id", msg_id)
        if version is not None and at is not None:
            raise InvalidArgument("give version or at, not both")
        if version is None and at is None:
            return messages.view(messages.load(msg_id))
        if version is not None:
            check.integer("version", version, 1, 2**63 - 1)
            # The repository starts from the latest snapshot at or before it.
            try:
                with messages.storage_errors():
                    message: Message = self._service.repository.get(
                        messages.stream_id(msg_id),
                        version=version,
                        projector_func=project,
                    )
            except AggregateNotFoundError:
                raise messages.not_found(msg_id) from None
            if message.version < version:  # the stream is shorter than asked
                raise InvalidArgument(
                    f"message {msg_id!r} has {message.version} versions; "
                    f"version {version} does not exist yet"
                )
            return messages.view(message)
        moment = check.aware_datetime("at", at)
        events = self.events(msg_id)
        if not events:
            raise messages.not_found(msg_id)
        prefix = []
        for e in events:
            if e.at > moment:
                break
            prefix.append(e)
        if not prefix:
            raise MessageNotFound(
                f"message {msg_id!r} did not exist yet at {moment.isoformat()}"
            )
        message = prefix[0].mutate(None)
        for e in prefix[1:]:
            message = e.mutate(message)
        return messages.view(message)

    def export(
        self, msg_ids: Iterable[str] | None = None, since: datetime | None = None
    ) -> Iterator[str]:
        """See :meth:`MessageService.export_history` (checks its arguments lazily,
        at the first line, as a generator does)."""
        wanted = (
            None
            if msg_ids is None
            else {
                self._messages.stream_id(m)
                for m in check.identifiers("msg_ids", msg_ids)
            }
        )
        moment = None if since is None else check.aware_datetime("since", since)
        names: dict[UUID, str] = {}
        for event in self.all_events():
            if isinstance(event, Message.Created):
                names[event.originator_id] = event.msg_id
            if wanted is not None and event.originator_id not in wanted:
                continue
            if moment is not None and event.at < moment:
                continue
            entry = self.entry(event)
            line = {
                "msg_id": names.get(event.originator_id),
                "version": entry.version,
                "event": entry.event,
                "recorded_at": entry.recorded_at.isoformat(),
                "data": entry.data,
            }
            yield json.dumps(line, default=_json_default, ensure_ascii=False) + "\n"

    def events(self, msg_id: str) -> list[Any]:
        """Every domain event of the checked ``msg_id``'s stream, oldest first."""
        with self._messages.storage_errors():
            return list(self._service.events.get(self._messages.stream_id(msg_id)))

    def all_events(self) -> Iterator[Any]:
        """Every domain event in the store, in notification order (paged)."""
        service = self._service
        start = 1
        while True:
            with self._messages.storage_errors():
                page = service.recorder.select_notifications(
                    start=start, limit=self._page
                )
                events = [service.mapper.to_domain_event(n) for n in page]
            yield from events
            if len(page) < self._page:
                return
            start = page[-1].id + 1

    def entry(self, event: Any) -> HistoryEntry:
        """A history entry; a sealed creation shown as ``Created``, fields opened."""
        entry = history_entry(event)
        if not isinstance(event, Message.CreatedSealed):
            return entry
        data = {k: v for k, v in entry.data.items() if k != "sealed"}
        personal = self._messages.personal(event.originator_id, event.sealed)
        if personal is None:
            data.update(forgotten_fields(data))
        else:
            data.update(personal, content=json.loads(personal["content"]))
        return evolve(entry, event="Created", data=data)


def history_entry(e: Any) -> HistoryEntry:
    """The :class:`HistoryEntry` of one stored event, as recorded (nothing opened)."""
    data = {k: v for k, v in vars(e).items() if k not in _EVENT_BASE_FIELDS}
    if isinstance(e, Message.Created):
        data["content"] = json.loads(data["content"])
    return HistoryEntry(
        version=e.originator_version,
        event=type(e).__name__,
        recorded_at=e.at,
        attempt=data.get("attempt", 1),
        data=data,
    )


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON-able")
