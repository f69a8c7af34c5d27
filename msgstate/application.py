"""``MessageService``: opens a store and runs commands against it.

Commands load a :class:`~msgstate.Message`, let it decide, and save the one event
it emits; a save that loses an optimistic-concurrency race is reloaded and decided
again. Storage is chosen by one URL. The service is a facade over its parts:

- :mod:`msgstate.commands`: each command's argument checks and change;
- :mod:`msgstate.repository`: loading (and the cache), new messages, saving,
  views; shared with :mod:`msgstate.batch`;
- :mod:`msgstate.history`: ``history``, ``get_at``, ``export_history``;
- :mod:`msgstate.readmodels`: due resends, stuck sends, dead letters, counts,
  and the projections' upkeep.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    Transcoder,
)
from eventsourcing.utils import Environment, strtobool

from msgstate import _validate as check
from msgstate._schema import ensure_tables
from msgstate.batch import Batch
from msgstate.commands import Change, Commands, creation
from msgstate.domain import Message
from msgstate.errors import (
    ConcurrencyConflict,
    InvalidArgument,
    MsgStateError,
    NotForgettable,
)
from msgstate.history import History
from msgstate.keys import (
    HMAC_SHA256,
    UUID5,
    KeyStore,
    StreamIds,
    key_store_beside,
    open_key_store,
    read_settings,
    record_setting,
    require_cryptography,
)
from msgstate.policy import Decision, ResendPolicy
from msgstate.projections import DeadLetter, MessageViews, views_class_for
from msgstate.readmodels import CATCH_UP_BATCH as CATCH_UP_BATCH
from msgstate.readmodels import REBUILD_BATCH as REBUILD_BATCH
from msgstate.readmodels import ReadModels
from msgstate.repository import READ_FIRST_SIZE as READ_FIRST_SIZE
from msgstate.repository import MessageRepository
from msgstate.status import MessageStatus
from msgstate.storage import (
    DATABASE_URL_ENV,
    service_env,
    storage_errors,
    store_name,
)
from msgstate.views import HistoryEntry, MessageView
from msgstate.whatif import WhatIfReport, simulate

if TYPE_CHECKING:
    from eventsourcing.persistence import ApplicationRecorder

    from msgstate.archive import ArchiveReport, Progress, RestoreReport
    from msgstate.shards import ShardMap

__all__ = ["DATABASE_URL_ENV", "MessageService", "setup_schema"]

# READ_FIRST_SIZE (msgstate.repository), CATCH_UP_BATCH and REBUILD_BATCH
# (msgstate.readmodels) are defined beside their users and importable from here
# as before; a service reads READ_FIRST_SIZE from this module when it is made.

DEFAULT_CACHE_SIZE = 10_000
"""Messages kept in memory between commands by default."""

CONFLICT_RETRIES = 3
"""How many times a command that lost a race is reloaded and decided again."""

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def setup_schema(url: str | ShardMap) -> None:
    """Create msgstate's schema and tables at ``url`` (idempotent).

    ``url`` may be a :class:`~msgstate.ShardMap` (or ``shards:///path``): every
    database of the map gets its tables, its shard records and its fence.

    Not needed before workers start: any number of processes may open a store at
    once (the DDL runs once, under a lock). Use it where the workers' database role
    may not create tables and opens with ``create_tables=False``.
    """
    MessageService.open(url, create_tables=True).close()


class MessageService(Application[UUID]):
    """Records what a transport reports about messages and decides resends.

    Open one with :meth:`open`. Every command validates its arguments, loads the
    message, lets it decide, and saves at most one event; every refusal is a
    :class:`~msgstate.MsgStateError` and writes nothing.
    """

    name = "msgstate"
    env: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # eventsourcing names tables after the class; a subclass must still use
        # the same tables (msgstate_events, ...) as MessageService itself.
        named = "name" in cls.__dict__
        super().__init_subclass__(**kwargs)
        if not named:
            cls.name = MessageService.name

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        policy: ResendPolicy | None = None,
        clock: Clock | None = None,
        snapshot_every: int | None = None,
        catch_up: bool = True,
        cache_size: int = DEFAULT_CACHE_SIZE,
        forgettable: bool | None = None,
        key_store: str | None = None,
    ) -> None:
        if policy is not None and not isinstance(policy, ResendPolicy):
            raise InvalidArgument(f"policy must be a ResendPolicy, got {policy!r}")
        if clock is not None and not callable(clock):
            raise InvalidArgument(f"clock must be callable, got {clock!r}")
        self._policy = ResendPolicy() if policy is None else policy
        self._clock: Clock = _utc_now if clock is None else clock
        settings = dict(env or {"PERSISTENCE_MODULE": "eventsourcing.popo"})
        if snapshot_every is not None:
            check.integer("snapshot_every", snapshot_every, 2, 1_000_000)
            settings["IS_SNAPSHOTTING_ENABLED"] = "y"
            # Per service, not per class: eventsourcing declares it a ClassVar.
            setattr(self, "snapshotting_intervals", {Message: snapshot_every})  # noqa: B010
        check.integer("cache_size", cache_size, 0, 10_000_000)
        if cache_size:
            # Cached aggregates are fast-forwarded from the store before each
            # command (so other processes' writes are seen) and copied for it.
            settings["AGGREGATE_CACHE_MAXSIZE"] = str(cache_size)
            settings["AGGREGATE_CACHE_FASTFORWARD"] = "y"
        self._where = store_name(settings)
        self._secret = settings.get("POSTGRES_PASSWORD", "")
        self._encrypted = "CIPHER_KEY" in settings
        # eventsourcing would run every CREATE at every open, racing other
        # processes; msgstate runs them once, serialised (see msgstate._schema).
        create_tables = strtobool(settings.get("CREATE_TABLE") or "yes")
        settings["CREATE_TABLE"] = "n"
        if forgettable is not None:
            check.flag("forgettable", forgettable)
        if key_store is not None and not isinstance(key_store, str):
            raise InvalidArgument(f"key_store must be a URL (str), got {key_store!r}")
        if key_store is not None or forgettable:
            require_cryptography()
        self._keys: KeyStore | None = None
        with self._storage_errors():
            super().__init__(env=settings)
            self._views = self._construct_views()
            if create_tables:
                ensure_tables(self._table_recorders())
            self._check_readable()
            self._stream_ids = self._open_stream_ids(settings.get("CIPHER_KEY"))
            self._keys = self._open_key_store(forgettable, key_store)
        self._commands = Commands(self._policy, self.now)
        self._messages = MessageRepository(
            self,
            stream_ids=self._stream_ids,
            keys=self._keys,
            policy=self._policy,
            storage_errors=self._storage_errors,
            read_first_size=READ_FIRST_SIZE,
        )
        self._history = History(self, self._messages, page=CATCH_UP_BATCH)
        self._read_models = ReadModels(
            self, self._views, self._messages, policy=self._policy, catch_up=catch_up
        )

    @classmethod
    def open(
        cls,
        url: str | ShardMap | None = None,
        *,
        policy: ResendPolicy | None = None,
        clock: Clock | None = None,
        create_tables: bool = True,
        snapshot_every: int | None = None,
        cipher_key: str | None = None,
        compress: bool = False,
        projections: str = "catch_up",
        cache_size: int = DEFAULT_CACHE_SIZE,
        forgettable: bool | None = None,
        key_store: str | None = None,
    ) -> MessageService:
        """Open the store at ``url`` (else ``$MSGSTATE_DATABASE_URL``, else memory).

        ``clock`` returns aware datetimes (converted to UTC); it is the only source
        of domain time, so tests and replays can control it. The tables are created
        once, under a lock, when missing or out of date (many processes may open a
        store at once; an existing store's open runs no DDL); ``create_tables=False``
        never touches the schema and expects :func:`setup_schema` to have run.
        ``snapshot_every=N`` stores a snapshot every N events, so long histories
        load in bounded time. ``cipher_key`` (from :func:`generate_cipher_key`)
        encrypts every event and snapshot with AES-GCM; ``compress`` zlib-compresses
        them (before encryption). A store must always be opened with the same
        ``cipher_key`` and ``compress``. ``projections="catch_up"`` (the default)
        brings the read models up to date before each read-model query;
        ``"external"`` leaves that to a separate projection process (see
        :func:`msgstate.projections.run_projections`) and
        :meth:`wait_for_projections`. ``cache_size`` messages are kept in memory
        between commands (0 turns the cache off); each is brought up to date
        from the store before use, so several processes may share a store.
        ``forgettable=True`` (or a ``key_store`` URL) seals each new message's
        personal fields with a data key of its own, so :meth:`forget` can destroy
        them; a store once opened so stays forgettable (``None``, the default,
        follows what the store records). ``key_store`` keeps the data keys in
        another SQLite file or PostgreSQL database/schema (default: beside the
        events); see docs/privacy.md. A new store opened with a ``cipher_key``
        names its streams with a keyed hash (:meth:`stream_id`).

        ``url`` may also be a :class:`~msgstate.ShardMap` or ``shards:///path``
        to a map file: the answer is then a
        :class:`~msgstate.ShardedMessageService` over the map's databases, with
        the same API (docs/sharding.md).
        """
        if url is None:
            url = os.environ.get(DATABASE_URL_ENV) or None
        if not isinstance(url, str | None) or (
            isinstance(url, str) and url.startswith("shards:")
        ):
            from msgstate.shards import ShardedMessageService

            return ShardedMessageService(
                url,  # a ShardMap, or a checked error
                policy=policy,
                clock=clock,
                create_tables=create_tables,
                snapshot_every=snapshot_every,
                cipher_key=cipher_key,
                compress=compress,
                projections=projections,
                cache_size=cache_size,
                forgettable=forgettable,
                key_store=key_store,
            )
        env = service_env(
            url, create_tables=create_tables, cipher_key=cipher_key, compress=compress
        )
        if projections not in ("catch_up", "external"):
            raise InvalidArgument(
                f"projections must be 'catch_up' or 'external', got {projections!r}"
            )
        return cls(
            env,
            policy=policy,
            clock=clock,
            snapshot_every=snapshot_every,
            catch_up=projections == "catch_up",
            cache_size=cache_size,
            forgettable=forgettable,
            key_store=key_store,
        )

    def construct_transcoder(self) -> Transcoder:
        """orjson when installed (same stored format), else eventsourcing's JSON."""
        try:
            from msgstate._transcoder import OrjsonTranscoder
        except ImportError:
            return super().construct_transcoder()
        transcoder = OrjsonTranscoder()
        self.register_transcodings(transcoder)
        return transcoder

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        """eventsourcing's factory; on PostgreSQL, one that fails fast and recovers.

        See :mod:`msgstate._pg_store`: bounded retries while the server is down,
        broken connections dropped, prompt reconnection once it is back.
        """
        if env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
            from msgstate._pg_store import PostgresStoreFactory

            return PostgresStoreFactory(env)
        return super().construct_factory(env)

    def construct_recorder(self) -> ApplicationRecorder:
        """The memory store gets a recorder that can delete archived streams."""
        from eventsourcing.popo import POPOFactory

        if isinstance(self.factory, POPOFactory):
            from msgstate.archive import ArchivingPOPORecorder

            return ArchivingPOPORecorder()
        return super().construct_recorder()

    def construct_env(self, name: str, env: Any = None) -> Environment:
        # The URL is authoritative: eventsourcing's own environment variables
        # (PERSISTENCE_MODULE, MSGSTATE_SQLITE_DBNAME, ...) must not redirect storage.
        return Environment(name, dict(env or {}))

    @property
    def policy(self) -> ResendPolicy:
        """The resend policy used for decisions and policy-dependent view fields."""
        return self._policy

    def now(self) -> datetime:
        """The service clock's current time, as an aware UTC datetime."""
        return check.aware_datetime("clock()", self._clock())

    @property
    def messages(self) -> MessageRepository:
        """How this service loads, makes and saves messages (its batches too).

        Internal: the unit of work :class:`~msgstate.Batch` shares with the
        service; see :mod:`msgstate.repository`.
        """
        return self._messages

    # -- commands --

    def create(
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
        """Record a new message whose first send (attempt 1) has started.

        Creating again with identical fields returns the existing message; with
        different fields raises :class:`DuplicateMessage`.
        """
        msg_id, fields = creation(
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
        messages = self._messages
        message = messages.new(msg_id, fields)
        try:
            messages.save(message)
        except IntegrityError:
            messages.forget_cached(msg_id)  # the store has the last word (archived?)
            message = self._load(msg_id)
            messages.check_same(message, fields)
        return messages.view(message)

    def record_failure(
        self,
        msg_id: str,
        *,
        code: int,
        desc: str = "",
        attempt: int | None = None,
        retry_after: float | None = None,
    ) -> MessageView:
        """Record that send ``attempt`` (default: the current one) failed.

        A report for an older attempt, a repeated report, or one after delivery
        changes nothing and returns the current view.
        """
        return self._update(
            *self._commands.failure(
                msg_id, code=code, desc=desc, attempt=attempt, retry_after=retry_after
            )
        )

    def resend(
        self,
        msg_id: str,
        *,
        request_id: str | None = None,
        online_user_only: bool | None = None,
        actor: str | None = None,
        expected_attempt: int | None = None,
    ) -> MessageView:
        """Start the next send if the policy allows it now (:class:`ResendRefused`).

        A ``request_id`` already accepted for this message returns the current view
        and writes nothing, whatever the status is now; without one, a fresh id is
        made and the call is not idempotent. ``online_user_only=None`` keeps the
        option in force. ``expected_attempt=n`` claims attempt ``n + 1`` only if
        the message is still at attempt ``n``; otherwise :class:`StaleAttempt`
        (``STALE_ATTEMPT``) and nothing is written, so a caller acting on a stale
        view can never claim an attempt it did not see fail. The returned view's
        ``request_id`` is the claim's.
        """
        return self._update(
            *self._commands.resend(
                msg_id,
                request_id=request_id,
                online_user_only=online_user_only,
                actor=actor,
                expected_attempt=expected_attempt,
            )
        )

    def expire_send(
        self, msg_id: str, *, attempt: int, actor: str | None = None
    ) -> MessageView:
        """Fail send ``attempt`` that stayed ``SENDING`` past ``policy.send_timeout``.

        Records a ``SendFailed`` with the msgstate-local code ``SEND_TIMED_OUT``
        (1015, retry class ``AMBIGUOUS``: the message may have left), so the
        policy then decides about a resend. Idempotent: an ``attempt`` that is no
        longer current, or no longer ``SENDING`` (reported, delivered or expired
        already), writes nothing and returns the current view. The current send
        still within its timeout is refused with :class:`SendNotOverdue`.
        ``actor`` (who expired it) is named in the failure's ``desc``.
        """
        return self._update(
            *self._commands.expiry(msg_id, attempt=attempt, actor=actor)
        )

    def record_delivery(
        self,
        msg_id: str,
        *,
        seq: str,
        server_time: datetime | None = None,
        attempt: int | None = None,
    ) -> MessageView:
        """Record the server's acknowledgement, possibly late (after a failure).

        Repeating it with the same ``seq`` changes nothing; another ``seq`` raises
        :class:`DeliveryConflict`.
        """
        return self._update(
            *self._commands.delivery(
                msg_id, seq=seq, server_time=server_time, attempt=attempt
            )
        )

    def forget(self, msg_id: str, *, actor: str, reason: str) -> MessageView:
        """Destroy the message's data key and record ``Forgotten`` (who, why, when).

        Afterwards every view, history and export shows the personal fields
        (:data:`msgstate.keys.PERSONAL_FIELDS`) as the ``FORGOTTEN`` markers; the
        status history stays whole. Forgetting again changes nothing. Needs a
        forgettable store and a message created in it (:class:`NotForgettable`).
        """
        msg_id = check.identifier("msg_id", msg_id)
        who = check.identifier("actor", actor)
        why = check.text(
            "reason", reason, max_chars=check.MAX_DESC_CHARS, allow_empty=False
        )
        message = self._load(msg_id)
        if message.forgotten_at is None:
            if message.sealed is None or self._keys is None:
                raise NotForgettable(
                    f"message {msg_id!r} was not created in a forgettable store "
                    "(open it with forgettable=True before creating messages); "
                    "its fields are stored as they are and cannot be forgotten"
                )
            with self._storage_errors():
                self._keys.destroy(message.id, self.now())

        def forget(message: Message) -> None:
            message.forget(actor=who, reason=why, at=self.now())

        return self._update(msg_id, forget)

    def stream_id(self, msg_id: str) -> UUID:
        """The id of ``msg_id``'s event stream in this store.

        ``uuid5(MESSAGE_NAMESPACE, msg_id)``, or in a store created with a cipher
        key, HMAC-SHA256 of ``msg_id`` under a key derived from it (as a UUID), so
        a copy of the database can't confirm a guessed ``msg_id``.
        """
        return self._stream_ids(check.identifier("msg_id", msg_id))

    @property
    def stream_id_scheme(self) -> str:
        """``"uuid5"`` or ``"hmac-sha256-v1"`` (see :meth:`stream_id`)."""
        return self._stream_ids.scheme

    @property
    def forgettable(self) -> bool:
        """Whether new messages' personal fields are sealed (see :meth:`forget`)."""
        return self._keys is not None

    # -- batches --

    def batch(self) -> Batch:
        """Several commands, decided one by one, saved in ONE transaction.

        ``with service.batch() as batch: batch.record_delivery(...); ...`` — each
        call decides against the current state (earlier calls in the batch
        included) and returns its view or raises its refusal at once; leaving the
        block saves every accepted change atomically, or nothing if the block
        raised. If another writer changed one of the batch's messages meanwhile,
        leaving raises :class:`ConcurrencyConflict` and saves nothing; run the
        batch again. To be fast, a batch takes cached messages without reading
        them and creates uncached ids without reading them; a copy that turns out
        stale, or an id that exists after all, makes the save fail that way, and
        the rerun decides on the store (docs/storage.md, "Batches").
        """
        return Batch(self, self._commands)

    def record_deliveries(
        self, items: Iterable[Mapping[str, Any]]
    ) -> list[MessageView | MsgStateError]:
        """Record many deliveries in one transaction: one outcome per item.

        Each item holds :meth:`record_delivery`'s arguments (``msg_id``, ``seq``,
        optionally ``server_time`` and ``attempt``). A refused item's outcome is
        its error; the others are saved. A lost race is retried (all items
        decided again) up to 3 times, then every outcome is the
        :class:`ConcurrencyConflict`.
        """
        return self._many(items, "record_delivery")

    def record_failures(
        self, items: Iterable[Mapping[str, Any]]
    ) -> list[MessageView | MsgStateError]:
        """Record many failures in one transaction: one outcome per item.

        Each item holds :meth:`record_failure`'s arguments (``msg_id``, ``code``,
        optionally ``desc``, ``attempt`` and ``retry_after``); outcomes as for
        :meth:`record_deliveries`.
        """
        return self._many(items, "record_failure")

    def _many(
        self, items: Iterable[Mapping[str, Any]], command: str
    ) -> list[MessageView | MsgStateError]:
        todo = list(items)
        ids = [
            item["msg_id"]
            for item in todo
            if isinstance(item, Mapping) and isinstance(item.get("msg_id"), str)
        ]
        outcomes: list[MessageView | MsgStateError] = []
        for _ in range(1 + CONFLICT_RETRIES):
            outcomes = []
            try:
                with self.batch() as batch:
                    batch.prefetch(ids)
                    call = getattr(batch, command)
                    outcomes.extend(_outcome(call, item) for item in todo)
            except ConcurrencyConflict as conflict:
                outcomes = [conflict] * len(todo)
                continue
            break
        return outcomes

    # -- queries --

    def get(self, msg_id: str) -> MessageView:
        """The message as it is now."""
        return self._messages.view(self._load(check.identifier("msg_id", msg_id)))

    def check_resend(self, msg_id: str) -> Decision:
        """What :meth:`resend` would decide now, without writing anything."""
        view = self.get(msg_id)
        return self._policy.decide(view, self.now())

    def history(self, msg_id: str) -> list[HistoryEntry]:
        """Every recorded event of the message, oldest first."""
        return self._history.history(msg_id)

    def get_at(
        self,
        msg_id: str,
        *,
        version: int | None = None,
        at: datetime | None = None,
    ) -> MessageView:
        """The message as it was after ``version``, or at domain time ``at``.

        ``at`` selects the longest prefix of events recorded at or before it;
        before the first event the message did not exist (:class:`MessageNotFound`).
        """
        return self._history.get_at(msg_id, version=version, at=at)

    # -- read models --

    def due_resends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        """Failed messages the policy would resend at ``now``, soonest
        ``next_retry_at`` first, ties in stream-id order (at most ``limit``; ``now``
        defaults to the clock).

        Answered from the read model, not by scanning every stream.
        """
        return self._read_models.due_resends(now, limit)

    def stuck_sends(
        self, now: datetime | None = None, limit: int = 100
    ) -> list[MessageView]:
        """Sends in flight for at least ``policy.send_timeout`` at ``now``, the
        oldest send first (at most ``limit``; ``now`` defaults to the clock).

        A message stays ``SENDING`` for ever if its sender died before reporting;
        this lists such messages from the read model (not by scanning streams),
        for :meth:`expire_send`. Each view's ``updated_at`` is when its current
        send started.
        """
        return self._read_models.stuck_sends(now, limit)

    def dead_letters(
        self,
        now: datetime | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[DeadLetter]:
        """Failed messages the policy will never resend, ordered by ``msg_id``.

        Page with ``after`` = the previous page's last ``msg_id``. ``now`` (default:
        the clock) decides which messages have expired.
        """
        return self._read_models.dead_letters(now, limit, after)

    def status_counts(self) -> dict[MessageStatus, int]:
        """How many messages are in each status (every status, zeros included)."""
        return self._read_models.status_counts()

    def counts_by_error_code(self) -> dict[int, int]:
        """For messages now in SEND_FAIL: how many have each last error code."""
        return self._read_models.counts_by_error_code()

    def projection_lag(self) -> int:
        """How many recorded notifications the read models have not applied yet.

        0 means the read models are up to date. Asking does not catch them up
        (the read-model queries do, unless ``projections="external"``).
        """
        return self._read_models.lag()

    def catch_up_projections(self, *, batch: int = CATCH_UP_BATCH) -> int:
        """Apply every notification not yet in the read models; how many were.

        ``batch`` notifications are applied per transaction.
        """
        return self._read_models.catch_up(batch=batch)

    def rebuild_projections(self) -> int:
        """Drop the read models and replay the whole notification log into them."""
        return self._read_models.rebuild()

    def wait_for_projections(self, timeout: float = 10.0) -> None:
        """Block until the read models have every event recorded so far.

        For ``projections="external"``; raises :class:`ProjectionTimeout`.
        """
        self._read_models.wait(timeout)

    # -- retention --

    def archive(
        self,
        before: datetime,
        to: str | os.PathLike[str],
        *,
        include: Sequence[str] = ("delivered", "dead"),
        dry_run: bool = False,
        chunk: int = 500,
        progress: Progress | None = None,
    ) -> ArchiveReport:
        """Move finished messages last changed before ``before`` to the file ``to``.

        Finished: ``"delivered"`` (``SEND_SUCC``) and ``"dead"`` (in
        :meth:`dead_letters` now: failed, and this service's policy will never
        resend it). Writes their complete stored histories as JSON lines with a
        manifest (``to`` + ``.manifest.json``), reads the file back and checks
        it, then deletes those streams, their snapshots and read-model rows, one
        transaction per chunk; an archived id then answers
        :class:`MessageArchived` and can never be created again. Running it
        again with the same ``to`` finishes an interrupted archive. ``dry_run``
        only counts. ``chunk`` messages are deleted per transaction.
        ``progress(phase, done, total)`` is called as it goes. See
        ``docs/storage.md`` (Retention).
        """
        from msgstate.archive import archive

        with self._storage_errors():
            return archive(
                self,
                before=before,
                to=to,
                include=include,
                dry_run=dry_run,
                chunk=chunk,
                progress=progress,
            )

    def restore(
        self,
        path: str | os.PathLike[str],
        *,
        chunk: int = 500,
        progress: Progress | None = None,
    ) -> RestoreReport:
        """Put the messages archived to ``path`` back, byte for byte.

        Checks the manifest and the file first (:class:`ArchiveInvalid`); restores
        the messages this archive removed (same versions, timestamps and events;
        read models updated). Restoring again restores nothing (each message is
        reported as already in the store).
        """
        from msgstate.archive import restore

        with self._storage_errors():
            return restore(self, path, chunk=chunk, progress=progress)

    # -- audit and replay --

    def export_history(
        self, msg_ids: Iterable[str] | None = None, since: datetime | None = None
    ) -> Iterator[str]:
        """The audit trail as JSON lines, one per event, in notification order.

        Each line has ``msg_id``, ``version``, ``event``, ``recorded_at`` (ISO 8601)
        and ``data``, and ends with a newline. ``since`` keeps events recorded at
        or after it; ``msg_ids`` keeps those messages.
        """
        return self._history.export(msg_ids, since)

    def simulate_policy(
        self, new_policy: ResendPolicy, msg_ids: Iterable[str] | None = None
    ) -> WhatIfReport:
        """Replay recorded histories under ``new_policy``; writes nothing."""
        if not isinstance(new_policy, ResendPolicy):
            raise InvalidArgument(
                f"new_policy must be a ResendPolicy, got {new_policy!r}"
            )
        streams: Iterable[list[Any]]
        if msg_ids is not None:
            ids = check.identifiers("msg_ids", msg_ids)
            streams = [self._history.events(m) for m in ids]
        else:
            grouped: dict[UUID, list[Any]] = {}
            for event in self._history.all_events():
                grouped.setdefault(event.originator_id, []).append(event)
            streams = grouped.values()
        return simulate(streams, new_policy, self._policy, self.now())

    # -- internals --

    def _construct_views(self) -> MessageViews:
        views_class = views_class_for(self.env.get("PERSISTENCE_MODULE", ""))
        views = self.factory.tracking_recorder(views_class)
        if not isinstance(views, MessageViews):  # pragma: no cover - factory contract
            raise TypeError(f"expected MessageViews, got {type(views).__name__}")
        views.cipher = self.mapper.cipher
        return views

    def _table_recorders(self) -> list[Any]:
        """Every recorder whose tables this service uses (events first)."""
        recorders: list[Any] = [self.recorder]
        if self.snapshots is not None:
            recorders.append(self.snapshots.recorder)
        recorders.append(self._views)
        return recorders

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Save messages' pending events in one transaction.

        For ``Message`` aggregates this skips eventsourcing's generic collection
        (runtime protocol checks on every object); anything else goes through it.
        """
        if kwargs or not all(type(obj) is Message for obj in objs):
            return super().save(*objs, **kwargs)
        processing = ProcessingEvent[UUID]()
        for message in objs:
            processing.events.extend(message.collect_events())
            processing.aggregates[message.id] = message
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def _storage_errors(self) -> contextlib.AbstractContextManager[None]:
        return storage_errors(self._where, self._secret, encrypted=self._encrypted)

    def _check_readable(self) -> None:
        """Decode the first stored event, so a wrong key fails at opening."""
        for notification in self.notification_log.select(start=1, limit=1):
            self.mapper.to_domain_event(notification)

    def _load(self, msg_id: str) -> Message:
        """The message to decide on (what commands load; a subclass may wrap it)."""
        return self._messages.load(msg_id)

    def _update(self, msg_id: str, change: Change) -> MessageView:
        """Load, apply ``change``, save; reload and retry if another writer won."""
        messages = self._messages
        for _ in range(1 + CONFLICT_RETRIES):
            message = self._load(msg_id)
            change(message)
            if not message.pending_events:
                return messages.view(message)
            try:
                messages.save(message)
            except IntegrityError:
                # Reload from the store, not the cache: a stream archived by
                # another process is refused here and absent there.
                messages.forget_cached(msg_id)
                continue
            return messages.view(message)
        raise ConcurrencyConflict(
            f"message {msg_id!r} kept changing under {1 + CONFLICT_RETRIES} tries; "
            "the command was not applied, try again"
        )

    # -- privacy (keyed stream ids, sealed personal fields) --

    def _open_stream_ids(self, cipher_key: str | None) -> StreamIds:
        """The store's stream-id scheme: recorded, else chosen now and recorded.

        A store with no record is new (no events) or older than the record: a new
        store opened with a cipher key gets keyed ids, every other store uuid5.
        """
        scheme = read_settings(self.recorder).get("stream_ids")
        if scheme is None and cipher_key is not None:
            empty = not (self.recorder.max_notification_id() or 0)
            wanted = HMAC_SHA256 if empty else UUID5
            scheme = record_setting(self.recorder, "stream_ids", wanted)
        return StreamIds(scheme or UUID5, cipher_key)

    def _open_key_store(
        self, forgettable: bool | None, key_store: str | None
    ) -> KeyStore | None:
        sealed = read_settings(self.recorder).get("personal_fields") == "sealed"
        if forgettable is False and (sealed or key_store is not None):
            raise InvalidArgument(
                "this store seals personal fields with per-message keys "
                "(or a key_store was given); it can't be opened with "
                "forgettable=False"
            )
        if not (sealed or forgettable or key_store is not None):
            return None
        require_cryptography()
        record_setting(self.recorder, "personal_fields", "sealed")
        wanted = "beside" if key_store is None else "apart"
        placed = record_setting(self.recorder, "data_keys", wanted)
        if placed != wanted:
            raise InvalidArgument(
                "this store keeps its data keys apart; open it with its key_store URL"
                if placed == "apart"
                else "this store keeps its data keys beside the events; "
                "open it without key_store"
            )
        if key_store is not None:
            return open_key_store(key_store)
        return key_store_beside(self.recorder)

    def close(self) -> None:
        """Close the store's connections (and a separate key store's)."""
        if self._keys is not None:
            self._keys.close()
        super().close()


def _outcome(call: Callable[..., MessageView], item: Mapping[str, Any]) -> Any:
    if not isinstance(item, Mapping):
        return InvalidArgument(f"each item must be a mapping, got {item!r}")
    try:
        return call(**item)
    except MsgStateError as error:
        return error
    except TypeError as error:  # a missing or unknown argument name
        return InvalidArgument(str(error))
