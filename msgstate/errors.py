"""msgstate's refusal codes and exception hierarchy.

Every refusal carries a stable :class:`ErrorCode` and a sentence a person can act on.
Codes are part of the public API: they never change meaning, and new ones are only
added. They live in the 1000s so that they never collide with Tencent IM's own error
codes (which msgstate records, but never raises).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ArchiveInvalid",
    "BatchPartiallySaved",
    "ConcurrencyConflict",
    "DeliveryConflict",
    "DuplicateMessage",
    "ErrorCode",
    "InvalidArgument",
    "MessageArchived",
    "MessageNotFound",
    "MsgStateError",
    "NotForgettable",
    "ProjectionTimeout",
    "ResendRefused",
    "SendNotOverdue",
    "ShardMoved",
    "ShardMoving",
    "StaleAttempt",
    "StorageError",
    "StorageUnavailable",
]


class ErrorCode(IntEnum):
    """Stable codes for every answer msgstate gives. ``OK`` (0) means allowed."""

    def __repr__(self) -> str:
        # Valid Python, so hypothesis' failing examples and views print runnably.
        return f"{type(self).__name__}.{self.name}"

    OK = 0
    """The command was accepted (or the resend is allowed)."""
    MESSAGE_NOT_FOUND = 1001
    """No message with that id has been created."""
    INVALID_ARGUMENT = 1002
    """An argument is malformed, out of range or of the wrong type."""
    DUPLICATE_MESSAGE = 1003
    """A message with that id exists with different fields."""
    ALREADY_DELIVERED = 1004
    """The message was delivered: it is never resent, and its ``seq`` is fixed."""
    SEND_IN_PROGRESS = 1005
    """A send is in flight; report its outcome before asking for a resend."""
    NOT_RETRYABLE = 1006
    """The last error is permanent (or ambiguous and the policy refuses those)."""
    ATTEMPTS_EXHAUSTED = 1007
    """The policy's ``max_attempts`` sends have been made."""
    TOO_EARLY = 1008
    """The backoff interval has not passed yet (only with ``enforce_backoff``)."""
    EXPIRED = 1009
    """The message is older than the policy's ``max_age`` (or online-only limit)."""
    CONCURRENCY_CONFLICT = 1010
    """Another writer kept changing the message; the command was not applied."""
    STORAGE_ERROR = 1011
    """The event store could not be opened, read or written."""
    PROJECTION_TIMEOUT = 1012
    """The read models did not catch up in time."""
    STALE_ATTEMPT = 1013
    """``resend(expected_attempt=n)``: the message's current attempt is not ``n``."""
    TRANSPORT_FAILED = 1014
    """Recorded as a send failure (retry class ``AMBIGUOUS``): the transport raised,
    so the message may or may not have left. Never raised by msgstate."""
    SEND_TIMED_OUT = 1015
    """Recorded as a send failure (retry class ``AMBIGUOUS``): a send stayed
    ``SENDING`` past the policy's ``send_timeout`` and was expired. Never raised."""
    SEND_NOT_OVERDUE = 1018
    """``expire_send``: the send is in flight but has not yet run for the policy's
    ``send_timeout``; wait, or raise the timeout if it is too short."""
    STORAGE_UNAVAILABLE = 1020
    """The database could not be reached within ``connect_timeout``, or the
    connection was lost; repeat the command with the same arguments later."""
    MESSAGE_ARCHIVED = 1027
    """The message was archived (moved out of the store); restore its archive to
    read it again. Its id is never reused."""
    ARCHIVE_INVALID = 1028
    """An archive file or its manifest is missing, damaged, or does not match."""
    NOT_FORGETTABLE = 1023
    """``forget``: the message was not created in a forgettable store."""
    SHARD_MOVING = 1030
    """The message's shard is being moved to another database; nothing was
    written. Retry shortly (a shard-map service waits for the move itself)."""
    SHARD_MOVED = 1031
    """The message's shard now lives in another database than this process's
    shard map says; nothing was written. Reload the map (``shards.toml``)."""
    BATCH_PARTIALLY_SAVED = 1032
    """A batch spanning several databases of a shard map was saved in some of
    them only; the error lists which messages were saved and which were not."""


class MsgStateError(Exception):
    """Base class of every error msgstate raises on purpose.

    ``code`` is the stable :class:`ErrorCode`; ``desc`` the human sentence.
    """

    default_code: ErrorCode = ErrorCode.INVALID_ARGUMENT

    def __init__(self, desc: str, code: ErrorCode | None = None) -> None:
        self.code: ErrorCode = self.default_code if code is None else code
        self.desc: str = desc
        super().__init__(desc)

    def __str__(self) -> str:
        return f"{self.desc} [{self.code.name}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.desc!r}, ErrorCode.{self.code.name})"


