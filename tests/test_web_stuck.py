"""The console's Stuck page: sends in flight past the policy's ``send_timeout`` at
a pinned moment, paged by position (Starlette's test client)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from starlette.testclient import TestClient

from msgstate import MessageService
from msgstate.web import create_app
from tests.console_support import Node, get, rows
from tests.console_support import link as any_link
from tests.support import FakeClock


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> Iterator[MessageService]:
    """s0..s4 start sending a minute apart; an hour later all five are stuck."""
    service = MessageService.open("memory://", clock=clock)
    for i in range(5):
        service.create(f"s{i}", sender="u", user_id="v")
        clock.advance(60)
    clock.advance(3600)
    try:
        yield service
    finally:
        service.close()


def test_pages_at_a_pinned_moment_keep_it_in_their_links(
    service: MessageService,
) -> None:
    """At 00:03:30 only s0..s2 have been sending for 60 s or more (the service's
    own now, an hour later, would list all five)."""
    client = TestClient(create_app(service))
    moment = datetime.fromisoformat("2026-01-01T00:03:30+00:00")
    assert ["s0", "s1", "s2"] == [v.msg_id for v in service.stuck_sends(now=moment)]
    first = get(client, f"/stuck?now={stamp(moment)}&size=2")
    assert ["s0", "s1"] == rows(first)
    assert None is link(first, "prev")
    pinned = first.find_all("time")[0].attrs["datetime"]
    assert {"now": [pinned], "offset": ["2"], "size": ["2"]} == link(first, "next")
    assert moment == datetime.fromisoformat(pinned.replace("Z", "+00:00"))
    second = get(client, f"/stuck?now={pinned}&offset=2&size=2")
    assert ["s2"] == rows(second)
    assert None is link(second, "next")
    assert {"now": [pinned], "offset": ["0"], "size": ["2"]} == link(second, "prev")
    middle = get(client, f"/stuck?now={pinned}&offset=1&size=2")
    assert ["s1", "s2"] == rows(middle)
    assert {"now": [pinned], "offset": ["0"], "size": ["2"]} == link(middle, "prev")


def test_without_now_the_page_is_at_the_services_now(service: MessageService) -> None:
    client = TestClient(create_app(service, page_size=3))
    first = get(client, "/stuck")
    assert ["s0", "s1", "s2"] == rows(first)
    pinned = first.find_all("time")[0].attrs["datetime"]
    assert service.now() == datetime.fromisoformat(pinned.replace("Z", "+00:00"))
    assert {"now": [pinned], "offset": ["3"], "size": ["3"]} == link(first, "next")
    assert ["s3", "s4"] == rows(get(client, "/stuck?offset=3"))


def test_a_page_that_ends_exactly_at_the_last_row_has_no_next(
    service: MessageService,
) -> None:
    client = TestClient(create_app(service))
    full = get(client, "/stuck?size=5")
    assert ["s0", "s1", "s2", "s3", "s4"] == rows(full)
    assert None is link(full, "next")
    assert None is link(get(client, "/stuck?size=4&offset=1"), "next")
    assert [] == rows(get(client, "/stuck?offset=5"))


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("size=0", "size must be from 1 to 1000, got 0"),
        ("size=1001", "size must be from 1 to 1000, got 1001"),
        ("size=two", "size must be a whole number, got 'two'"),
        ("offset=-1", "offset must be from 0 to"),
        ("now=yesterday", "now"),
    ],
)
def test_bad_paging_is_400_naming_the_field(
    service: MessageService, query: str, named: str
) -> None:
    client = TestClient(create_app(service))
    root = get(client, f"/stuck?{query}", status=400)
    assert named in root.by_id("error").text


def test_the_largest_page_and_the_first_offset_are_accepted(
    service: MessageService,
) -> None:
    client = TestClient(create_app(service))
    assert 5 == len(rows(get(client, "/stuck?size=1000&offset=0")))
    assert ["s0"] == rows(get(client, "/stuck?size=1"))


def link(root: Node, which: str) -> dict[str, list[str]] | None:
    return any_link(root, which, "/stuck?")
