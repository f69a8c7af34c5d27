"""How a message id names its event stream."""

from __future__ import annotations

from uuid import UUID

__all__ = ["MESSAGE_NAMESPACE"]

MESSAGE_NAMESPACE = UUID("6f1d7c1e-3b9a-5d2e-9c47-8a0b5e1f2d3c")
"""The namespace under which ``uuid5(MESSAGE_NAMESPACE, msg_id)`` names a stream.

Published and fixed forever: changing it would orphan every stored message.
"""
