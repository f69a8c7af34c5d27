"""The console in a real browser: Debian's Chromium driven by Playwright, against a
uvicorn server started here on a simulated SQLite store.

Without Chromium (``/usr/bin/chromium``, or ``$MSGSTATE_CHROMIUM``) or Playwright
these tests skip with the reason, unless ``MSGSTATE_REQUIRE_BROWSER=1`` (set by
``.ci/run``) makes that a failure. Each page is saved as a PNG screenshot in
``$MSGSTATE_SCREENSHOTS`` (the docs' pictures come from
``MSGSTATE_SCREENSHOTS=docs/_static/console python -m pytest
tests/test_console_browser.py``), else in a temporary directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from msgstate import MessageService, ResendPolicy
from msgstate._simulation import SimClock
from msgstate.codes import lookup
from tests.console_support import HOSTILE, HOSTILE_ID, fill, sim_clock

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKENS = {"alice": "s3cret-token-of-alice-0123456789"}
PAGE_SIZE = 20
VIEWPORT = {"width": 1280, "height": 860}


def _browser_required() -> bool:
    return os.environ.get("MSGSTATE_REQUIRE_BROWSER", "") not in ("", "0")


def _missing(reason: str) -> None:
    if _browser_required():
        pytest.fail(f"MSGSTATE_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = os.environ.get("MSGSTATE_CHROMIUM", "/usr/bin/chromium")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not (Path(executable).is_file() or shutil.which(executable)):
        _missing(f"no Chromium at {executable} (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_FLAGS
            )
        except Error as error:
            _missing(f"Chromium at {executable} did not start: {error}")
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MessageService, SimClock]]:
    clock = sim_clock()
    url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'console.db'}"
    service = MessageService.open(url, clock=clock)
    fill(service, clock, messages=500, pending=50)
    yield service, clock
    service.close()


@pytest.fixture(scope="module")
def server(store: tuple[MessageService, SimClock]) -> Iterator[str]:
    import uvicorn

    from msgstate.web import create_app

    app = create_app(store[0], tokens=TOKENS, allow_actions=True, page_size=PAGE_SIZE)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not running.started:
        assert time.monotonic() < deadline, "the console did not start in 60 s"
        assert thread.is_alive(), "the console's server thread died"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("MSGSTATE_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Watch:
    """What a page did that it must not: dialogs, requests elsewhere, errors."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.dialogs: list[str] = []
        self.elsewhere: list[str] = []
        self.errors: list[str] = []

    def attach(self, context: Any, *, errors: bool = True) -> None:
        def route(route: Any) -> None:
            if route.request.url.startswith(self.base):
                route.continue_()
            else:
                self.elsewhere.append(route.request.url)
                route.abort()

        context.route("**/*", route)

        def on_page(page: Any) -> None:
            def on_dialog(dialog: Any) -> None:
                self.dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            if errors:  # refused requests (401s) log errors on purpose
                page.on(
                    "console",
                    lambda m: self.errors.append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda e: self.errors.append(str(e)))

        context.on("page", on_page)


@pytest.fixture(scope="module")
def watch(server: str) -> Watch:
    return Watch(server)


@pytest.fixture(scope="module")
def page(browser: Any, server: str, watch: Watch) -> Iterator[Any]:
    """A signed-in page (alice), shared by the tests in file order."""
    context = browser.new_context(viewport=VIEWPORT)
    watch.attach(context)
    tab = context.new_page()
    tab.goto(f"{server}/login")
    tab.fill("input[name=token]", TOKENS["alice"])
    tab.click("button[type=submit]")
    tab.wait_for_url(f"{server}/")
    yield tab
    context.close()


def cells(page: Any, selector: str, attribute: str) -> dict[str, int]:
    return dict(
        page.eval_on_selector_all(
            selector,
            f"""rows => rows.map(r => [r.getAttribute({attribute!r}),
                Number(r.querySelector('[data-count]').dataset.count)])""",
        )
    )


