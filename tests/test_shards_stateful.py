"""The stateful model test and the read-model properties on a 3-database shard map.

Every command and query goes to a :class:`~msgstate.ShardedMessageService` over a
fresh three-database map *and* to a single-database PostgreSQL service fed the
same commands on the same clock: their answers (views, errors' types, codes and
sentences, histories, read models, counts) must be equal, and the state machine
of ``tests/stateful/test_message_machine.py`` checks both against its model.

The map is chosen so the machine's message pool lands in all three databases
(``m2`` in the first, ``m1`` in the second, ``m3`` and the ghost id in the third),
and so do the read-model properties' six messages (``m0`` .. ``m5``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any
from uuid import uuid4

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from msgstate import (
    MessageNotFound,
    MessageService,
    MessageStatus,
    MessageView,
    MsgStateError,
    ResendPolicy,
    ShardedMessageService,
    ShardMap,
)
from msgstate.shards import shard_of
from msgstate.storage import _redact
from tests import pg, shardpg
from tests import strategies as mst
from tests.stateful.test_message_machine import (
    ATTEMPT_OFFSETS,
    GHOST,
    POOL,
    SEND_FAIL,
    SEND_SUCC,
    Expected,
    PostgresMessageMachine,
    msg_ids,
)
from tests.support import FakeClock
from tests.test_projections import (
    COMMANDS,
    POLICIES,
    agree_at_every_moment,
    expected_split,
    run_commands,
)

VIRTUAL_SHARDS = 16
LAYOUT = ("0-6", "7-9", "10-15")
"""The three databases' shards: each gets some of the ids the tests use."""


def spread_map(urls: list[str]) -> ShardMap:
    return ShardMap(VIRTUAL_SHARDS, dict(zip(urls, LAYOUT, strict=True)))


@cache
def _database_index(msg_id: str) -> int:
    """Which of the three databases of :func:`spread_map` holds ``msg_id``."""
    with MessageService.open("memory://") as probe:
        shard = shard_of(probe.stream_id(msg_id), VIRTUAL_SHARDS)
    for index, spec in enumerate(LAYOUT):
        low, high = (int(x) for x in spec.split("-"))
        if low <= shard <= high:
            return index
    raise AssertionError(shard)


def test_the_ids_used_here_reach_every_database() -> None:
    """The machine's pool and the properties' ids are spread over the map (else
    the merge of answers across databases would go untested)."""
    assert {0, 1, 2} == {_database_index(m) for m in POOL}
    assert {0, 1, 2} == {_database_index(f"m{i}") for i in range(6)}


# -- two services, one answer --


Outcome = tuple[str, Any]


def _outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return ("answer", call())
    except MsgStateError as error:
        return ("error", (type(error), error.code, error.desc, error))


def _comparable(outcome: Outcome) -> Any:
    kind, value = outcome
    if kind == "error":
        return (kind, value[:3])
    if isinstance(value, list):
        return (kind, [_comparable_item(v) for v in value])
    return (kind, value)


def _comparable_item(value: Any) -> Any:
    if isinstance(value, MsgStateError):  # an outcome of record_deliveries & co
        return (type(value), value.code, value.desc)
    return value


class Twins:
    """A sharded service and a single-database one, driven as one service.

    Every method call goes to both with the same arguments (on the same clock);
    their answers, or their errors' types, codes and sentences, must be equal.
    The sharded one's answer is returned (its error raised).
    """

    def __init__(self, sharded: ShardedMessageService, single: MessageService):
        assert isinstance(sharded, ShardedMessageService)
        assert not isinstance(single, ShardedMessageService)
        self.sharded = sharded
        self.single = single

    def __getattr__(self, name: str) -> Any:
        left = getattr(self.sharded, name)
        right = getattr(self.single, name)
        if not callable(left):
            assert left == right, name
            return left

        def both(*args: Any, **kwargs: Any) -> Any:
            if name == "resend" and kwargs.get("request_id") is None:
                # Each service would make up its own fresh id: make one for both.
                kwargs = {**kwargs, "request_id": f"twin-{uuid4().hex}"}
            sharded = _outcome(lambda: left(*args, **kwargs))
            single = _outcome(lambda: right(*args, **kwargs))
            assert _comparable(single) == _comparable(sharded), (name, args, kwargs)
            if sharded[0] == "error":
                raise sharded[1][3]
            return sharded[1]

        return both

    def close(self) -> None:
        try:
            self.sharded.close()
        finally:
            self.single.close()


