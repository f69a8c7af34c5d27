"""Shard moves: the report, the source's refusal and the copy check, exactly
(written to kill mutants of ``shards._move`` and ``_verify``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from msgstate import InvalidArgument, MessageService, ShardMap, StorageError, move_shard
from msgstate._pg_shards import INCOMING, OWNED, ShardTables
from msgstate.storage import _redact
from tests import shardpg
from tests.test_shard_move import Crash, crash_at

SHARD = 3  # of 16: in the first database of shardpg.even_map (0-4)


def shard_ids(service: Any, shard: int, count: int) -> list[str]:
    found: list[str] = []
    i = 0
    while len(found) < count:
        i += 1
        if service.shard(f"v{i}") == shard:
            found.append(f"v{i}")
    return found


def states(url: str) -> dict[int, str]:
    service = MessageService.open(url)
    try:
        return {s: row[0] for s, row in ShardTables(service).rows().items()}
    finally:
        service.close()


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Path, list[str]]:
    path = shardpg.fresh_map(tmp_path)
    service = MessageService.open(f"shards://{path}")
    ids = shard_ids(service, SHARD, 5)
    for msg_id in ids:
        service.create(msg_id, sender="s", user_id="u")
        service.record_failure(msg_id, code=6012)
    service.close()
    return path, ids


def test_a_move_reports_what_it_moved(filled: tuple[Path, list[str]]) -> None:
    path, ids = filled
    old = ShardMap.load(path)
    source = old.database_of(SHARD)
    target = list(old.databases)[2]
    report = move_shard(path, SHARD, target)
    assert (SHARD, _redact(source), _redact(target)) == (
        report.shard,
        report.source,
        report.target,
    )
    assert (len(ids), 2 * len(ids), False) == (
        report.streams,
        report.events,
        report.resumed,
    )
    assert 0 <= report.frozen_seconds <= report.seconds


def test_moving_from_a_database_that_records_no_shards_is_refused(
    tmp_path: Path,
) -> None:
    path = shardpg.fresh_map(tmp_path)  # written, never opened: nothing claimed
    old = ShardMap.load(path)
    source, target = old.database_of(SHARD), list(old.databases)[1]
    with pytest.raises(StorageError) as refused:
        move_shard(path, SHARD, target)
    assert (
        f"shard map conflict: {_redact(source)} does not own shard {SHARD} "
        "(it records nothing)"
    ) == refused.value.desc
    assert old == ShardMap.load(path)


def lose(which: int) -> Any:
    """``insert_copies`` that drops row ``which`` of each chunk it copies."""
    insert = ShardTables.insert_copies

    def lossy(self: ShardTables, shard: int, rows: Any, watermark: int) -> None:
        kept = [r for i, r in enumerate(rows) if i != which % max(1, len(rows))]
        insert(self, shard, kept, watermark)

    return lossy


def test_a_copy_missing_a_last_version_is_not_handed_over(
    filled: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, ids = filled
    old = ShardMap.load(path)
    source, target = old.database_of(SHARD), list(old.databases)[1]
    with monkeypatch.context() as patch:
        patch.setattr(ShardTables, "insert_copies", lose(-1))  # a stream's v2
        with pytest.raises(StorageError) as refused:
            move_shard(path, SHARD, target)
    assert (
        f"shard {SHARD}: the copy in {_redact(target)} differs from "
        f"{_redact(source)} in 1 of {len(ids)} streams; nothing was handed over "
        "(abort the move, then run it again)"
    ) == refused.value.desc
    assert OWNED == states(source)[SHARD]  # checked before the freeze
    assert INCOMING == states(target)[SHARD]
    assert old == ShardMap.load(path)
    move_shard(path, SHARD, target, abort=True)
    report = move_shard(path, SHARD, target)
    assert len(ids) == report.streams
    service = MessageService.open(f"shards://{path}")
    assert [2] * len(ids) == [service.get(m).version for m in ids]
    service.close()


def test_a_copy_missing_an_early_event_is_not_handed_over(
    filled: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, ids = filled
    old = ShardMap.load(path)
    source, target = old.database_of(SHARD), list(old.databases)[1]
    with monkeypatch.context() as patch:
        patch.setattr(ShardTables, "insert_copies", lose(0))  # a stream's v1
        with pytest.raises(StorageError) as refused:
            move_shard(path, SHARD, target)
    events = 2 * len(ids)
    assert (
        f"shard {SHARD}: {_redact(target)} holds {events - 1} events in "
        f"{len(ids)} streams, {_redact(source)} {events} in {len(ids)}; nothing "
        "was handed over (abort the move, then run it again)"
    ) == refused.value.desc
    assert INCOMING == states(target)[SHARD]
    assert old == ShardMap.load(path)


def test_moved_refuses_a_shard_outside_the_map() -> None:
    shard_map = ShardMap(4, {"postgresql://u@h/a": "0-1", "postgresql://u@h/b": "2-3"})
    for bad in (-1, 4, 5):
        with pytest.raises(InvalidArgument) as refused:
            shard_map.moved(bad, "postgresql://u@h/b")
        assert f"shard must be between 0 and 3, got {bad!r}" == refused.value.desc
    with pytest.raises(InvalidArgument) as refused:
        shard_map.moved("1", "postgresql://u@h/b")  # type: ignore[arg-type]
    assert refused.value.desc.startswith("shard ")
    assert {"postgresql://u@h/a": (0, 1), "postgresql://u@h/b": (2, 3)} == dict(
        shard_map.moved(3, "postgresql://u@h/b").databases
    )
    assert {"postgresql://u@h/a": (0, 1, 3), "postgresql://u@h/b": (2,)} == dict(
        shard_map.moved(3, "postgresql://u@h/a").databases
    )


def test_counts_mid_move_leave_out_every_row_of_the_incoming_copy(
    tmp_path: Path,
) -> None:
    """The copy's rows are subtracted per status and per code, however many
    (status, code) groups it has, delivered-after-failure ones included."""
    path = shardpg.fresh_map(tmp_path)
    service = MessageService.open(f"shards://{path}")
    ids = shard_ids(service, SHARD, 9)
    for i, msg_id in enumerate(ids):
        service.create(msg_id, sender="s", user_id="u")
        if i % 3 != 2:
            service.record_failure(msg_id, code=6012 if i % 3 == 0 else 80001)
        if i >= 6:
            service.record_failure(msg_id, code=6012)
            service.record_delivery(msg_id, seq="1")  # SEND_SUCC, a last code
    statuses, codes = service.status_counts(), service.counts_by_error_code()
    target = list(ShardMap.load(path).databases)[1]

    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at("copied"))
    service.catch_up_projections()
    assert statuses == service.status_counts()
    assert codes == service.counts_by_error_code()
    assert 9 == sum(service.status_counts().values())
    service.close()


# -- due_resends: the default limit, the clock and a limit past 100 --


@pytest.fixture(scope="module")
def crowd() -> Any:
    """A map of two databases where 250 messages (over 100 in each database)
    fall due at the same moment."""
    from datetime import timedelta

    from msgstate import ResendPolicy
    from tests.support import FakeClock

    clock = FakeClock()
    policy = ResendPolicy(initial_interval=timedelta(seconds=10), jitter=0.0)
    service = MessageService.open(
        shardpg.even_map(shardpg.fresh_urls(2)), clock=clock, policy=policy
    )
    for i in range(250):
        msg_id = f"due-{i:03d}"
        service.create(msg_id, sender="s", user_id="u")
        service.record_failure(msg_id, code=6012)
    yield service, clock
    service.close()


def test_due_resends_gives_100_by_default_and_reads_the_clock(crowd: Any) -> None:
    service, clock = crowd
    assert [] == service.due_resends()  # not yet: the backoff runs from now
    clock.advance(seconds=60)
    assert 100 == len(service.due_resends())
    assert 100 == len(service.due_resends(clock()))


def test_due_resends_gives_more_than_100_when_asked(crowd: Any) -> None:
    service, clock = crowd
    clock.advance(seconds=60)
    due = service.due_resends(limit=250)
    assert 250 == len(due)
    assert sorted(v.msg_id for v in due) == [f"due-{i:03d}" for i in range(250)]


def test_stuck_sends_gives_more_than_100_when_asked(tmp_path: Path) -> None:
    from datetime import timedelta

    from msgstate import ResendPolicy
    from tests.support import FakeClock

    clock = FakeClock()
    service = MessageService.open(
        shardpg.even_map(shardpg.fresh_urls(2)),
        clock=clock,
        policy=ResendPolicy(send_timeout=timedelta(seconds=30)),
    )
    with service.batch() as batch:
        for i in range(250):
            batch.create(f"stuck-{i:03d}", sender="s", user_id="u")
    clock.advance(seconds=31)
    stuck = service.stuck_sends(limit=250)
    service.close()
    assert [f"stuck-{i:03d}" for i in range(250)] == sorted(v.msg_id for v in stuck)


# -- a batch's expire_send on a map --


def test_a_batch_expires_stuck_sends_in_every_database(tmp_path: Path) -> None:
    from datetime import timedelta

    from msgstate import ErrorCode, MessageStatus, ResendPolicy
    from tests.support import FakeClock

    clock = FakeClock()
    policy = ResendPolicy(send_timeout=timedelta(seconds=30))
    service = MessageService.open(
        f"shards://{shardpg.fresh_map(tmp_path)}", clock=clock, policy=policy
    )
    ids = [f"stuck-{i}" for i in range(12)]
    for msg_id in ids:
        service.create(msg_id, sender="s", user_id="u")
    clock.advance(seconds=31)
    with service.batch() as batch:
        views = [batch.expire_send(m, attempt=1, actor="sweeper") for m in ids]
    assert [MessageStatus.SEND_FAIL] * 12 == [v.status for v in views]
    assert ids == [v.msg_id for v in views]
    got = [service.get(m) for m in ids]
    assert [int(ErrorCode.SEND_TIMED_OUT)] * 12 == [v.last_error_code for v in got]
    assert all("sweeper" in (v.last_error_desc or "") for v in got)
    assert 3 == len({service.shard_map.database_of(service.shard(m)) for m in ids})
    service.close()


# -- a move interrupted after its map was written --


def test_a_move_stopped_after_the_map_was_written_finishes_when_run_again(
    filled: tuple[Path, list[str]],
) -> None:
    path, ids = filled
    old = ShardMap.load(path)
    source, target = old.database_of(SHARD), list(old.databases)[2]

    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at("map written"))
    assert target == ShardMap.load(path).database_of(SHARD)
    report = move_shard(path, SHARD, target)  # the source's copy is deleted
    assert (True, _redact(source), _redact(target)) == (
        report.resumed,
        report.source,
        report.target,
    )
    assert (len(ids), 0) == (report.streams, report.events)
    service = MessageService.open(source)
    assert (0, 0) == ShardTables(service).summary(SHARD)
    service.close()
    with pytest.raises(InvalidArgument) as done:
        move_shard(path, SHARD, target)
    assert f"shard {SHARD} is already in {_redact(target)}" == done.value.desc
    with pytest.raises(InvalidArgument) as late:
        move_shard(path, SHARD, target, abort=True)
    assert (
        f"shard {SHARD} is already in {_redact(target)} (the move was handed "
        "over; it can't be aborted)"
    ) == late.value.desc


def test_a_finished_move_is_found_past_a_database_never_opened(
    tmp_path: Path,
) -> None:
    """A database added to the map file by hand (no shard records yet) is
    skipped while looking for the move's source."""
    path = shardpg.fresh_map(tmp_path)
    service = MessageService.open(f"shards://{path}")
    ids = shard_ids(service, SHARD, 3)
    for msg_id in ids:
        service.create(msg_id, sender="s", user_id="u")
    service.close()
    old = ShardMap.load(path)
    target = list(old.databases)[1]
    extra = shardpg.fresh_urls(1)[0]
    with_extra = ShardMap(
        old.virtual_shards,
        {extra: "", **{u: ",".join(map(str, s)) for u, s in old.databases.items()}},
    )
    with_extra.save(path)

    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at("map written"))
    report = move_shard(path, SHARD, target)
    assert (True, len(ids)) == (report.resumed, report.streams)


