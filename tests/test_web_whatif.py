"""The console's what-if form: what it reads, what it shows back, and its charts
(Starlette's test client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from msgstate import InvalidArgument, MessageService, ResendPolicy, RetryClass
from msgstate.web import create_app
from msgstate.web.app import policy_from_form
from tests.console_support import Node, parse
from tests.support import FakeClock

RECORDED = ResendPolicy(max_attempts=3, initial_interval=timedelta(seconds=5))
FORM = {
    "max_attempts": "4",
    "initial_interval": " 2.5 ",
    "backoff_coefficient": "3",
    "maximum_interval": "100",
    "jitter": "0",
    "enforce_backoff": "on",
    "resend_ambiguous": "true",
    "max_age": "",
    "online_only_max_age": "7200",
    "unknown_code_class": "PERMANENT",
    "send_timeout": "30",
}
EXPECTED = ResendPolicy(
    max_attempts=4,
    initial_interval=timedelta(seconds=2.5),
    backoff_coefficient=3.0,
    maximum_interval=timedelta(seconds=100),
    jitter=0.0,
    enforce_backoff=True,
    resend_ambiguous=True,
    max_age=None,
    online_only_max_age=timedelta(hours=2),
    unknown_code_class=RetryClass.PERMANENT,
    send_timeout=timedelta(seconds=30),
)


@pytest.fixture
def service() -> Iterator[MessageService]:
    clock = FakeClock()
    service = MessageService.open("memory://", clock=clock, policy=RECORDED)
    for i in range(4):
        service.create(f"m{i}", sender="u", user_id="v")
        service.record_failure(f"m{i}", code=6012)
        clock.advance(10)
        if i % 2:
            service.resend(f"m{i}")
            service.record_failure(f"m{i}", code=6012)
    clock.advance(3600)
    try:
        yield service
    finally:
        service.close()


def run(client: TestClient, form: dict[str, str], status: int = 200) -> Node:
    response = client.get("/what-if?" + urlencode({**form, "run": "1"}))
    assert status == response.status_code, response.text[:300]
    return parse(response.text)


def shown(root: Node) -> dict[str, Any]:
    """The form's fields as the page shows them."""
    fields: dict[str, Any] = {}
    for field in root.find_all("input"):
        name = field.attrs.get("name")
        if name in (None, "run", "msg_id"):  # msg_id: the header's search box
            continue
        if field.attrs.get("type") == "checkbox":
            fields[name] = "checked" in field.attrs
        else:
            fields[name] = field.attrs.get("value", "")
    for select in root.find_all("select"):
        chosen = [o.text for o in select.find_all("option") if "selected" in o.attrs]
        options = [o.text for o in select.find_all("option")]
        fields[select.attrs["name"]] = (chosen, options)
    return fields


def chart(root: Node, name: str) -> dict[str, Any]:
    (canvas,) = [c for c in root.find_all("canvas") if c.attrs.get("id") == name]
    loaded: dict[str, Any] = json.loads(canvas.attrs["data-chart"])
    return loaded


def test_the_form_reads_every_field() -> None:
    assert EXPECTED == policy_from_form(FORM, RECORDED)
    for word in ("on", "true", "1", " on "):
        assert policy_from_form({"enforce_backoff": word}, RECORDED).enforce_backoff
    for word in ("", "off", "TRUE", "yes", "0"):
        assert not policy_from_form({"enforce_backoff": word}, RECORDED).enforce_backoff
    assert not policy_from_form({}, RECORDED).resend_ambiguous  # unticked box
    kept = policy_from_form({"unknown_code_class": ""}, RECORDED)
    assert RECORDED.unknown_code_class == kept.unknown_code_class
    assert RECORDED.max_attempts == kept.max_attempts  # a field not sent
    with pytest.raises(
        InvalidArgument, match=r"^jitter is empty; give a number \[INVALID_ARGUMENT\]$"
    ):
        policy_from_form({"jitter": " "}, RECORDED)
    with pytest.raises(
        InvalidArgument, match=r"^max_attempts must be a number, got '2\.5' \["
    ):
        policy_from_form({"max_attempts": "2.5"}, RECORDED)


