"""msgstate: an auditable, replayable record of every chat message's delivery status.

Each message is an event-sourced aggregate whose status follows Tencent Cloud IM's
``V2TIMMessageStatus``; a pure :class:`ResendPolicy` decides whether a failed message
may be resent, and every decision can be replayed from the stored history.
"""

from msgstate.application import MessageService, setup_schema
from msgstate.batch import Batch
from msgstate.codes import CodeInfo, RetryClass
from msgstate.domain import Message
from msgstate.errors import (
    ConcurrencyConflict,
    DeliveryConflict,
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MsgStateError,
    NotForgettable,
    ProjectionTimeout,
    ResendRefused,
    StorageError,
)
from msgstate.ids import MESSAGE_NAMESPACE
from msgstate.keys import FORGOTTEN, FORGOTTEN_CONTENT, PERSONAL_FIELDS
from msgstate.policy import Decision, ResendPolicy
from msgstate.projections import DeadLetter
from msgstate.status import TRANSITIONS, MessageStatus, Transition
from msgstate.storage import DATABASE_URL_ENV, generate_cipher_key
from msgstate.views import HistoryEntry, MessageView
from msgstate.whatif import MessageWhatIf, WhatIfReport

__all__ = [
    "DATABASE_URL_ENV",
    "FORGOTTEN",
    "FORGOTTEN_CONTENT",
    "MESSAGE_NAMESPACE",
    "PERSONAL_FIELDS",
    "TRANSITIONS",
    "Batch",
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
    "MessageNotFound",
    "MessageService",
    "MessageStatus",
    "MessageView",
    "MessageWhatIf",
    "MsgStateError",
    "NotForgettable",
    "ProjectionTimeout",
    "ResendPolicy",
    "ResendRefused",
    "RetryClass",
    "StorageError",
    "Transition",
    "WhatIfReport",
    "generate_cipher_key",
    "setup_schema",
]

__version__ = "0.1.0"
