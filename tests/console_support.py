"""A store filled for the console and metrics tests: a small simulated run, then
failures left due, a message with hostile content, and sends left in flight."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from msgstate import MessageService
from msgstate._simulation import SimClock, run_simulation
from tests.support import EPOCH

if TYPE_CHECKING:
    from starlette.testclient import TestClient

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
"""Content (and desc, and actor) that must be shown as text, never run."""

HOSTILE_ID = "hostile-1"
PENDING_CODES = (6012, 20004, 9508, 6200, 424242, 70169)
"""Transient, reconnect and session codes left due; 424242 is uncatalogued."""


def sim_clock() -> SimClock:
    return SimClock(EPOCH)


def fill(
    service: MessageService,
    clock: SimClock,
    *,
    messages: int = 300,
    pending: int = 60,
    in_flight: int = 5,
    exhausted: int = 3,
    seed: int = 7,
) -> None:
    """Run a simulation on ``service`` (whose clock is ``clock``), then add
    ``pending`` failed messages that are due five minutes later, the hostile
    message, ``exhausted`` messages that used every attempt and ``in_flight``
    sends with no outcome; leaves the clock five minutes on."""
    run_simulation(service, clock, messages=messages, failure_rate=0.35, seed=seed)
    start = clock.now
    for i in range(pending):
        msg_id = f"pending-{i:03d}"
        service.create(msg_id, sender="u1", user_id="u2", content={"text": f"#{i}"})
        service.record_failure(
            msg_id, code=PENDING_CODES[i % len(PENDING_CODES)], desc=f"failure {i}"
        )
    service.create(
        HOSTILE_ID,
        sender=HOSTILE,
        user_id="u2",
        content={"text": HOSTILE},
        cloud_custom_data=HOSTILE,
    )
    service.record_failure(HOSTILE_ID, code=6012, desc=HOSTILE)
    service.resend(HOSTILE_ID, actor=HOSTILE, request_id="req-<b>1</b>")
    service.record_failure(HOSTILE_ID, code=6012, desc=HOSTILE)
    for i in range(exhausted):
        msg_id = f"exhausted-{i}"
        service.create(msg_id, sender="u1", user_id="u2")
        for attempt in range(1, service.policy.max_attempts + 1):
            if attempt > 1:
                service.resend(msg_id, actor="console-test")
            service.record_failure(msg_id, code=6012, desc=f"try {attempt}")
    for i in range(in_flight):
        service.create(f"flight-{i}", sender="u1", user_id="u2")
    clock.move_to(start + timedelta(minutes=5))


class Node:
    """One element of a parsed page: tag, attributes, text and children."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag = tag
        self.attrs = attrs
        self.children: list[Node] = []
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and all(
                child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items()
            ):
                found.append(child)
            found.extend(child.find_all(tag, **attrs))
        return found

    def by_id(self, element_id: str) -> Node:
        (node,) = self.find_all(id=element_id)
        return node


_VOID = {"meta", "link", "input", "br", "img", "hr", "source", "area", "col", "wbr"}


def parse(html: str) -> Node:
    """The page as a tree of :class:`Node` (enough for the console's own markup)."""
    from html.parser import HTMLParser

    root = Node("#root", {})

    class Parser(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.stack = [root]

        def handle_starttag(
            self, tag: str, attrs: list[tuple[str, str | None]]
        ) -> None:
            node = Node(tag, {k: v or "" for k, v in attrs})
            self.stack[-1].children.append(node)
            if tag not in _VOID:
                self.stack.append(node)

        def handle_endtag(self, tag: str) -> None:
            for i in range(len(self.stack) - 1, 0, -1):
                if self.stack[i].tag == tag:
                    del self.stack[i:]
                    return

        def handle_data(self, data: str) -> None:
            for node in self.stack:
                node.parts.append(data)

    Parser().feed(html)
    return root


def get(client: TestClient, url: str, status: int = 200) -> Node:
    """The page at ``url``, parsed, after checking its status."""
    response = client.get(url)
    assert status == response.status_code, response.text[:300]
    return parse(response.text)


def rows(root: Node) -> list[str]:
    """The msg_ids of a paged table (``#rows``), in order."""
    return [
        r.attrs["data-msg-id"]
        for r in root.by_id("rows").find_all("tr")
        if "data-msg-id" in r.attrs
    ]


def link(root: Node, which: str, path: str = "") -> dict[str, list[str]] | None:
    """The query of the pager link ``#which`` (None without one); with ``path``,
    the link must point there."""
    found = root.find_all("a", id=which)
    if not found:
        return None
    href = found[0].attrs["href"]
    assert href.startswith(path), href
    return parse_qs(urlsplit(href).query)
