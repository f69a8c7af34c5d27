"""Shard maps: exact answers and texts (written to kill mutants of shards.py and
_pg_shards.py; see tests/mutation.py)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from msgstate import (
    ConcurrencyConflict,
    ErrorCode,
    MessageNotFound,
    MessageService,
    MessageStatus,
    MsgStateError,
    ResendPolicy,
    ShardedMessageService,
    ShardMap,
    ShardMoved,
    move_shard,
)
from msgstate.shards import shard_status
from msgstate.storage import _redact
from tests import shardpg
from tests.support import EPOCH, FakeClock
from tests.test_shard_move import SHARD, Crash, crash_at, shard_ids
from tests.test_shards import PERMANENT, TRANSIENT, Fed, ids_by_database, make, stream

CROWD_POLICY = ResendPolicy(
    max_attempts=3,
    send_timeout=timedelta(seconds=30),
    max_age=timedelta(hours=1),
)


# -- helpers --


def refusal(call: Callable[[], Any]) -> tuple[str, str]:
    """The type and full text of what ``call()`` raises."""
    with pytest.raises(MsgStateError) as info:
        call()
    return type(info.value).__name__, str(info.value)


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


class Ticking:
    """A clock that moves on ``step`` each time it is read (from ``start``)."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now, self.step, self.reads = start, step, 0

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        self.reads += 1
        return now