class MessageNotFound(MsgStateError):
    """No message with that id (or none yet at the requested version or time)."""

    default_code = ErrorCode.MESSAGE_NOT_FOUND


class MessageArchived(MessageNotFound):
    """The message was archived: it is in an archive file, no longer in the store.

    ``archive_file`` names the file (as recorded when it was archived).
    """

    default_code = ErrorCode.MESSAGE_ARCHIVED

    def __init__(
        self, desc: str, code: ErrorCode | None = None, *, archive_file: str = ""
    ) -> None:
        super().__init__(desc, code)
        self.archive_file: str = archive_file


class ArchiveInvalid(MsgStateError):
    """An archive or its manifest is missing, damaged, or does not match the store."""

    default_code = ErrorCode.ARCHIVE_INVALID


class InvalidArgument(MsgStateError, ValueError):
    """An argument was refused before anything was written."""

    default_code = ErrorCode.INVALID_ARGUMENT


class DuplicateMessage(MsgStateError):
    """``create`` was called again for an existing id with different fields."""

    default_code = ErrorCode.DUPLICATE_MESSAGE


class ResendRefused(MsgStateError):
    """The policy or the status machine refused a resend; ``code`` says why."""

    default_code = ErrorCode.NOT_RETRYABLE


class StaleAttempt(ResendRefused):
    """``resend(expected_attempt=n)`` found another attempt current: the caller's
    view is stale (another worker claimed or the send moved on). Nothing written."""

    default_code = ErrorCode.STALE_ATTEMPT


class SendNotOverdue(MsgStateError):
    """``expire_send`` of a send that has not yet been in flight for
    ``send_timeout``. Nothing written."""

    default_code = ErrorCode.SEND_NOT_OVERDUE


class DeliveryConflict(MsgStateError):
    """A delivery with a different ``seq`` was reported for a delivered message."""

    default_code = ErrorCode.ALREADY_DELIVERED


class ConcurrencyConflict(MsgStateError):
    """Other writers won the race for this message on every retry."""

    default_code = ErrorCode.CONCURRENCY_CONFLICT


class StorageError(MsgStateError):
    """The store is unreachable, unreadable or not a msgstate store.

    The message names the store (a path, or host and database) but never a password.
    """

    default_code = ErrorCode.STORAGE_ERROR


class StorageUnavailable(StorageError):
    """The database is down or unreachable, or dropped the connection mid-command.

    Raised within the store's ``connect_timeout``. The command wrote nothing,
    unless the connection was lost while its commit was on the way: then it may
    have been applied. Either way, repeating it with the same arguments once the
    database is back is safe (every command is idempotent when repeated; give
    ``resend`` a ``request_id`` to get the same answer back).
    """

    default_code = ErrorCode.STORAGE_UNAVAILABLE


class ProjectionTimeout(MsgStateError, TimeoutError):
    """``wait_for_projections`` ran out of time."""

    default_code = ErrorCode.PROJECTION_TIMEOUT


class NotForgettable(MsgStateError):
    """``forget`` of a message whose fields were not sealed with a data key."""

    default_code = ErrorCode.NOT_FORGETTABLE


class ShardMoving(MsgStateError):
    """The message's shard is being moved (``msgstate shards move``); retry soon.

    The database refused the write itself; nothing was written.
    """

    default_code = ErrorCode.SHARD_MOVING


class ShardMoved(MsgStateError):
    """The message's shard has moved to another database; reload the shard map.

    The database refused the write itself (it no longer owns the shard), so a
    process holding an old map can neither write to the wrong database nor split
    a message's history. ``to`` names the new database (without its password),
    when the old one recorded it.
    """

    default_code = ErrorCode.SHARD_MOVED

    def __init__(self, desc: str, code: ErrorCode | None = None, *, to: str = ""):
        super().__init__(desc, code)
        self.to: str = to


class BatchPartiallySaved(MsgStateError):
    """A batch over several databases was saved in some of them only.

    Each database's part is one transaction, so no database holds half of its
    part. ``saved`` lists the batch's changed messages whose database committed;
    ``unsaved`` those whose database failed or was not reached; ``cause`` is the
    error that stopped it.
    """

    default_code = ErrorCode.BATCH_PARTIALLY_SAVED

    def __init__(
        self,
        desc: str,
        code: ErrorCode | None = None,
        *,
        saved: tuple[str, ...] = (),
        unsaved: tuple[str, ...] = (),
        cause: MsgStateError | None = None,
    ) -> None:
        super().__init__(desc, code)
        self.saved: tuple[str, ...] = saved
        self.unsaved: tuple[str, ...] = unsaved
        self.cause: MsgStateError | None = cause
