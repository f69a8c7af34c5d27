"""Shard maps: exact answers of bulk commands after a move, of batches across
databases and of ``wait_for_projections`` (written to kill mutants of
``ShardedMessageService._moved_away``, ``ShardedBatch`` and
``ShardedMessageService.wait_for_projections``; see tests/mutation.py)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from msgstate import (
    BatchPartiallySaved,
    ConcurrencyConflict,
    ErrorCode,
    MessageService,
    MessageView,
    MsgStateError,
    ProjectionTimeout,
    ShardedMessageService,
    ShardMap,
    move_shard,
)
from msgstate._pg_shards import FROZEN, ShardTables
from tests import shardpg
from tests.support import FakeClock
from tests.test_shard_move import SHARD, shard_ids
from tests.test_shards import TRANSIENT, ids_by_database, make, stream

# -- helpers --


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """What ``call()`` returns (or raises) and how long it took."""
    started = time.monotonic()
    try:
        answer = call()
    except MsgStateError as error:
        answer = error
    return answer, time.monotonic() - started


def outcome(answer: MessageView | MsgStateError) -> Any:
    """A comparable form of a bulk command's outcome."""
    if isinstance(answer, MsgStateError):
        return type(answer).__name__, str(answer)
    return answer.msg_id, answer.status.name, answer.version


def not_found(msg_id: str) -> tuple[str, str]:
    return "MessageNotFound", f"message {msg_id!r} not found [MESSAGE_NOT_FOUND]"


def refusal(call: Callable[[], Any]) -> tuple[str, str]:
    """The type and full text of what ``call()`` raises."""
    with pytest.raises(MsgStateError) as info:
        call()
    return type(info.value).__name__, str(info.value)