def shoot(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"))


def test_overview_numbers_equal_the_read_models(
    page: Any, server: str, store: tuple[MessageService, SimClock], shots: Path
) -> None:
    service, _ = store
    page.goto(f"{server}/")
    expected = (
        {s.name: n for s, n in service.status_counts().items()},
        {str(c): n for c, n in service.counts_by_error_code().items()},
    )
    actual = (
        cells(page, "#statuses tr[data-status]", "data-status"),
        cells(page, "#codes tr[data-code]", "data-code"),
    )
    assert expected == actual
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('canvas[data-chart]')]"
        ".map(c => Boolean(window.Chart && window.Chart.getChart(c)))"
    )
    assert [True, True] == drawn
    shoot(page, shots, "overview")


def test_message_timeline_equals_history_and_version_2_is_get_at(
    page: Any, server: str, store: tuple[MessageService, SimClock], shots: Path
) -> None:
    service, _ = store
    msg_id = "exhausted-0"
    page.goto(f"{server}/message")
    page.fill("main input[name=msg_id]", msg_id)
    page.click("main button[type=submit]")
    page.wait_for_selector("#timeline")
    rows = page.eval_on_selector_all(
        "#timeline tbody tr",
        """rows => rows.map(r => Object.fromEntries([...r.querySelectorAll('td')]
            .map(c => [c.dataset.field, c.textContent.trim()])))""",
    )
    expected = [
        {
            "version": str(e.version),
            "recorded_at": e.recorded_at.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "event": e.event,
            "attempt": str(e.attempt),
            "actor": e.data.get("actor") or "",
            "code": str(e.data.get("code", "")),
            "code_name": lookup(e.data["code"]).name if "code" in e.data else "",  # type: ignore[union-attr]
            "retry_class": service.policy.classify(e.data["code"]).name
            if "code" in e.data
            else "",
            "desc": e.data.get("desc") or "",
            "request_id": e.data.get("request_id") or "",
        }
        for e in service.history(msg_id)
    ]
    assert expected == rows
    page.click("#timeline tr[data-version='2'] a")
    page.wait_for_selector("#compare")
    shown = dict(
        page.eval_on_selector_all(
            "#compare tbody tr",
            "rows => rows.map(r => [r.dataset.field, "
            "r.querySelector('td.then').textContent.trim()])",
        )
    )
    then = service.get_at(msg_id, version=2)
    assert {
        "status": then.status.name,
        "attempts": str(then.attempts),
        "version": "2",
        "last_error_code": str(then.last_error_code),
        "last_error_desc": then.last_error_desc,
    } == {
        k: shown[k]
        for k in ("status", "attempts", "version", "last_error_code", "last_error_desc")
    }
    shoot(page, shots, "message")


def test_hostile_content_renders_as_text_and_opens_no_dialog(
    page: Any, server: str, watch: Watch
) -> None:
    page.goto(f"{server}/message?msg_id={HOSTILE_ID}&version=3")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)
    assert HOSTILE in page.text_content("#content")
    assert HOSTILE in page.eval_on_selector_all(
        "#timeline td[data-field=actor]", "cs => cs.map(c => c.textContent)"
    )
    assert 0 == page.eval_on_selector_all("main img, main script", "els => els.length")
    assert [] == watch.dialogs


def walk(page: Any, url: str) -> list[list[str]]:
    page.goto(url)
    pages = []
    while True:
        pages.append(
            page.eval_on_selector_all(
                "#rows tr[data-msg-id]", "rows => rows.map(r => r.dataset.msgId)"
            )
        )
        if page.locator("#next").count() == 0:
            return pages
        page.click("#next")
        page.wait_for_load_state()


def test_due_pages_are_the_read_models_and_visit_every_row_once(
    page: Any, server: str, store: tuple[MessageService, SimClock], shots: Path
) -> None:
    service, _ = store
    now = service.now()
    pages = walk(page, f"{server}/due?now={now.isoformat().replace('+00:00', 'Z')}")
    every = [v.msg_id for v in service.due_resends(now=now, limit=100_000)]
    assert [every[i : i + PAGE_SIZE] for i in range(0, len(every), PAGE_SIZE)] == pages
    assert len(pages) > 1
    page.goto(f"{server}/due")
    shoot(page, shots, "due")


