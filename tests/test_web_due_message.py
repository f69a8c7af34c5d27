"""The console's Due page (paged by position at a pinned moment) and the details of
the Message page (Starlette's test client)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from starlette.testclient import TestClient

from msgstate import MessageService, ResendPolicy
from msgstate.tencent import V2TimValueCallback
from msgstate.web import create_app
from tests.console_support import get, link, rows
from tests.support import FakeClock

POLICY = ResendPolicy(enforce_backoff=True, initial_interval=timedelta(seconds=60))


@pytest.fixture
def service() -> Iterator[MessageService]:
    """d0..d4 fail a minute apart from 00:00 (each due 60 s after its failure);
    the service's now is an hour later, when all five are due."""
    clock = FakeClock()
    service = MessageService.open("memory://", clock=clock, policy=POLICY)
    for i in range(5):
        service.create(f"d{i}", sender="u", user_id="v", content={"text": "héllo"})
        service.record_failure(f"d{i}", code=6012)
        clock.advance(60)
    clock.advance(3600)
    try:
        yield service
    finally:
        service.close()


def test_due_pages_at_a_pinned_moment_keep_it_in_their_links(
    service: MessageService,
) -> None:
    client = TestClient(create_app(service))
    moment = "2026-01-01T00:03:30.000Z"  # d0..d2 are due, d3 and d4 not yet
    first = get(client, f"/due?now={moment}&size=2")
    assert ["d0", "d1"] == rows(first)
    assert None is link(first, "prev")
    assert {"now": [moment], "offset": ["2"], "size": ["2"]} == link(first, "next")
    second = get(client, f"/due?now={moment}&size=2&offset=2")
    assert ["d2"] == rows(second)
    assert None is link(second, "next")
    assert {"now": [moment], "offset": ["0"], "size": ["2"]} == link(second, "prev")
    third = get(client, f"/due?now={moment}&size=2&offset=1&class=TRANSIENT")
    assert ["d1", "d2"] == rows(third)
    prev = {"now": [moment], "offset": ["0"], "size": ["2"], "class": ["TRANSIENT"]}
    assert prev == link(third, "prev")


def test_due_without_now_is_at_the_services_now(service: MessageService) -> None:
    client = TestClient(create_app(service))
    root = get(client, "/due?size=5")
    assert ["d0", "d1", "d2", "d3", "d4"] == rows(root)
    assert None is link(root, "next")
    pinned = root.find_all("time")[0].attrs["datetime"]
    assert service.now() == datetime.fromisoformat(pinned.replace("Z", "+00:00"))
    assert {"now": [pinned], "offset": ["4"], "size": ["1"]} == link(
        get(client, "/due?size=1&offset=3"), "next"
    )


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("size=0", "size must be from 1 to 1000, got 0"),
        ("size=1001", "size must be from 1 to 1000, got 1001"),
        ("offset=-1", "offset must be from 0 to 100000, got -1"),
    ],
)
def test_due_refuses_bad_paging(
    service: MessageService, query: str, named: str
) -> None:
    root = get(TestClient(create_app(service)), f"/due?{query}", status=400)
    assert named == root.by_id("error").text
    assert ["d0"] == rows(get(TestClient(create_app(service)), "/due?size=1&offset=0"))
    assert 5 == len(rows(get(TestClient(create_app(service)), "/due?size=1000")))


def test_the_message_page_shows_the_tencent_answer_as_indented_utf8(
    service: MessageService,
) -> None:
    root = get(TestClient(create_app(service)), "/message?msg_id=d0")
    text = root.by_id("tencent-json").text
    answer = V2TimValueCallback.ok(service.get("d0")).to_dict()
    assert json.dumps(answer, indent=2, ensure_ascii=False) == text
    assert "héllo" in text


def test_the_message_page_versions_and_done(service: MessageService) -> None:
    client = TestClient(create_app(service))
    root = get(client, "/message?msg_id=d0&version=1&done=resend")
    assert root.by_id("done").text.startswith("resend: recorded as")
    chosen = [
        r.attrs["data-version"]
        for r in root.find_all("tr")
        if "chosen" in r.attrs.get("class", "")
    ]
    assert ["1"] == chosen
    assert "Version 1 beside now" in root.text
    plain = get(client, "/message?msg_id=d0")
    assert not plain.find_all("p", id="done")
    assert not [h for h in plain.find_all("h3") if "beside now" in h.text]
    zero = get(client, "/message?msg_id=d0&version=0")
    assert not [h for h in zero.find_all("h3") if "beside now" in h.text]
    big = 2**63 - 1
    root = get(client, f"/message?msg_id=d0&version={big + 1}", status=400)
    assert f"version must be from 0 to {big}, got {big + 1}" == root.by_id("error").text
    root = get(client, "/message?msg_id=d0&version=-1", status=400)
    assert f"version must be from 0 to {big}, got -1" == root.by_id("error").text
    missing = client.get("/message?msg_id=nope")
    assert 404 == missing.status_code
    assert 'value="nope"' in missing.text  # the search box keeps what was asked