def in_shards(service: MessageService, shards: list[int]) -> list[str]:
    """One fresh id in each of ``shards`` (``x<n>`` names, unlike shard_ids')."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(shards):
        i += 1
        shard = service.shard(f"x{i}")  # type: ignore[attr-defined]
        if shard in shards and shard not in found:
            found[shard] = f"x{i}"
    return [found[s] for s in shards]


# -- _many after a move (_moved_away) --
#
# fresh_map: 16 virtual shards, the first database owns 0-4 (SHARD = 3), the
# second 5-9, the third 10-15. A service opened from the map file checks the
# file before each command; these moves are made with a copy of the map, and
# the file is replaced a moment later (the move finished on another host, or
# between the check and the command), so the bulk command first meets the old
# database, which no longer holds the shard's messages.


@pytest.fixture
def mapfile(tmp_path: Path) -> Path:
    return shardpg.fresh_map(tmp_path)


def made(path: Path, ids: list[str]) -> None:
    """Create ``ids`` with another service (the one under test has not read them)."""
    writer = ShardedMessageService(f"shards://{path}", clock=FakeClock())
    try:
        for msg_id in ids:
            make(writer, msg_id)
    finally:
        writer.close()


def move_behind(path: Path) -> tuple[Path, str, str]:
    """Move ``SHARD`` to the second database with a copy of ``path`` (which
    keeps the old map): the copy, the source and the target."""
    copy = path.with_name("moved.toml")
    shutil.copyfile(path, copy)
    source, target = list(ShardMap.load(path).databases)[:2]
    move_shard(copy, SHARD, target)
    return copy, source, target


def publish_after(seconds: float, copy: Path, path: Path) -> threading.Timer:
    timer = threading.Timer(seconds, os.replace, (copy, path))
    timer.start()
    return timer


@pytest.fixture
def stale(mapfile: Path) -> Iterator[tuple[ShardedMessageService, list[str]]]:
    """A service from the file (move_wait 5 s) and three messages of SHARD that
    another service made."""
    shard_map = ShardMap.load(mapfile)
    ids = [
        m
        for m in (f"u{i}" for i in range(200))
        if shard_map.shard_of(stream(m)) == SHARD
    ][:3]
    made(mapfile, ids)
    service = ShardedMessageService(
        f"shards://{mapfile}", clock=FakeClock(), move_wait=5
    )
    try:
        yield service, ids
    finally:
        service.close()


def deliveries(ids: list[str]) -> list[dict[str, Any]]:
    return [{"msg_id": m, "seq": f"s-{m}"} for m in ids]


def test_bulk_deliveries_after_a_move_are_saved_in_the_new_database(
    stale: tuple[ShardedMessageService, list[str]], mapfile: Path
) -> None:
    service, ids = stale
    copy, _, target = move_behind(mapfile)
    publish_after(0.2, copy, mapfile)
    answers, seconds = timed(lambda: service.record_deliveries(deliveries(ids)))
    assert [(m, "SEND_SUCC", 2) for m in ids] == [outcome(a) for a in answers]
    assert [2, 2, 2] == [service.databases[target].get(m).version for m in ids]
    assert (True, ShardMap.load(mapfile)) == (0.2 <= seconds < 2.5, service.shard_map)


def test_a_mixed_bulk_after_a_move_answers_each_item_in_order(
    stale: tuple[ShardedMessageService, list[str]], mapfile: Path
) -> None:
    """Moved messages are found in the new database; an id of the moved shard
    that exists nowhere, one of a shard still owned, and an invalid item keep
    their refusals; a message of another database is saved as usual."""
    service, ids = stale
    ghost, other, missing = in_shards(service, [SHARD, 12, 7])
    made(mapfile, [other])
    copy, _, _ = move_behind(mapfile)
    publish_after(0.2, copy, mapfile)
    items: list[Any] = [
        {"msg_id": ids[0], "code": TRANSIENT},
        {"msg_id": ghost, "code": TRANSIENT},
        {"msg_id": other, "code": TRANSIENT},
        {"msg_id": missing, "code": TRANSIENT},
        {"msg_id": "", "code": TRANSIENT},
        {"msg_id": ids[1], "code": TRANSIENT},
    ]
    answers, seconds = timed(lambda: service.record_failures(items))
    assert [
        (ids[0], "SEND_FAIL", 2),
        not_found(ghost),
        (other, "SEND_FAIL", 2),
        not_found(missing),
        ("InvalidArgument", "msg_id must not be empty, got '' [INVALID_ARGUMENT]"),
        (ids[1], "SEND_FAIL", 2),
    ] == [outcome(a) for a in answers]
    assert 0.2 <= seconds < 2.5, seconds


def test_ids_that_exist_nowhere_in_owned_shards_are_not_found_at_once(
    stale: tuple[ShardedMessageService, list[str]], mapfile: Path
) -> None:
    """No shard moved: no waiting for a newer map file (move_wait is 5 s)."""
    service, ids = stale
    owned = in_shards(service, [1, 7, 12])
    made(mapfile, owned[:2])
    missing = [f"{m}-missing" for m in owned]
    items = deliveries([ids[0], missing[0], owned[0], missing[1], owned[1]])
    items += deliveries([missing[2]])
    answers, seconds = timed(lambda: service.record_deliveries(items))
    assert [
        (ids[0], "SEND_SUCC", 2),
        not_found(missing[0]),
        (owned[0], "SEND_SUCC", 2),
        not_found(missing[1]),
        (owned[1], "SEND_SUCC", 2),
        not_found(missing[2]),
    ] == [outcome(a) for a in answers]
    assert seconds < 2, seconds


def test_an_id_that_exists_nowhere_in_a_frozen_shard_is_not_found_at_once(
    stale: tuple[ShardedMessageService, list[str]], mapfile: Path
) -> None:
    """A frozen shard is still the database's (a move is copying it out)."""
    service, _ = stale
    source = next(iter(ShardMap.load(mapfile).databases))
    [ghost] = in_shards(service, [SHARD])
    [owned] = in_shards(service, [1])
    made(mapfile, [owned])
    ShardTables(service.databases[source]).set_state(SHARD, FROZEN)
    answers, seconds = timed(
        lambda: service.record_deliveries(deliveries([ghost, owned]))
    )
    assert [not_found(ghost), (owned, "SEND_SUCC", 2)] == [outcome(a) for a in answers]
    assert seconds < 2, seconds


