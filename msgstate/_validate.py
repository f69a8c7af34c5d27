"""Argument checks shared by the service's commands (private).

Every check raises :class:`~msgstate.InvalidArgument` naming the argument, before
anything is written. The limits are documented in ``docs/limits.md``.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from msgstate.errors import InvalidArgument

MAX_ID_CHARS = 128
MAX_DESC_CHARS = 1_000
MAX_SEQ_CHARS = 64
MAX_CLOUD_CUSTOM_DATA_BYTES = 8 * 1024
MAX_CONTENT_BYTES = 64 * 1024
MAX_RETRY_AFTER_SECONDS = 30 * 24 * 3600
MAX_ATTEMPT = 1_000_000
INT32 = (-(2**31), 2**31 - 1)


def _fail(name: str, what: str, value: object) -> InvalidArgument:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InvalidArgument(f"{name} {what}, got {shown}")


def text(name: str, value: object, *, max_chars: int, allow_empty: bool = True) -> str:
    """A string that UTF-8 can encode, without NUL, within ``max_chars``."""
    if not isinstance(value, str):
        raise _fail(name, "must be a str", value)
    if not allow_empty and not value:
        raise _fail(name, "must not be empty", value)
    if len(value) > max_chars:
        raise InvalidArgument(f"{name} is {len(value)} characters; at most {max_chars}")
    if "\x00" in value:
        raise _fail(name, "must not contain NUL characters", value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(name, "must be valid Unicode (no lone surrogates)", value) from None
    return value


def identifier(name: str, value: object) -> str:
    """A non-empty id of printable characters (no control characters)."""
    checked = text(name, value, max_chars=MAX_ID_CHARS, allow_empty=False)
    ascii_printable = checked.isascii() and checked.isprintable()  # the usual case
    if not ascii_printable and any(
        unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in checked
    ):
        raise _fail(name, "must not contain control characters", value)
    if checked.strip() != checked:
        raise _fail(name, "must not start or end with white space", value)
    return checked


def identifiers(name: str, value: object) -> list[str]:
    """Ids from an iterable of them; a lone ``str`` (or bytes) is refused rather
    than read as its characters."""
    if isinstance(value, str | bytes | bytearray) or not isinstance(value, Iterable):
        raise _fail(name, "must be an iterable of ids (a list, not one str)", value)
    return [identifier("msg_id", item) for item in value]


def optional_identifier(name: str, value: object) -> str | None:
    return None if value is None else identifier(name, value)


def integer(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(name, "must be an int", value)
    if not low <= value <= high:
        raise _fail(name, f"must be between {low} and {high}", value)
    return value


def seconds(name: str, value: object, high: float) -> float:
    """A finite number of seconds from 0 to ``high``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(name, "must be a number of seconds", value)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not 0 <= number <= high:
        raise _fail(name, f"must be between 0 and {high} s", value)
    return number


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, "must be a bool", value)
    return value


def error_code(value: object) -> int:
    code = integer("code", value, *INT32)
    if code == 0:
        raise InvalidArgument("code must be a non-zero error code; 0 means success")
    return code


def attempt(value: object, name: str = "attempt") -> int | None:
    return None if value is None else integer(name, value, 1, MAX_ATTEMPT)


def retry_after(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail("retry_after", "must be a number of seconds", value)
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_RETRY_AFTER_SECONDS:
        raise _fail(
            "retry_after", f"must be between 0 and {MAX_RETRY_AFTER_SECONDS} s", value
        )
    return seconds


def aware_datetime(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise _fail(name, "must be a datetime", value)
    if value.tzinfo is None or value.utcoffset() is None:
        raise _fail(name, "must be timezone-aware", value)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise _fail(name, "is outside the range of UTC datetimes", value) from None


def content_json(value: object) -> str:
    """``content`` as canonical JSON text (a mapping with str keys)."""
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise _fail("content", "must be a JSON-able mapping", value)
    plain = _plain(value, depth=0)
    try:
        encoded = json.dumps(
            plain,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            sort_keys=True,
            default=_reject,
        )
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidArgument(f"content is not JSON-able: {error}") from None
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument("content has invalid Unicode (lone surrogates)") from None
    if size > MAX_CONTENT_BYTES:
        raise InvalidArgument(
            f"content is {size} bytes as JSON; at most {MAX_CONTENT_BYTES}"
        )
    return encoded


MAX_CONTENT_DEPTH = 32


def _plain(value: object, depth: int) -> object:
    """``value`` with every mapping as a dict and every sequence as a list.

    Mappings need str keys (JSON would silently turn 1 into "1"); any Mapping
    (a ``MappingProxyType``, say) is accepted, not only dict.
    """
    if depth > MAX_CONTENT_DEPTH:
        raise InvalidArgument(f"content is nested deeper than {MAX_CONTENT_DEPTH}")
    if isinstance(value, Mapping):
        plain: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _fail("content", "keys must be str", key)
            plain[key] = _plain(item, depth + 1)
        return plain
    if isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    return value


def _reject(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def cloud_custom_data(value: object) -> str:
    checked = text("cloud_custom_data", value, max_chars=MAX_CLOUD_CUSTOM_DATA_BYTES)
    size = len(checked.encode("utf-8"))
    if size > MAX_CLOUD_CUSTOM_DATA_BYTES:
        raise InvalidArgument(
            f"cloud_custom_data is {size} bytes; at most {MAX_CLOUD_CUSTOM_DATA_BYTES}"
        )
    return checked
