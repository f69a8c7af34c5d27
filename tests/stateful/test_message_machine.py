"""Many messages, random commands, one simple model: the service must agree with it.

The model below is written from the documented behaviour (statuses, the resend
policy's refusals in their order, idempotency), not from msgstate's code: it reads
neither the transition table nor ``ResendPolicy.decide``, and it classifies error
codes from the catalog file itself. It calls ``ResendPolicy.delay`` only to learn
the jitter of a jittered policy, after checking that number against its own bounds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from msgstate import (
    DeliveryConflict,
    DuplicateMessage,
    ErrorCode,
    HistoryEntry,
    InvalidArgument,
    MessageNotFound,
    MessageService,
    MessageStatus,
    MessageView,
    MsgStateError,
    ResendPolicy,
    ResendRefused,
    RetryClass,
    SendNotOverdue,
    StaleAttempt,
)
from tests import pg
from tests import strategies as mst
from tests.support import FakeClock

# The model's own status numbers (V2TIM values).
SENDING, SEND_SUCC, SEND_FAIL = 1, 2, 3

POOL = ("m1", "m2", "m3")
"""Message ids the machine creates: a small pool, so commands collide."""
GHOST = "never-created"
"""An id no rule creates: every command on it is MessageNotFound."""

MICROSECOND = timedelta(microseconds=1)

Expected = tuple[type[MsgStateError], ErrorCode] | None
"""What the model expects of a command: ``None`` (an answer) or an error."""


@dataclass
class ModelMessage:
    """Everything the model knows about one message."""

    msg_id: str
    fields: dict[str, Any]
    created_at: datetime
    online_user_only: bool
    status: int = SENDING
    attempts: int = 1
    last_error_code: int | None = None
    last_error_desc: str | None = None
    last_retry_after: float | None = None
    last_failed_at: datetime | None = None
    failure_codes: list[int] = field(default_factory=list)
    accepted_requests: set[str] = field(default_factory=set)
    request_id: str | None = None  # the accepted resend that started this attempt
    seq: str | None = None
    server_time: datetime | None = None
    delivered_at: datetime | None = None
    updated_at: datetime | None = None
    history: list[HistoryEntry] = field(default_factory=list)

    def record(self, event: str, at: datetime, data: dict[str, Any]) -> None:
        """Append the event the service should have stored (Created is attempt 1)."""
        self.history.append(
            HistoryEntry(
                version=len(self.history) + 1,
                event=event,
                recorded_at=at,
                attempt=data.get("attempt", 1),
                data=data,
            )
        )
        self.updated_at = at


class Model:
    """The obviously-correct reference: plain dicts and if-statements."""

    def __init__(self, policy: ResendPolicy) -> None:
        self.policy = policy
        self.messages: dict[str, ModelMessage] = {}

    # -- the policy, as documented --

    def retry_class(self, code: int) -> str:
        return mst.CATALOG_CLASSES.get(code, self.policy.unknown_code_class.value)

    def backoff(self, attempt: int, msg_id: str) -> timedelta:
        """initial * coefficient ** (attempt - 1), capped, times the jitter factor."""
        p = self.policy
        base = min(
            p.initial_interval.total_seconds() * p.backoff_coefficient ** (attempt - 1),
            p.maximum_interval.total_seconds(),
        )
        if p.jitter == 0:
            return timedelta(seconds=base)
        jittered = p.delay(attempt, msg_id)  # only the jitter is taken from the code
        low = timedelta(seconds=base * (1 - p.jitter)) - MICROSECOND
        high = timedelta(seconds=base * (1 + p.jitter)) + MICROSECOND
        assert low <= jittered <= high, (low, jittered, high)
        return jittered

    def next_retry_at(self, m: ModelMessage) -> datetime:
        assert m.last_failed_at is not None
        wait = self.backoff(m.attempts, m.msg_id)
        if m.last_retry_after is not None:
            wait = max(wait, timedelta(seconds=m.last_retry_after))
        return m.last_failed_at + wait

    def refusal(
        self, m: ModelMessage, now: datetime, online_user_only: bool | None = None
    ) -> ErrorCode | None:
        """Why the policy refuses a resend now, checked in the documented order.

        The online-only age limit applies to the option the resend will be sent
        with: the one it asks for, else the one in force.
        """
        p = self.policy
        if m.status == SEND_SUCC:
            return ErrorCode.ALREADY_DELIVERED
        if m.status == SENDING:
            return ErrorCode.SEND_IN_PROGRESS
        assert m.last_error_code is not None
        retry_class = self.retry_class(m.last_error_code)
        if retry_class == "PERMANENT" or (
            retry_class == "AMBIGUOUS" and not p.resend_ambiguous
        ):
            return ErrorCode.NOT_RETRYABLE
        if m.attempts >= p.max_attempts:
            return ErrorCode.ATTEMPTS_EXHAUSTED
        age = now - m.created_at
        if p.max_age is not None and age > p.max_age:
            return ErrorCode.EXPIRED
        online = m.online_user_only if online_user_only is None else online_user_only
        if online and p.online_only_max_age is not None and age > p.online_only_max_age:
            return ErrorCode.EXPIRED
        if p.enforce_backoff and now < self.next_retry_at(m):
            return ErrorCode.TOO_EARLY
        return None

    # -- commands: return what is expected, and change the model if accepted --

    def create(self, msg_id: str, fields: dict[str, Any], now: datetime) -> Expected:
        wanted = {**fields, "content": fields["content"] or {}}
        if msg_id in self.messages:
            if self.messages[msg_id].fields != wanted:
                return (DuplicateMessage, ErrorCode.DUPLICATE_MESSAGE)
            return None
        m = ModelMessage(
            msg_id=msg_id,
            fields=wanted,
            created_at=now,
            online_user_only=wanted["online_user_only"],
        )
        m.record("Created", now, {"msg_id": msg_id, **wanted})
        self.messages[msg_id] = m
        return None

    def record_failure(
        self,
        msg_id: str,
        *,
        code: int,
        desc: str,
        attempt: int | None,
        retry_after: float | None,
        now: datetime,
    ) -> Expected:
        if msg_id not in self.messages:
            return (MessageNotFound, ErrorCode.MESSAGE_NOT_FOUND)
        m = self.messages[msg_id]
        attempt = m.attempts if attempt is None else attempt
        if attempt > m.attempts:
            return (InvalidArgument, ErrorCode.INVALID_ARGUMENT)
        if attempt < m.attempts or m.status != SENDING:
            return None  # stale, repeated, or after delivery: nothing new
        seconds = None if retry_after is None else float(retry_after)
        m.status = SEND_FAIL
        m.last_error_code = code
        m.last_error_desc = desc
        m.last_retry_after = seconds
        m.last_failed_at = now
        m.failure_codes.append(code)
        m.record(
            "SendFailed",
            now,
            {"attempt": attempt, "code": code, "desc": desc, "retry_after": seconds},
        )
        return None

    def resend(
        self,
        msg_id: str,
        *,
        request_id: str,
        online_user_only: bool | None,
        actor: str | None,
        now: datetime,
        expected_attempt: int | None = None,
    ) -> Expected:
        if msg_id not in self.messages:
            return (MessageNotFound, ErrorCode.MESSAGE_NOT_FOUND)
        m = self.messages[msg_id]
        if request_id in m.accepted_requests:
            return None
        if expected_attempt is not None and expected_attempt != m.attempts:
            return (StaleAttempt, ErrorCode.STALE_ATTEMPT)
        refused = self.refusal(m, now, online_user_only)
        if refused is not None:
            return (ResendRefused, refused)
        m.attempts += 1
        m.status = SENDING
        m.accepted_requests.add(request_id)
        m.request_id = request_id
        if online_user_only is not None:
            m.online_user_only = online_user_only
        m.record(
            "ResendRequested",
            now,
            {
                "attempt": m.attempts,
                "request_id": request_id,
                "actor": actor,
                "online_user_only": m.online_user_only,
            },
        )
        return None

    def expire_send(
        self, msg_id: str, *, attempt: int, actor: str | None, now: datetime
    ) -> Expected:
        """A send SENDING for send_timeout or more fails with SEND_TIMED_OUT."""
        if msg_id not in self.messages:
            return (MessageNotFound, ErrorCode.MESSAGE_NOT_FOUND)
        m = self.messages[msg_id]
        if attempt > m.attempts:
            return (InvalidArgument, ErrorCode.INVALID_ARGUMENT)
        if attempt < m.attempts or m.status != SENDING:
            return None  # not the current send, or reported already: nothing new
        assert m.updated_at is not None  # when the current send started
        running = now - m.updated_at
        timeout = self.policy.send_timeout
        if running < timeout:
            return (SendNotOverdue, ErrorCode.SEND_NOT_OVERDUE)
        who = "" if actor is None else f"; expired by {actor}"
        desc = (
            f"send {attempt} stayed SENDING for {running.total_seconds():.3f} s, "
            f"past send_timeout ({timeout.total_seconds():g} s){who}"
        )
        return self.record_failure(
            msg_id,
            code=int(ErrorCode.SEND_TIMED_OUT),
            desc=desc,
            attempt=attempt,
            retry_after=None,
            now=now,
        )

    def record_delivery(
        self,
        msg_id: str,
        *,
        seq: str,
        server_time: datetime | None,
        attempt: int | None,
        now: datetime,
    ) -> Expected:
        if msg_id not in self.messages:
            return (MessageNotFound, ErrorCode.MESSAGE_NOT_FOUND)
        m = self.messages[msg_id]
        attempt = m.attempts if attempt is None else attempt
        if attempt > m.attempts:
            return (InvalidArgument, ErrorCode.INVALID_ARGUMENT)
        if m.status == SEND_SUCC:
            if seq == m.seq:
                return None
            return (DeliveryConflict, ErrorCode.ALREADY_DELIVERED)
        m.status = SEND_SUCC
        m.seq = seq
        m.server_time = now if server_time is None else server_time
        m.delivered_at = now
        m.record(
            "Delivered",
            now,
            {"attempt": attempt, "seq": seq, "server_time": m.server_time},
        )
        return None

    # -- what the service should answer --

    def view(self, msg_id: str) -> MessageView:
        m = self.messages[msg_id]
        f = m.fields
        code = m.last_error_code
        return MessageView(
            msg_id=msg_id,
            sender=f["sender"],
            user_id=f["user_id"],
            group_id=f["group_id"],
            elem_type=f["elem_type"],
            priority=f["priority"],
            online_user_only=m.online_user_only,
            need_read_receipt=f["need_read_receipt"],
            cloud_custom_data=f["cloud_custom_data"],
            content=f["content"],
            status=MessageStatus(m.status),
            attempts=m.attempts,
            last_error_code=code,
            last_error_desc=m.last_error_desc,
            last_error_class=None
            if code is None
            else RetryClass(self.retry_class(code)),
            last_retry_after=m.last_retry_after,
            last_failed_at=m.last_failed_at,
            maybe_delivered=m.status != SEND_SUCC
            and any(self.retry_class(c) == "AMBIGUOUS" for c in m.failure_codes),
            seq=m.seq,
            server_time=m.server_time,
            created_at=m.created_at,
            updated_at=m.updated_at,
            delivered_at=m.delivered_at,
            next_retry_at=self.next_retry_at(m) if m.status == SEND_FAIL else None,
            version=len(m.history),
            request_id=m.request_id,
        )


ATTEMPT_OFFSETS = st.one_of(st.none(), st.integers(-2, 1))
"""``None`` (the current attempt), an older one (-2, -1), the current (0), a future."""

RETRYABLE_CODES = st.sampled_from(
    sorted(c for c, k in mst.CATALOG_CLASSES.items() if k != "PERMANENT")
)
"""Catalogued codes that a resend may follow (the common case in practice)."""


msg_ids = Bundle("msg_ids")
TARGETS = msg_ids
"""Ids that a create rule has used (created, unless a duplicate was refused)."""


class MessageMachine(RuleBasedStateMachine):
    """Drives a MessageService and the Model side by side; they must agree."""

    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.directory: str | None = None
        self.service: MessageService | None = None
        self.delivered: dict[str, MessageView] = {}
        self.fresh_requests = 0

    # -- setup and teardown --

    @initialize(
        target=msg_ids,
        policy=mst.machine_policies(),
        msg_id=st.sampled_from(POOL),
        fields=mst.creation_fields(),
    )
    def open_service(
        self, policy: ResendPolicy, msg_id: str, fields: dict[str, Any]
    ) -> str:
        """Open a store with this run's policy and create a first message.

        Policies vary by run: few attempts, backoff enforced or not, max ages. The
        first message means no run is only clock ticks.
        """
        self.policy = policy
        self.model = Model(policy)
        if self.backend == "sqlite":
            self.directory = tempfile.mkdtemp(prefix="msgstate-machine-")
            self.url = f"sqlite:///{Path(self.directory) / 'machine.db'}"
        elif self.backend == "postgres":
            self.url = pg.fresh_url()  # a new schema, dropped at session end
        else:
            self.url = "memory://"
        self.service = MessageService.open(self.url, policy=policy, clock=self.clock)
        return self.create(msg_id, fields)

    def teardown(self) -> None:
        if self.service is not None:
            sends = max((m.attempts for m in self.model.messages.values()), default=0)
            event(f"most sends of one message: {sends}")
        try:
            if self.service is not None and self.backend != "memory":
                self.check_reopened_store_agrees()
        finally:
            if self.service is not None:
                self.service.close()
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers --

    def attempt_for(self, msg_id: str, offset: int | None) -> int | None:
        if offset is None:
            return None
        current = (
            self.model.messages[msg_id].attempts if msg_id in self.model.messages else 1
        )
        return max(1, current + offset)

    def snapshot(self, msg_id: str) -> MessageView | None:
        assert self.service is not None
        try:
            return self.service.get(msg_id)
        except MessageNotFound:
            return None

    def run(
        self,
        command: str,
        msg_id: str,
        expected: Expected,
        call: Callable[[], MessageView],
    ) -> None:
        """Apply ``call``; compare its answer or error with ``expected``.

        A refused command must leave the message exactly as it was.
        """
        before = self.snapshot(msg_id)
        event(f"{command}: {'answered' if expected is None else expected[1].name}")
        actual: MessageView | MsgStateError
        try:
            actual = call()
        except MsgStateError as error:
            actual = error
        if isinstance(actual, MsgStateError):
            assert expected == (type(actual), actual.code), repr(actual)
            assert before == self.snapshot(msg_id), "a refused command wrote"
        else:
            assert expected is None, f"expected {expected}, got {actual!r}"
            assert self.model.view(msg_id) == actual

    # -- commands --

    @rule(target=msg_ids, msg_id=st.sampled_from(POOL), fields=mst.creation_fields())
    def create(self, msg_id: str, fields: dict[str, Any]) -> str:
        """Create a message (again, if the pool repeats the id)."""
        expected = self.model.create(msg_id, fields, self.clock.now)
        assert self.service is not None
        self.run(
            "create", msg_id, expected, lambda: self.service.create(msg_id, **fields)
        )
        return msg_id

    @rule(
        msg_id=msg_ids,
        change=st.sampled_from(
            [None, "sender", "priority", "online_user_only", "content", "group_id"]
        ),
    )
    def create_again(self, msg_id: str, change: str | None) -> None:
        """Repeat a creation with the same fields, or with one field changed."""
        if msg_id not in self.model.messages:
            return
        fields = dict(self.model.messages[msg_id].fields)
        if change == "sender":
            fields["sender"] = fields["sender"] + "-x"
        elif change == "priority":
            fields["priority"] = (fields["priority"] + 1) % 4
        elif change == "online_user_only":
            fields["online_user_only"] = not fields["online_user_only"]
        elif change == "content":
            fields["content"] = {**fields["content"], "extra": True}
        elif change == "group_id":
            fields["group_id"] = "g-other"
        expected = self.model.create(msg_id, fields, self.clock.now)
        assert self.service is not None
        self.run(
            "create", msg_id, expected, lambda: self.service.create(msg_id, **fields)
        )

    @rule(
        msg_id=TARGETS,
        code=mst.error_codes(),
        desc=st.sampled_from(["", "timeout"]),
        offset=ATTEMPT_OFFSETS,
        retry_after=mst.retry_afters(),
    )
    def record_failure(
        self,
        msg_id: str,
        code: int,
        desc: str,
        offset: int | None,
        retry_after: float | None,
    ) -> None:
        """Report a failed send: current, stale or future attempt, any code."""
        attempt = self.attempt_for(msg_id, offset)
        expected = self.model.record_failure(
            msg_id,
            code=code,
            desc=desc,
            attempt=attempt,
            retry_after=retry_after,
            now=self.clock.now,
        )
        assert self.service is not None
        self.run(
            "record_failure",
            msg_id,
            expected,
            lambda: self.service.record_failure(
                msg_id, code=code, desc=desc, attempt=attempt, retry_after=retry_after
            ),
        )

    @rule(
        msg_id=TARGETS,
        request_id=mst.request_ids(),
        online_user_only=st.none() | st.booleans(),
        actor=st.sampled_from([None, "ops"]),
        expected_offset=st.none() | st.integers(-1, 1),
    )
    def resend(
        self,
        msg_id: str,
        request_id: str,
        online_user_only: bool | None,
        actor: str | None,
        expected_offset: int | None = None,
    ) -> None:
        """Ask for a resend with a new or an already accepted request id, and
        maybe an expected attempt (the current one, or a stale or future one)."""
        expected_attempt = self.attempt_for(msg_id, expected_offset)
        expected = self.model.resend(
            msg_id,
            request_id=request_id,
            online_user_only=online_user_only,
            actor=actor,
            now=self.clock.now,
            expected_attempt=expected_attempt,
        )
        assert self.service is not None
        self.run(
            "resend",
            msg_id,
            expected,
            lambda: self.service.resend(
                msg_id,
                request_id=request_id,
                online_user_only=online_user_only,
                actor=actor,
                expected_attempt=expected_attempt,
            ),
        )

    @rule(
        msg_id=TARGETS,
        offset=st.integers(-1, 1),
        actor=st.sampled_from([None, "sweeper"]),
    )
    def expire_send(self, msg_id: str, offset: int, actor: str | None) -> None:
        """Expire a send: the current one, an older one, or one not started."""
        attempt = self.attempt_for(msg_id, offset)
        assert attempt is not None
        expected = self.model.expire_send(
            msg_id, attempt=attempt, actor=actor, now=self.clock.now
        )
        assert self.service is not None
        self.run(
            "expire_send",
            msg_id,
            expected,
            lambda: self.service.expire_send(msg_id, attempt=attempt, actor=actor),
        )

    @rule(msg_id=msg_ids, slack=st.sampled_from([-MICROSECOND, timedelta(0)]))
    def wait_for_send_timeout(self, msg_id: str, slack: timedelta) -> None:
        """Move the clock to a SENDING message's send_timeout (or just before)."""
        m = self.model.messages.get(msg_id)
        if m is None or m.status != SENDING or m.updated_at is None:
            return
        target = m.updated_at + self.policy.send_timeout + slack
        if target > self.clock.now:
            self.clock.now = target

    @invariant()
    def stuck_sends_are_the_models(self) -> None:
        """stuck_sends lists exactly the model's overdue SENDING messages, oldest
        send first."""
        assert self.service is not None
        overdue = sorted(
            (m.updated_at, m.msg_id)
            for m in self.model.messages.values()
            if m.status == SENDING
            and m.updated_at is not None
            and self.clock.now - m.updated_at >= self.policy.send_timeout
        )
        listed = [v.msg_id for v in self.service.stuck_sends(limit=10)]
        assert sorted(overdue) == sorted(
            (self.model.messages[i].updated_at, i) for i in listed
        )
        assert [m for _, m in overdue] == listed or len({t for t, _ in overdue}) < len(
            overdue
        )

    @rule(
        msg_id=msg_ids,
        code=RETRYABLE_CODES,
        retry_after=st.sampled_from([None, None, 0, 3, 30.5]),
    )
    def fail_current(self, msg_id: str, code: int, retry_after: float | None) -> None:
        """Report that the current send failed with a code worth a resend."""
        self.record_failure(msg_id, code, "", None, retry_after)

    @rule(msg_id=msg_ids)
    def resend_fresh(self, msg_id: str) -> None:
        """Ask for a resend with a request id never used before."""
        self.fresh_requests += 1
        self.resend(msg_id, f"fresh-{self.fresh_requests}", None, None)

    @rule(msg_id=msg_ids, code=RETRYABLE_CODES)
    def retry_cycle(self, msg_id: str, code: int) -> None:
        """The usual loop: the send fails, the backoff passes, a resend is asked."""
        self.fail_current(msg_id, code, None)
        self.wait_for_backoff(msg_id, timedelta(0))
        self.resend_fresh(msg_id)

    @rule(
        msg_id=msg_ids,
        limit=st.sampled_from(["max_age", "online_only_max_age"]),
        slack=st.sampled_from([timedelta(0), MICROSECOND]),
    )
    def wait_for_age_limit(self, msg_id: str, limit: str, slack: timedelta) -> None:
        """Move the clock to a message's age limit exactly (or just past it)."""
        m = self.model.messages.get(msg_id)
        age_limit = getattr(self.policy, limit)
        if m is None or age_limit is None:
            return
        target = m.created_at + age_limit + slack
        if target > self.clock.now:
            self.clock.now = target

    @rule(msg_id=msg_ids, slack=st.sampled_from([-MICROSECOND, timedelta(0)]))
    def wait_for_backoff(self, msg_id: str, slack: timedelta) -> None:
        """Move the clock to the end of a failed message's backoff (or just before)."""
        m = self.model.messages.get(msg_id)
        if m is None or m.status != SEND_FAIL:
            return
        target = self.model.next_retry_at(m) + slack
        if target > self.clock.now:
            self.clock.now = target

    @rule(
        msg_id=TARGETS,
        seq=mst.seqs(),
        offset=ATTEMPT_OFFSETS,
        explicit_server_time=st.booleans(),
    )
    def record_delivery(
        self,
        msg_id: str,
        seq: str,
        offset: int | None,
        explicit_server_time: bool,
    ) -> None:
        """Report a delivery: same or other seq, late acks for older attempts."""
        attempt = self.attempt_for(msg_id, offset)
        server_time = (
            self.clock.now - timedelta(seconds=1) if explicit_server_time else None
        )
        expected = self.model.record_delivery(
            msg_id,
            seq=seq,
            server_time=server_time,
            attempt=attempt,
            now=self.clock.now,
        )
        assert self.service is not None
        self.run(
            "record_delivery",
            msg_id,
            expected,
            lambda: self.service.record_delivery(
                msg_id, seq=seq, server_time=server_time, attempt=attempt
            ),
        )
        if expected is None and msg_id not in self.delivered:
            view = self.service.get(msg_id)
            if view.status is MessageStatus.SEND_SUCC:
                self.delivered[msg_id] = view

    @rule(
        msg_id=st.sampled_from((*POOL, GHOST)),
        command=st.sampled_from(["record_failure", "resend", "record_delivery"]),
    )
    def any_id(self, msg_id: str, command: str) -> None:
        """A command on any id, created or not (MessageNotFound if not)."""
        if command == "record_failure":
            self.record_failure(msg_id, 6012, "", None, None)
        elif command == "resend":
            self.resend(msg_id, "r1", None, None)
        else:
            self.record_delivery(msg_id, "1001", None, False)

    @rule(
        seconds=st.one_of(
            st.sampled_from([0.5, 1, 2, 5, 10, 21, 31, 61, 301]),
            st.floats(0, 400, allow_nan=False),
        )
    )
    def advance_clock(self, seconds: float) -> None:
        """Let time pass (backoffs end, messages expire)."""
        self.clock.advance(seconds)

    # -- invariants --

    @invariant()
    def agrees_with_model(self) -> None:
        """Every message's view and history are the model's; ghosts stay absent."""
        assert self.service is not None
        for msg_id in self.model.messages:
            view = self.service.get(msg_id)
            assert self.model.view(msg_id) == view
            history = self.service.history(msg_id)
            assert self.model.messages[msg_id].history == history
            assert len(history) == view.version
            assert view.attempts <= self.policy.max_attempts
        assert self.snapshot(GHOST) is None

    @invariant()
    def delivered_never_changes(self) -> None:
        """A SEND_SUCC message's view stays exactly as it was when delivered."""
        assert self.service is not None
        for msg_id, view in self.delivered.items():
            assert view == self.service.get(msg_id)

    def check_reopened_store_agrees(self) -> None:
        """A fresh service on the same store rebuilds the same views."""
        assert self.service is not None
        fresh = MessageService.open(self.url, policy=self.policy, clock=self.clock)
        try:
            for msg_id, m in self.model.messages.items():
                assert self.model.view(msg_id) == fresh.get(msg_id)
                assert m.history == fresh.history(msg_id)
                assert self.service.get(msg_id) == fresh.get(msg_id)
                assert self.service.history(msg_id) == fresh.history(msg_id)
        finally:
            fresh.close()