def test_an_old_database_that_records_nothing_of_the_shard_has_given_it_up(
    stale: tuple[ShardedMessageService, list[str]], mapfile: Path
) -> None:
    """No record at all (as an aborted move's target keeps) counts as not owned."""
    service, ids = stale
    copy, source, _ = move_behind(mapfile)
    ShardTables(service.databases[source]).delete_shard(SHARD, forget=True)
    publish_after(0.2, copy, mapfile)
    answers, seconds = timed(lambda: service.record_deliveries(deliveries(ids[:2])))
    assert [(m, "SEND_SUCC", 2) for m in ids[:2]] == [outcome(a) for a in answers]
    assert 0.2 <= seconds < 2.5, seconds


def test_opened_from_a_map_object_bulk_commands_on_a_moved_shard_are_not_found_at_once(
    mapfile: Path,
) -> None:
    old_map = ShardMap.load(mapfile)
    service = ShardedMessageService(old_map, clock=FakeClock(), move_wait=5)
    try:
        ids = shard_ids(service, SHARD, 2)
        made(mapfile, ids)
        move_shard(mapfile, SHARD, list(old_map.databases)[1])
        answers, seconds = timed(lambda: service.record_deliveries(deliveries(ids)))
        assert [not_found(m) for m in ids] == [outcome(a) for a in answers]
        assert (True, old_map) == (seconds < 2, service.shard_map), seconds
    finally:
        service.close()


def count_shard_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every read of a database's shard records from now on (one item each)."""
    reads: list[int] = []
    rows = ShardTables.rows

    def counted(self: ShardTables) -> dict[int, tuple[str, str, int]]:
        reads.append(1)
        return rows(self)

    monkeypatch.setattr(ShardTables, "rows", counted)
    return reads


