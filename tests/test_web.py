"""The console (msgstate.web) and the Prometheus collector, through Starlette's
test client on every backend: numbers equal the read models', paging visits every
row once, tokens, CSRF and escaping hold. The browser tests are in
test_console_browser.py."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from msgstate import (
    TRANSITIONS,
    ErrorCode,
    InvalidArgument,
    MessageService,
    ResendPolicy,
    RetryClass,
    generate_cipher_key,
)
from msgstate._simulation import SimClock
from msgstate.codes import lookup
from msgstate.metrics import MsgStateCollector
from msgstate.web import (
    CONTENT_SECURITY_POLICY,
    create_app,
    parse_tokens,
    policy_from_form,
    transitions_svg,
)
from tests.conftest import BACKENDS, backend_url
from tests.console_support import HOSTILE, HOSTILE_ID, Node, fill, parse, sim_clock
from tests.support import FakeClock

TOKEN = "s3cret-token-of-alice-0123456789"
TOKENS = {"alice": TOKEN, "bob": "another-long-token-for-bob-xyz"}


@pytest.fixture(scope="module", params=BACKENDS)
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[MessageService, SimClock]]:
    """One filled store per backend, shared by the read-only tests of this module."""
    url = backend_url(str(request.param), tmp_path_factory.mktemp("web"))
    clock = sim_clock()
    service = MessageService.open(url, clock=clock)
    fill(service, clock, messages=150 if request.param == "postgres" else 300)
    yield service, clock
    service.close()


@pytest.fixture
def client(filled: tuple[MessageService, SimClock]) -> TestClient:
    return TestClient(create_app(filled[0]))


def page(client: TestClient, url: str, status: int = 200) -> Node:
    response = client.get(url)
    assert status == response.status_code, response.text[:500]
    return parse(response.text)


def dead_reasons(service: MessageService) -> Counter[str]:
    """Dead letters by refusal, straight from the read model (one big page)."""
    return Counter(d.code.name for d in service.dead_letters(limit=100_000))


def counts(root: Node, table: str, key: str) -> dict[str, int]:
    """``{row's data-<key>: its data-count}`` of a table."""
    found = {}
    for row in root.by_id(table).find_all("tr"):
        if key in row.attrs:
            (cell,) = [c for c in row.find_all() if "data-count" in c.attrs]
            found[row.attrs[key]] = int(cell.attrs["data-count"])
    return found


# -- overview and metrics equal the read models --


def test_overview_numbers_equal_the_read_models(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    root = page(client, "/")
    by_code = service.counts_by_error_code()
    by_class = Counter({c.name: 0 for c in RetryClass})
    for code, count in by_code.items():
        by_class[service.policy.classify(code).name] += count
    expected = {
        "statuses": {s.name: n for s, n in service.status_counts().items()},
        "codes": {str(code): n for code, n in by_code.items()},
        "classes": dict(by_class),
        "dead": dict(dead_reasons(service)),
        "due": len(service.due_resends(limit=100_000)),
    }
    actual = {
        "statuses": counts(root, "statuses", "data-status"),
        "codes": counts(root, "codes", "data-code"),
        "classes": counts(root, "classes", "data-class"),
        "dead": counts(root, "dead-reasons", "data-reason"),
        "due": counts(root, "queues", "data-queue")["due"],
    }
    assert expected == actual
    assert actual["due"] > 0  # the fill left both
    assert len(actual["dead"]) > 1


def test_overview_names_each_code(client: TestClient) -> None:
    root = page(client, "/")
    rows = root.by_id("codes").find_all("tr", data_code="6012")
    info = lookup(6012)
    assert info is not None
    assert [info.name, info.retry_class.name] == [
        c.text for c in rows[0].find_all("td")[1:3]
    ]


def test_overview_charts_count_the_event_log(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    now = service.now()
    recorded: Counter[str] = Counter()
    for line in service.export_history():
        entry = json.loads(line)
        at = entry["recorded_at"]
        from datetime import datetime

        moment = datetime.fromisoformat(at)
        bucket_start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
        if bucket_start <= moment <= now:
            recorded[entry["event"]] += 1
    root = page(client, "/")
    chart = json.loads(root.by_id("chart-hour").attrs["data-chart"])
    expected = {k: recorded[k] for k in ("SendFailed", "ResendRequested")}
    assert expected == chart["totals"]
    assert 60 == len(chart["data"]["labels"])
    assert expected["SendFailed"] > 0


def metrics_of(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_parse_and_equal_the_read_models(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    lag = service.projection_lag()  # what the read models have not applied yet
    response = client.get("/metrics")
    assert 200 == response.status_code
    assert response.headers["content-type"].startswith("text/plain")
    values = metrics_of(response.text)
    assert 0 == service.projection_lag()  # the scrape caught them up
    events: Counter[str] = Counter(
        json.loads(line)["event"] for line in service.export_history()
    )
    by_class = Counter({c.name: 0 for c in RetryClass})
    for code, count in service.counts_by_error_code().items():
        by_class[service.policy.classify(code).name] += count
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for status, count in service.status_counts().items():
        expected[("msgstate_messages", (("status", status.name),))] = count
    for name, count in by_class.items():
        expected[("msgstate_failed_messages", (("retry_class", name),))] = count
    for reason, count in dead_reasons(service).items():
        expected[("msgstate_dead_letters", (("reason", reason),))] = count
    for event, count in events.items():
        expected[("msgstate_events_recorded_total", (("event", event),))] = count
    expected[("msgstate_due_resends", ())] = len(service.due_resends(limit=100_000))
    expected[("msgstate_read_model_lag_notifications", ())] = lag
    expected[("msgstate_stuck_sends", ())] = len(service.stuck_sends(limit=100_000))
    assert expected == values


def test_collector_in_a_users_registry_follows_prometheus_naming(
    filled: tuple[MessageService, SimClock],
) -> None:
    registry = CollectorRegistry()
    registry.register(MsgStateCollector(filled[0]))
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    for family in families:
        assert family.name.startswith("msgstate_")
        for sample in family.samples:
            assert family.type != "counter" or sample.name.endswith("_total")
            assert "msg_id" not in sample.labels


def test_events_recorded_are_counted_incrementally(
    make_service: Any, clock: Any
) -> None:
    service = make_service()
    collector = MsgStateCollector(service)

    def created() -> float:
        registry = CollectorRegistry()
        registry.register(collector)
        key = ("msgstate_events_recorded_total", (("event", "Created"),))
        return metrics_of(generate_latest(registry).decode())[key]

    assert 0 == created()
    service.create("a", sender="u", user_id="v")
    service.create("b", sender="u", user_id="v")
    assert 2 == created()
    service.create("c", sender="u", user_id="v")
    assert 3 == created()


def test_projection_lag_counts_unapplied_notifications(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lag.db'}"
    writer = MessageService.open(url, projections="external")
    for i in range(3):
        writer.create(f"m{i}", sender="u", user_id="v")
    writer.record_failure("m0", code=6012)
    registry = CollectorRegistry()
    registry.register(MsgStateCollector(writer))
    key = ("msgstate_read_model_lag_notifications", ())
    assert [4, 4.0] == [
        writer.projection_lag(),
        metrics_of(generate_latest(registry).decode())[key],
    ]
    writer.catch_up_projections()
    assert 0 == writer.projection_lag()
    writer.close()


# -- the message page --


def test_timeline_rows_equal_history(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    root = page(client, f"/message?msg_id={HOSTILE_ID}")
    rows = [
        {c.attrs["data-field"]: c.text for c in row.find_all("td")}
        for row in root.by_id("timeline").find_all("tr")
        if "data-version" in row.attrs
    ]
    expected = [
        {
            "version": str(e.version),
            "recorded_at": (
                e.recorded_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            ),
            "event": e.event,
            "attempt": str(e.attempt),
            "actor": e.data.get("actor") or "",
            "code": str(e.data.get("code", "")),
            "code_name": "" if "code" not in e.data else (lookup(e.data["code"]).name),  # type: ignore[union-attr]
            "retry_class": (
                ""
                if "code" not in e.data
                else service.policy.classify(e.data["code"]).name
            ),
            "desc": e.data.get("desc") or "",
            "request_id": e.data.get("request_id") or "",
        }
        for e in service.history(HOSTILE_ID)
    ]
    assert expected == rows


def test_choosing_a_version_shows_get_at_beside_now(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    root = page(client, f"/message?msg_id={HOSTILE_ID}&version=2")
    then = service.get_at(HOSTILE_ID, version=2)
    now = service.get(HOSTILE_ID)
    shown = {
        row.attrs["data-field"]: (
            row.find_all("td", **{"class": "then"})[0].text,
            row.find_all("td", **{"class": "now"})[0].text,
        )
        for row in root.by_id("compare").find_all("tr")
        if "data-field" in row.attrs
    }
    assert (then.status.name, now.status.name) == shown["status"]
    assert (str(then.attempts), str(now.attempts)) == shown["attempts"]
    assert ("2", str(now.version)) == shown["version"]
    assert (then.last_error_desc, now.last_error_desc) == shown["last_error_desc"]


def test_message_page_shows_decision_and_tencent_json(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    from msgstate.tencent import V2TimValueCallback

    root = page(client, "/message?msg_id=pending-000")
    decision = service.check_resend("pending-000")
    box = root.by_id("decision")
    assert [str(decision.allowed).lower(), decision.code.name] == [
        box.attrs["data-allowed"],
        box.attrs["data-code"],
    ]
    assert decision.desc == box.find_all(data_field="reason")[0].text
    expected = V2TimValueCallback.ok(service.get("pending-000")).to_dict()
    assert expected == json.loads(root.by_id("tencent-json").text)


def test_unknown_message_is_404_with_the_reason(client: TestClient) -> None:
    root = page(client, "/message?msg_id=no-such-message", status=404)
    assert "not found" in root.by_id("error").text


def test_hostile_strings_are_escaped(client: TestClient) -> None:
    response = client.get(f"/message?msg_id={HOSTILE_ID}&version=2")
    assert "<script>alert" not in response.text
    assert "<img src=x" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    root = parse(response.text)
    assert HOSTILE in root.by_id("content").text  # shown, as text
    actors = [c.text for c in root.find_all("td", data_field="actor")]
    assert HOSTILE in actors


# -- paged tables --


def walk(client: TestClient, url: str) -> list[list[str]]:
    """Follow the 'next' links from ``url``; each page's msg_ids."""
    pages = []
    while url:
        root = page(client, url)
        pages.append(
            [
                r.attrs["data-msg-id"]
                for r in root.by_id("rows").find_all("tr")
                if "data-msg-id" in r.attrs
            ]
        )
        links = root.find_all("a", id="next")
        url = links[0].attrs["href"] if links else ""
    return pages


def test_due_pages_are_the_read_models_and_visit_every_row_once(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    now = service.now()
    stamp = now.isoformat().replace("+00:00", "Z")
    pages = walk(client, f"/due?now={stamp}&size=7")
    everything = [v.msg_id for v in service.due_resends(now=now, limit=100_000)]
    expected = [everything[i : i + 7] for i in range(0, len(everything), 7)]
    assert expected == pages
    flat = [m for p in pages for m in p]
    assert len(flat) == len(set(flat)) > 7


def test_dead_pages_are_the_read_models_keyset_pages(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    now = service.now()
    stamp = now.isoformat().replace("+00:00", "Z")
    pages = walk(client, f"/dead?now={stamp}&size=4")
    expected, after = [], None
    while True:
        chunk = [d.msg_id for d in service.dead_letters(now=now, limit=4, after=after)]
        if not chunk:
            break
        expected.append(chunk)
        after = chunk[-1]
    assert expected == pages
    flat = [m for p in pages for m in p]
    assert len(flat) == len(set(flat)) > 4


@pytest.mark.parametrize(
    ("table", "query"),
    [
        ("dead", "reason=ATTEMPTS_EXHAUSTED"),
        ("dead", "class=PERMANENT"),
        ("due", "class=AFTER_RECONNECT"),
        ("due", "code=6012"),
    ],
)
def test_filters_keep_exactly_the_matching_rows(
    client: TestClient, filled: tuple[MessageService, SimClock], table: str, query: str
) -> None:
    service, _ = filled
    now = service.now()
    stamp = now.isoformat().replace("+00:00", "Z")
    pages = walk(client, f"/{table}?now={stamp}&size=3&{query}")
    key, value = query.split("=")
    policy = service.policy
    if table == "dead":
        rows = [
            (d.msg_id, d.code.name, d.view)
            for d in service.dead_letters(now=now, limit=100_000)
        ]
    else:
        rows = [(v.msg_id, "", v) for v in service.due_resends(now=now, limit=100_000)]
    expected = [
        m
        for m, reason, v in rows
        if (key == "reason" and reason == value)
        or (
            key == "class"
            and v.last_error_code is not None
            and policy.classify(v.last_error_code).name == value
        )
        or (key == "code" and str(v.last_error_code) == value)
    ]
    assert expected == [m for p in pages for m in p]
    assert expected


@pytest.mark.parametrize(
    "url",
    [
        "/due?now=yesterday",
        "/due?size=0",
        "/dead?class=SOMETIMES",
        "/dead?reason=OK2",
        "/due?code=abc",
        "/message?msg_id=pending-000&version=x",
    ],
)
def test_bad_query_is_400_with_a_sentence(client: TestClient, url: str) -> None:
    root = page(client, url, status=400)
    assert root.by_id("error").text


# -- what-if --


def test_what_if_shows_simulate_policys_numbers(
    client: TestClient, filled: tuple[MessageService, SimClock]
) -> None:
    service, _ = filled
    new = ResendPolicy(max_attempts=2, resend_ambiguous=False)
    form = {k: ("" if v is None else v) for k, v in new.to_dict().items()}
    form = {k: v for k, v in form.items() if v is not False}
    form["run"] = "1"
    form = {k: ("on" if v is True else str(v)) for k, v in form.items()}
    response = client.get("/what-if", params=form)
    root = parse(response.text)
    report = service.simulate_policy(new)
    keys = [
        "messages",
        "resends_recorded",
        "resends_allowed",
        "resends_refused",
        "resends_delayed",
        "dead_earlier",
        "dead_later",
    ]
    assert {k: getattr(report, k) for k in keys} == counts(root, "report", "data-key")
    refusals = Counter(
        m.first_refusal.name for m in report.per_message if m.first_refusal
    )
    assert dict(refusals) == counts(root, "refusals", "data-code")
    assert report.resends_refused > 0


def test_policy_from_form_reads_the_policys_fields() -> None:
    base = ResendPolicy()
    form = {
        "max_attempts": "3",
        "initial_interval": "0.5",
        "backoff_coefficient": "3",
        "maximum_interval": "30",
        "jitter": "0.1",
        "enforce_backoff": "on",
        "max_age": "3600",
        "online_only_max_age": "",
        "unknown_code_class": "PERMANENT",
    }
    expected = ResendPolicy(
        max_attempts=3,
        initial_interval=timedelta(seconds=0.5),
        backoff_coefficient=3.0,
        maximum_interval=timedelta(seconds=30),
        jitter=0.1,
        enforce_backoff=True,
        max_age=timedelta(hours=1),
        unknown_code_class=RetryClass.PERMANENT,
        resend_ambiguous=False,
    )
    assert expected == policy_from_form(form, base)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("max_attempts", "two", "max_attempts"),
        ("jitter", "2", "jitter"),
        ("initial_interval", "", "initial_interval"),
        ("unknown_code_class", "NEVER", "unknown_code_class"),
    ],
)
def test_what_if_form_errors_name_the_field(
    client: TestClient, field: str, value: str, named: str
) -> None:
    form = {
        k: ("" if v is None else str(v)) for k, v in ResendPolicy().to_dict().items()
    }
    form.update(run="1", **{field: value})
    root = page(
        client, "/what-if?" + "&".join(f"{k}={v}" for k, v in form.items()), 400
    )
    assert named in root.by_id("error").text


# -- the status machine --


def test_status_machine_svg_is_drawn_from_transitions(client: TestClient) -> None:
    response = client.get("/status-machine.svg")
    assert "image/svg+xml" == response.headers["content-type"].split(";")[0]
    tree = ET.fromstring(response.text)
    texts = [t.text for t in tree.iter("{http://www.w3.org/2000/svg}text")]
    for t in TRANSITIONS:
        assert (t.event if not t.note else f"{t.event} ({t.note})") in texts
        assert f"{t.target.name} ({int(t.target)})" in texts
    arrows = list(tree.iter("{http://www.w3.org/2000/svg}path"))
    assert len(TRANSITIONS) + 1 == len(arrows)  # one per transition, plus the marker
    assert transitions_svg() == response.text
    root = page(client, "/status-machine")
    assert len(TRANSITIONS) == len(root.by_id("transitions").find_all("tr")) - 1


# -- headers, assets, offline --


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/message",
        "/due",
        "/dead",
        "/what-if",
        "/status-machine",
        "/metrics",
        "/static/chart.umd.min.js",
        "/static/console.css",
        "/nope",
    ],
)
def test_every_response_sends_the_csp(client: TestClient, url: str) -> None:
    response = client.get(url)
    assert CONTENT_SECURITY_POLICY == response.headers["content-security-policy"]
    assert "nosniff" == response.headers["x-content-type-options"]


def test_pages_load_nothing_from_elsewhere_and_run_no_inline_script(
    client: TestClient,
) -> None:
    for url in [
        "/",
        f"/message?msg_id={HOSTILE_ID}&version=2",
        "/due",
        "/dead",
        "/what-if?run=1&max_attempts=3&initial_interval=1&backoff_coefficient=2&maximum_interval=60&jitter=0",
        "/status-machine",
    ]:
        root = page(client, url)
        for node in root.find_all():
            for attr in ("src", "href", "action"):
                if attr in node.attrs:
                    assert node.attrs[attr].startswith(("/", "?", "#")), (
                        url,
                        node.attrs,
                    )
            assert "style" not in node.attrs, (url, node.tag)
            assert not any(a.startswith("on") for a in node.attrs), (url, node.attrs)
            if node.tag in ("script", "style"):
                assert not node.text, url
        assert 200 == client.get("/static/chart.umd.min.js").status_code


def test_chart_js_ships_with_its_licence() -> None:
    static = Path(__import__("msgstate.web", fromlist=["x"]).__file__).parent / "static"
    assert "MIT License" in (static / "chart.js-LICENSE.md").read_text()
    assert "Chart.js v4" in (static / "chart.umd.min.js").read_text()[:200]


# -- tokens, CSRF, actions --


def csrf_of(client: TestClient, url: str = "/login") -> str:
    root = page(client, url, status=client.get(url).status_code)
    (field,) = root.find_all("input", name="csrf")[:1]
    return field.attrs["value"]


def events(service: MessageService, msg_id: str) -> int:
    return len(service.history(msg_id))


@pytest.fixture
def action_store(tmp_path: Path) -> Iterator[MessageService]:
    """A small SQLite store (the console's code paths do not differ by backend)."""
    clock = FakeClock()
    service = MessageService.open(f"sqlite:///{tmp_path / 'actions.db'}", clock=clock)
    service.create("m1", sender="u", user_id="v", content={"text": "hi"})
    service.record_failure("m1", code=6012)
    service.create("gone", sender="u", user_id="v")
    service.record_failure("gone", code=20007)  # permanent: a resend is refused
    clock.advance(3600)
    yield service
    service.close()


def signed_in(service: MessageService, **options: Any) -> TestClient:
    client = TestClient(create_app(service, tokens=TOKENS, **options))
    csrf = csrf_of(client)
    response = client.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf, "next": "/"},
        follow_redirects=False,
    )
    assert 303 == response.status_code
    return client


def test_without_the_token_every_page_is_401(action_store: MessageService) -> None:
    client = TestClient(create_app(action_store, tokens=TOKENS, allow_actions=True))
    for url in [
        "/",
        "/message?msg_id=m1",
        "/due",
        "/dead",
        "/what-if",
        "/status-machine",
    ]:
        response = client.get(url)
        assert 401 == response.status_code
        assert "m1" not in response.text or url == "/message?msg_id=m1"
        assert (
            "token"
            in parse(response.text).find_all("input", type="password")[0].attrs["name"]
        )
    response = client.get("/metrics")
    assert [401, 'Bearer realm="msgstate"'] == [
        response.status_code,
        response.headers["www-authenticate"],
    ]
    csrf = csrf_of(client)
    response = client.post("/actions/resend", data={"msg_id": "m1", "csrf": csrf})
    assert 401 == response.status_code
    assert 2 == events(action_store, "m1")
    assert 200 == client.get("/static/console.css").status_code


def test_a_bearer_token_reads_and_a_wrong_one_does_not(
    action_store: MessageService,
) -> None:
    client = TestClient(create_app(action_store, tokens=TOKENS))
    assert (
        200
        == client.get(
            "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
        ).status_code
    )
    assert (
        401
        == client.get(
            "/metrics", headers={"Authorization": "Bearer nope-nope-nope-nope"}
        ).status_code
    )
    client.cookies.set("msgstate_session", "alice.0000")
    assert 401 == client.get("/").status_code


def test_login_needs_csrf_and_a_known_token(action_store: MessageService) -> None:
    client = TestClient(create_app(action_store, tokens=TOKENS))
    csrf = csrf_of(client)
    assert 403 == client.post("/login", data={"token": TOKEN}).status_code
    response = client.post(
        "/login", data={"token": "wrong-token-wrong-token", "csrf": csrf}
    )
    assert 401 == response.status_code
    response = client.post(
        "/login",
        data={"token": TOKEN, "csrf": csrf, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert [303, "/"] == [response.status_code, response.headers["location"]]
    assert TOKEN not in response.headers["set-cookie"]
    assert 200 == client.get("/").status_code


def test_an_action_with_the_token_records_one_event_with_that_actor(
    action_store: MessageService,
) -> None:
    client = signed_in(action_store, allow_actions=True)
    root = page(client, "/message?msg_id=m1")
    (form,) = [
        f for f in root.find_all("form") if f.attrs.get("action") == "/actions/resend"
    ]
    csrf = form.find_all("input", name="csrf")[0].attrs["value"]
    before = action_store.history("m1")
    response = client.post(
        "/actions/resend", data={"msg_id": "m1", "csrf": csrf}, follow_redirects=False
    )
    assert 303 == response.status_code
    after = action_store.history("m1")
    assert before == after[: len(before)]
    assert [("ResendRequested", "alice")] == [
        (e.event, e.data["actor"]) for e in after[len(before) :]
    ]


def test_a_post_without_the_csrf_token_is_refused(action_store: MessageService) -> None:
    client = signed_in(action_store, allow_actions=True)
    for data in ({"msg_id": "m1"}, {"msg_id": "m1", "csrf": "0" * 64}):
        response = client.post("/actions/resend", data=data)
        assert 403 == response.status_code
    other = TestClient(create_app(action_store, tokens=TOKENS, allow_actions=True))
    stolen = csrf_of(other)  # a token for another browser's nonce
    response = client.post("/actions/resend", data={"msg_id": "m1", "csrf": stolen})
    assert 403 == response.status_code
    assert 2 == events(action_store, "m1")


def test_a_refused_action_records_nothing(action_store: MessageService) -> None:
    client = signed_in(action_store, allow_actions=True)
    csrf = csrf_of(client, "/message?msg_id=gone")
    response = client.post("/actions/resend", data={"msg_id": "gone", "csrf": csrf})
    assert 409 == response.status_code
    assert "NOT_RETRYABLE" in parse(response.text).by_id("error").text
    assert 2 == events(action_store, "gone")


def test_without_allow_actions_there_are_no_buttons_and_posts_are_refused(
    action_store: MessageService,
) -> None:
    client = signed_in(action_store)
    root = page(client, "/message?msg_id=m1")
    assert not root.find_all("button", id="resend")
    csrf = root.find_all("input", name="csrf")[0].attrs["value"]
    assert (
        403
        == client.post(
            "/actions/resend", data={"msg_id": "m1", "csrf": csrf}
        ).status_code
    )
    assert 2 == events(action_store, "m1")


def test_create_app_refuses_bad_options(action_store: MessageService) -> None:
    with pytest.raises(InvalidArgument, match="token file"):
        create_app(action_store, allow_actions=True)
    with pytest.raises(InvalidArgument, match="page_size"):
        create_app(action_store, page_size=0)
    with pytest.raises(InvalidArgument, match="MessageService"):
        create_app("sqlite:///x.db")  # type: ignore[arg-type]


# -- token files --


def test_token_file_lines() -> None:
    text = (
        "# comment\n\nalice: s3cret-token-of-alice-0123456789\n"
        "bob:another-long-token-for-bob-xyz\n"
    )
    assert TOKENS == parse_tokens(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("alice s3cret-token-of-alice-0123456789", "line 1"),
        ("alice:short", "at least 16"),
        ("a b:s3cret-token-of-alice-0123456789", "line 1"),
        ("", "no 'name:token'"),
        (
            "a:s3cret-token-of-alice-0123456789\na:another-long-token-for-bob-xyz",
            "twice",
        ),
        (
            "a:s3cret-token-of-alice-0123456789\nb:s3cret-token-of-alice-0123456789",
            "twice",
        ),
    ],
)
def test_bad_token_files_are_refused_naming_the_line(text: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says) as caught:
        parse_tokens(text)
    assert ErrorCode.INVALID_ARGUMENT == caught.value.code


# -- stores: cipher key --


def test_the_console_reads_an_encrypted_store(tmp_path: Path) -> None:
    key = generate_cipher_key()
    url = f"sqlite:///{tmp_path / 'secret.db'}"
    clock = sim_clock()
    service = MessageService.open(url, clock=clock, cipher_key=key)
    fill(service, clock, messages=50, pending=6)
    client = TestClient(create_app(service))
    root = page(client, f"/message?msg_id={HOSTILE_ID}")
    assert HOSTILE in root.by_id("content").text
    assert {s.name: n for s, n in service.status_counts().items()} == counts(
        page(client, "/"), "statuses", "data-status"
    )
    assert 200 == client.get("/metrics").status_code
    assert HOSTILE.encode() not in (tmp_path / "secret.db").read_bytes()
    service.close()


# -- stuck sends --


def test_stuck_page_lists_stuck_sends(filled: tuple[MessageService, SimClock]) -> None:
    service, clock = filled
    client = TestClient(create_app(service))
    later = clock.now + timedelta(days=1)
    stamp = later.isoformat().replace("+00:00", "Z")
    pages = walk(client, f"/stuck?now={stamp}&size=2")
    expected = [v.msg_id for v in service.stuck_sends(now=later, limit=100_000)]
    assert expected == [m for p in pages for m in p]
    assert expected
    overview = page(client, "/")
    assert counts(overview, "queues", "data-queue")["stuck"] == len(
        service.stuck_sends(limit=100_000)
    )


def test_expire_action_records_one_event_with_that_actor(
    make_service: Any, clock: Any
) -> None:
    service = make_service()
    service.create("s1", sender="u", user_id="v")
    clock.advance(24 * 3600)
    client = signed_in(service, allow_actions=True)
    root = page(client, "/message?msg_id=s1")
    (form,) = [
        f for f in root.find_all("form") if f.attrs.get("action") == "/actions/expire"
    ]
    fields = {i.attrs["name"]: i.attrs["value"] for i in form.find_all("input")}
    before = service.history("s1")
    assert (
        303
        == client.post(
            "/actions/expire", data=fields, follow_redirects=False
        ).status_code
    )
    after = service.history("s1")
    assert 1 == len(after) - len(before)
    # expire_send names its actor in the failure's desc (the event has no actor).
    assert 1015 == after[-1].data["code"]
    assert after[-1].data["desc"].endswith("expired by alice")


def test_stuck_page_pages_what_the_service_reports(
    action_store: MessageService,
) -> None:
    """The page's own paging and links, on a service whose ``stuck_sends`` lists
    the messages in SENDING (a test subclass: the read model itself is issue 9's)."""

    ids = [f"s{i}" for i in range(5)]
    for msg_id in ids:
        action_store.create(msg_id, sender="u", user_id="v")

    def stuck_sends(now: Any = None, limit: int = 100) -> list[Any]:
        return [action_store.get(m) for m in ids][:limit]

    action_store.stuck_sends = stuck_sends  # type: ignore[attr-defined]
    try:
        client = TestClient(create_app(action_store))
        assert [["s0", "s1"], ["s2", "s3"], ["s4"]] == walk(client, "/stuck?size=2")
        assert 5 == counts(page(client, "/"), "queues", "data-queue")["stuck"]
    finally:
        del action_store.stuck_sends  # type: ignore[attr-defined]


# -- msgstate serve --


def test_serve_refuses_actions_without_a_token_file(tmp_path: Path) -> None:
    from tests.test_cli import invoke

    db = f"sqlite:///{tmp_path / 'serve.db'}"
    MessageService.open(db).close()
    result = invoke("serve", "--db", db, "--allow-actions")
    assert 2 == result.exit_code
    assert "token file" in result.stderr
    bad = tmp_path / "tokens"
    bad.write_text("alice short\n")
    result = invoke("serve", "--db", db, "--token-file", str(bad))
    assert 2 == result.exit_code
    assert "line 1" in result.stderr


def test_serve_runs_the_console_on_localhost(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    db = f"sqlite:///{tmp_path / 'serve.db'}"
    service = MessageService.open(db)
    service.create("m1", sender="u", user_id="v", content={"text": "hello"})
    service.close()
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# who:token\nalice:{TOKEN}\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "msgstate",
            "serve",
            "--db",
            db,
            "--port",
            str(port),
            "--token-file",
            str(tokens),
            "--allow-actions",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def get(path: str, token: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(base + path)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "msgstate serve did not listen"
                time.sleep(0.2)
        assert 401 == get("/")[0]
        status, body = get("/message?msg_id=m1", TOKEN)
        assert 200 == status
        assert "hello" in body
        status, body = get("/metrics", TOKEN)
        assert 200 == status
        assert 'msgstate_messages{status="SENDING"} 1.0' in body
    finally:
        process.terminate()
        process.wait(30)


def test_serve_binds_to_localhost_unless_told_otherwise() -> None:
    from msgstate.cli import cli

    serve = cli.commands["serve"]
    defaults = {p.name: p.default for p in serve.params}
    assert ["127.0.0.1", 8600] == [defaults["host"], defaults["port"]]


def test_an_action_with_a_bad_id_or_name_records_nothing(
    action_store: MessageService,
) -> None:
    client = signed_in(action_store, allow_actions=True)
    csrf = csrf_of(client, "/message?msg_id=m1")
    before = sum(1 for _ in action_store.export_history())
    assert 400 == client.post("/actions/resend", data={"csrf": csrf}).status_code
    response = client.post("/actions/delete", data={"msg_id": "m1", "csrf": csrf})
    assert 404 == response.status_code
    assert before == sum(1 for _ in action_store.export_history())


def test_collector_reports_stuck_sends() -> None:
    """The gauge is ``len(stuck_sends(now))`` at the service's now: sends in flight
    for at least the policy's ``send_timeout``, not the younger ones."""
    key = ("msgstate_stuck_sends", ())
    clock = FakeClock()
    service = MessageService.open("memory://", clock=clock)
    try:
        registry = CollectorRegistry()
        registry.register(MsgStateCollector(service))
        assert 0 == metrics_of(generate_latest(registry).decode())[key]
        for i in range(3):
            service.create(f"s{i}", sender="u", user_id="v")
        clock.advance(service.policy.send_timeout.total_seconds())
        service.create("young", sender="u", user_id="v")
        assert 3 == metrics_of(generate_latest(registry).decode())[key]
        assert 3 == len(service.stuck_sends())
    finally:
        service.close()


def test_metrics_read_every_page_of_dead_letters_and_notifications(
    filled: tuple[MessageService, SimClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pages of 3 rows the counts still equal the unpaged answers."""
    import msgstate.metrics as metrics

    service, _ = filled
    reasons = Counter(d.code.name for d in service.dead_letters(limit=100_000))
    events = Counter(json.loads(line)["event"] for line in service.export_history())
    monkeypatch.setattr(metrics, "_PAGE", 3)
    limits: list[object] = []
    dead_letters = service.dead_letters

    def spy(*args: Any, **kwargs: Any) -> Any:
        limits.append(kwargs.get("limit"))
        return dead_letters(*args, **kwargs)

    monkeypatch.setattr(service, "dead_letters", spy)
    assert dict(reasons) == metrics.dead_letters_by_reason(service)
    assert len(limits) > 1
    assert {3} == set(limits), "each page is asked for with the page size"
    assert dict(events) == metrics.EventTally(service).counts()
    assert sum(reasons.values()) > 3