def read_models(service: Any, now: Any) -> dict[str, Any]:
    """Every merged read model at ``now``, in full and in pages of one."""
    pages: list[Any] = []
    after: str | None = None
    while True:
        page = service.dead_letters(now, limit=1, after=after)
        if not page:
            break
        pages.extend(page)
        after = page[-1].msg_id
    return {
        "due": service.due_resends(now, limit=1000),
        "due first": service.due_resends(now, limit=1),
        "stuck": service.stuck_sends(now, limit=1000),
        "stuck first": service.stuck_sends(now, limit=1),
        "dead": service.dead_letters(now, limit=1000),
        "dead pages": pages,
        "status counts": service.status_counts(),
        "code counts": service.counts_by_error_code(),
    }


def assert_placed(
    sharded: ShardedMessageService, msg_ids: list[str], absent: tuple[str, ...] = ()
) -> None:
    """Each message is in exactly the database its shard maps to; the ``absent``
    ones are in none."""
    shard_map = sharded.shard_map
    for msg_id in [*msg_ids, *absent]:
        home = (
            None
            if msg_id in absent
            else shard_map.database_of(shard_map.shard_of(sharded.stream_id(msg_id)))
        )
        for url, service in sharded.databases.items():
            try:
                service.get(msg_id)
                found = True
            except MessageNotFound:
                found = False
            assert found == (url == home), (
                msg_id,
                _redact(url),
                home and _redact(home),
            )


# -- the state machine --