def test_a_run_shows_the_report_the_form_and_both_charts(
    service: MessageService,
) -> None:
    root = run(TestClient(create_app(service)), FORM)
    report = service.simulate_policy(EXPECTED)
    fields = shown(root)
    assert {
        k: v
        for k, v in FORM.items()
        if k not in ("enforce_backoff", "resend_ambiguous", "unknown_code_class")
    } == {k: v for k, v in fields.items() if isinstance(v, str)}
    assert (True, True) == (fields["enforce_backoff"], fields["resend_ambiguous"])
    assert (["PERMANENT"], list(RetryClass.__members__)) == fields["unknown_code_class"]
    outcome = chart(root, "chart-outcome")
    assert ["resends", "refused", "delayed", "dead earlier", "dead later"] == (
        outcome["data"]["labels"]
    )
    recorded, new = outcome["data"]["datasets"]
    assert ("recorded policy", [report.resends_recorded, 0, 0, 0, 0]) == (
        recorded["label"],
        recorded["data"],
    )
    assert (
        "new policy",
        [
            report.resends_allowed,
            report.resends_refused,
            report.resends_delayed,
            report.dead_earlier,
            report.dead_later,
        ],
    ) == (new["label"], new["data"])
    schedule = chart(root, "chart-schedule")
    assert "line" == schedule["type"]
    waits = [d["data"] for d in schedule["data"]["datasets"]]
    recorded_waits = [RECORDED.base_delay(n) for n in range(1, 5)]
    assert [recorded_waits, [EXPECTED.base_delay(n) for n in range(1, 5)]] == waits
    assert [True, True] == [d["stepped"] for d in schedule["data"]["datasets"]]


def test_the_schedule_shows_at_most_30_sends(service: MessageService) -> None:
    root = run(TestClient(create_app(service)), {**FORM, "max_attempts": "50"})
    labels = chart(root, "chart-schedule")["data"]["labels"]
    assert [f"after send {n}" for n in range(1, 31)] == labels


def test_a_bad_field_is_400_and_the_form_keeps_what_was_typed(
    service: MessageService,
) -> None:
    form = {**FORM, "initial_interval": "", "enforce_backoff": "1"}
    root = run(TestClient(create_app(service)), form, status=400)
    assert "initial_interval is empty; give a number" == root.by_id("error").text
    fields = shown(root)
    assert ("", "100", True) == (
        fields["initial_interval"],
        fields["maximum_interval"],
        fields["enforce_backoff"],
    )
    assert not root.find_all("canvas")


def test_before_a_run_the_form_shows_the_recorded_policy(
    service: MessageService,
) -> None:
    response = TestClient(create_app(service)).get("/what-if")
    fields = shown(parse(response.text))
    assert ("3", "5.0", False, True) == (
        fields["max_attempts"],
        fields["initial_interval"],
        fields["enforce_backoff"],
        fields["resend_ambiguous"],
    )
    assert (["TRANSIENT"], list(RetryClass.__members__)) == fields["unknown_code_class"]


def test_a_field_not_sent_shows_and_uses_the_recorded_value(
    service: MessageService,
) -> None:
    form = {k: v for k, v in FORM.items() if k != "send_timeout"}
    root = run(TestClient(create_app(service)), form)
    assert str(RECORDED.send_timeout.total_seconds()) == shown(root)["send_timeout"]


def test_the_table_lists_exactly_the_messages_treated_differently(
    service: MessageService,
) -> None:
    """Under a policy of one attempt, the messages resent before are refused
    (first refusal) and dead earlier; the others are the same under both."""
    strict = {**FORM, "max_attempts": "1"}
    root = run(TestClient(create_app(service)), strict)
    report = service.simulate_policy(policy_from_form(strict, RECORDED))
    changed = [
        m.msg_id
        for m in report.per_message
        if m.first_refusal is not None or m.dead_earlier or m.dead_later
    ]
    assert changed
    assert len(changed) < len(report.per_message)
    listed = [
        r.attrs["data-msg-id"]
        for r in root.by_id("per-message").find_all("tr")
        if "data-msg-id" in r.attrs
    ]
    assert changed == listed


def test_each_policy_keeps_its_colour_and_name_in_both_charts(
    service: MessageService,
) -> None:
    root = run(TestClient(create_app(service)), FORM)
    outcome = chart(root, "chart-outcome")["data"]["datasets"]
    schedule = chart(root, "chart-schedule")["data"]["datasets"]
    assert ["recorded policy", "new policy"] == [d["label"] for d in outcome]
    assert ["recorded policy: wait (s)", "new policy: wait (s)"] == [
        d["label"] for d in schedule
    ]
    colours = [d["backgroundColor"] for d in outcome]
    assert colours == [d["borderColor"] for d in schedule]
    assert ["#999", "#3e7cc9"] == colours


def test_the_table_shows_at_most_500_messages() -> None:
    clock = FakeClock()
    service = MessageService.open("memory://", clock=clock, policy=RECORDED)
    try:
        for i in range(501):
            service.create(f"m{i:03}", sender="u", user_id="v")
            service.record_failure(f"m{i:03}", code=6012)
            clock.advance(10)
            service.resend(f"m{i:03}")
        root = run(TestClient(create_app(service)), {**FORM, "max_attempts": "1"})
        rows = root.by_id("per-message").find_all("tr")
        assert 500 == len([r for r in rows if "data-msg-id" in r.attrs])
    finally:
        service.close()