# -- prefetch goes on past an invalid id --


def test_prefetch_goes_on_past_an_invalid_id(tmp_path: Path) -> None:
    from msgstate import ConcurrencyConflict

    shard_map = shardpg.even_map(shardpg.fresh_urls(3))
    writer = MessageService.open(shard_map)
    existing = [f"pre-{i}" for i in range(6)]
    for msg_id in existing:
        writer.create(msg_id, sender="alice", user_id="bob")
    writer.close()
    reader = MessageService.open(shard_map)  # nothing cached
    try:
        with reader.batch() as batch:
            batch.prefetch(["", *existing])  # "" is left for a command to refuse
            answers = [batch.create(m, sender="alice", user_id="bob") for m in existing]
    except ConcurrencyConflict:  # ids after the "" were not read
        pytest.fail("prefetch stopped at the invalid id")
    finally:
        reader.close()
    assert [1] * 6 == [a.version for a in answers]


# -- record_* beside a frozen shard: every item answered, in bounded time --


def test_record_failures_answer_every_item_when_a_shard_stays_frozen(
    tmp_path: Path,
) -> None:
    import threading
    import time

    from msgstate import MessageView, ShardedMessageService, ShardMoving
    from msgstate._pg_shards import FROZEN

    path = shardpg.fresh_map(tmp_path)
    service = ShardedMessageService(f"shards://{path}", move_wait=0.3)
    frozen = shard_ids(service, SHARD, 3)
    owner = service.shard_map.database_of(SHARD)
    others = [
        m
        for m in (f"w{i}" for i in range(200))
        if service.shard_map.database_of(service.shard(m)) != owner
    ][:4]
    for msg_id in frozen + others:
        service.create(msg_id, sender="s", user_id="u")
    ShardTables(service.databases[owner]).set_state(SHARD, FROZEN)
    items = [{"msg_id": m, "code": 6012} for m in frozen + others]
    box: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        box["outcomes"] = service.record_failures(items)
        box["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "record_failures never returned"
    outcomes = box["outcomes"]
    assert [ShardMoving] * 3 + [MessageView] * 4 == [type(o) for o in outcomes]
    assert 0.3 <= box["seconds"] < 1.0
    assert [2] * 4 == [service.get(m).version for m in others]
    service.close()


def test_record_deliveries_of_a_moved_shard_give_up_when_the_map_stays_old(
    tmp_path: Path,
) -> None:
    """The shard moved (the copy is deleted) but this host's map file was never
    updated: the items answer MessageNotFound after ``move_wait``."""
    import shutil
    import time

    from msgstate import MessageNotFound, ShardedMessageService

    path = shardpg.fresh_map(tmp_path)
    writer = MessageService.open(f"shards://{path}")
    ids = shard_ids(writer, SHARD, 3)
    for msg_id in ids:
        writer.create(msg_id, sender="s", user_id="u")
    writer.close()
    # Opened before the move, with none of the messages cached.
    service = ShardedMessageService(f"shards://{path}", move_wait=0.3)
    elsewhere = tmp_path / "mover.toml"
    shutil.copy(path, elsewhere)
    move_shard(elsewhere, SHARD, list(ShardMap.load(path).databases)[1])
    started = time.monotonic()
    outcomes = service.record_deliveries([{"msg_id": m, "seq": "1"} for m in ids])
    seconds = time.monotonic() - started
    assert [MessageNotFound] * 3 == [type(o) for o in outcomes]
    assert 0.3 <= seconds < 2.0
    service.close()


# -- a map of one database --


def test_a_map_of_one_database_answers_as_that_database(tmp_path: Path) -> None:
    url = shardpg.fresh_urls(1)[0]
    service = MessageService.open(ShardMap(4, {url: "0-3"}))
    for i in range(5):
        service.create(f"one-{i}", sender="s", user_id="u")
        service.record_failure(f"one-{i}", code=80001)
    assert [f"one-{i}" for i in range(5)] == [d.msg_id for d in service.dead_letters()]
    assert 5 == sum(service.status_counts().values())
    service.close()


# -- the report counts every chunk copied --


def test_a_move_in_small_chunks_reports_every_event(
    filled: tuple[Path, list[str]],
) -> None:
    path, ids = filled
    target = list(ShardMap.load(path).databases)[1]
    report = move_shard(path, SHARD, target, chunk=3)
    assert (len(ids), 2 * len(ids)) == (report.streams, report.events)


# -- abort: its report, and its refusal once the target owns the shard --


def test_an_abort_reports_its_own_time(filled: tuple[Path, list[str]]) -> None:
    path, _ = filled
    target = list(ShardMap.load(path).databases)[1]

    with pytest.raises(Crash):
        move_shard(path, SHARD, target, progress=crash_at("copied"))
    report = move_shard(path, SHARD, target, abort=True)
    assert (0, 0, 0.0, True) == (
        report.streams,
        report.events,
        report.frozen_seconds,
        report.resumed,
    )
    assert 0 <= report.seconds < 60


def test_no_abort_once_the_target_owns_the_shard(
    filled: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the target's taking the shard and the source's fence: the
    target's copy is the shard now, so an abort (which deletes it) is refused."""
    from msgstate._pg_shards import MOVED

    path, ids = filled
    old = ShardMap.load(path)
    source, target = old.database_of(SHARD), list(old.databases)[1]
    set_state = ShardTables.set_state

    class Killed(Exception):
        pass

    def dies(self: ShardTables, shard: int, state: str, peer: str = "") -> None:
        if state == MOVED:
            raise Killed
        set_state(self, shard, state, peer)

    with monkeypatch.context() as patch:
        patch.setattr(ShardTables, "set_state", dies)
        with pytest.raises(Killed):
            move_shard(path, SHARD, target)
    assert OWNED == states(target)[SHARD]
    with pytest.raises(InvalidArgument) as refused:
        move_shard(path, SHARD, target, abort=True)
    assert (
        f"shard {SHARD} was handed over to {_redact(target)} already; finish the "
        "move by running it again without abort"
    ) == refused.value.desc
    report = move_shard(path, SHARD, target)
    assert (True, len(ids)) == (report.resumed, report.streams)
    assert target == ShardMap.load(path).database_of(SHARD)
    assert "moved" == states(source)[SHARD]