class ShardedMessageMachine(PostgresMessageMachine):
    """The machine on a fresh 3-database map, twinned with a single database.

    ``self.service`` is a :class:`Twins`: every command the inherited rules send
    and every query the inherited invariants make runs on both services and
    must answer the same. The map is opened from its file (``shards:///``), so
    ``reopen`` and the teardown's reopened-store check use the file too.
    """

    backend = "shards"

    @initialize(
        target=msg_ids,
        policy=mst.machine_policies(),
        msg_id=st.sampled_from(POOL),
        fields=mst.creation_fields(),
    )
    def open_service(
        self, policy: ResendPolicy, msg_id: str, fields: dict[str, Any]
    ) -> str:
        """As the base machine's, on a new map file and a new single schema."""
        from tests.stateful.test_message_machine import Model

        self.policy = policy
        self.model = Model(policy)
        self.directory = tempfile.mkdtemp(prefix="msgstate-shard-machine-")
        path = Path(self.directory) / "shards.toml"
        spread_map(shardpg.fresh_urls(3)).save(path)
        self.url = f"shards://{path}"
        self.single_url = pg.fresh_url()
        self.service = self._open_twins()
        return self.create(msg_id, fields)

    def _open_twins(self) -> Any:
        sharded = MessageService.open(self.url, policy=self.policy, clock=self.clock)
        try:
            single = MessageService.open(
                self.single_url, policy=self.policy, clock=self.clock
            )
        except BaseException:
            sharded.close()
            raise
        return Twins(sharded, single)  # type: ignore[arg-type]

    @rule()
    def reopen(self) -> None:
        """Open both stores afresh (the map from its file) and carry on."""
        old = self.service
        self.check_reopened_store_agrees()
        assert old is not None
        self.service = self._open_twins()
        old.close()

    # -- batches: per database on the map, one transaction on the single store --

    @rule(
        items=st.lists(
            st.tuples(st.sampled_from((*POOL, GHOST)), mst.seqs(), ATTEMPT_OFFSETS),
            min_size=1,
            max_size=5,
        )
    )
    def deliver_batch(self, items: list[tuple[str, str, int | None]]) -> None:
        """record_deliveries over several messages (and databases) at once."""
        commands = [
            {"msg_id": m, "seq": seq, "attempt": self.attempt_for(m, offset)}
            for m, seq, offset in items
        ]
        expected = []
        for command in commands:
            outcome = self.model.record_delivery(
                command["msg_id"],
                seq=command["seq"],
                server_time=None,
                attempt=command["attempt"],
                now=self.clock.now,
            )
            expected.append(self._expected_item(command["msg_id"], outcome))
        self._count_databases("deliver_batch", items)
        assert self.service is not None
        answers = self.service.record_deliveries(commands)
        assert expected == [self._answered(a) for a in answers]
        for command in commands:
            m = self.model.messages.get(command["msg_id"])
            if m is not None and m.status == SEND_SUCC:
                self.delivered.setdefault(m.msg_id, self.model.view(m.msg_id))

    @rule(
        items=st.lists(
            st.tuples(
                st.sampled_from((*POOL, GHOST)), mst.error_codes(), ATTEMPT_OFFSETS
            ),
            min_size=1,
            max_size=5,
        )
    )
    def fail_batch(self, items: list[tuple[str, int, int | None]]) -> None:
        """record_failures over several messages (and databases) at once."""
        commands = [
            {"msg_id": m, "code": code, "attempt": self.attempt_for(m, offset)}
            for m, code, offset in items
        ]
        expected = []
        for command in commands:
            outcome = self.model.record_failure(
                command["msg_id"],
                code=command["code"],
                desc="",
                attempt=command["attempt"],
                retry_after=None,
                now=self.clock.now,
            )
            expected.append(self._expected_item(command["msg_id"], outcome))
        self._count_databases("fail_batch", items)
        assert self.service is not None
        answers = self.service.record_failures(commands)
        assert expected == [self._answered(a) for a in answers]

    @staticmethod
    def _count_databases(rule: str, items: list[Any]) -> None:
        databases = {_database_index(m) for m, *_ in items}
        event(f"{rule}: items on {len(databases)} database(s)")

    def _expected_item(self, msg_id: str, outcome: Expected) -> Any:
        """A batch item's expected outcome, as :meth:`_answered` shows answers."""
        if outcome is not None:
            return outcome
        return self.model.view(msg_id)

    @staticmethod
    def _answered(answer: MessageView | MsgStateError) -> Any:
        if isinstance(answer, MsgStateError):
            return (type(answer), answer.code)
        return answer

    @rule()
    def rebuild_read_models(self) -> None:
        """Rebuild every database's read models: same event counts, same answers."""
        assert self.service is not None
        now = self.clock.now
        before = read_models(self.service.sharded, now)
        self.service.rebuild_projections()  # the twins count the same events
        assert before == read_models(self.service, now)

    # -- invariants --

    @invariant()
    def read_models_agree(self) -> None:
        """Every merged read model equals the single database's (the Twins
        compare each call), now (and at the end an hour on); pages of one make up
        the full answer; counts are the model's; the failed messages split into
        due and dead as the model's policy says."""
        self.check_read_models(timedelta(0))

    def teardown(self) -> None:
        try:
            if self.service is not None:
                self.check_read_models(timedelta(hours=1))  # ages and backoffs end
        finally:
            super().teardown()

    def check_read_models(self, *laters: timedelta) -> None:
        assert self.service is not None
        for later in laters:
            now = self.clock.now + later
            models = read_models(self.service, now)
            assert models["dead pages"] == models["dead"]
            assert models["due first"] == models["due"][:1]
            assert models["stuck first"] == models["stuck"][:1]
            statuses = [MessageStatus(m.status) for m in self.model.messages.values()]
            assert {s: statuses.count(s) for s in MessageStatus} == models[
                "status counts"
            ]
            codes = [
                m.last_error_code
                for m in self.model.messages.values()
                if m.status == SEND_FAIL
            ]
            assert {c: codes.count(c) for c in sorted(set(codes))} == models[
                "code counts"
            ]
            ids = sorted(self.model.messages)
            due, dead = expected_split(self.service.sharded, ids, now)
            assert due == [v.msg_id for v in models["due"]]
            assert dead == [(d.msg_id, d.code) for d in models["dead"]]

    @invariant()
    def checks_agree(self) -> None:
        """check_resend and get_at answer the same on both (the Twins compare)."""
        assert self.service is not None
        for msg_id, m in self.model.messages.items():
            self.service.check_resend(msg_id)
            self.service.get_at(msg_id, version=max(1, len(m.history) - 1))

    @invariant()
    def streams_live_in_their_shards_database(self) -> None:
        """Every message is in the database its shard maps to, and only there."""
        assert self.service is not None
        assert_placed(self.service.sharded, list(self.model.messages), (GHOST,))


