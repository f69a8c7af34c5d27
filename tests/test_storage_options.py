"""Snapshots, encryption at rest and compression, on every backend."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from msgstate import (
    InvalidArgument,
    Message,
    MessageService,
    MessageStatus,
    ResendPolicy,
    StorageError,
    generate_cipher_key,
)
from tests import pg
from tests.conftest import backend_url
from tests.support import FakeClock

SECRET_BITS = [
    "msg-secret-42",
    "dead-secret",
    "sender-secret",
    "content-secret",
    "cloud-secret",
]


def fill(service: MessageService, msg_id: str = "msg-secret-42") -> None:
    service.create(
        msg_id,
        sender="sender-secret",
        user_id="user-secret",
        content={"text": "content-secret"},
        cloud_custom_data="cloud-secret",
    )
    service.record_failure(msg_id, code=6012, desc="desc-secret")
    service.resend(msg_id, request_id="request-secret", actor="actor-secret")
    service.create("dead-secret", sender="sender-secret", user_id="user-secret")
    service.record_failure("dead-secret", code=80001)
    # The read models are filled too, so their rows are scanned as well.
    assert ["dead-secret"] == [d.msg_id for d in service.dead_letters()]


def long_history(service: MessageService, msg_id: str, cycles: int) -> None:
    """A message failing and being resent ``cycles`` times (2 events a cycle)."""
    service.create(msg_id, sender="a", user_id="b")
    for _ in range(cycles):
        service.record_failure(msg_id, code=6012)
        service.resend(msg_id)


def test_snapshots_give_the_same_views_and_history(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    """With snapshot_every, views and get_at match a service without snapshots."""
    url = backend_url(backend, tmp_path)
    policy = ResendPolicy(max_attempts=1_000)
    snap = MessageService.open(url, policy=policy, clock=clock, snapshot_every=10)
    long_history(snap, "m1", 60)
    plain = (
        snap
        if backend == "memory"
        else MessageService.open(url, policy=policy, clock=clock)
    )
    assert plain.get("m1") == snap.get("m1")
    assert plain.history("m1") == snap.history("m1")
    for version in (1, 2, 37, 121):
        assert plain.get_at("m1", version=version) == snap.get_at("m1", version=version)
    assert snap.snapshots is not None
    stored = list(snap.snapshots.get(Message.create_id("m1")))
    assert 12 == len(stored)  # versions 10, 20, ..., 120
    # The snapshot's state decodes to a working aggregate (status is an enum again).
    reopened = MessageService.open(url, policy=policy, clock=clock, snapshot_every=10)
    if backend != "memory":
        assert MessageStatus.SENDING is reopened.get("m1").status


def test_snapshots_bound_load_time(tmp_path: Path, clock: FakeClock) -> None:
    """A 2,001-event history loads from a snapshot faster than from all events."""
    url = f"sqlite:///{tmp_path / 'long.db'}"
    policy = ResendPolicy(max_attempts=5_000)
    writer = MessageService.open(url, policy=policy, clock=clock, snapshot_every=100)
    long_history(writer, "m1", 1_000)
    # No aggregate cache: every get() must load from the store.
    plain = MessageService.open(url, policy=policy, clock=clock, cache_size=0)
    snapped = MessageService.open(
        url, policy=policy, clock=clock, snapshot_every=100, cache_size=0
    )

    def best_of(call: Any) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return min(times)

    assert plain.get("m1") == snapped.get("m1")
    assert 2_001 == snapped.get("m1").version
    # Replaying at most 100 events must beat replaying 2,001 by a wide margin.
    assert best_of(lambda: snapped.get("m1")) * 5 < best_of(lambda: plain.get("m1"))
    # get_at(version) starts from the snapshot at or before that version too.
    old = snapped.get_at("m1", version=1_950)
    assert plain.get_at("m1", version=1_950) == old
    assert best_of(lambda: snapped.get_at("m1", version=1_950)) * 5 < best_of(
        lambda: plain.get_at("m1", version=1_950)
    )


def raw_bytes(backend: str, url: str, tmp_path: Path) -> bytes:
    """Everything the store holds, as raw bytes (files, or every table's rows)."""
    if backend == "sqlite":
        data = b""
        for file in tmp_path.glob("msgstate.db*"):
            data += file.read_bytes()
        return data
    import psycopg

    schema = url.split("schema=")[1]
    data = b""
    with psycopg.connect(pg.BASE_URL) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        assert tables, "no tables found"
        for (table,) in tables:
            rows = connection.execute(
                f'SELECT * FROM "{schema}"."{table}"'  # names from the catalog
            ).fetchall()
            for row in rows:
                for value in row:
                    data += (
                        bytes(value)
                        if isinstance(value, bytes)
                        else str(value).encode()
                    )
    return data


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
@pytest.mark.parametrize("compress", [False, True])
def test_encrypted_store_holds_no_clear_text(
    backend_name: str, compress: bool, tmp_path: Path, clock: FakeClock
) -> None:
    """With a cipher key, no id, sender, content or cloud data is stored in clear."""
    url = backend_url(backend_name, tmp_path)
    key = generate_cipher_key()
    service = MessageService.open(
        url, clock=clock, cipher_key=key, compress=compress, snapshot_every=2
    )
    fill(service)
    service.close()
    data = raw_bytes(backend_name, url, tmp_path)
    assert len(data) > 0
    leaked = [bit for bit in SECRET_BITS if bit.encode() in data]
    assert [] == leaked
    again = MessageService.open(url, clock=clock, cipher_key=key, compress=compress)
    assert "sender-secret" == again.get("msg-secret-42").sender


def test_unencrypted_store_does_hold_clear_text(tmp_path: Path) -> None:
    """The scan above can fail: without a key the secrets are visible."""
    url = backend_url("sqlite", tmp_path)
    service = MessageService.open(url)
    fill(service)
    service.close()
    data = raw_bytes("sqlite", url, tmp_path)
    assert b"content-secret" in data


@pytest.mark.parametrize("backend_name", ["sqlite", "postgres"])
def test_wrong_key_fails_at_opening(backend_name: str, tmp_path: Path) -> None:
    """Opening with another key, or none, raises StorageError, never garbage."""
    url = backend_url(backend_name, tmp_path)
    service = MessageService.open(url, cipher_key=generate_cipher_key())
    fill(service)
    service.close()
    with pytest.raises(StorageError) as wrong:
        MessageService.open(url, cipher_key=generate_cipher_key())
    assert "cipher key does not match" in str(wrong.value)
    with pytest.raises(StorageError) as missing:
        MessageService.open(url)
    assert "cipher_key" in str(missing.value)


def test_compressed_store_is_smaller_and_reads_back(tmp_path: Path) -> None:
    """compress=True stores less for repetitive content and reads back the same."""
    sizes = {}
    for compress in (False, True):
        path = tmp_path / f"c{compress}.db"
        service = MessageService.open(f"sqlite:///{path}", compress=compress)
        for i in range(50):
            service.create(f"m{i}", sender="a", user_id="b", content={"t": "x" * 2000})
        assert {"t": "x" * 2000} == service.get("m7").content
        service.close()
        with sqlite3.connect(path) as connection:
            sizes[compress] = connection.execute(
                "SELECT sum(length(state)) FROM stored_events"
            ).fetchone()[0]
    assert sizes[True] * 5 < sizes[False]


@pytest.mark.parametrize("key", ["", "not base64!", "c2hvcnQ=", 42])
def test_bad_cipher_keys_are_invalid(key: object) -> None:
    """A key that is not 16, 24 or 32 bytes of base64 raises InvalidArgument."""
    with pytest.raises(InvalidArgument):
        MessageService.open("memory://", cipher_key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize("every", [0, 1, -5, "10", True])
def test_bad_snapshot_interval_is_invalid(every: object) -> None:
    """snapshot_every must be an int >= 2."""
    with pytest.raises(InvalidArgument):
        MessageService.open("memory://", snapshot_every=every)  # type: ignore[arg-type]
