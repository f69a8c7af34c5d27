"""Test helpers that are not fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from msgstate import MessageService

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand; starts at 2026-01-01T00:00:00Z."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def __repr__(self) -> str:
        return f"FakeClock({self.now!r})"


@contextmanager
def opened(url: str, **kwargs: Any) -> Iterator[MessageService]:
    """``MessageService.open(url, **kwargs)``, closed however the block ends (a
    failing hypothesis example must not leave its connections open)."""
    service = MessageService.open(url, **kwargs)
    try:
        yield service
    finally:
        service.close()
