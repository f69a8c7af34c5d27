"""ShardedMessageService over three PostgreSQL clusters (tests/shardpg.py).

Routing, the databases' fence, merged read models, batches across databases
and the CLI; answers are compared with a single-database PostgreSQL service fed
the same commands on the same (fake) clock. The map's own unit tests are in
tests/test_shards_map.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msgstate import (
    MESSAGE_NAMESPACE,
    BatchPartiallySaved,
    ConcurrencyConflict,
    ErrorCode,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    MessageStatus,
    MessageView,
    MsgStateError,
    ProjectionTimeout,
    ResendPolicy,
    ResendWorker,
    ShardedBatch,
    ShardedMessageService,
    ShardMap,
    ShardMoved,
    ShardMoving,
    StorageError,
    WorkerReport,
    setup_schema,
    shard_of,
)
from msgstate._pg_shards import FROZEN, MOVED, OWNED, ShardTables
from msgstate.cli import cli
from msgstate.tencent import V2TIMMessageManager
from tests import pg, shardpg
from tests.support import EPOCH, FakeClock
from tests.test_cli import make_runner

TRANSIENT = 6012  # ERR_REQUEST_TIME_OUT
PERMANENT = 6017  # ERR_INVALID_PARAMETERS
POLICY = ResendPolicy(
    max_attempts=3,
    initial_interval=timedelta(seconds=10),
    maximum_interval=timedelta(seconds=60),
    send_timeout=timedelta(seconds=30),
)


# -- helpers --


def schema_of(url: str) -> tuple[str, str]:
    base, _, schema = url.partition("?schema=")
    return base, schema


def stored_versions(url: str) -> dict[uuid.UUID, int]:
    """Each stream in ``url``'s events table and its last version (raw SQL)."""
    import psycopg
    from psycopg import sql

    base, schema = schema_of(url)
    with psycopg.connect(base) as connection:
        rows = connection.execute(
            sql.SQL(
                "SELECT originator_id, max(originator_version) FROM {}.msgstate_events "
                "GROUP BY originator_id"
            ).format(sql.Identifier(schema))
        ).fetchall()
    return {uuid.UUID(str(r[0])): int(r[1]) for r in rows}


def shard_rows(url: str) -> dict[int, str]:
    """Shard -> state as ``url`` records it; {} without a shards table."""
    import psycopg
    from psycopg import sql

    base, schema = schema_of(url)
    with psycopg.connect(base) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s",
            (schema, "msgstate_shards"),
        ).fetchone()
        if not exists:
            return {}
        rows = connection.execute(
            sql.SQL("SELECT shard, state FROM {}.msgstate_shards").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    return {int(r[0]): str(r[1]) for r in rows}


def stream(msg_id: str) -> uuid.UUID:
    return uuid.uuid5(MESSAGE_NAMESPACE, msg_id)


def ids_by_database(shard_map: ShardMap, count: int = 60) -> dict[str, list[str]]:
    """``count`` message ids, grouped by the database the map routes them to."""
    groups: dict[str, list[str]] = {url: [] for url in shard_map.databases}
    for i in range(count):
        msg_id = f"msg-{i:03d}"
        groups[shard_map.database_of(shard_map.shard_of(stream(msg_id)))].append(msg_id)
    return groups


def make(service: MessageService, msg_id: str) -> MessageView:
    return service.create(msg_id, sender="alice", user_id="bob")


def feed(service: MessageService, clock: FakeClock, count: int = 36) -> list[str]:
    """The same script of commands for each service compared.

    By ``i % 6``: delivered; failed transiently (all at the same instant, so
    their next_retry_at tie); failed permanently (dead); failed three times
    (attempts exhausted, dead); left sending (stuck); failed with retry_after.
    """
    ids = [f"msg-{i:03d}" for i in range(count)]
    for msg_id in ids:
        make(service, msg_id)
        clock.advance(1)
    clock.advance(5)
    for msg_id in ids[1::6]:
        service.record_failure(msg_id, code=TRANSIENT)
    for i, msg_id in enumerate(ids):
        kind = i % 6
        if kind == 0:
            service.record_delivery(msg_id, seq=f"seq-{i}")
        elif kind == 2:
            service.record_failure(msg_id, code=PERMANENT, desc="bad")
        elif kind == 3:
            for attempt in (1, 2):
                service.record_failure(msg_id, code=TRANSIENT)
                service.resend(msg_id, request_id=f"r{i}-{attempt}")
            service.record_failure(msg_id, code=TRANSIENT)
        elif kind == 5:
            clock.advance(1)
            service.record_failure(msg_id, code=TRANSIENT, retry_after=float(100 - i))
    clock.advance(120)
    return ids


class Fed:
    """A sharded service and a single-database one after the same commands."""

    def __init__(self) -> None:
        self.urls = shardpg.fresh_urls(3)
        self.shard_map = shardpg.even_map(self.urls, 16)
        self.sharded_clock = FakeClock()
        self.single_clock = FakeClock()
        self.sharded = ShardedMessageService(
            self.shard_map, policy=POLICY, clock=self.sharded_clock
        )
        self.single = MessageService.open(
            pg.fresh_url(), policy=POLICY, clock=self.single_clock
        )
        self.ids = feed(self.sharded, self.sharded_clock)
        feed(self.single, self.single_clock)

    def close(self) -> None:
        self.sharded.close()
        self.single.close()


@pytest.fixture(scope="module")
def fed() -> Iterator[Fed]:
    """Read-only: tests of queries only (no command) share it."""
    pair = Fed()
    try:
        yield pair
    finally:
        pair.close()


@pytest.fixture
def urls() -> list[str]:
    return shardpg.fresh_urls(3)


@pytest.fixture
def shard_map(urls: list[str]) -> ShardMap:
    return shardpg.even_map(urls, 16)


@pytest.fixture
def sharded(shard_map: ShardMap, clock: FakeClock) -> Iterator[ShardedMessageService]:
    service = ShardedMessageService(
        shard_map, policy=POLICY, clock=clock, move_wait=0.3
    )
    try:
        yield service
    finally:
        service.close()


def outcome(answer: MessageView | MsgStateError) -> Any:
    """A comparable form of a batch outcome."""
    if isinstance(answer, MsgStateError):
        return (type(answer).__name__, answer.code)
    return answer


# -- shard_of in SQL --


@pytest.fixture(scope="module")
def sql_shard() -> Iterator[Callable[[int, list[uuid.UUID]], list[int]]]:
    """``msgstate_shard(uuid)`` of a database set up for each map size."""
    import psycopg
    from psycopg import sql

    schemas: dict[int, str] = {}
    base = ""
    for virtual_shards in (1, 16, 1024):
        [url] = shardpg.fresh_urls(1)
        ShardedMessageService(
            ShardMap(virtual_shards, {url: f"0-{virtual_shards - 1}"})
        ).close()
        base, schemas[virtual_shards] = schema_of(url)
    with psycopg.connect(base, autocommit=True) as connection:

        def ask(virtual_shards: int, ids: list[uuid.UUID]) -> list[int]:
            rows = connection.execute(
                sql.SQL(
                    "SELECT {}.msgstate_shard(u) FROM unnest(%s::uuid[]) "
                    "WITH ORDINALITY AS t(u, n) ORDER BY n"
                ).format(sql.Identifier(schemas[virtual_shards])),
                (ids,),
            ).fetchall()
            return [int(r[0]) for r in rows]

        yield ask


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.uuids(), min_size=1, max_size=50),
    virtual_shards=st.sampled_from([1, 16, 1024]),
)
def test_shard_of_in_python_equals_the_sql_function(
    sql_shard: Callable[[int, list[uuid.UUID]], list[int]],
    ids: list[uuid.UUID],
    virtual_shards: int,
) -> None:
    expected = [shard_of(i, virtual_shards) for i in ids]
    assert expected == sql_shard(virtual_shards, ids)


