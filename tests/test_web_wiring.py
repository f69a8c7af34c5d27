"""The console's wiring, as a mounting application and a browser see it: response
headers and cookies, route names, create_app's limits, how errors of each kind are
answered, the overview's charts and figures, filters echoed in the forms, and the
formatting filters (times in UTC whatever the server's zone)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie

import pytest
from starlette.testclient import TestClient

import msgstate.web.app as web_app
from msgstate import (
    ConcurrencyConflict,
    ErrorCode,
    InvalidArgument,
    MessageService,
    ResendPolicy,
    RetryClass,
    StorageError,
    StorageUnavailable,
)
from msgstate.errors import MsgStateError
from msgstate.web import create_app
from msgstate.web.app import CSRF_COOKIE
from tests.console_support import get, link, parse, rows
from tests.support import FakeClock
from tests.test_web_session import TOKENS, form_of, sign_in

LATER = "2026-01-02T00:00:00Z"
PAGES = ("overview", "message", "due", "dead", "stuck", "what_if", "machine")


@pytest.fixture
def service(memory_service: MessageService) -> MessageService:
    return memory_service


def failed(service: MessageService, msg_id: str, code: int = 6012) -> None:
    service.create(msg_id, sender="u1", user_id="u2")
    service.record_failure(msg_id, code=code, desc=f"failed {msg_id}")


# -- create_app --


def test_page_size_is_checked_at_both_ends(service: MessageService) -> None:
    for size in (1, 1000):
        create_app(service, page_size=size)
    for bad in (0, 1001, True, 1.5, "50"):
        with pytest.raises(InvalidArgument) as raised:
            create_app(service, page_size=bad)  # type: ignore[arg-type]
        assert f"page_size must be from 1 to 1000, got {bad!r}" == raised.value.desc


def test_actions_without_tokens_say_how_to_fix_it(service: MessageService) -> None:
    with pytest.raises(InvalidArgument) as raised:
        create_app(service, allow_actions=True)
    assert raised.value.desc == (
        "actions need a token file (each action records the token's name as its "
        "actor); give --token-file, or leave out --allow-actions"
    )


def test_routes_are_named_for_a_mounting_app(service: MessageService) -> None:
    """A user's own app links to the console's pages by name (url_path_for)."""
    app = create_app(service)
    paths = {name: app.url_path_for(name) for name in PAGES}
    assert paths == {
        "overview": "/",
        "message": "/message",
        "due": "/due",
        "dead": "/dead",
        "stuck": "/stuck",
        "what_if": "/what-if",
        "machine": "/status-machine",
    }
    assert "/static/console.css" == app.url_path_for("static", path="console.css")


# -- headers and cookies --


def test_security_headers_and_caching(service: MessageService) -> None:
    client = TestClient(create_app(service))
    page = client.get("/")
    assert "no-store" == page.headers["cache-control"]
    assert "nosniff" == page.headers["x-content-type-options"]
    assert "no-referrer" == page.headers["referrer-policy"]
    assert "DENY" == page.headers["x-frame-options"]
    asset = client.get("/static/console.css")
    assert 200 == asset.status_code
    assert "cache-control" not in asset.headers  # assets may be cached


def csrf_cookie(response: object) -> str | None:
    for header in response.headers.get_list("set-cookie"):  # type: ignore[attr-defined]
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        if CSRF_COOKIE in cookie:
            return cookie[CSRF_COOKIE].value
    return None


def test_a_fresh_visitor_gets_a_random_csrf_nonce_that_its_forms_carry(
    service: MessageService,
) -> None:
    app = create_app(service, tokens=TOKENS)
    nonces = set()
    for _ in range(3):
        client = TestClient(app)
        response = client.get("/login")
        nonce = csrf_cookie(response)
        assert nonce is not None
        assert 32 == len(nonce)  # 24 random bytes, URL-safe base64
        nonces.add(nonce)
        csrf = form_of(response.text)["csrf"]
        console = app.state.console
        assert console.tokens.csrf_ok(nonce, csrf)
        assert csrf == console.tokens.csrf_for(nonce)
    assert 3 == len(nonces)


def test_a_nonce_up_to_64_characters_is_kept_a_longer_one_replaced(
    service: MessageService,
) -> None:
    client = TestClient(create_app(service))
    kept = "k" * 64
    response = client.get("/", cookies={CSRF_COOKIE: kept})
    assert csrf_cookie(response) is None
    response = client.get("/", cookies={CSRF_COOKIE: kept + "k"})
    replaced = csrf_cookie(response)
    assert replaced is not None
    assert 32 == len(replaced)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_cookies_are_secure_over_https(service: MessageService, scheme: str) -> None:
    client = TestClient(create_app(service, tokens=TOKENS), base_url=f"{scheme}://t")
    fields = form_of(client.get("/login").text)
    signed_in = client.post(
        "/login",
        data={"token": TOKENS["alice"], "csrf": fields["csrf"], "next": "/"},
        follow_redirects=False,
    )
    assert 303 == signed_in.status_code
    for header in [
        *client.get("/login", cookies={CSRF_COOKIE: ""}).headers.get_list("set-cookie"),
        *signed_in.headers.get_list("set-cookie"),
    ]:
        attributes = [part.strip().lower() for part in header.split(";")]
        assert ("secure" in attributes) is (scheme == "https"), header
        assert "httponly" in attributes
        assert "samesite=strict" in attributes


def test_the_current_page_is_marked_in_the_navigation(service: MessageService) -> None:
    client = TestClient(create_app(service))
    for path in ("/", "/due", "/what-if"):
        root = get(client, path)
        current = [a.attrs["href"] for a in root.find_all("a", aria_current="page")]
        assert [path] == current


# -- how errors are answered --


REFUSALS = [
    (StorageUnavailable("the database is down"), 503, " [STORAGE_UNAVAILABLE]"),
    (StorageError("not a msgstate store"), 500, " [STORAGE_ERROR]"),
    (InvalidArgument("no such thing"), 400, ""),
    (ConcurrencyConflict("others won"), 409, " [CONCURRENCY_CONFLICT]"),
]


@pytest.mark.parametrize(("error", "status", "suffix"), REFUSALS)
def test_a_failing_read_is_an_error_page_with_the_reason(
    service: MessageService,
    monkeypatch: pytest.MonkeyPatch,
    error: MsgStateError,
    status: int,
    suffix: str,
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(service, "status_counts", fail)
    response = TestClient(create_app(service)).get("/")
    assert status == response.status_code
    assert "text/html" in response.headers["content-type"]
    assert error.desc + suffix == parse(response.text).by_id("error").text


@pytest.mark.parametrize(("error", "status", "suffix"), REFUSALS)
def test_a_failing_action_is_an_error_page_with_the_reason(
    service: MessageService,
    monkeypatch: pytest.MonkeyPatch,
    error: MsgStateError,
    status: int,
    suffix: str,
) -> None:
    failed(service, "m1")

    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(service, "resend", fail)
    client = TestClient(create_app(service, tokens=TOKENS, allow_actions=True))
    assert 303 == sign_in(client).status_code  # type: ignore[attr-defined]
    csrf = form_of(client.get("/message?msg_id=m1").text)["csrf"]
    response = client.post(
        "/actions/resend", data={"msg_id": "m1", "csrf": csrf}, follow_redirects=False
    )
    assert status == response.status_code
    shown = parse(response.text).by_id("error").text
    assert f"{error.desc} [{error.code.name}]" == shown


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("code=abc", "code must be a whole number, got 'abc'"),
        (
            "code=2147483648",
            "code must be from -2147483648 to 2147483647, got 2147483648",
        ),
        (
            "code=-2147483649",
            "code must be from -2147483648 to 2147483647, got -2147483649",
        ),
        (
            "class=SOMETIMES",
            "class must be one of "
            + ", ".join(RetryClass.__members__)
            + ", got 'SOMETIMES'",
        ),
        ("reason=TIRED", "reason must be an ErrorCode name, got 'TIRED'"),
        ("now=2026-01-31T12:00:00", "now must include a timezone (Z or +00:00), got"),
    ],
)
def test_bad_filters_are_named_exactly(
    service: MessageService, query: str, says: str
) -> None:
    client = TestClient(create_app(service))
    for path in ("/due", "/dead"):
        if "reason" in query and path == "/due":
            continue
        shown = get(client, f"{path}?{query}", 400).by_id("error").text
        assert shown.startswith(says), shown


def test_the_widest_codes_are_accepted_and_empty_fields_are_defaults(
    service: MessageService,
) -> None:
    failed(service, "low", code=-(2**31))
    failed(service, "high", code=2**31 - 1)
    client = TestClient(create_app(service))
    for code, msg_id in ((-(2**31), "low"), (2**31 - 1, "high")):
        assert [msg_id] == rows(get(client, f"/due?code={code}&now={LATER}"))
    # An empty field is the default, not a bad number.
    assert {"low", "high"} == set(rows(get(client, f"/due?size=&code=&now={LATER}")))


def test_filters_are_shown_selected_in_the_form(service: MessageService) -> None:
    failed(service, "m1", code=6012)
    client = TestClient(create_app(service))
    root = get(client, "/due?code=6012&class=TRANSIENT")
    (code,) = root.find_all("input", name="code")
    assert "6012" == code.attrs["value"]
    (select,) = root.find_all("select", name="class")
    options = [o.text for o in select.find_all("option")]
    assert ["any", *RetryClass.__members__] == options
    chosen = [o.text for o in select.find_all("option") if "selected" in o.attrs]
    assert ["TRANSIENT"] == chosen


# -- the Due table beyond the read model's default limit --


def test_due_pages_reach_past_the_first_hundred(
    service: MessageService, clock: FakeClock
) -> None:
    for i in range(120):
        failed(service, f"m{i:03d}")
    clock.advance(3600)
    client = TestClient(create_app(service, page_size=50))
    root = get(client, "/due?offset=100")
    assert 20 == len(rows(root))
    assert link(root, "next") is None
    query = link(root, "prev", "/due")
    assert query is not None
    assert ["50"] == query["offset"]
    (prev,) = root.find_all("a", id="prev")
    assert "reason=" not in prev.attrs["href"]  # empty filters are left out
    assert {"now", "offset", "size"} == set(query)


# -- the overview --


def test_overview_shows_its_time_figures_and_the_due_cap(
    service: MessageService, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        failed(service, f"m{i}")
    clock.advance(3600)
    client = TestClient(create_app(service))
    root = get(client, "/")
    (moment,) = root.find_all("time")
    assert "2026-01-01T01:00:00.000Z" == moment.attrs["datetime"] == moment.text
    (due,) = root.find_all("tr", data_queue="due")
    assert "3" == due.find_all("td")[1].text
    monkeypatch.setattr(web_app, "READ_LIMIT", 3)
    (due,) = get(client, "/").find_all("tr", data_queue="due")
    assert "3+" == due.find_all("td")[1].text  # as many as it reads: maybe more
    monkeypatch.setattr(web_app, "READ_LIMIT", 4)
    (due,) = get(client, "/").find_all("tr", data_queue="due")
    assert "3" == due.find_all("td")[1].text


def test_counts_are_written_with_thousands_separators(
    service: MessageService,
) -> None:
    for i in range(1234):
        service.create(f"m{i}", sender="u", user_id="v")
    root = get(TestClient(create_app(service)), "/")
    (sending,) = root.find_all("tr", data_status="SENDING")
    assert "1,234" == sending.find_all("td")[1].text
    assert "1,234 messages" in root.find_all("p", **{"class": "muted"})[0].text


def test_overview_charts_are_bar_charts_of_failures_and_resends(
    service: MessageService,
) -> None:
    root = get(TestClient(create_app(service)), "/")
    for chart_id, buckets in (("chart-hour", 60), ("chart-day", 24)):
        config = json.loads(root.by_id(chart_id).attrs["data-chart"])
        assert "bar" == config["type"]
        assert buckets == len(config["data"]["labels"])
        datasets = [
            (d["label"], d["backgroundColor"], len(d["data"]))
            for d in config["data"]["datasets"]
        ]
        assert datasets == [
            ("failures (SendFailed)", "#d9534f", buckets),
            ("resends (ResendRequested)", "#3e7cc9", buckets),
        ]


# -- formatting --


def test_message_page_names_msgstate_codes_and_leaves_unknown_ones_blank(
    service: MessageService,
) -> None:
    failed(service, "local", code=int(ErrorCode.DUPLICATE_MESSAGE))
    failed(service, "unknown", code=424242)
    client = TestClient(create_app(service))
    names = {
        msg_id: [
            cell.text
            for cell in get(client, f"/message?msg_id={msg_id}").find_all(
                "td", data_field="code_name"
            )
        ]
        for msg_id in ("local", "unknown")
    }
    assert {"local": ["", "DUPLICATE_MESSAGE"], "unknown": ["", ""]} == names


def test_the_message_search_page_and_empty_times(service: MessageService) -> None:
    service.create("m1", sender="u", user_id="v")
    service.record_delivery("m1", seq="1")
    client = TestClient(create_app(service))
    root = get(client, "/message")
    assert root.find_all("input", name="msg_id")
    assert not root.find_all(id="error")
    root = get(client, "/message?msg_id=m1")
    (next_retry,) = root.find_all("dd", data_field="next_retry_at")
    assert "" == next_retry.text


@pytest.fixture
def shanghai_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The server's local zone is UTC+8 for the test."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX-only")
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("shanghai_time")
def test_times_are_shown_in_utc_whatever_the_servers_zone(
    service: MessageService,
) -> None:
    failed(service, "m1")
    client = TestClient(create_app(service))
    root = get(client, "/message?msg_id=m1")
    (recorded,) = [
        cell.text for cell in root.find_all("td", data_field="recorded_at")[:1]
    ]
    assert "2026-01-01T00:00:00.000Z" == recorded


# -- what-if: the per-message table lists every changed message --


def test_what_if_lists_messages_a_lenient_policy_would_keep_alive(
    service: MessageService,
) -> None:
    strict = service.policy
    for i in range(2):
        failed(service, f"m{i}")
        for _ in range(1, strict.max_attempts):
            service.resend(f"m{i}")
            service.record_failure(f"m{i}", code=6012)
    client = TestClient(create_app(service))
    lenient = ResendPolicy.from_dict(
        strict.to_dict() | {"max_attempts": strict.max_attempts + 3}
    )
    query = "&".join(f"{k}={v}" for k, v in lenient.to_dict().items() if v is not None)
    root = get(client, f"/what-if?run=1&{query}")
    (dead_later,) = root.find_all("tr", data_key="dead_later")
    assert "2" == dead_later.find_all("td")[0].text
    listed = [r.attrs.get("data-msg-id") for r in root.find_all("tr")]
    listed = [msg_id for msg_id in listed if msg_id]
    assert ["m0", "m1"] == sorted(listed)