def test_dead_pages_are_the_read_models_keyset_pages(
    page: Any, server: str, store: tuple[MessageService, SimClock], shots: Path
) -> None:
    service, _ = store
    now = service.now()
    pages = walk(
        page, f"{server}/dead?size=5&now={now.isoformat().replace('+00:00', 'Z')}"
    )
    expected, after = [], None
    while chunk := [
        d.msg_id for d in service.dead_letters(now=now, limit=5, after=after)
    ]:
        expected.append(chunk)
        after = chunk[-1]
    assert expected == pages
    flat = [m for p in pages for m in p]
    assert len(flat) == len(set(flat))
    page.goto(f"{server}/dead")
    shoot(page, shots, "dead")


def test_what_if_form_shows_simulate_policys_numbers(
    page: Any, server: str, store: tuple[MessageService, SimClock], shots: Path
) -> None:
    service, _ = store
    page.goto(f"{server}/what-if")
    page.fill("input[name=max_attempts]", "3")
    page.uncheck("input[name=resend_ambiguous]")
    page.click("#run")
    page.wait_for_selector("#report")
    report = service.simulate_policy(
        ResendPolicy(max_attempts=3, resend_ambiguous=False)
    )
    keys = [
        "messages",
        "resends_recorded",
        "resends_allowed",
        "resends_refused",
        "resends_delayed",
        "dead_earlier",
        "dead_later",
    ]
    assert {k: getattr(report, k) for k in keys} == cells(
        page, "#report tr[data-key]", "data-key"
    )
    first = {
        m.msg_id: m.first_refusal.name for m in report.per_message if m.first_refusal
    }
    shown = dict(
        page.eval_on_selector_all(
            "#per-message tr[data-msg-id]",
            "rows => rows.map(r => [r.dataset.msgId, "
            "r.querySelector('[data-field=first_refusal]').textContent.trim()])",
        )
    )
    assert first == {m: c for m, c in shown.items() if c}
    assert report.resends_refused > 0
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('canvas[data-chart]')]"
        ".map(c => Boolean(window.Chart.getChart(c)))"
    )
    assert [True, True] == drawn
    shoot(page, shots, "whatif")


def test_status_machine_is_drawn(page: Any, server: str, shots: Path) -> None:
    from msgstate import TRANSITIONS

    page.goto(f"{server}/status-machine")
    labels = page.eval_on_selector_all(
        "#diagram svg text", "ts => ts.map(t => t.textContent)"
    )
    for t in TRANSITIONS:
        assert (t.event if not t.note else f"{t.event} ({t.note})") in labels
    assert page.is_visible("#diagram svg")
    shoot(page, shots, "status-machine")


def events(service: MessageService) -> int:
    return sum(1 for _ in service.export_history())


def test_without_the_token_401_and_nothing_recorded(
    browser: Any, server: str, store: tuple[MessageService, SimClock], watch: Watch
) -> None:
    service, _ = store
    before = events(service)
    context = browser.new_context(viewport=VIEWPORT)
    watch.attach(context, errors=False)
    tab = context.new_page()
    assert 401 == tab.goto(f"{server}/").status
    assert tab.is_visible("input[name=token]")
    assert 401 == tab.goto(f"{server}/metrics").status
    response = tab.request.post(
        f"{server}/actions/resend", form={"msg_id": "pending-001", "csrf": "x"}
    )
    assert 401 == response.status
    context.close()
    assert before == events(service)


def test_a_post_without_the_csrf_token_is_refused(
    page: Any, server: str, store: tuple[MessageService, SimClock]
) -> None:
    service, _ = store
    before = events(service)
    response = page.request.post(
        f"{server}/actions/resend", form={"msg_id": "pending-001"}
    )
    assert 403 == response.status
    assert before == events(service)


def test_an_action_with_the_token_records_one_event_with_that_actor(
    page: Any, server: str, store: tuple[MessageService, SimClock], shots: Path
) -> None:
    service, _ = store
    before = service.history("pending-002")
    total = events(service)
    page.goto(f"{server}/message?msg_id=pending-002")
    page.click("#resend")
    page.wait_for_selector("#done")
    after = service.history("pending-002")
    assert before == after[: len(before)]
    assert [("ResendRequested", "alice")] == [
        (e.event, e.data["actor"]) for e in after[len(before) :]
    ]
    assert total + 1 == events(service)
    shoot(page, shots, "action")


def test_nothing_was_fetched_elsewhere_and_no_script_error(watch: Watch) -> None:
    assert ([], [], []) == (watch.elsewhere, watch.dialogs, watch.errors)
