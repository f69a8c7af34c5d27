"""msgstate: an auditable, replayable record of every chat message's delivery status.

Each message is an event-sourced aggregate whose status follows Tencent Cloud IM's
``V2TIMMessageStatus``; a pure :class:`ResendPolicy` decides whether a failed message
may be resent, and every decision can be replayed from the stored history.
"""

from msgstate.application import (
    DATABASE_URL_ENV,
    MessageService,
    generate_cipher_key,
    setup_schema,
)
from msgstate.codes import CodeInfo, RetryClass
from msgstate.domain import MESSAGE_NAMESPACE, Message
from msgstate.errors import (
    ConcurrencyConflict,
    DeliveryConflict,
    DuplicateMessage,
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MsgStateError,
    ResendRefused,
    StorageError,
)
from msgstate.policy import Decision, ResendPolicy
from msgstate.status import TRANSITIONS, MessageStatus, Transition
from msgstate.views import HistoryEntry, MessageView

__all__ = [
    "DATABASE_URL_ENV",
    "MESSAGE_NAMESPACE",
    "TRANSITIONS",
    "CodeInfo",
    "ConcurrencyConflict",
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
    "MsgStateError",
    "ResendPolicy",
    "ResendRefused",
    "RetryClass",
    "StorageError",
    "Transition",
    "generate_cipher_key",
    "setup_schema",
]

__version__ = "0.1.0"