def test_shard_of_equals_sql_at_the_edges_of_the_prefix(
    sql_shard: Callable[[int, list[uuid.UUID]], list[int]],
) -> None:
    """Prefixes with the top bit set (a signed 32-bit reading would differ)."""
    ids = [
        uuid.UUID(f"{prefix}-0000-0000-0000-000000000000")
        for prefix in ("00000000", "ffffffff", "80000000", "7fffffff", "000003ff")
    ]
    ids += [stream(f"m{i}") for i in range(200)]
    assert [shard_of(i, 1024) for i in ids] == sql_shard(1024, ids)


# -- opening --


def test_open_with_a_map_gives_a_sharded_service(shard_map: ShardMap) -> None:
    service = MessageService.open(shard_map)
    assert (ShardedMessageService, shard_map, list(shard_map.databases)) == (
        type(service),
        service.shard_map,
        list(service.databases),
    )


def test_open_with_a_shards_url_reads_the_file(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    service = MessageService.open(f"shards://{path}")
    assert (ShardedMessageService, ShardMap.load(path)) == (
        type(service),
        service.shard_map,
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("shards://", "a shard map URL names its file"),
        ("shards:///nonexistent/shards.toml", "cannot be read"),
    ],
)
def test_open_with_a_bad_shards_url_is_refused(where: str, expected: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        MessageService.open(where)
    assert expected in info.value.desc


@pytest.mark.parametrize("where", [None, 42, {"virtual_shards": 1}])
def test_a_sharded_service_needs_a_map(where: Any) -> None:
    with pytest.raises(InvalidArgument):
        ShardedMessageService.open(where)


def test_every_database_records_its_shards_and_the_map_size(
    shard_map: ShardMap, urls: list[str]
) -> None:
    MessageService.open(shard_map).close()
    expected = [dict.fromkeys(shard_map.databases[u], OWNED) for u in urls]
    assert expected == [shard_rows(u) for u in urls]


def test_reopening_with_the_same_map_works(shard_map: ShardMap) -> None:
    MessageService.open(shard_map).close()
    again = MessageService.open(ShardMap.loads(shard_map.dumps()))
    assert shard_map == again.shard_map


def test_reopening_with_shards_reassigned_is_refused_naming_the_conflict(
    shard_map: ShardMap, urls: list[str]
) -> None:
    MessageService.open(shard_map).close()  # 0-4, 5-9, 10-15
    other = ShardMap(16, {urls[0]: "0-5", urls[1]: "6-9", urls[2]: "10-15"})
    with pytest.raises(StorageError) as info:
        MessageService.open(other)
    desc = info.value.desc
    assert "shard map conflict at database" in desc
    assert "the map gives it shards 5 it does not own" in desc
    assert schema_of(urls[0])[1] in desc


def test_reopening_with_databases_swapped_is_refused(
    shard_map: ShardMap, urls: list[str]
) -> None:
    MessageService.open(shard_map).close()
    swapped = ShardMap(16, {urls[1]: "0-4", urls[0]: "5-9", urls[2]: "10-15"})
    with pytest.raises(StorageError) as info:
        MessageService.open(swapped)
    assert "it owns shards 5-9 the map gives elsewhere" in info.value.desc


def test_reopening_with_other_virtual_shards_is_refused(urls: list[str]) -> None:
    MessageService.open(shardpg.even_map(urls, 16)).close()
    with pytest.raises(StorageError) as info:
        MessageService.open(shardpg.even_map(urls, 32))
    desc = info.value.desc
    assert "virtual_shards = 16, the map has 32" in desc
    assert "shard map conflict" in desc


def test_a_database_holding_messages_of_shards_given_elsewhere_is_refused(
    urls: list[str],
) -> None:
    """A single-database store joining a map must be given its messages' shards."""
    alone = MessageService.open(urls[0])
    make(alone, "m1")
    alone.close()
    shard = shard_of(stream("m1"), 16)
    others = [s for s in range(16) if s != shard]
    shard_map = ShardMap(16, {urls[0]: others, urls[1]: [shard]})
    with pytest.raises(StorageError) as info:
        MessageService.open(shard_map)
    assert f"it holds messages of shards {shard}, which the map gives" in (
        info.value.desc
    )
    assert ({}, {}) == (shard_rows(urls[0]), shard_rows(urls[1]))


def test_a_database_holding_messages_may_join_with_their_shards(
    urls: list[str],
) -> None:
    alone = MessageService.open(urls[0])
    make(alone, "m1")
    alone.close()
    shard = shard_of(stream("m1"), 16)
    others = [s for s in range(16) if s != shard]
    service = MessageService.open(ShardMap(16, {urls[0]: [shard], urls[1]: others}))
    assert MessageStatus.SENDING == service.get("m1").status


def test_a_refused_open_writes_nothing_in_the_databases_after_the_conflict(
    urls: list[str],
) -> None:
    """The first database conflicts: the fresh ones after it claim nothing."""
    MessageService.open(ShardMap(16, {urls[0]: "0-15"})).close()
    refused = ShardMap(16, {urls[0]: "0-7", urls[1]: "8-15", urls[2]: ""})
    with pytest.raises(StorageError):
        MessageService.open(refused)
    assert ({}, {}) == (shard_rows(urls[1]), shard_rows(urls[2]))


def test_a_refused_open_writes_nothing_in_the_databases_before_the_conflict(
    urls: list[str],
) -> None:
    """A fresh database listed first must not keep shards after a refusal:
    it would own (and its fence accept) shards another database owns, and the
    right map would then be refused."""
    MessageService.open(ShardMap(16, {urls[1]: "0-15"})).close()
    refused = ShardMap(16, {urls[0]: "0-7", urls[1]: "8-15"})
    with pytest.raises(StorageError):
        MessageService.open(refused)
    assert {} == shard_rows(urls[0])


def test_create_tables_false_on_fresh_databases_is_a_storage_error(
    shard_map: ShardMap, urls: list[str]
) -> None:
    with pytest.raises(StorageError) as info:
        MessageService.open(shard_map, create_tables=False)
    assert "does not exist" in info.value.desc
    assert [{}, {}, {}] == [shard_rows(u) for u in urls]


def test_create_tables_false_without_shard_records_says_to_set_up(
    shard_map: ShardMap, urls: list[str]
) -> None:
    """Tables made by single-database opens, but no shard records yet."""
    for url in urls:
        MessageService.open(url).close()
    with pytest.raises(StorageError) as info:
        MessageService.open(shard_map, create_tables=False)
    assert "run setup_schema(shard_map) first" in info.value.desc


def test_create_tables_false_works_after_setup_schema(shard_map: ShardMap) -> None:
    setup_schema(shard_map)
    service = MessageService.open(shard_map, create_tables=False)
    assert MessageStatus.SENDING == make(service, "m1").status


def test_a_sharded_service_has_no_single_repository_archive_or_restore(
    sharded: ShardedMessageService, tmp_path: Path
) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: sharded.messages,
        lambda: sharded.archive(EPOCH, to=tmp_path / "a.jsonl"),
        lambda: sharded.restore(tmp_path / "a.jsonl"),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            call()


def test_repr_names_the_map_without_passwords(sharded: ShardedMessageService) -> None:
    assert f"ShardedMessageService({sharded.shard_map!r})" == repr(sharded)


# -- routing --


def test_each_message_is_stored_only_in_its_shards_database(
    sharded: ShardedMessageService, shard_map: ShardMap
) -> None:
    groups = ids_by_database(shard_map)
    for ids in groups.values():
        for msg_id in ids:
            make(sharded, msg_id)
    expected = {url: {stream(m): 1 for m in ids} for url, ids in groups.items()}
    actual = {url: stored_versions(url) for url in groups}
    assert expected == actual


def test_each_databases_own_service_sees_only_its_messages(
    sharded: ShardedMessageService, shard_map: ShardMap
) -> None:
    groups = ids_by_database(shard_map, 30)
    for ids in groups.values():
        for msg_id in ids:
            make(sharded, msg_id)
    found = {
        url: sorted(m for ids in groups.values() for m in ids if found_in(svc, m))
        for url, svc in sharded.databases.items()
    }
    assert {u: sorted(ids) for u, ids in groups.items()} == found


def found_in(service: MessageService, msg_id: str) -> bool:
    try:
        service.get(msg_id)
    except MessageNotFound:
        return False
    return True


def test_the_three_databases_each_get_some_messages(shard_map: ShardMap) -> None:
    """The even map and 60 ids: no database is left out (else routing tests
    would prove little)."""
    assert [True, True, True] == [
        len(ids) > 5 for ids in ids_by_database(shard_map).values()
    ]


def test_shard_is_the_map_function_of_the_stream_id(
    sharded: ShardedMessageService,
) -> None:
    ids = [f"m{i}" for i in range(50)]
    expected = [shard_of(stream(m), 16) for m in ids]
    assert expected == [sharded.shard(m) for m in ids]


def test_commands_and_queries_answer_as_a_single_database() -> None:
    """Step by step, the same command gives the same view in both."""
    single_clock, sharded_clock = FakeClock(), FakeClock()
    single = MessageService.open(pg.fresh_url(), policy=POLICY, clock=single_clock)
    sharded = MessageService.open(
        shardpg.even_map(shardpg.fresh_urls(3)), policy=POLICY, clock=sharded_clock
    )
    answers: list[list[Any]] = [[], []]
    for answers_of, service, clock in (
        (answers[0], single, single_clock),
        (answers[1], sharded, sharded_clock),
    ):
        for i in range(12):
            msg_id = f"m{i}"
            created = clock.now
            answers_of.append(make(service, msg_id))
            clock.advance(2)
            answers_of.append(service.record_failure(msg_id, code=TRANSIENT))
            answers_of.append(service.check_resend(msg_id))
            clock.advance(15)
            answers_of.append(service.resend(msg_id, request_id=f"r{i}"))
            if i % 2:
                answers_of.append(service.record_delivery(msg_id, seq=str(i)))
            else:
                clock.advance(40)
                answers_of.append(service.expire_send(msg_id, attempt=2))
            answers_of.append(service.get(msg_id))
            answers_of.append(service.history(msg_id))
            answers_of.append(service.get_at(msg_id, version=2))
            answers_of.append(service.get_at(msg_id, at=created + timedelta(seconds=3)))
    assert answers[0] == answers[1]


def test_refusals_are_the_single_databases_refusals(
    sharded: ShardedMessageService,
) -> None:
    make(sharded, "m1")
    calls: list[Callable[[], Any]] = [
        lambda: sharded.get("nope"),
        lambda: sharded.history("nope"),
        lambda: sharded.get(""),
        lambda: sharded.resend("m1"),
        lambda: sharded.create("m1", sender="other", user_id="bob"),
        lambda: sharded.record_failure("nope", code=TRANSIENT),
    ]
    codes = []
    for call in calls:
        with pytest.raises(MsgStateError) as info:
            call()
        codes.append(info.value.code)
    assert [
        ErrorCode.MESSAGE_NOT_FOUND,
        ErrorCode.MESSAGE_NOT_FOUND,
        ErrorCode.INVALID_ARGUMENT,
        ErrorCode.SEND_IN_PROGRESS,
        ErrorCode.DUPLICATE_MESSAGE,
        ErrorCode.MESSAGE_NOT_FOUND,
    ] == codes


def test_forget_works_in_each_database(shard_map: ShardMap, clock: FakeClock) -> None:
    pytest.importorskip("cryptography")
    sharded = MessageService.open(shard_map, clock=clock, forgettable=True)
    single = MessageService.open(pg.fresh_url(), clock=clock, forgettable=True)
    groups = ids_by_database(shard_map, 30)
    chosen = [ids[0] for ids in groups.values()]
    answers = []
    for service in (single, sharded):
        for msg_id in chosen:
            service.create(msg_id, sender="alice", user_id="bob", content={"t": "x"})
            service.forget(msg_id, actor="dpo", reason="request 7")
        answers.append([(service.get(m), service.history(m)) for m in chosen])
    assert answers[0] == answers[1]
    assert [True] * len(chosen) == [v.forgotten for v, _ in answers[1]]


# -- merged read models, compared with a single database --


def test_status_counts_add_up(fed: Fed) -> None:
    counts = fed.sharded.status_counts()
    assert fed.single.status_counts() == counts
    assert len(fed.ids) == sum(counts.values())


def test_counts_by_error_code_add_up(fed: Fed) -> None:
    assert fed.single.counts_by_error_code() == fed.sharded.counts_by_error_code()


def test_each_message_answers_as_in_a_single_database(fed: Fed) -> None:
    def answers(service: MessageService) -> list[Any]:
        return [
            (
                service.get(m),
                service.history(m),
                service.check_resend(m),
                service.get_at(m, version=1),
            )
            for m in fed.ids
        ]

    assert answers(fed.single) == answers(fed.sharded)


def test_due_resends_are_in_next_retry_order_with_an_exact_limit(fed: Fed) -> None:
    """Every limit gives the single database's first ``limit`` due messages
    (ties in next_retry_at broken by stream id, as the database does)."""
    everything = fed.single.due_resends(limit=1000)
    assert len(everything) > 8
    expected = [fed.single.due_resends(limit=k) for k in range(1, len(everything) + 2)]
    actual = [fed.sharded.due_resends(limit=k) for k in range(1, len(everything) + 2)]
    assert expected == actual


def test_due_resends_span_every_database(fed: Fed) -> None:
    due = fed.sharded.due_resends(limit=1000)
    owners = {fed.shard_map.database_of(fed.sharded.shard(v.msg_id)) for v in due}
    assert set(fed.urls) == owners
    keys = [v.next_retry_at for v in due]
    assert sorted(keys) == keys  # type: ignore[type-var]


def test_due_resends_at_a_given_moment(fed: Fed) -> None:
    moment = EPOCH + timedelta(seconds=60)
    assert fed.single.due_resends(moment, limit=50) == fed.sharded.due_resends(
        moment, limit=50
    )


def test_dead_letters_page_in_msg_id_order_covering_each_once(fed: Fed) -> None:
    pages = []
    after = None
    while True:
        page = fed.sharded.dead_letters(limit=4, after=after)
        if not page:
            break
        pages.append(page)
        after = page[-1].msg_id
    letters = [d for page in pages for d in page]
    ids = [d.msg_id for d in letters]
    assert fed.single.dead_letters(limit=1000) == letters
    assert (sorted(set(ids)), True) == (ids, all(len(p) == 4 for p in pages[:-1]))
    assert len(ids) > 8


@pytest.mark.parametrize("limit", [1, 3, 7, 100])
def test_dead_letters_pages_equal_the_single_databases(fed: Fed, limit: int) -> None:
    for after in (None, "msg-010", "msg-029", "zzz"):
        assert fed.single.dead_letters(limit=limit, after=after) == (
            fed.sharded.dead_letters(limit=limit, after=after)
        )


def all_dead_letters(service: MessageService, limit: int) -> list[str]:
    """Every page of dead letters, ``limit`` at a time, as a caller pages."""
    ids: list[str] = []
    after = None
    while page := service.dead_letters(limit=limit, after=after):
        ids.extend(d.msg_id for d in page)
        after = page[-1].msg_id
    return ids


def test_paging_dead_letters_while_read_models_lag_skips_none(
    shard_map: ShardMap,
) -> None:
    """With projections="external", the single database's pages (limit 2)
    still cover every dead letter; the map's must cover the same."""
    answers = []
    for service in (
        MessageService.open(pg.fresh_url(), clock=FakeClock(), projections="external"),
        MessageService.open(shard_map, clock=FakeClock(), projections="external"),
    ):
        ids = [f"m{i:02d}" for i in range(30)]
        for msg_id in ids:
            make(service, msg_id)
            service.record_failure(msg_id, code=PERMANENT)
        service.catch_up_projections()
        for msg_id in ids[1::3]:
            service.record_delivery(msg_id, seq="late")  # rows still say dead
        answers.append(all_dead_letters(service, 2))
    assert answers[0] == answers[1]


def test_stuck_sends_are_merged_in_start_order(fed: Fed) -> None:
    expected = [fed.single.stuck_sends(limit=k) for k in (1, 2, 5, 100)]
    actual = [fed.sharded.stuck_sends(limit=k) for k in (1, 2, 5, 100)]
    assert expected == actual
    assert len(actual[-1]) == len(fed.ids) // 6


def test_export_history_covers_every_database(fed: Fed) -> None:
    """The same lines as the single database (merged, so compared sorted)."""
    single = sorted(fed.single.export_history())
    sharded = sorted(fed.sharded.export_history())
    assert single == sharded
    assert len(fed.ids) == len({json.loads(line)["msg_id"] for line in sharded})


def test_export_history_is_in_recorded_at_order(fed: Fed) -> None:
    stamps = [json.loads(line)["recorded_at"] for line in fed.sharded.export_history()]
    assert sorted(stamps) == stamps


def test_export_history_of_some_messages(fed: Fed) -> None:
    subset = [*fed.ids[::7], "never-created"]

    def lines(service: MessageService) -> list[str]:
        return sorted(service.export_history(msg_ids=subset))

    assert lines(fed.single) == lines(fed.sharded)
    assert {m for m in subset if m != "never-created"} == {
        json.loads(line)["msg_id"] for line in lines(fed.sharded)
    }


def test_export_history_since(fed: Fed) -> None:
    since = EPOCH + timedelta(seconds=40)
    assert sorted(fed.single.export_history(since=since)) == sorted(
        fed.sharded.export_history(since=since)
    )


def test_simulate_policy_covers_every_database(fed: Fed) -> None:
    stricter = ResendPolicy(max_attempts=2)
    report = fed.sharded.simulate_policy(stricter)
    assert fed.single.simulate_policy(stricter) == report
    assert len(fed.ids) == report.messages


def test_simulate_policy_of_some_messages(fed: Fed) -> None:
    subset = fed.ids[1::4]
    lenient = ResendPolicy(max_attempts=10)
    assert fed.single.simulate_policy(lenient, subset) == (
        fed.sharded.simulate_policy(lenient, subset)
    )


# -- projections --


def test_projection_lag_catch_up_and_rebuild_add_up(clock: FakeClock) -> None:
    sharded = MessageService.open(
        shardpg.even_map(shardpg.fresh_urls(3)), clock=clock, projections="external"
    )
    single = MessageService.open(pg.fresh_url(), clock=clock, projections="external")
    answers = []
    for service in (single, sharded):
        for i in range(20):
            make(service, f"m{i}")
            service.record_failure(f"m{i}", code=TRANSIENT)
        answers.append(
            (
                service.projection_lag(),
                service.status_counts()[MessageStatus.SEND_FAIL],
                service.catch_up_projections(batch=7),
                service.projection_lag(),
                service.status_counts()[MessageStatus.SEND_FAIL],
                service.rebuild_projections(),
                service.projection_lag(),
            )
        )
    assert (40, 0, 40, 0, 20, 40, 0) == answers[1]
    assert answers[0] == answers[1]


def test_wait_for_projections_returns_once_every_database_is_up_to_date(
    shard_map: ShardMap,
) -> None:
    service = MessageService.open(shard_map, projections="external")
    for i in range(10):
        make(service, f"m{i}")
    service.catch_up_projections()
    started = time.monotonic()
    service.wait_for_projections(5.0)
    assert time.monotonic() - started < 1.0


def test_wait_for_projections_times_out_if_one_database_lags(
    shard_map: ShardMap, urls: list[str]
) -> None:
    service = MessageService.open(shard_map, projections="external")
    groups = ids_by_database(shard_map, 30)
    make(service, groups[urls[2]][0])  # only the last database lags
    started = time.monotonic()
    with pytest.raises(ProjectionTimeout):
        service.wait_for_projections(0.5)
    assert 0.4 < time.monotonic() - started < 3.0


def test_wait_for_projections_with_a_bad_timeout_is_refused(
    sharded: ShardedMessageService,
) -> None:
    with pytest.raises(InvalidArgument):
        sharded.wait_for_projections(-1)


# -- batches --


def test_a_batch_across_databases_saves_each_part(
    sharded: ShardedMessageService, shard_map: ShardMap
) -> None:
    groups = ids_by_database(shard_map, 30)
    chosen = [m for ids in groups.values() for m in ids[:3]]
    with sharded.batch() as batch:
        assert isinstance(batch, ShardedBatch)
        for msg_id in chosen:
            batch.create(msg_id, sender="alice", user_id="bob")
            batch.record_failure(msg_id, code=TRANSIENT)
        assert (18, tuple(chosen)) == (batch.pending, batch.changed)
        assert {} == stored_versions(next(iter(groups)))  # nothing saved yet
    expected = {url: {stream(m): 2 for m in ids[:3]} for url, ids in groups.items()}
    assert expected == {url: stored_versions(url) for url in groups}


def test_a_batch_equals_the_same_batch_in_a_single_database(
    shard_map: ShardMap,
) -> None:
    answers = []
    for service in (
        MessageService.open(pg.fresh_url(), policy=POLICY, clock=FakeClock()),
        MessageService.open(shard_map, policy=POLICY, clock=FakeClock()),
    ):
        views = []
        with service.batch() as batch:
            batch.prefetch([f"m{i}" for i in range(10)])
            for i in range(10):
                views.append(batch.create(f"m{i}", sender="a", user_id="b"))
                views.append(batch.record_failure(f"m{i}", code=TRANSIENT))
                views.append(batch.resend(f"m{i}", request_id=f"r{i}"))
                views.append(batch.get(f"m{i}"))
                if i % 2:
                    views.append(batch.record_delivery(f"m{i}", seq="1"))
                else:
                    views.append(batch.record_failure(f"m{i}", code=PERMANENT))
        views.extend(service.get(f"m{i}") for i in range(10))
        answers.append(views)
    assert answers[0] == answers[1]


def test_a_block_that_raises_saves_nothing_anywhere(
    sharded: ShardedMessageService, urls: list[str]
) -> None:
    with pytest.raises(RuntimeError), sharded.batch() as batch:
        for i in range(20):
            batch.create(f"m{i}", sender="a", user_id="b")
        raise RuntimeError("stop")
    assert [{}, {}, {}] == [stored_versions(u) for u in urls]


def test_a_batch_is_used_once_and_inside_its_block(
    sharded: ShardedMessageService,
) -> None:
    batch = sharded.batch()
    with pytest.raises(InvalidArgument):
        batch.create("m1", sender="a", user_id="b")
    with batch:
        batch.create("m1", sender="a", user_id="b")
    with pytest.raises(InvalidArgument):
        batch.create("m2", sender="a", user_id="b")
    with pytest.raises(InvalidArgument), batch:
        pass


def three_parts(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> list[list[str]]:
    """Two created messages in each database, in the map's database order."""
    groups = ids_by_database(shard_map, 60)
    parts = [groups[u][:2] for u in urls]
    for ids in parts:
        for msg_id in ids:
            make(sharded, msg_id)
    return parts


def test_a_conflict_in_a_later_part_is_batch_partially_saved(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    """The first database's part is saved; the second conflicts; the third
    is not tried. The error lists exactly which messages were saved."""
    parts = three_parts(sharded, shard_map, urls)
    other = MessageService.open(urls[1], policy=POLICY)
    with pytest.raises(BatchPartiallySaved) as info, sharded.batch() as batch:
        for ids in parts:
            for msg_id in ids:
                batch.record_failure(msg_id, code=TRANSIENT)
        other.record_delivery(parts[1][1], seq="elsewhere")
    error = info.value
    assert (tuple(parts[0]), tuple(parts[1] + parts[2])) == (error.saved, error.unsaved)
    assert (ErrorCode.BATCH_PARTIALLY_SAVED, ConcurrencyConflict) == (
        error.code,
        type(error.cause),
    )
    statuses = [[sharded.get(m).status for m in ids] for ids in parts]
    assert [
        [MessageStatus.SEND_FAIL] * 2,
        [MessageStatus.SENDING, MessageStatus.SEND_SUCC],
        [MessageStatus.SENDING] * 2,
    ] == statuses


def test_the_stores_agree_with_batch_partially_saved(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    """Saved messages have the batch's event in their store; unsaved ones have
    only what the other writer saved."""
    parts = three_parts(sharded, shard_map, urls)
    other = MessageService.open(urls[2], policy=POLICY)
    with pytest.raises(BatchPartiallySaved) as info, sharded.batch() as batch:
        for ids in parts:
            for msg_id in ids:
                batch.record_failure(msg_id, code=TRANSIENT)
        other.record_failure(parts[2][0], code=PERMANENT)
    versions = {m: v for u in urls for m, v in versions_by_id(u, parts).items()}
    expected = dict.fromkeys(parts[0] + parts[1], 2) | {parts[2][0]: 2, parts[2][1]: 1}
    assert expected == versions
    assert (tuple(parts[0] + parts[1]), tuple(parts[2])) == (
        info.value.saved,
        info.value.unsaved,
    )
    assert PERMANENT == sharded.get(parts[2][0]).last_error_code


def versions_by_id(url: str, parts: list[list[str]]) -> dict[str, int]:
    stored = stored_versions(url)
    return {m: stored[stream(m)] for ids in parts for m in ids if stream(m) in stored}


def test_a_frozen_shard_in_a_later_part_is_batch_partially_saved(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    parts = three_parts(sharded, shard_map, urls)
    ShardTables(sharded.databases[urls[2]]).set_state(
        sharded.shard(parts[2][0]), FROZEN
    )
    with pytest.raises(BatchPartiallySaved) as info, sharded.batch() as batch:
        for ids in parts:
            for msg_id in ids:
                batch.record_failure(msg_id, code=TRANSIENT)
    error = info.value
    assert (tuple(parts[0] + parts[1]), tuple(parts[2]), ShardMoving) == (
        error.saved,
        error.unsaved,
        type(error.cause),
    )
    assert [1, 1] == list(versions_by_id(urls[2], parts).values())
    assert "saved in 2 of 3 databases" in error.desc


def test_when_the_first_part_fails_nothing_is_saved_and_its_error_is_raised(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    parts = three_parts(sharded, shard_map, urls)
    other = MessageService.open(urls[0], policy=POLICY)
    with pytest.raises(ConcurrencyConflict), sharded.batch() as batch:
        for ids in parts:
            for msg_id in ids:
                batch.record_failure(msg_id, code=TRANSIENT)
        other.record_delivery(parts[0][0], seq="elsewhere")
    versions = [versions_by_id(u, parts) for u in urls]
    assert [
        {parts[0][0]: 2, parts[0][1]: 1},
        dict.fromkeys(parts[1], 1),
        dict.fromkeys(parts[2], 1),
    ] == versions


def test_a_rerun_of_the_unsaved_messages_completes_the_batch(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    parts = three_parts(sharded, shard_map, urls)
    shard = sharded.shard(parts[1][0])
    tables = ShardTables(sharded.databases[urls[1]])
    tables.set_state(shard, FROZEN)
    with pytest.raises(BatchPartiallySaved) as info, sharded.batch() as batch:
        for ids in parts:
            for msg_id in ids:
                batch.record_failure(msg_id, code=TRANSIENT)
    tables.set_state(shard, OWNED)
    with sharded.batch() as batch:
        for msg_id in info.value.unsaved:
            batch.record_failure(msg_id, code=TRANSIENT)
    assert [MessageStatus.SEND_FAIL] * 6 == [
        sharded.get(m).status for ids in parts for m in ids
    ]


def test_record_deliveries_answer_in_input_order_as_a_single_database(
    shard_map: ShardMap,
) -> None:
    items: list[Any] = []
    for i in range(24):
        items.append({"msg_id": f"m{i}", "seq": f"s{i}"})
    items[3] = {"msg_id": "nope", "seq": "1"}
    items[7] = {"msg_id": "", "seq": "1"}
    items[11] = {"msg_id": "m11", "seq": 5}
    items[13] = "not a mapping"
    items[17] = {"seq": "no id"}
    items.append({"msg_id": "m0", "seq": "s0"})  # a repeat: no change
    items.append({"msg_id": "m1", "seq": "other"})  # conflicts with item 1
    answers = []
    for service in (
        MessageService.open(pg.fresh_url(), clock=FakeClock()),
        MessageService.open(shard_map, clock=FakeClock()),
    ):
        for i in range(24):
            make(service, f"m{i}")
        outcomes = service.record_deliveries(items)
        answers.append(
            ([outcome(o) for o in outcomes], [service.get(f"m{i}") for i in range(24)])
        )
    assert answers[0] == answers[1]
    assert len(items) == len(answers[1][0])


def test_record_failures_answer_in_input_order_as_a_single_database(
    shard_map: ShardMap,
) -> None:
    items: list[Any] = [{"msg_id": f"m{i}", "code": TRANSIENT} for i in range(20)]
    items[2] = {"msg_id": "m2", "code": "x"}
    items[9] = {"msg_id": "m9", "code": PERMANENT, "desc": "bad"}
    items.append({"msg_id": "m3", "code": TRANSIENT, "attempt": 7})
    answers = []
    for service in (
        MessageService.open(pg.fresh_url(), clock=FakeClock()),
        MessageService.open(shard_map, clock=FakeClock()),
    ):
        for i in range(20):
            make(service, f"m{i}")
        answers.append([outcome(o) for o in service.record_failures(items)])
    assert answers[0] == answers[1]


def test_record_failures_of_a_frozen_shard_answer_shard_moving_after_the_wait(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    """The frozen shard's item waits move_wait, then is ShardMoving; the other
    databases' items are saved; an invalid item keeps its own refusal."""
    groups = ids_by_database(shard_map, 60)
    frozen = groups[urls[1]][0]
    shard = sharded.shard(frozen)
    others = [groups[urls[0]][0], groups[urls[2]][0]]
    for msg_id in [frozen, *others]:
        make(sharded, msg_id)
    ShardTables(sharded.databases[urls[1]]).set_state(shard, FROZEN)
    items: list[Any] = [
        {"msg_id": others[0], "code": TRANSIENT},
        {"msg_id": frozen, "code": TRANSIENT},
        {"msg_id": "", "code": TRANSIENT},  # goes to the first database
        {"msg_id": others[1], "code": TRANSIENT},
    ]
    started = time.monotonic()
    outcomes = sharded.record_failures(items)
    waited = time.monotonic() - started
    assert [MessageView, ShardMoving, InvalidArgument, MessageView] == [
        type(o) for o in outcomes
    ]
    assert 0.25 < waited < 3.0
    assert [
        MessageStatus.SEND_FAIL,
        MessageStatus.SENDING,
        MessageStatus.SEND_FAIL,
    ] == [sharded.get(m).status for m in (others[0], frozen, others[1])]


def frozen_with_neighbour(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> tuple[str, str]:
    """A message of a frozen shard of the first database, and one of another
    shard of the same database (both created)."""
    ids = ids_by_database(shard_map, 60)[urls[0]]
    frozen = ids[0]
    neighbour = next(m for m in ids if sharded.shard(m) != sharded.shard(frozen))
    for msg_id in (frozen, neighbour):
        make(sharded, msg_id)
    ShardTables(sharded.databases[urls[0]]).set_state(sharded.shard(frozen), FROZEN)
    return frozen, neighbour


def test_an_invalid_item_keeps_its_refusal_beside_a_frozen_shard(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    frozen, _ = frozen_with_neighbour(sharded, shard_map, urls)
    outcomes = sharded.record_failures(
        [{"msg_id": frozen, "code": TRANSIENT}, {"msg_id": "", "code": TRANSIENT}]
    )
    assert [ShardMoving, InvalidArgument] == [type(o) for o in outcomes]


def test_an_item_of_a_shard_not_moving_is_saved_beside_a_frozen_shard(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    frozen, neighbour = frozen_with_neighbour(sharded, shard_map, urls)
    outcomes = sharded.record_failures(
        [
            {"msg_id": frozen, "code": TRANSIENT},
            {"msg_id": neighbour, "code": TRANSIENT},
        ]
    )
    assert [ShardMoving, MessageView] == [type(o) for o in outcomes]
    assert MessageStatus.SEND_FAIL == sharded.get(neighbour).status


# -- the fence --


def test_an_insert_into_a_shard_the_database_does_not_own_is_shard_moved(
    shard_map: ShardMap, urls: list[str]
) -> None:
    MessageService.open(shard_map).close()
    foreign = ids_by_database(shard_map, 60)[urls[1]][0]
    alone = MessageService.open(urls[0])
    with pytest.raises(ShardMoved) as info:
        make(alone, foreign)
    assert (ErrorCode.SHARD_MOVED, "") == (info.value.code, info.value.to)
    assert f"shard {shard_of(stream(foreign), 16)} is not in this database" in (
        info.value.desc
    )
    assert stream(foreign) not in stored_versions(urls[0])
    with pytest.raises(MessageNotFound):
        alone.get(foreign)


def test_shard_moved_names_the_new_database_without_its_password(
    shard_map: ShardMap, urls: list[str]
) -> None:
    sharded = MessageService.open(shard_map)
    msg_id = ids_by_database(shard_map, 60)[urls[0]][0]
    make(sharded, msg_id)
    peer = "postgresql://mover:s3cret@elsewhere:5432/msgstate"
    ShardTables(sharded.databases[urls[0]]).set_state(
        sharded.shard(msg_id), MOVED, peer
    )
    with pytest.raises(ShardMoved) as info:
        sharded.record_failure(msg_id, code=TRANSIENT)
    assert "postgresql://mover:***@elsewhere:5432/msgstate" == info.value.to
    assert "s3cret" not in info.value.desc
    assert {stream(msg_id): 1} == {
        k: v for k, v in stored_versions(urls[0]).items() if k == stream(msg_id)
    }


def test_a_frozen_shard_refuses_writes_with_shard_moving_and_allows_reads(
    shard_map: ShardMap, urls: list[str]
) -> None:
    sharded = MessageService.open(shard_map)
    msg_id = ids_by_database(shard_map, 60)[urls[2]][0]
    view = make(sharded, msg_id)
    ShardTables(sharded.databases[urls[2]]).set_state(sharded.shard(msg_id), FROZEN)
    alone = MessageService.open(urls[2])
    with pytest.raises(ShardMoving) as info:
        alone.record_failure(msg_id, code=TRANSIENT)
    assert ErrorCode.SHARD_MOVING == info.value.code
    assert (view, {stream(msg_id): 1}) == (
        alone.get(msg_id),
        stored_versions(urls[2]),
    )


def test_a_sharded_command_waits_move_wait_then_raises_shard_moving(
    sharded: ShardedMessageService, shard_map: ShardMap, urls: list[str]
) -> None:
    msg_id = ids_by_database(shard_map, 60)[urls[1]][0]
    make(sharded, msg_id)
    ShardTables(sharded.databases[urls[1]]).set_state(sharded.shard(msg_id), FROZEN)
    started = time.monotonic()
    with pytest.raises(ShardMoving):
        sharded.record_failure(msg_id, code=TRANSIENT)
    assert 0.3 <= time.monotonic() - started < 2.0  # move_wait=0.3


def test_a_sharded_command_waits_out_a_short_freeze(
    shard_map: ShardMap, urls: list[str], clock: FakeClock
) -> None:
    sharded = ShardedMessageService(shard_map, clock=clock, move_wait=10)
    try:
        msg_id = ids_by_database(shard_map, 60)[urls[1]][0]
        make(sharded, msg_id)
        tables = ShardTables(sharded.databases[urls[1]])
        tables.set_state(sharded.shard(msg_id), FROZEN)
        thaw = threading.Timer(0.4, tables.set_state, (sharded.shard(msg_id), OWNED))
        thaw.start()
        started = time.monotonic()
        view = sharded.record_failure(msg_id, code=TRANSIENT)
        waited = time.monotonic() - started
        thaw.join()
    finally:
        sharded.close()
    assert MessageStatus.SEND_FAIL == view.status
    assert 0.3 < waited < 5.0


@pytest.mark.parametrize("move_wait", [-1, "1", 4000])
def test_a_bad_move_wait_is_refused(shard_map: ShardMap, move_wait: Any) -> None:
    with pytest.raises(InvalidArgument):
        ShardedMessageService(shard_map, move_wait=move_wait)


# -- the Tencent facade and the worker --


def test_the_tencent_facade_answers_as_for_a_single_database(
    shard_map: ShardMap,
) -> None:
    answers = []
    for service in (
        MessageService.open(pg.fresh_url(), policy=POLICY, clock=FakeClock()),
        MessageService.open(shard_map, policy=POLICY, clock=FakeClock()),
    ):
        manager = V2TIMMessageManager(service)
        for i in range(9):
            make(service, f"m{i}")
            if i % 3 == 0:
                service.record_failure(f"m{i}", code=TRANSIENT)
            elif i % 3 == 1:
                service.record_delivery(f"m{i}", seq="1")
        calls = [f"m{i}" for i in range(9)] + ["nope"]
        answers.append(
            [manager.reSendMessage(m, request_id=f"r-{m}").to_dict() for m in calls]
        )
    assert answers[0] == answers[1]
    assert [0, -1] == [answers[1][0]["code"], answers[1][-1]["code"]]


class Delivering:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def send(self, message: MessageView) -> Any:
        from msgstate.transports import Sent

        self.sent.append(message.msg_id)
        return Sent(seq=f"{message.msg_id}/{message.attempts}")


def test_the_resend_worker_settles_due_messages_in_every_database(
    sharded: ShardedMessageService, shard_map: ShardMap, clock: FakeClock
) -> None:
    ids = [m for group in ids_by_database(shard_map, 30).values() for m in group[:4]]
    for msg_id in ids:
        make(sharded, msg_id)
        sharded.record_failure(msg_id, code=TRANSIENT)
    clock.advance(120)
    transport = Delivering()
    report = ResendWorker(sharded, transport, worker_id="w1").run_once()
    assert WorkerReport(claimed=len(ids), delivered=len(ids)) == report
    assert (sorted(ids), {MessageStatus.SEND_SUCC}) == (
        sorted(transport.sent),
        {sharded.get(m).status for m in ids},
    )


# -- the CLI --


def run(*args: str) -> Result:
    result = make_runner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.stdout + result.stderr
    return result


def ok(*args: str) -> Result:
    result = run(*args)
    assert 0 == result.exit_code, result.stderr
    return result


def test_cli_commands_work_on_a_shard_map(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    db = f"shards://{path}"
    single = pg.fresh_url()
    for store in (db, single):
        for i in range(9):
            ok("create", f"m{i}", "--sender", "a", "--user-id", "b", "--db", store)
        for i in range(0, 9, 2):
            ok("record-failure", f"m{i}", "--code", "6012", "--db", store)
    stats = [json.loads(ok("stats", "--db", s, "--json").stdout) for s in (db, single)]
    assert stats[1] == stats[0]
    shown = json.loads(ok("show", "m4", "--db", db, "--json").stdout)
    assert "m4" == json.dumps(shown).split('"msg_id": "')[1].split('"')[0]
    due = json.loads(
        ok("due", "--db", db, "--json", "--policy", write_fast_policy(tmp_path)).stdout
    )
    assert 5 == len(due), due


def write_fast_policy(tmp_path: Path) -> str:
    path = tmp_path / "policy.toml"
    path.write_text("initial_interval = 0.001\nmaximum_interval = 0.001\n")
    return str(path)


def test_cli_shards_status(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    shard_map = ShardMap.load(path)
    service = MessageService.open(f"shards://{path}")
    groups = ids_by_database(shard_map, 30)
    for ids in groups.values():
        for msg_id in ids:
            make(service, msg_id)
    service.close()
    report = json.loads(ok("shards", "status", "--map", str(path), "--json").stdout)
    expected = [
        {
            "database": url,
            "map_shards": shard_map_ranges(shard_map, url),
            "owned": shard_map_ranges(shard_map, url),
            "moving": {},
            "messages": len(groups[url]),
            "projection_lag": 0,
        }
        for url in shard_map.databases
    ]
    assert expected == report
    table = ok("shards", "status", "--map", str(path)).stdout
    assert all(shard_map_ranges(shard_map, u) in table for u in shard_map.databases)


def shard_map_ranges(shard_map: ShardMap, url: str) -> str:
    from msgstate.shards import format_shards

    return format_shards(shard_map.databases[url])


def test_cli_shards_status_names_a_frozen_shard(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    shard_map = ShardMap.load(path)
    first = next(iter(shard_map.databases))
    service = MessageService.open(f"shards://{path}")
    ShardTables(service.databases[first]).set_state(0, FROZEN)
    service.close()
    report = json.loads(ok("shards", "status", "--map", str(path), "--json").stdout)
    assert [{"0": "frozen"}, {}, {}] == [row["moving"] for row in report]


def test_cli_shards_move_moves_the_shard_and_rewrites_the_map(tmp_path: Path) -> None:
    path = shardpg.fresh_map(tmp_path)
    shard_map = ShardMap.load(path)
    [target] = shardpg.fresh_urls(1)
    service = MessageService.open(f"shards://{path}")
    ids = [f"m{i}" for i in range(40)]
    for msg_id in ids:
        make(service, msg_id)
    service.close()
    shard = shard_of(stream(ids[0]), 16)
    source = shard_map.database_of(shard)
    moved = [m for m in ids if shard_of(stream(m), 16) == shard]
    report = json.loads(
        ok(
            "shards",
            "move",
            "--map",
            str(path),
            "--shard",
            str(shard),
            "--to",
            target,
            "--json",
        ).stdout
    )
    assert (shard, len(moved)) == (report["shard"], report["streams"])
    assert shard_map.moved(shard, target) == ShardMap.load(path)
    assert ({stream(m): 1 for m in moved}, set()) == (
        stored_versions(target),
        {stream(m) for m in moved} & set(stored_versions(source)),
    )
    reopened = MessageService.open(f"shards://{path}")
    assert [MessageStatus.SENDING] * len(ids) == [reopened.get(m).status for m in ids]


def test_cli_with_a_missing_map_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("stats", "--db", f"shards://{tmp_path / 'nope.toml'}")
    assert 2 == result.exit_code
    assert "cannot be read" in result.stderr
    assert result.stderr.startswith("error: ")


def test_cli_with_a_malformed_map_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("virtual_shards = 3\n[databases]\n", encoding="utf-8")
    result = run("stats", "--db", f"shards://{path}")
    assert 2 == result.exit_code
    assert "error: " in result.stderr


def test_cli_shards_status_of_a_malformed_map_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("virtual_shards = [\n", encoding="utf-8")
    result = run("shards", "status", "--map", str(path))
    assert (1, 1) == (result.exit_code, len(result.stderr.strip().splitlines()))
    assert result.stderr.startswith("error: ")
    assert "is not TOML" in result.stderr