def test_a_bulk_whose_items_are_all_found_reads_no_shard_records(
    stale: tuple[ShardedMessageService, list[str]],
    mapfile: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, ids = stale
    owned = in_shards(service, [7, 12])
    made(mapfile, owned)
    reads = count_shard_reads(monkeypatch)
    answers = service.record_deliveries(deliveries([ids[0], *owned]))
    assert ([(m, "SEND_SUCC", 2) for m in [ids[0], *owned]], []) == (
        [outcome(a) for a in answers],
        reads,
    )


def test_opened_from_a_map_object_not_found_items_read_no_shard_records(
    mapfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a file there is no newer map to follow: nothing to look up."""
    service = ShardedMessageService(ShardMap.load(mapfile), move_wait=5)
    try:
        missing = in_shards(service, [1, 7, 12])
        reads = count_shard_reads(monkeypatch)
        answers = service.record_deliveries(deliveries(missing))
    finally:
        service.close()
    assert ([not_found(m) for m in missing], []) == (
        [outcome(a) for a in answers],
        reads,
    )


# -- ShardedBatch --


@pytest.fixture
def urls() -> list[str]:
    return shardpg.fresh_urls(3)


@pytest.fixture
def shard_map(urls: list[str]) -> ShardMap:
    return shardpg.even_map(urls, 16)


@pytest.fixture
def sharded(shard_map: ShardMap) -> Iterator[ShardedMessageService]:
    service = ShardedMessageService(shard_map, clock=FakeClock(), move_wait=0.3)
    try:
        yield service
    finally:
        service.close()


def two_in_each(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> list[list[str]]:
    """Two created messages in each database, in the map's database order."""
    groups = ids_by_database(shard_map, 60)
    parts = [groups[u][:2] for u in urls]
    for ids in parts:
        for msg_id in ids:
            make(sharded, msg_id)
    return parts


def versions(shard_map: ShardMap, parts: list[list[str]]) -> list[list[int]]:
    """Each message's stored version, read by a new service (no cache)."""
    reader = ShardedMessageService(shard_map)
    try:
        return [[reader.get(m).version for m in ids] for ids in parts]
    finally:
        reader.close()


def fail_all(batch: Any, parts: list[list[str]]) -> None:
    for ids in parts:
        for msg_id in ids:
            batch.record_failure(msg_id, code=TRANSIENT)


USED_ONCE = (
    "InvalidArgument",
    "a batch is used once; start a new one [INVALID_ARGUMENT]",
)
OUTSIDE = ("InvalidArgument", "use a batch inside its with-block [INVALID_ARGUMENT]")


def test_a_batch_entered_again_after_its_block_is_refused_with_its_text(
    sharded: ShardedMessageService,
) -> None:
    batch = sharded.batch()
    with batch:
        pass
    assert USED_ONCE == refusal(batch.__enter__)


def test_a_batch_entered_again_inside_its_block_is_refused_with_its_text(
    sharded: ShardedMessageService,
) -> None:
    with sharded.batch() as batch:
        assert USED_ONCE == refusal(batch.__enter__)


COMMANDS: dict[str, Callable[[Any], Any]] = {
    "create": lambda b: b.create("m1", sender="a", user_id="b"),
    "record_failure": lambda b: b.record_failure("m1", code=TRANSIENT),
    "resend": lambda b: b.resend("m1", request_id="r"),
    "expire_send": lambda b: b.expire_send("m1", attempt=1),
    "record_delivery": lambda b: b.record_delivery("m1", seq="1"),
    "get": lambda b: b.get("m1"),
    "prefetch": lambda b: b.prefetch(["m1", "m2"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_before_the_block_is_refused_with_its_text(
    sharded: ShardedMessageService, command: str
) -> None:
    batch = sharded.batch()
    assert OUTSIDE == refusal(lambda: COMMANDS[command](batch))


@pytest.mark.parametrize("command", ["create", "get", "prefetch"])
def test_a_command_after_the_block_is_refused_with_its_text(
    sharded: ShardedMessageService, command: str
) -> None:
    with sharded.batch() as batch:
        batch.create("m0", sender="a", user_id="b")
    assert OUTSIDE == refusal(lambda: COMMANDS[command](batch))


def test_an_exception_in_the_block_saves_nothing_in_any_database(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    parts = two_in_each(sharded, shard_map, urls)
    stop = RuntimeError("stop")
    with pytest.raises(RuntimeError) as info, sharded.batch() as batch:
        fail_all(batch, parts)
        batch.create("new-one", sender="a", user_id="b")
        raise stop
    assert info.value is stop
    assert [[1, 1]] * 3 == versions(shard_map, parts)
    assert not_found("new-one") == refusal(lambda: sharded.get("new-one"))


def test_pending_and_changed_cover_every_databases_part_in_first_use_order(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    groups = ids_by_database(shard_map, 60)
    a, b, c = groups[urls[1]][0], groups[urls[0]][0], groups[urls[1]][1]
    make(sharded, c)
    with sharded.batch() as batch:
        seen = [(batch.pending, batch.changed)]
        batch.create(a, sender="s", user_id="u")
        batch.create(b, sender="s", user_id="u")
        batch.record_failure(b, code=TRANSIENT)
        batch.get(c)
        seen.append((batch.pending, batch.changed))
        batch.record_failure(c, code=TRANSIENT)
        seen.append((batch.pending, batch.changed))
    assert [(0, ()), (3, (a, b)), (4, (a, c, b))] == seen


def test_a_failure_in_a_later_database_is_batch_partially_saved_with_its_text(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    parts = two_in_each(sharded, shard_map, urls)
    other = MessageService.open(urls[1])
    try:
        with pytest.raises(BatchPartiallySaved) as info, sharded.batch() as batch:
            fail_all(batch, parts)
            other.record_delivery(parts[1][1], seq="elsewhere")
    finally:
        other.close()
    error = info.value
    cause = (
        "another writer changed one of this batch's 2 messages; nothing was saved, "
        "run the batch again"
    )
    assert (
        ErrorCode.BATCH_PARTIALLY_SAVED,
        "this batch was saved in 1 of 3 databases: 2 messages saved, 4 not "
        f"({cause} [CONCURRENCY_CONFLICT]); rerun the unsaved ones",
        tuple(parts[0]),
        tuple(parts[1] + parts[2]),
        ConcurrencyConflict,
        f"{cause} [CONCURRENCY_CONFLICT]",
    ) == (
        error.code,
        error.desc,
        error.saved,
        error.unsaved,
        type(error.cause),
        str(error.cause),
    )


def test_after_a_failure_the_later_databases_parts_are_not_saved(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    parts = two_in_each(sharded, shard_map, urls)
    other = MessageService.open(urls[1])
    try:
        with pytest.raises(BatchPartiallySaved), sharded.batch() as batch:
            fail_all(batch, parts)
            other.record_delivery(parts[1][1], seq="elsewhere")
    finally:
        other.close()
    assert [[2, 2], [1, 2], [1, 1]] == versions(shard_map, parts)


def test_when_the_first_database_fails_its_own_error_is_raised_and_nothing_saved(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    parts = two_in_each(sharded, shard_map, urls)
    other = MessageService.open(urls[0])
    try:
        with pytest.raises(MsgStateError) as info, sharded.batch() as batch:
            fail_all(batch, parts)
            other.record_delivery(parts[0][0], seq="elsewhere")
    finally:
        other.close()
    assert (
        ConcurrencyConflict,
        "another writer changed one of this batch's 2 messages; nothing was saved, "
        "run the batch again [CONCURRENCY_CONFLICT]",
    ) == (type(info.value), str(info.value))
    assert [[2, 1], [1, 1], [1, 1]] == versions(shard_map, parts)


# -- wait_for_projections --


@pytest.fixture
def external(shard_map: ShardMap) -> Iterator[ShardedMessageService]:
    service = ShardedMessageService(shard_map, projections="external")
    try:
        yield service
    finally:
        service.close()


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (-1, "timeout must be between 0 and 86400.0 s, got -1"),
        (86_400.5, "timeout must be between 0 and 86400.0 s, got 86400.5"),
        (float("nan"), "timeout must be between 0 and 86400.0 s, got nan"),
        ("1", "timeout must be a number of seconds, got '1'"),
        (None, "timeout must be a number of seconds, got None"),
        (True, "timeout must be a number of seconds, got True"),
    ],
)
def test_wait_for_projections_refuses_a_bad_timeout_with_its_text(
    external: ShardedMessageService, timeout: Any, expected: str
) -> None:
    assert ("InvalidArgument", f"{expected} [INVALID_ARGUMENT]") == refusal(
        lambda: external.wait_for_projections(timeout)
    )


@pytest.mark.parametrize("timeout", [0, 0.0, 5, 86_400.0])
def test_wait_for_projections_returns_at_once_when_every_database_is_caught_up(
    external: ShardedMessageService,
    shard_map: ShardMap,
    urls: list[str],
    timeout: float,
) -> None:
    groups = ids_by_database(shard_map, 30)
    for url in urls:
        make(external, groups[url][0])
    external.catch_up_projections()
    answer, seconds = timed(lambda: external.wait_for_projections(timeout))
    assert (None, True) == (answer, seconds < 1), seconds


def asked_to_wait(
    service: ShardedMessageService, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, float]]:
    """What each database's own wait_for_projections is asked, in order."""
    asked: list[tuple[str, float]] = []
    for url, database in service.databases.items():
        monkeypatch.setattr(
            database,
            "wait_for_projections",
            lambda timeout, url=url: asked.append((url, timeout)),
        )
    return asked


def test_wait_for_projections_gives_every_database_what_is_left_of_10_s_by_default(
    external: ShardedMessageService, urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = asked_to_wait(external, monkeypatch)
    external.wait_for_projections()
    assert [(u, True) for u in urls] == [(u, 9.0 < t <= 10.0) for u, t in asked]


def test_wait_for_projections_of_0_s_gives_every_database_0_s(
    external: ShardedMessageService, urls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = asked_to_wait(external, monkeypatch)
    external.wait_for_projections(0)
    assert [(u, 0.0) for u in urls] == asked


def test_wait_for_projections_shares_one_timeout_among_the_databases(
    external: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    """The first database's runner catches up after 0.5 s; the last has none:
    the wait ends at the 1 s timeout, not 0.5 s + 1 s."""
    groups = ids_by_database(shard_map, 30)
    make(external, groups[urls[0]][0])
    make(external, groups[urls[2]][0])
    runner = MessageService.open(urls[0], projections="external")
    timer = threading.Timer(0.5, runner.catch_up_projections)
    timer.start()
    try:
        answer, seconds = timed(lambda: external.wait_for_projections(1.0))
    finally:
        timer.join()
        runner.close()
    assert (ProjectionTimeout, True, [0, 0, 1]) == (
        type(answer),
        0.95 <= seconds < 1.4,
        [external.databases[u].projection_lag() for u in urls],
    ), seconds
    assert str(answer).startswith("read models did not reach notification 1 within 0.")
