"""Vendor error codes as data: which transport errors are worth a resend.

The catalog ships as ``msgstate/data/tencent_codes.json``; each entry names the
Tencent IM header it was read from (repository and path), its name as each header
version spells it, and the header's own description. A code's
:class:`RetryClass` says what a resend needs first; codes missing from the
catalog get the policy's ``unknown_code_class``. One entry is a range: the
codes 120001-130000 an app's before-send callback may return. See
``docs/codes.md`` for how the catalog was built and the retry classes judged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from importlib.resources import files
from types import MappingProxyType

from attrs import field, frozen

__all__ = ["CodeInfo", "RetryClass", "catalog", "find", "lookup"]


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
    """One vendor error code (or one range of codes) from the catalog."""

    code: int
    """The code; for a range entry, its first code."""
    name: str
    """The name in the newest header that has the code (outside a legacy section)."""
    retry_class: RetryClass
    """What a resend needs first (msgstate's judgement from the header's wording)."""
    desc: str
    """A short English summary where msgstate wrote one, else the header's text."""
    source: str
    """Repository and path of the header the entry was read from."""
    aliases: tuple[str, ...] = ()
    """Every other name the code has in another header version."""
    names: Mapping[str, str] = field(factory=dict, hash=False)
    """Header version -> the name that header spells (empty for local codes)."""
    header_desc: str = ""
    """The source header's own description, verbatim (Chinese in Tencent's)."""
    legacy: bool = False
    """True if the code exists only in the headers' "IM SDK V3" section."""
    last: int | None = None
    """For a range entry, its last code (inclusive); ``None`` for one code."""

    def covers(self, code: int) -> bool:
        """Whether ``code`` is this entry's code, or inside its range."""
        if self.last is None:
            return code == self.code
        return self.code <= code <= self.last

    def spellings(self) -> tuple[str, ...]:
        """The name and every alias."""
        return (self.name, *self.aliases)


@cache
def catalog() -> Mapping[int, CodeInfo]:
    """Every catalogued Tencent IM error code, read once from the package data.

    Keyed by code; a range entry is keyed by its first code (see
    :func:`ranges`, and :func:`lookup`, which finds codes inside a range).
    """
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
                aliases=tuple(entry.get("aliases", ())),
                names=MappingProxyType(dict(entry.get("names", {}))),
                header_desc=entry.get("header_desc", ""),
                legacy=bool(entry.get("legacy", False)),
                last=entry.get("last"),
            )
            for entry in raw["codes"]
        }
    )


@cache
def ranges() -> tuple[CodeInfo, ...]:
    """The catalog's range entries (today one: 120001-130000)."""
    return tuple(info for info in catalog().values() if info.last is not None)


@cache
def _by_name() -> Mapping[str, CodeInfo]:
    return MappingProxyType(
        {spelling: info for info in catalog().values() for spelling in info.spellings()}
    )


def lookup(code: int) -> CodeInfo | None:
    """The catalog entry for ``code`` (or the range holding it), else ``None``."""
    info = catalog().get(code)
    if info is not None and info.last is None:
        return info
    for span in ranges():
        if span.covers(code):
            return span
    return None


def find(key: str) -> CodeInfo | None:
    """The entry for a code number (``"6012"``, ``"-302"``) or any of its names.

    Names match case-insensitively, in any header's spelling
    (``ERR_REQUEST_TIMEOUT`` and ``ERR_REQUEST_TIME_OUT`` are both 6012).
    """
    text = key.strip()
    try:
        number = int(text)
    except ValueError:
        return _by_name().get(text.upper())
    return lookup(number)
