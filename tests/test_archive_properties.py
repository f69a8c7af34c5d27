"""Property: archiving never touches an unfinished message (memory, SQLite, PostgreSQL).

The test's own model says which messages are unfinished: sending, or failed and
still resendable under the policy (retryable code by the tests' own reading of the
catalog, attempts left, not expired). Those, and every message changed at or after
``before``, must keep every stored byte; the finished, older ones must be archived.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msgstate import (
    Message,
    MessageService,
    MessageStatus,
    MsgStateError,
    ResendPolicy,
    RetryClass,
)
from tests.conftest import backend_url
from tests.strategies import CATALOG_CLASSES, machine_policies, message_scripts
from tests.support import FakeClock

TRANSIENT_CODES = sorted(c for c, k in CATALOG_CLASSES.items() if k == "TRANSIENT")
_EXAMPLES = {"memory": 100, "sqlite": 100, "postgres": 25}


def retry_class(policy: ResendPolicy, code: int) -> RetryClass:
    name = CATALOG_CLASSES.get(code)
    return policy.unknown_code_class if name is None else RetryClass[name]


def unfinished(policy: ResendPolicy, view: Any, now: datetime) -> bool:
    """The model: could this message still change status by itself or a resend?"""
    if view.status is MessageStatus.SENDING:
        return True
    if view.status is not MessageStatus.SEND_FAIL:
        return False
    kind = retry_class(policy, view.last_error_code)
    if kind is RetryClass.PERMANENT:
        return False
    if kind is RetryClass.AMBIGUOUS and not policy.resend_ambiguous:
        return False
    if view.attempts >= policy.max_attempts:
        return False
    age = now - view.created_at
    if policy.max_age is not None and age > policy.max_age:
        return False
    return not (
        view.online_user_only
        and policy.online_only_max_age is not None
        and age > policy.online_only_max_age
    )


def run_script(
    service: MessageService,
    clock: FakeClock,
    msg_id: str,
    online: bool,
    steps: list[tuple[Any, ...]],
) -> None:
    service.create(msg_id, sender="s", user_id="u", online_user_only=online)
    for step in steps:
        try:
            if step[0] == "fail":
                service.record_failure(msg_id, code=step[1])
            elif step[0] == "resend":
                service.resend(msg_id)
            elif step[0] == "deliver":
                service.record_delivery(msg_id, seq=f"seq-{msg_id}")
            else:
                clock.advance(step[1])
        except MsgStateError:
            continue


def raw(service: MessageService, msg_id: str) -> list[tuple[int, str, bytes]]:
    return [
        (e.originator_version, e.topic, bytes(e.state))
        for e in service.recorder.select_events(Message.create_id(msg_id))
    ]


@pytest.mark.parametrize("store", ["memory", "sqlite", "postgres"])
def test_archiving_never_touches_an_unfinished_message(
    store: str, tmp_path: Path
) -> None:
    # PostgreSQL: one schema for every example (a schema per example is slow);
    # each example uses its own ids and a later stretch of time.
    url = backend_url(store, tmp_path) if store == "postgres" else None
    clock = FakeClock()
    examples = itertools.count()

    @settings(max_examples=min(_EXAMPLES[store], settings.default.max_examples))
    @given(
        policy=machine_policies(),
        scripts=st.lists(message_scripts(), min_size=1, max_size=6),
        lead=st.sampled_from(TRANSIENT_CODES),
        cut=st.floats(0, 1),
        later=st.integers(0, 600),
    )
    def check(
        policy: ResendPolicy,
        scripts: list[tuple[bool, list[tuple[Any, ...]]]],
        lead: int,
        cut: float,
        later: int,
    ) -> None:
        n = next(examples)
        clock.advance(86_400)
        start = clock()
        service = MessageService.open(
            url or ("memory://" if store == "memory" else "sqlite:///:memory:"),
            policy=policy,
            clock=clock,
        )
        try:
            # A first message that failed transiently: often still resendable.
            ids = [f"ex{n}-lead"]
            run_script(service, clock, ids[0], False, [("fail", lead)])
            clock.advance(1)
            for i, (online, steps) in enumerate(scripts):
                msg_id = f"ex{n}-m{i}"
                run_script(service, clock, msg_id, online, steps)
                ids.append(msg_id)
                clock.advance(1)
            span = (clock() - start).total_seconds()
            before = start + timedelta(seconds=round(cut * (span + 2)))
            clock.advance(later)
            now = clock()
            views = {m: service.get(m) for m in ids}
            last = {m: service.history(m)[-1].recorded_at for m in ids}
            stored = {m: raw(service, m) for m in ids}

            report = service.archive(before=before, to=tmp_path / f"ex{n}.jsonl")

            missed = 0
            for m in ids:
                if unfinished(policy, views[m], now) or last[m] >= before:
                    assert raw(service, m) == stored[m], m
                elif raw(service, m) == stored[m]:
                    missed += 1  # SQLite keeps the stream holding the newest event
                else:
                    assert raw(service, m) == [], m
            assert missed <= report.kept.get("holds the newest event", 0)
            assert set(report.kept) <= {"holds the newest event"}
        finally:
            service.close()

    check()