def timed(call: Callable[[], Any], limit: float = 10.0) -> tuple[Any, float]:
    """``call()``'s answer (or what it raised) and the seconds it took, run in a
    thread that must end within ``limit`` (a loop that never ends fails)."""
    box: dict[str, Any] = {}

    def run() -> None:
        started = time.monotonic()
        try:
            box["answer"] = call()
        except Exception as error:
            box["answer"] = error
        box["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"still running after {limit} s", pytrace=False)
    return box["answer"], box["seconds"]


def with_password(url: str) -> str:
    """``url`` with a password if it has none (the test servers trust local
    connections, so any password works)."""
    parts = urlsplit(url)
    if parts.password is not None or parts.username is None:
        return url
    netloc = parts.netloc.replace(f"{parts.username}@", f"{parts.username}:s3cret@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# -- refusals: exact texts --


@pytest.fixture(scope="module")
def idle() -> Iterator[ShardedMessageService]:
    """A sharded service over a fresh map of three databases, left empty (for
    refusals and empty answers)."""
    service = ShardedMessageService(shardpg.even_map(shardpg.fresh_urls(3)))
    try:
        yield service
    finally:
        service.close()


def test_archive_on_a_sharded_service_is_refused_with_its_text(
    idle: ShardedMessageService, tmp_path: Path
) -> None:
    expected = (
        "InvalidArgument",
        "archive a shard map one database at a time: "
        "service.databases[url].archive(before, to=<a file per database>) "
        "[INVALID_ARGUMENT]",
    )
    assert expected == refusal(lambda: idle.archive(EPOCH, to=tmp_path / "a.jsonl"))


def test_restore_on_a_sharded_service_is_refused_with_its_text(
    idle: ShardedMessageService, tmp_path: Path
) -> None:
    expected = (
        "InvalidArgument",
        "restore into a shard map one database at a time: "
        "service.databases[url].restore(path) [INVALID_ARGUMENT]",
    )
    assert expected == refusal(lambda: idle.restore(tmp_path / "a.jsonl"))


def test_open_without_a_map_is_refused_with_its_text() -> None:
    expected = (
        "InvalidArgument",
        "a sharded service needs a ShardMap or shards:/// URL [INVALID_ARGUMENT]",
    )
    assert expected == refusal(lambda: ShardedMessageService.open(None))


def test_open_with_a_map_passes_every_option_on(clock: FakeClock) -> None:
    shard_map = shardpg.even_map(shardpg.fresh_urls(3))
    clock.advance(42)
    policy = ResendPolicy(max_attempts=7)
    service = ShardedMessageService.open(shard_map, clock=clock, policy=policy)
    try:
        created = make(service, "m1")
        answer = (type(service), service.shard_map, service.policy, created.created_at)
    finally:
        service.close()
    assert (ShardedMessageService, shard_map, policy, at(42)) == answer


@pytest.mark.parametrize("query", ["due_resends", "stuck_sends", "dead_letters"])
@pytest.mark.parametrize("limit", [0, 100_001, True, -1])
def test_a_limit_out_of_range_is_refused_as_by_a_single_database(
    idle: ShardedMessageService,
    memory_service: MessageService,
    query: str,
    limit: Any,
) -> None:
    expected = refusal(lambda: getattr(memory_service, query)(limit=limit))
    assert expected == refusal(lambda: getattr(idle, query)(limit=limit))


@pytest.mark.parametrize("query", ["due_resends", "stuck_sends", "dead_letters"])
def test_a_limit_of_one_is_accepted(idle: ShardedMessageService, query: str) -> None:
    assert [] == getattr(idle, query)(limit=1)


def test_the_limit_refusal_names_the_limit(idle: ShardedMessageService) -> None:
    expected = (
        "InvalidArgument",
        "limit must be between 1 and 100000, got 0 [INVALID_ARGUMENT]",
    )
    assert [expected] * 3 == [
        refusal(lambda: idle.due_resends(limit=0)),
        refusal(lambda: idle.stuck_sends(limit=0)),
        refusal(lambda: idle.dead_letters(limit=0)),
    ]


# -- stuck sends and dead letters, merged across the databases --


class Crowd:
    """A map over three databases holding, on one FakeClock:

    * 101 sends left in flight (``s000``-``s100``), ``s<i>`` started at
      ``EPOCH + i // 4`` s (so four at each instant: ties, across databases);
    * 101 dead letters (``d000``-``d100``, a permanent failure each);
    * six messages failed transiently at ``EPOCH + 40`` s (``a0``-``a5``, two per
      database), dead once ``max_age`` (an hour) has passed;

    the clock left at ``EPOCH + 120`` s (every send stuck, no ``a`` dead).
    """

    def __init__(self) -> None:
        self.shard_map = shardpg.even_map(shardpg.fresh_urls(3))
        self.clock = FakeClock()
        self.sharded = ShardedMessageService(
            self.shard_map, policy=CROWD_POLICY, clock=self.clock
        )
        self.stuck = [f"s{i:03d}" for i in range(101)]
        for i, msg_id in enumerate(self.stuck):
            self.clock.now = at(i // 4)
            make(self.sharded, msg_id)
        self.clock.now = at(30)
        self.dead = [f"d{i:03d}" for i in range(101)]
        for msg_id in self.dead:
            make(self.sharded, msg_id)
        self.sharded.record_failures(
            [{"msg_id": m, "code": PERMANENT} for m in self.dead]
        )
        self.clock.now = at(40)
        candidates = [f"a{i}" for i in range(40)]
        by_url: dict[str, list[str]] = {url: [] for url in self.shard_map.databases}
        for msg_id in candidates:
            by_url[self.url_of(msg_id)].append(msg_id)
        self.aging = sorted(m for ids in by_url.values() for m in ids[:2])
        for msg_id in self.aging:
            make(self.sharded, msg_id)
            self.sharded.record_failure(msg_id, code=TRANSIENT)
        self.clock.now = at(120)

    def url_of(self, msg_id: str) -> str:
        return self.shard_map.database_of(self.shard_map.shard_of(stream(msg_id)))

    def started(self, msg_id: str) -> datetime:
        return at(int(msg_id[1:]) // 4)

    def stuck_order(self, ids: list[str]) -> list[str]:
        """``ids`` as stuck_sends orders them: send start, then stream id."""
        return sorted(ids, key=lambda m: (self.started(m), stream(m).bytes))

    def close(self) -> None:
        self.sharded.close()


@pytest.fixture(scope="module")
def crowd() -> Iterator[Crowd]:
    """Read-only: shared by the tests of stuck sends and dead letters."""
    made = Crowd()
    try:
        yield made
    finally:
        made.close()


def test_the_crowd_spreads_over_every_database(crowd: Crowd) -> None:
    """Ties and every kind of message in each database (else merging proves
    little)."""
    spread = {
        url: (
            sum(crowd.url_of(m) == url for m in crowd.stuck) > 20,
            sum(crowd.url_of(m) == url for m in crowd.dead) > 20,
            sum(crowd.url_of(m) == url for m in crowd.aging),
        )
        for url in crowd.shard_map.databases
    }
    tied = [len({crowd.url_of(m) for m in crowd.stuck[i : i + 4]}) for i in (0, 4, 8)]
    assert dict.fromkeys(crowd.shard_map.databases, (True, True, 2)) == spread
    assert [True] * 3 == [n >= 2 for n in tied]


def test_stuck_sends_by_default_are_the_first_100_at_the_clock(crowd: Crowd) -> None:
    expected = crowd.stuck_order(crowd.stuck)[:100]
    assert expected == [v.msg_id for v in crowd.sharded.stuck_sends()]


def test_stuck_sends_are_ordered_by_send_start_then_stream_id(crowd: Crowd) -> None:
    answer = crowd.sharded.stuck_sends(limit=1000)
    expected = [(m, crowd.started(m)) for m in crowd.stuck_order(crowd.stuck)]
    assert expected == [(v.msg_id, v.updated_at) for v in answer]


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 99, 101])
def test_stuck_sends_give_exactly_the_first_limit(crowd: Crowd, limit: int) -> None:
    expected = crowd.stuck_order(crowd.stuck)[:limit]
    assert expected == [v.msg_id for v in crowd.sharded.stuck_sends(limit=limit)]


def test_stuck_sends_at_an_explicit_moment(crowd: Crowd) -> None:
    """At EPOCH + 40.5 s, with a 30 s send timeout: the sends started by 10.5 s."""
    expected = crowd.stuck_order([m for m in crowd.stuck if int(m[1:]) // 4 <= 10])
    answer = crowd.sharded.stuck_sends(now=at(40.5), limit=1000)
    assert (44, expected) == (len(expected), [v.msg_id for v in answer])


def test_stuck_sends_without_now_read_the_clock_once_for_every_database(
    crowd: Crowd,
) -> None:
    """One moment for the whole map: a clock that moves an hour at each read
    must not give the databases asked later a later moment."""
    clock = Ticking(at(40.5), timedelta(hours=1))
    service = ShardedMessageService(crowd.shard_map, policy=CROWD_POLICY, clock=clock)
    try:
        clock.now, clock.reads = at(40.5), 0
        answer = [v.msg_id for v in service.stuck_sends(limit=1000)]
        reads = clock.reads
    finally:
        service.close()
    expected = crowd.stuck_order([m for m in crowd.stuck if int(m[1:]) // 4 <= 10])
    assert (expected, 1) == (answer, reads)


def test_dead_letters_by_default_are_the_first_100_at_the_clock(crowd: Crowd) -> None:
    assert crowd.dead[:100] == [d.msg_id for d in crowd.sharded.dead_letters()]


@pytest.mark.parametrize(
    ("after", "limit", "expected"),
    [
        ("d050", 5, ["d051", "d052", "d053", "d054", "d055"]),
        ("d098", 5, ["d099", "d100"]),
        ("d100", 5, []),
        ("a", 2, ["d000", "d001"]),
    ],
)
def test_dead_letters_after_an_id(
    crowd: Crowd, after: str, limit: int, expected: list[str]
) -> None:
    answer = crowd.sharded.dead_letters(limit=limit, after=after)
    assert expected == [d.msg_id for d in answer]


def test_dead_letters_at_an_explicit_moment(crowd: Crowd) -> None:
    """Two hours on, the transient failures are past max_age: dead, first by id."""
    answer = crowd.sharded.dead_letters(now=at(7200), limit=8)
    expected = [*crowd.aging, "d000", "d001"]
    assert expected == [d.msg_id for d in answer]


def test_dead_letters_at_an_explicit_moment_with_after(crowd: Crowd) -> None:
    answer = crowd.sharded.dead_letters(now=at(7200), limit=3, after=crowd.aging[3])
    expected = [*crowd.aging[4:], "d000"]
    assert expected == [d.msg_id for d in answer]


def test_dead_letters_without_now_read_the_clock_once_for_every_database(
    crowd: Crowd,
) -> None:
    clock = Ticking(at(120), timedelta(hours=1))
    service = ShardedMessageService(crowd.shard_map, policy=CROWD_POLICY, clock=clock)
    try:
        clock.now, clock.reads = at(120), 0
        answer = [d.msg_id for d in service.dead_letters(limit=3)]
        reads = clock.reads
    finally:
        service.close()
    assert (["d000", "d001", "d002"], 1) == (answer, reads)


def test_dead_letters_name_their_code(crowd: Crowd) -> None:
    answer = crowd.sharded.dead_letters(limit=2, after="d099")
    assert [("d100", ErrorCode.NOT_RETRYABLE, MessageStatus.SEND_FAIL)] == [
        (d.msg_id, d.code, d.view.status) for d in answer
    ]


# -- export_history: every database's lines, merged by recorded_at --


class Scripted:
    """Two messages per database, each command at its own second: creates at
    1-6 s (alternating databases), failures at 7-12 s (in reverse order)."""

    def __init__(self) -> None:
        self.shard_map = shardpg.even_map(shardpg.fresh_urls(3))
        self.urls = list(self.shard_map.databases)
        self.clock = FakeClock()
        self.sharded = ShardedMessageService(self.shard_map, clock=self.clock)
        groups = ids_by_database(self.shard_map)
        self.by_url = {url: groups[url][:2] for url in self.urls}
        self.ids = [self.by_url[url][k] for k in (0, 1) for url in self.urls]
        self.lines: list[tuple[str, int, str, str]] = []
        for msg_id in self.ids:
            self.clock.advance(1)
            make(self.sharded, msg_id)
            self.lines.append((msg_id, 1, "Created", self.clock.now.isoformat()))
        for msg_id in reversed(self.ids):
            self.clock.advance(1)
            self.sharded.record_failure(msg_id, code=TRANSIENT)
            self.lines.append((msg_id, 2, "SendFailed", self.clock.now.isoformat()))

    def lines_of(
        self, ids: list[str], since: int = 0
    ) -> list[tuple[str, int, str, str]]:
        return [
            line
            for line in self.lines
            if line[0] in ids and line[3] >= at(since).isoformat()
        ]

    def close(self) -> None:
        self.sharded.close()


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    made = Scripted()
    try:
        yield made
    finally:
        made.close()


def exported(lines: Any) -> list[tuple[str, int, str, str]]:
    found = [json.loads(line) for line in lines]
    return [(d["msg_id"], d["version"], d["event"], d["recorded_at"]) for d in found]


def test_export_history_merges_every_database_by_recorded_at(
    scripted: Scripted,
) -> None:
    assert scripted.lines == exported(scripted.sharded.export_history())


def test_export_history_of_some_ids_gives_their_lines_in_time_order(
    scripted: Scripted,
) -> None:
    ids = [scripted.by_url[scripted.urls[0]][1], scripted.by_url[scripted.urls[2]][0]]
    expected = scripted.lines_of(ids)
    assert (4, expected) == (
        len(expected),
        exported(scripted.sharded.export_history(msg_ids=ids)),
    )


def test_export_history_of_ids_of_one_database_reads_only_that_one(
    scripted: Scripted,
) -> None:
    """The other databases are not asked: closing their services (as if they
    were down) changes nothing."""
    service = ShardedMessageService(scripted.shard_map, clock=scripted.clock)
    try:
        for url in scripted.urls[1:]:
            service.databases[url].close()
        ids = scripted.by_url[scripted.urls[0]]
        answer = exported(service.export_history(msg_ids=ids))
    finally:
        service.close()
    assert scripted.lines_of(ids) == answer


def test_export_history_of_ids_since_a_moment(scripted: Scripted) -> None:
    ids = [scripted.by_url[scripted.urls[1]][0], scripted.by_url[scripted.urls[2]][1]]
    expected = scripted.lines_of(ids, since=3)
    assert (3, expected) == (
        len(expected),
        exported(scripted.sharded.export_history(msg_ids=ids, since=at(3))),
    )


def test_export_history_since_a_moment(scripted: Scripted) -> None:
    expected = scripted.lines_of(scripted.ids, since=9)
    assert expected == exported(scripted.sharded.export_history(since=at(9)))


def test_export_history_of_an_unknown_id_gives_no_line(scripted: Scripted) -> None:
    assert [] == exported(scripted.sharded.export_history(msg_ids=["never-made"]))


def test_export_history_refuses_one_str_as_ids_as_a_single_database_does(
    scripted: Scripted, memory_service: MessageService
) -> None:
    expected = (
        "InvalidArgument",
        "msg_ids must be an iterable of ids (a list, not one str), got 'ab' "
        "[INVALID_ARGUMENT]",
    )
    single = refusal(lambda: list(memory_service.export_history("ab")))
    sharded = refusal(lambda: list(scripted.sharded.export_history("ab")))
    assert (expected, expected) == (single, sharded)


# -- simulate_policy --


@pytest.fixture(scope="module")
def fed() -> Iterator[Fed]:
    """tests.test_shards.Fed: a map and a single database fed the same commands."""
    pair = Fed()
    try:
        yield pair
    finally:
        pair.close()


def test_simulate_policy_of_ids_in_every_database_equals_a_single_databases(
    fed: Fed,
) -> None:
    """Every kind of message of the feed, under a lenient policy: msg-015 (dead
    by attempts as recorded, made 152 s before now) is within its max_age, so
    it would be resent (the recorded policy and now both count)."""
    subset = fed.ids[::5]
    owners = {fed.shard_map.database_of(fed.sharded.shard(m)) for m in subset}
    policy = ResendPolicy(max_attempts=10, max_age=timedelta(seconds=160))
    report = fed.sharded.simulate_policy(policy, subset)
    dead_later = [r.msg_id for r in report.per_message if r.dead_later]
    assert (set(fed.urls), len(subset), ["msg-015"]) == (
        owners,
        report.messages,
        dead_later,
    )
    assert fed.single.simulate_policy(policy, subset) == report


def test_simulate_policy_refuses_what_is_not_a_policy(
    fed: Fed, memory_service: MessageService
) -> None:
    expected = (
        "InvalidArgument",
        "new_policy must be a ResendPolicy, got 3 [INVALID_ARGUMENT]",
    )
    single = refusal(lambda: memory_service.simulate_policy(3))  # type: ignore[arg-type]
    sharded = refusal(lambda: fed.sharded.simulate_policy(3))  # type: ignore[arg-type]
    assert (expected, expected) == (single, sharded)


def test_simulate_policy_refuses_one_str_as_ids(
    fed: Fed, memory_service: MessageService
) -> None:
    expected = (
        "InvalidArgument",
        "msg_ids must be an iterable of ids (a list, not one str), got 'ab' "
        "[INVALID_ARGUMENT]",
    )
    policy = ResendPolicy()
    single = refusal(lambda: memory_service.simulate_policy(policy, "ab"))
    sharded = refusal(lambda: fed.sharded.simulate_policy(policy, "ab"))
    assert (expected, expected) == (single, sharded)


# -- ShardedBatch.prefetch --


@pytest.fixture
def prefetched() -> Iterator[tuple[ShardedMessageService, list[str], list[str]]]:
    """A fresh service (nothing cached) over a map where another service made
    some messages: (service, existing ids, missing ids). The first two databases
    get two existing ids and a missing one each, the third one existing id."""
    shard_map = shardpg.even_map(shardpg.fresh_urls(3))
    groups = ids_by_database(shard_map)
    urls = list(shard_map.databases)
    existing = [*groups[urls[0]][:2], *groups[urls[1]][:2], groups[urls[2]][0]]
    missing = [groups[urls[0]][2], groups[urls[1]][2]]
    writer = ShardedMessageService(shard_map)
    try:
        for msg_id in existing:
            make(writer, msg_id)
    finally:
        writer.close()
    service = ShardedMessageService(shard_map)
    try:
        yield service, existing, missing
    finally:
        service.close()


def test_prefetch_across_databases_makes_creates_final(
    prefetched: tuple[ShardedMessageService, list[str], list[str]],
) -> None:
    """Prefetched, an existing id's create answers its view and a missing one is
    created: nothing is assumed, so leaving the block conflicts with nothing."""
    service, existing, missing = prefetched
    before = [service.get(m) for m in existing]
    other = ShardedMessageService(service.shard_map)  # nothing cached
    try:
        with other.batch() as batch:
            batch.prefetch([*existing, *missing])
            answers = [make(batch, m) for m in [*existing, *missing]]  # type: ignore[arg-type]
        after = [other.get(m).version for m in missing]
    finally:
        other.close()
    assert (before, [1, 1]) == (answers[: len(existing)], after)
    assert [1, 1] == [v.version for v in answers[len(existing) :]]


def test_without_prefetch_creates_of_existing_ids_conflict(
    prefetched: tuple[ShardedMessageService, list[str], list[str]],
) -> None:
    """The control: unread ids are assumed new, so the save conflicts."""
    service, existing, _ = prefetched
    with pytest.raises(MsgStateError) as info, service.batch() as batch:
        make(batch, existing[0])  # type: ignore[arg-type]
    assert isinstance(info.value, ConcurrencyConflict)


def test_prefetch_refuses_one_str_as_ids(
    prefetched: tuple[ShardedMessageService, list[str], list[str]],
) -> None:
    service, _, _ = prefetched
    expected = (
        "InvalidArgument",
        "msg_ids must be an iterable of ids (a list, not one str), got 'ab' "
        "[INVALID_ARGUMENT]",
    )
    with service.batch() as batch:
        assert expected == refusal(lambda: batch.prefetch("ab"))


def test_prefetch_leaves_invalid_ids_for_the_commands_to_refuse_as_a_batch_does(
    prefetched: tuple[ShardedMessageService, list[str], list[str]],
    memory_service: MessageService,
) -> None:
    service, existing, _ = prefetched
    answers = []
    for each in (memory_service, service):
        with each.batch() as batch:
            batch.prefetch([existing[0], "", "bad\nid"])
            answers.append(refusal(lambda b=batch: b.get("")))  # type: ignore[misc]
    assert answers[0] == answers[1]


# -- ShardMap.__hash__ --

A, B, C = (f"postgresql://u@h/{name}" for name in ("a", "b", "c"))


def test_equal_maps_hash_equal_however_written() -> None:
    first = ShardMap(8, {A: "0-3", B: "4-7"})
    second = ShardMap(8, {B: [4, 5, 6, 7], A: "0,1-3"})
    assert (first, hash(first)) == (second, hash(second))


def test_maps_that_differ_hash_differently() -> None:
    maps = [
        ShardMap(8, {A: "0-3", B: "4-7"}),
        ShardMap(8, {A: "0-2", B: "3-7"}),
        ShardMap(8, {A: "0-3", C: "4-7"}),
        ShardMap(16, {A: "0-7", B: "8-15"}),
    ]
    assert 4 == len({hash(m) for m in maps})


def test_maps_work_as_set_members_and_dict_keys() -> None:
    maps = [
        ShardMap(8, {A: "0-3", B: "4-7"}),
        ShardMap(8, {B: "4-7", A: "0-3"}),
        ShardMap(8, {A: "0-2", B: "3-7"}),
    ]
    named = {maps[0]: "first", maps[2]: "third"}
    assert (2, "first", "third") == (len(set(maps)), named[maps[1]], named[maps[2]])


# -- shard_status --


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A map file of three fresh databases whose URLs carry a password."""
    urls = [with_password(url) for url in shardpg.fresh_urls(3)]
    path = tmp_path / "shards.toml"
    shardpg.even_map(urls).save(path)
    return path


def status_row(url: str, shards: str, owned: str, **rest: Any) -> dict[str, Any]:
    return {
        "database": _redact(url),
        "map_shards": shards,
        "owned": owned,
        "moving": rest.get("moving", {}),
        "messages": rest["messages"],
        "projection_lag": rest.get("projection_lag", 0),
    }


def test_shard_status_reports_each_database(secret_file: Path) -> None:
    """Options reach the databases: with projections="external" the lag shows."""
    shard_map = ShardMap.load(secret_file)
    urls = list(shard_map.databases)
    groups = ids_by_database(shard_map, 30)
    service = ShardedMessageService(shard_map, projections="external")
    try:
        for ids in groups.values():
            for msg_id in ids:
                make(service, msg_id)
        service.catch_up_projections()
        service.record_failure(groups[urls[1]][0], code=TRANSIENT)
        make(service, "late-one")  # not projected either
    finally:
        service.close()
    late = urls.index(shard_map.database_of(shard_map.shard_of(stream("late-one"))))
    expected = [
        status_row(
            url,
            shards,
            shards,
            messages=len(groups[url]),
            projection_lag=(i == 1) + (i == late),
        )
        for i, (url, shards) in enumerate(
            zip(urls, ["0-4", "5-9", "10-15"], strict=True)
        )
    ]
    actual = shard_status(f"shards://{secret_file}", projections="external")
    assert ("s3cret", expected) == (urlsplit(urls[0]).password, actual)
    assert "s3cret" not in repr(actual)


def test_shard_status_during_a_move_names_the_frozen_and_incoming_shard(
    secret_file: Path,
) -> None:
    """Stopped after freezing shard 3 (of the first database) for the second."""
    shard_map = ShardMap.load(secret_file)
    urls = list(shard_map.databases)
    service = ShardedMessageService(f"shards://{secret_file}")
    try:
        moving = shard_ids(service, SHARD, 3)
        staying = ids_by_database(shard_map, 30)
        for msg_id in [*moving, *(m for ids in staying.values() for m in ids)]:
            make(service, msg_id)
    finally:
        service.close()
    with pytest.raises(Crash):
        move_shard(secret_file, SHARD, urls[1], progress=crash_at("frozen"))
    counts = [len(staying[url]) for url in urls]
    in_shard = len(moving) + sum(
        shard_map.shard_of(stream(m)) == SHARD for m in staying[urls[0]]
    )
    expected = [
        status_row(
            urls[0], "0-4", "0-4", moving={"3": "frozen"}, messages=counts[0] + 3
        ),
        # the second database's read model has the incoming copy's rows too
        status_row(
            urls[1],
            "5-9",
            "5-9",
            moving={"3": "incoming"},
            messages=counts[1] + in_shard,
        ),
        status_row(urls[2], "10-15", "10-15", messages=counts[2]),
    ]
    assert expected == shard_status(ShardMap.load(secret_file))


# -- following a moved shard (_reload, _still_owned), in this process --
#
# A service opened from a map file checks the file before each command, so a
# move made with that same file is followed at once. The waits below are for a
# file that changes later: the move ran on another host with its own copy of the
# map (or finished between the check and the command), and this host's copy is
# replaced a moment later.


def made_in_shard(path: Path) -> list[str]:
    """Two messages of ``SHARD`` made by another service: the first failed
    (version 2), the second just created (version 1)."""
    writer = ShardedMessageService(f"shards://{path}", clock=FakeClock())
    try:
        ids = shard_ids(writer, SHARD, 2)
        make(writer, ids[0])
        writer.record_failure(ids[0], code=TRANSIENT)
        make(writer, ids[1])
    finally:
        writer.close()
    return ids


def move_behind(path: Path) -> tuple[Path, str]:
    """Move ``SHARD`` to the second database with a copy of the map file: ``path``
    keeps the old map. Returns the copy (the new map) and the target."""
    copy = path.with_name("moved.toml")
    shutil.copyfile(path, copy)
    target = list(ShardMap.load(path).databases)[1]
    move_shard(copy, SHARD, target)
    return copy, target


def publish_after(seconds: float, copy: Path, path: Path) -> threading.Timer:
    """Replace the map file ``path`` by ``copy`` in ``seconds``."""
    timer = threading.Timer(seconds, os.replace, (copy, path))
    timer.start()
    return timer


@pytest.fixture
def mapfile(tmp_path: Path) -> Path:
    return shardpg.fresh_map(tmp_path)


@pytest.fixture
def following(mapfile: Path) -> Iterator[tuple[ShardedMessageService, list[str]]]:
    """A service opened from the file (move_wait 5 s) and two messages of SHARD
    it has not read."""
    ids = made_in_shard(mapfile)
    service = ShardedMessageService(
        f"shards://{mapfile}", clock=FakeClock(), move_wait=5
    )
    try:
        yield service, ids
    finally:
        service.close()


FOLLOW: dict[str, Callable[[MessageService, list[str]], Any]] = {
    "get": lambda s, ids: s.get(ids[0]),
    "history": lambda s, ids: s.history(ids[0]),
    "resend": lambda s, ids: s.resend(ids[0], request_id="r"),
    "record_failures": lambda s, ids: s.record_failures(
        [{"msg_id": ids[1], "code": TRANSIENT, "attempt": 1}]
    ),
}
AFTER: dict[str, Callable[[MessageService, list[str]], Any]] = {
    "get": lambda s, ids: (s.get(ids[0]), 2),
    "history": lambda s, ids: (s.history(ids[0]), 2),
    "resend": lambda s, ids: (s.get(ids[0]), 3),
    "record_failures": lambda s, ids: ([s.get(ids[1])], 2),
}


def version_of(answer: Any) -> int:
    if isinstance(answer, list):
        return int(getattr(answer[-1], "version", 0))
    return int(getattr(answer, "version", 0))


@pytest.mark.parametrize(
    ("op", "cached"),
    [
        ("get", False),
        ("history", True),
        ("resend", True),
        ("resend", False),
        ("record_failures", True),
    ],
)
def test_a_late_map_file_is_waited_for_and_the_new_database_answers(
    following: tuple[ShardedMessageService, list[str]],
    mapfile: Path,
    op: str,
    cached: bool,
) -> None:
    service, ids = following
    if cached:
        for msg_id in ids:
            service.get(msg_id)
    copy, target = move_behind(mapfile)
    publish_after(0.2, copy, mapfile)
    answer, seconds = timed(lambda: FOLLOW[op](service, ids))
    expected, version = AFTER[op](service.databases[target], ids)
    assert (expected, version) == (answer, version_of(answer))
    assert (True, ShardMap.load(mapfile)) == (0.2 <= seconds < 1.0, service.shard_map)


def test_two_threads_on_a_moved_shard_both_follow_it(
    following: tuple[ShardedMessageService, list[str]], mapfile: Path
) -> None:
    """One reloads the map; the other, waiting for it, takes the reloaded map."""
    service, ids = following
    copy, target = move_behind(mapfile)
    start = threading.Barrier(2)
    answers: list[Any] = [None, None]

    def read(i: int) -> None:
        start.wait()
        answers[i] = timed(lambda: service.get(ids[i]), limit=8)

    threads = [threading.Thread(target=read, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    publish_after(0.3, copy, mapfile)
    for thread in threads:
        thread.join(10)
    own = service.databases[target]
    expected = [own.get(ids[0]), own.get(ids[1])]
    assert expected == [answer for answer, _ in answers]
    assert [True, True] == [0.3 <= seconds < 1.5 for _, seconds in answers]


def test_with_the_map_file_unchanged_a_read_gives_up_after_move_wait(
    mapfile: Path,
) -> None:
    ids = made_in_shard(mapfile)
    service = ShardedMessageService(f"shards://{mapfile}", move_wait=0.2)
    try:
        move_behind(mapfile)
        answer, seconds = timed(lambda: service.get(ids[0]))
    finally:
        service.close()
    expected = f"message {ids[0]!r} not found [MESSAGE_NOT_FOUND]"
    assert (MessageNotFound, expected) == (type(answer), str(answer))
    assert 0.2 <= seconds < 1.0, seconds


def test_a_write_after_the_handover_waits_move_wait_then_is_shard_moved(
    mapfile: Path,
) -> None:
    """The move stopped before writing the map: the file still names the old
    database, whose fence refuses the write."""
    ids = made_in_shard(mapfile)
    service = ShardedMessageService(f"shards://{mapfile}", move_wait=0.2)
    try:
        target = list(ShardMap.load(mapfile).databases)[1]
        with pytest.raises(Crash):
            move_shard(mapfile, SHARD, target, progress=crash_at("handed over"))
        answer, seconds = timed(lambda: service.resend(ids[0], request_id="r"))
    finally:
        service.close()
    assert (ShardMoved, ErrorCode.SHARD_MOVED) == (
        type(answer),
        getattr(answer, "code", None),
    )
    assert 0.2 <= seconds < 1.0, seconds


def test_opened_from_a_map_object_a_write_to_a_moved_shard_is_shard_moved_at_once(
    mapfile: Path,
) -> None:
    service = ShardedMessageService(ShardMap.load(mapfile), move_wait=5)
    try:
        ids = shard_ids(service, SHARD, 1)
        make(service, ids[0])  # cached: the write reaches the old database's fence
        move_shard(mapfile, SHARD, list(ShardMap.load(mapfile).databases)[1])
        answer, seconds = timed(lambda: service.record_failure(ids[0], code=TRANSIENT))
    finally:
        service.close()
    assert (ShardMoved, True) == (type(answer), seconds < 2), seconds


def test_opened_from_a_map_object_a_read_of_a_moved_message_is_not_found_at_once(
    mapfile: Path,
) -> None:
    ids = made_in_shard(mapfile)
    service = ShardedMessageService(ShardMap.load(mapfile), move_wait=5)
    try:
        move_shard(mapfile, SHARD, list(ShardMap.load(mapfile).databases)[1])
        answer, seconds = timed(lambda: service.get(ids[0]))
    finally:
        service.close()
    assert (MessageNotFound, True) == (type(answer), seconds < 2), seconds


@pytest.mark.parametrize("state", ["owned", "frozen"])
def test_a_message_that_does_not_exist_is_not_found_at_once(
    following: tuple[ShardedMessageService, list[str]], mapfile: Path, state: str
) -> None:
    """Its shard is still the database's (owned, or frozen by a move): no
    waiting for a newer map."""
    service, _ = following
    if state == "frozen":
        target = list(ShardMap.load(mapfile).databases)[1]
        with pytest.raises(Crash):
            move_shard(mapfile, SHARD, target, progress=crash_at("frozen"))
    missing = shard_ids(service, SHARD, 5)[-1]
    answer, seconds = timed(lambda: service.get(missing))
    expected = f"message {missing!r} not found [MESSAGE_NOT_FOUND]"
    assert (MessageNotFound, expected) == (type(answer), str(answer))
    assert seconds < 2, seconds
