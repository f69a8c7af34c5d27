"""Tokens, sessions and CSRF tokens of the console.

Token file format: one ``name:token`` per line; blank lines and lines starting with
``#`` are ignored. ``name`` (letters, digits, ``._@-``, at most 64 characters) is
recorded as the ``actor`` of the actions taken with that token; ``token`` is at
least 16 characters with no whitespace. Names and tokens must be unique.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from pathlib import Path

from attrs import frozen

from msgstate.errors import InvalidArgument

__all__ = [
    "MIN_TOKEN_CHARS",
    "Tokens",
    "load_tokens",
    "parse_tokens",
]

MIN_TOKEN_CHARS = 16
"""The shortest token accepted (use ``secrets.token_urlsafe()``: 43 characters)."""

_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_TOKEN = re.compile(r"\S+")


def parse_tokens(text: str, source: str = "token file") -> dict[str, str]:
    """``{name: token}`` from token-file ``text``; :class:`InvalidArgument` naming
    the line if one is malformed."""
    tokens: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        name, token = name.strip(), token.strip()
        where = f"{source} line {number}"
        if not sep or not _NAME.fullmatch(name):
            raise InvalidArgument(
                f"{where}: expected 'name:token' with a name of letters, digits "
                "and ._@- (at most 64 characters)"
            )
        if len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise InvalidArgument(
                f"{where}: the token of {name!r} must be at least "
                f"{MIN_TOKEN_CHARS} characters without spaces "
                "(make one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe())')"
            )
        if name in tokens:
            raise InvalidArgument(f"{where}: the name {name!r} appears twice")
        if token in tokens.values():
            raise InvalidArgument(f"{where}: the token of {name!r} is used twice")
        tokens[name] = token
    if not tokens:
        raise InvalidArgument(f"{source} has no 'name:token' line")
    return tokens


def load_tokens(path: str | Path) -> dict[str, str]:
    """``{name: token}`` from the token file at ``path``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument(
            f"cannot read the token file {str(path)!r}: {error}"
        ) from None
    return parse_tokens(text, source=str(path))


@frozen
class Tokens:
    """The accepted tokens and this server's signing secret (random per start)."""

    by_name: Mapping[str, str]
    secret: bytes

    @classmethod
    def of(cls, by_name: Mapping[str, str] | None) -> Tokens:
        """Tokens ``by_name`` (``None``: no authentication) with a fresh secret."""
        return cls(dict(by_name or {}), secrets.token_bytes(32))

    @property
    def required(self) -> bool:
        """Whether requests must carry a token."""
        return bool(self.by_name)

    def name_of_token(self, token: str) -> str | None:
        """The name whose token is ``token`` (compared in constant time)."""
        found = None
        for name, expected in self.by_name.items():
            if hmac.compare_digest(expected.encode(), token.encode()):
                found = name
        return found

    def _sign(self, purpose: str, value: str) -> str:
        mac = hmac.new(self.secret, f"{purpose}\0{value}".encode(), hashlib.sha256)
        return mac.hexdigest()

    def session_for(self, name: str) -> str:
        """The session cookie value of ``name``: the name and its signature, so
        the token itself is never stored in the browser."""
        token = self.by_name[name]
        return f"{name}.{self._sign('session', name + chr(0) + token)}"

    def name_of_session(self, value: str) -> str | None:
        """The name a session cookie value stands for, if its signature holds."""
        name, _, _signature = value.rpartition(".")
        if name not in self.by_name:
            return None
        return name if hmac.compare_digest(self.session_for(name), value) else None

    def csrf_for(self, nonce: str) -> str:
        """The CSRF form token for the browser's ``nonce`` cookie."""
        return self._sign("csrf", nonce)

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        """Whether a form's CSRF ``token`` matches the browser's ``nonce`` cookie."""
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_for(nonce), token)