def _examples(share: float) -> int:
    """A share of the active profile's max_examples (ci: 200), at least 10."""
    return max(10, int(settings.default.max_examples * share))


class MemoryMessageMachine(MessageMachine):
    """The machine on the in-memory store."""

    backend = "memory"


class SQLiteMessageMachine(MessageMachine):
    """The machine on a temporary SQLite file, reopened now and then."""

    backend = "sqlite"

    @rule()
    def reopen(self) -> None:
        """Open the store afresh and carry on with the new service."""
        old = self.service
        self.check_reopened_store_agrees()
        assert old is not None
        self.service = MessageService.open(
            self.url, policy=self.policy, clock=self.clock
        )
        old.close()


TestMemoryMessageMachine = MemoryMessageMachine.TestCase
TestMemoryMessageMachine.settings = settings(
    max_examples=_examples(1.0), stateful_step_count=50
)

TestSQLiteMessageMachine = SQLiteMessageMachine.TestCase
TestSQLiteMessageMachine.settings = settings(
    max_examples=_examples(0.3), stateful_step_count=50
)


class PostgresMessageMachine(SQLiteMessageMachine):
    """The machine on a fresh PostgreSQL schema, reopened now and then."""

    backend = "postgres"


TestPostgresMessageMachine = PostgresMessageMachine.TestCase
TestPostgresMessageMachine.settings = settings(
    max_examples=_examples(0.07), stateful_step_count=40
)
