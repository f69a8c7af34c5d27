"""Vendor error codes as data: which transport errors are worth a resend.

The catalog ships as ``msgstate/data/tencent_codes.json``; each entry names the
Tencent IM header it comes from. A code's :class:`RetryClass` says what a resend
needs first; codes missing from the catalog get the policy's
``unknown_code_class``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from importlib.resources import files
from types import MappingProxyType

from attrs import frozen

__all__ = ["CodeInfo", "RetryClass", "catalog", "lookup"]


class RetryClass(StrEnum):
    """What a failed send's error code says about resending it."""

    def __repr__(self) -> str:
        # Valid Python, so hypothesis' failing examples and views print runnably.
        return f"{type(self).__name__}.{self.name}"

    TRANSIENT = "TRANSIENT"
    """A timeout or a server-side hiccup: resend after the backoff."""
    AFTER_RECONNECT = "AFTER_RECONNECT"
    """No network: resend once the connection is back."""
    AFTER_RELOGIN = "AFTER_RELOGIN"
    """The session is gone (expired UserSig, kicked off): log in, then resend."""
    RATE_LIMITED = "RATE_LIMITED"
    """Too many requests: back off, honouring any ``retry_after``."""
    AMBIGUOUS = "AMBIGUOUS"
    """The request may have reached the server (ack timeout): a resend may duplicate."""
    PERMANENT = "PERMANENT"
    """Resending the same message can never succeed."""


@frozen
class CodeInfo:
    """One vendor error code from the catalog."""

    code: int
    name: str
    retry_class: RetryClass
    desc: str
    source: str


@cache
def catalog() -> Mapping[int, CodeInfo]:
    """Every catalogued Tencent IM error code, read once from the package data."""
    raw = json.loads(
        files("msgstate").joinpath("data/tencent_codes.json").read_text("utf-8")
    )
    return MappingProxyType(
        {
            entry["code"]: CodeInfo(
                code=entry["code"],
                name=entry["name"],
                retry_class=RetryClass(entry["retry_class"]),
                desc=entry["desc"],
                source=entry["source"],
            )
            for entry in raw["codes"]
        }
    )


def lookup(code: int) -> CodeInfo | None:
    """The catalog entry for ``code``, or ``None`` if it is not catalogued."""
    return catalog().get(code)
