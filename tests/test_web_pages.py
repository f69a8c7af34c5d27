"""Details of the console's pages the broader tests leave open: the Dead page at a
pinned moment and its limits, the what-if schedule chart, the status machine page,
and how view fields are shown (Starlette's test client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from msgstate import MessageService, MessageStatus, ResendPolicy, RetryClass
from msgstate.web import create_app
from msgstate.web.app import _show
from msgstate.web.diagram import transitions_svg
from tests.console_support import get, link, parse, rows
from tests.support import FakeClock

POLICY = ResendPolicy(max_age=timedelta(hours=1), max_attempts=4)


@pytest.fixture
def service() -> Iterator[MessageService]:
    """m0..m2 failed at 00:00 (transient): allowed for an hour, then EXPIRED; the
    service's now is 02:00."""
    clock = FakeClock()
    service = MessageService.open("memory://", clock=clock, policy=POLICY)
    for i in range(3):
        service.create(f"m{i}", sender="u", user_id="v")
        service.record_failure(f"m{i}", code=6012)
    clock.advance(7200)
    try:
        yield service
    finally:
        service.close()


def test_the_dead_page_answers_at_the_pinned_moment(service: MessageService) -> None:
    client = TestClient(create_app(service))
    assert ["m0", "m1", "m2"] == rows(get(client, "/dead"))
    assert [] == rows(get(client, "/dead?now=2026-01-01T00:30:00Z"))
    assert ["m0"] == rows(get(client, "/dead?now=2026-01-01T01:30:00Z&size=1"))


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("size=0", "size must be from 1 to 1000, got 0"),
        ("size=1001", "size must be from 1 to 1000, got 1001"),
        ("size=x", "size must be a whole number, got 'x'"),
    ],
)
def test_the_dead_page_refuses_bad_sizes(
    service: MessageService, query: str, named: str
) -> None:
    root = get(TestClient(create_app(service)), f"/dead?{query}", status=400)
    assert named == root.by_id("error").text
    assert 3 == len(rows(get(TestClient(create_app(service)), "/dead?size=1000")))


def test_the_stuck_page_lists_more_than_a_default_page(
    service: MessageService,
) -> None:
    """150 stuck sends, one page of 1000: all of them (the read asks for the page,
    not the read model's default of 100)."""
    for i in range(150):
        service.create(f"s{i:03}", sender="u", user_id="v")
    later = service.now() + timedelta(hours=1)
    stamp = later.isoformat().replace("+00:00", "Z")
    root = get(TestClient(create_app(service)), f"/stuck?size=1000&now={stamp}")
    assert 150 == len(rows(root))


def test_what_if_charts_each_policys_base_waits(service: MessageService) -> None:
    client = TestClient(create_app(service))
    new = ResendPolicy(max_attempts=6, initial_interval=timedelta(seconds=2))
    form = {k: ("" if v is None else v) for k, v in new.to_dict().items()}
    form = {
        k: ("on" if v is True else str(v)) for k, v in form.items() if v is not False
    }
    root = get(
        client,
        "/what-if?" + "&".join(f"{k}={v}" for k, v in {**form, "run": "1"}.items()),
    )
    (canvas,) = [
        c for c in root.find_all("canvas") if c.attrs.get("id") == "chart-schedule"
    ]
    chart = json.loads(canvas.attrs["data-chart"])
    assert [f"after send {n}" for n in range(1, 7)] == chart["data"]["labels"]
    recorded, proposed = chart["data"]["datasets"]
    assert [POLICY.base_delay(n) for n in range(1, 7)] == recorded["data"]
    assert [new.base_delay(n) for n in range(1, 7)] == proposed["data"]


def test_the_status_machine_page_inlines_the_drawing_and_lists_statuses(
    service: MessageService,
) -> None:
    response = TestClient(create_app(service)).get("/status-machine")
    assert transitions_svg().strip() in response.text
    root = parse(response.text)
    cells = [
        [td.text for td in tr.find_all("td")]
        for tr in root.by_id("statuses").find_all("tr")
    ]
    assert [[str(int(s)), s.name] for s in MessageStatus] == [c for c in cells if c]


def test_view_fields_are_shown_as_text() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=8)))
    assert "2026-01-01T19:04:05.678Z" == _show(moment)
    assert "SEND_FAIL" == _show(MessageStatus.SEND_FAIL)
    assert "TRANSIENT" == _show(RetryClass.TRANSIENT)
    assert '{\n  "text": "héllo"\n}' == _show({"text": "héllo"})
    assert "" == _show(None)
    assert "0" == _show(0)
    assert "False" == _show(False)


def test_the_dead_pages_links_keep_the_moment_size_and_filters(
    service: MessageService,
) -> None:
    client = TestClient(create_app(service))
    first = get(client, "/dead?size=1&reason=EXPIRED&class=TRANSIENT")
    pinned = first.find_all("time")[0].attrs["datetime"]
    assert service.now() == datetime.fromisoformat(pinned.replace("Z", "+00:00"))
    assert ["m0"] == rows(first)
    assert None is link(first, "first")
    keep = {
        "now": [pinned],
        "size": ["1"],
        "reason": ["EXPIRED"],
        "class": ["TRANSIENT"],
    }
    assert {**keep, "after": ["m0"]} == link(first, "next")
    second = get(
        client,
        "/dead?" + urlencode({**{k: v[0] for k, v in keep.items()}, "after": "m0"}),
    )
    assert ["m1"] == rows(second)
    assert keep == link(second, "first")
    # The filter form offers every reason and class, keeps the chosen ones and the
    # moment.
    (reason,) = [s for s in second.find_all("select") if s.attrs["name"] == "reason"]
    assert ["any", "ATTEMPTS_EXHAUSTED", "NOT_RETRYABLE", "EXPIRED"] == [
        o.text for o in reason.find_all("option")
    ]
    assert ["EXPIRED"] == [
        o.text for o in reason.find_all("option") if "selected" in o.attrs
    ]
    (klass,) = [s for s in second.find_all("select") if s.attrs["name"] == "class"]
    assert ["any", *RetryClass.__members__] == [
        o.text for o in klass.find_all("option")
    ]
    hidden = [i for i in second.find_all("input") if i.attrs.get("name") == "now"]
    assert pinned == hidden[0].attrs["value"]


def test_the_dead_page_reads_more_than_a_default_page(
    service: MessageService,
) -> None:
    """150 dead letters with a page of 1000: every one (the read asks for the page,
    not the read model's default of 100)."""
    for i in range(150):
        service.create(f"x{i:03}", sender="u", user_id="v")
        service.record_failure(f"x{i:03}", code=20007)  # permanent
    root = get(TestClient(create_app(service)), "/dead?size=1000")
    assert 153 == len(rows(root))
