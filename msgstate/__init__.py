"""msgstate: an auditable, replayable record of every chat message's delivery status.

Each message is an event-sourced aggregate whose status follows Tencent Cloud IM's
``V2TIMMessageStatus``; a pure :class:`ResendPolicy` decides whether a failed message
may be resent, and every decision can be replayed from the stored history.
"""

from msgstate.aio import AsyncMessageService
from msgstate.application import MessageService, setup_schema
from msgstate.archive import ArchiveReport, RestoreReport
from msgstate.batch import Batch
from msgstate.codes import CodeInfo, RetryClass
from msgstate.domain import Message
from msgstate.errors import (
    ArchiveInvalid,
    BatchPartiallySaved,
    ConcurrencyConflict,
    DeliveryConflict,
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageArchived,
    MessageNotFound,
    MsgStateError,
    NotForgettable,
    ProjectionTimeout,
    ResendRefused,
    SendNotOverdue,
    ShardMoved,
    ShardMoving,
    StaleAttempt,
    StorageError,
    StorageUnavailable,
)
from msgstate.ids import MESSAGE_NAMESPACE
from msgstate.keys import FORGOTTEN, FORGOTTEN_CONTENT, PERSONAL_FIELDS
from msgstate.policy import Decision, ResendFacts, ResendPolicy
from msgstate.projections import DeadLetter
from msgstate.shards import (
    MoveReport,
    ShardedBatch,
    ShardedMessageService,
    ShardMap,
    move_shard,
    shard_of,
)
from msgstate.status import TRANSITIONS, MessageStatus, Transition
from msgstate.storage import DATABASE_URL_ENV, generate_cipher_key
from msgstate.transports import (
    AsyncTransport,
    SendError,
    Sent,
    SimulatedTransport,
    Transport,
)
from msgstate.views import HistoryEntry, MessageView
from msgstate.whatif import MessageWhatIf, WhatIfReport
from msgstate.worker import AsyncResendWorker, ResendWorker, WorkerReport

__all__ = [
    "DATABASE_URL_ENV",
    "FORGOTTEN",
    "FORGOTTEN_CONTENT",
    "MESSAGE_NAMESPACE",
    "PERSONAL_FIELDS",
    "TRANSITIONS",
    "ArchiveInvalid",
    "ArchiveReport",
    "AsyncMessageService",
    "AsyncResendWorker",
    "AsyncTransport",
    "Batch",
    "BatchPartiallySaved",
    "CodeInfo",
    "ConcurrencyConflict",
    "DeadLetter",
    "Decision",
    "DeliveryConflict",
    "DuplicateMessage",
    "ErrorCode",
    "HistoryEntry",
    "InvalidArgument",
    "Message",
    "MessageArchived",
    "MessageNotFound",
    "MessageService",
    "MessageStatus",
    "MessageView",
    "MessageWhatIf",
    "MoveReport",
    "MsgStateError",
    "NotForgettable",
    "ProjectionTimeout",
    "ResendFacts",
    "ResendPolicy",
    "ResendRefused",
    "ResendWorker",
    "RestoreReport",
    "RetryClass",
    "SendError",
    "SendNotOverdue",
    "Sent",
    "ShardMap",
    "ShardMoved",
    "ShardMoving",
    "ShardedBatch",
    "ShardedMessageService",
    "SimulatedTransport",
    "StaleAttempt",
    "StorageError",
    "StorageUnavailable",
    "Transition",
    "Transport",
    "WhatIfReport",
    "WorkerReport",
    "generate_cipher_key",
    "move_shard",
    "setup_schema",
    "shard_of",
]

__version__ = "0.1.0"