# Each example makes four PostgreSQL schemas (0.5 s) and every step queries four
# databases several times over (~0.15 s a step, ~10x a memory step): 8 runs of up
# to 30 steps (~35 s on two shared cores) whatever the profile, where the
# profile's share would be 10 (dev) to 14 (ci) runs. The logic under test is the
# memory machine's (200 runs of 50 steps under CI); what this adds is routing,
# merging and the comparison with one database, which every step exercises.
TestShardedMessageMachine = ShardedMessageMachine.TestCase
TestShardedMessageMachine.settings = settings(
    max_examples=8,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- the read-model properties --


@contextmanager
def twins(policy: ResendPolicy, clock: FakeClock) -> Iterator[Twins]:
    sharded = MessageService.open(
        spread_map(shardpg.fresh_urls(3)), policy=policy, clock=clock
    )
    try:
        single = MessageService.open(pg.fresh_url(), policy=policy, clock=clock)
    except BaseException:
        sharded.close()
        raise
    both = Twins(sharded, single)  # type: ignore[arg-type]
    try:
        yield both
    finally:
        both.close()


PROPERTY_SETTINGS = settings(
    # Four schemas per example (~0.5 s) plus the commands and queries on four
    # databases: 12 examples (~10 s) whatever the profile (ci would ask 200); the
    # same properties run 40 to 60 times per backend in test_projections.
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(commands=COMMANDS, policy=POLICIES, extra=st.integers(0, 120))
def test_live_rebuilt_and_single_database_agree(
    commands: Any, policy: ResendPolicy, extra: int
) -> None:
    """test_projections' live == rebuilt == policy property on the map, whose
    every answer must also be the single database's for the same commands."""
    clock = FakeClock()
    with twins(policy, clock) as service:
        commands = mst.initial_creates() + commands
        half = len(commands) // 2
        ids = run_commands(service, clock, commands[:half], "m")
        service.status_counts()  # catch up half-way, so live views are incremental
        later = run_commands(service, clock, commands[half:], "m")
        ids = sorted(set(ids) | set(later))
        now = clock.now + timedelta(seconds=extra)
        live = read_models(service, now)
        assert service.rebuild_projections() > 0
        assert live == read_models(service, now)
        due, dead = expected_split(service.sharded, ids, now)
        assert due == [v.msg_id for v in live["due"]]
        assert dead == sorted((d.msg_id, d.code) for d in live["dead"])
        statuses = [service.get(m).status for m in ids]
        assert {s: statuses.count(s) for s in MessageStatus} == live["status counts"]
        assert_placed(service.sharded, ids)


@PROPERTY_SETTINGS
@given(commands=COMMANDS, policy=POLICIES)
def test_read_models_agree_with_check_resend_at_every_moment(
    commands: Any, policy: ResendPolicy
) -> None:
    """test_projections' every-moment property, run on the Twins: at every moment
    where an answer can change, the map's due_resends / dead_letters follow
    check_resend message by message, and equal the single database's."""
    clock = FakeClock()
    with twins(policy, clock) as service:
        agree_at_every_moment(service, clock, commands)  # type: ignore[arg-type]
