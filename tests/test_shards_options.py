"""Every option of the single-database service works per shard, moves included:
encryption (keyed stream ids), compression, snapshots and forgettable messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from msgstate import (
    FORGOTTEN,
    MessageService,
    ShardMap,
    StorageError,
    generate_cipher_key,
    move_shard,
)
from tests import shardpg
from tests.support import FakeClock


def raw_rows(url: str, table: str) -> list[bytes]:
    """Every row of ``table`` in the store at ``url``, as bytes (for a scan)."""
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base) as connection:
        rows = connection.execute(
            sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
        ).fetchall()
    return [repr(row).encode() for row in rows]


@pytest.fixture
def secret_map(tmp_path: Path) -> tuple[Path, str]:
    return shardpg.fresh_map(tmp_path, count=3, virtual_shards=8), generate_cipher_key()


def open_map(path: Path, key: str, clock: FakeClock) -> MessageService:
    return MessageService.open(
        f"shards://{path}",
        cipher_key=key,
        compress=True,
        snapshot_every=2,
        forgettable=True,
        clock=clock,
    )


def test_a_map_with_every_option_keeps_them_through_a_move(
    secret_map: tuple[Path, str],
) -> None:
    path, key = secret_map
    clock = FakeClock()
    service = open_map(path, key, clock)
    assert "hmac-sha256-v1" == service.stream_id_scheme
    assert service.forgettable
    ids = [f"secret-{i}" for i in range(24)]
    for msg_id in ids:
        service.create(
            msg_id, sender="alice", user_id="bob", content={"text": f"hush {msg_id}"}
        )
        service.record_failure(msg_id, code=6012)
        clock.advance(seconds=5)
        service.resend(msg_id, request_id=f"r-{msg_id}")
        service.record_delivery(msg_id, seq=f"s-{msg_id}")
    service.forget(ids[0], actor="dpo", reason="erasure request")
    before = {m: (service.get(m), service.history(m)) for m in ids}
    shard = service.shard(ids[0])
    source = service.shard_map.database_of(shard)
    target = next(u for u in service.shard_map.databases if u != source)
    moving = [m for m in ids if service.shard(m) == shard]
    service.close()

    report = move_shard(path, shard, target, cipher_key=key, compress=True)

    assert len(moving) == report.streams
    reopened = open_map(path, key, clock)
    assert target == reopened.shard_map.database_of(shard)
    after = {m: (reopened.get(m), reopened.history(m)) for m in ids}
    assert before == after
    assert FORGOTTEN == after[ids[0]][0].sender
    # The moved copies (events, snapshots, data keys) are sealed as before: no
    # message text or sender in clear anywhere in the target's tables.
    for table in ("msgstate_events", "msgstate_snapshots", "msgstate_data_keys"):
        dump = b"".join(raw_rows(target, table))
        assert dump
        assert b"hush" not in dump
        assert b"alice" not in dump
    reopened.close()


def test_a_move_without_the_cipher_key_is_refused_and_moves_nothing(
    secret_map: tuple[Path, str],
) -> None:
    path, key = secret_map
    service = open_map(path, key, FakeClock())
    service.create("m-1", sender="alice", user_id="bob")
    shard = service.shard("m-1")
    old = service.shard_map
    target = next(u for u in old.databases if u != old.database_of(shard))
    service.close()
    with pytest.raises(StorageError, match="cipher"):
        move_shard(path, shard, target)
    with pytest.raises(StorageError, match="cipher key does not match"):
        move_shard(path, shard, target, cipher_key=key)  # but not compress=True
    assert old == ShardMap.load(path)
    reopened = open_map(path, key, FakeClock())
    assert "m-1" == reopened.get("m-1").msg_id
    reopened.close()


def test_the_command_moves_an_encrypted_compressed_shard(
    secret_map: tuple[Path, str], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from msgstate.cli import cli

    path, key = secret_map
    service = open_map(path, key, FakeClock())
    service.create("m-1", sender="alice", user_id="bob", content={"text": "hi"})
    shard = service.shard("m-1")
    target = next(
        u
        for u in service.shard_map.databases
        if u != service.shard_map.database_of(shard)
    )
    service.close()
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    common = ["--map", str(path), "--cipher-key-file", str(key_file), "--compress"]
    moved = CliRunner().invoke(
        cli,
        ["shards", "move", *common, "--shard", str(shard), "--to", target, "--json"],
    )
    status = CliRunner().invoke(cli, ["shards", "status", *common, "--json"])
    assert 0 == moved.exit_code, moved.output
    assert 0 == status.exit_code, status.output
    assert target == ShardMap.load(path).database_of(shard)
    reopened = open_map(path, key, FakeClock())
    assert {"text": "hi"} == reopened.get("m-1").content
    reopened.close()


def test_a_move_leaves_nothing_of_the_shard_in_the_source(
    secret_map: tuple[Path, str],
) -> None:
    path, key = secret_map
    clock = FakeClock()
    service = open_map(path, key, clock)
    ids = [f"gone-{i}" for i in range(24)]
    for msg_id in ids:
        service.create(msg_id, sender="alice", user_id="bob")
        service.record_failure(msg_id, code=6012)
        service.record_delivery(msg_id, seq="1")  # snapshots every 2 events
    shard = service.shard(ids[0])
    source = service.shard_map.database_of(shard)
    target = next(u for u in service.shard_map.databases if u != source)
    moving = {service.stream_id(m) for m in ids if service.shard(m) == shard}
    service.close()
    move_shard(path, shard, target, cipher_key=key, compress=True)
    for table, column in (
        ("msgstate_events", "originator_id"),
        ("msgstate_snapshots", "originator_id"),
        ("msgstate_data_keys", "stream_id"),
    ):
        left = stream_ids(source, table, column)
        there = stream_ids(target, table, column)
        assert set() == left & moving, table
        assert moving <= there, table


def stream_ids(url: str, table: str, column: str) -> set[Any]:
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base) as connection:
        rows = connection.execute(
            sql.SQL("SELECT {} FROM {}.{}").format(
                sql.Identifier(column), sql.Identifier(schema), sql.Identifier(table)
            )
        ).fetchall()
    return {row[0] for row in rows}


def test_an_encrypted_move_stopped_after_its_map_finishes_when_run_again(
    secret_map: tuple[Path, str],
) -> None:
    path, key = secret_map
    service = open_map(path, key, FakeClock())
    service.create("m-1", sender="alice", user_id="bob")
    shard = service.shard("m-1")
    owner = service.shard_map.database_of(shard)
    target = next(u for u in service.shard_map.databases if u != owner)
    service.close()

    class Stop(Exception):
        pass

    def stop(step: str, _n: int) -> None:
        if step == "map written":
            raise Stop

    with pytest.raises(Stop):
        move_shard(path, shard, target, cipher_key=key, compress=True, progress=stop)
    report = move_shard(path, shard, target, cipher_key=key, compress=True)
    assert (True, 1) == (report.resumed, report.streams)
    assert set() == stream_ids(owner, "msgstate_events", "originator_id")
