"""The status machine drawing (``msgstate.web.diagram.transitions_svg``).

Its geometry is checked against the nodes it draws (every arrow starts on its
source's border and ends on its target's, loops sit under their node, nothing
leaves the canvas or overlaps), and the whole drawing is compared with
``tests/golden/status-machine.svg``, which was looked at in a browser before it
was checked in. After an intended change to the drawing, look at the new one and
update the file:
``MSGSTATE_UPDATE_GOLDEN=1 python -m pytest tests/test_web_diagram.py``.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from msgstate import TRANSITIONS, MessageStatus
from msgstate.status import Transition
from msgstate.web.diagram import transitions_svg

GOLDEN = Path(__file__).parent / "golden" / "status-machine.svg"
SVG = "{http://www.w3.org/2000/svg}"
Box = tuple[float, float, float, float]  # left, top, right, bottom


def label(t: Transition) -> str:
    return t.event if not t.note else f"{t.event} ({t.note})"


def drawing(transitions: tuple[Transition, ...] = TRANSITIONS) -> ET.Element:
    return ET.fromstring(transitions_svg(transitions))


def boxes(root: ET.Element) -> dict[str, Box]:
    """Each status's outer rectangle."""
    found: dict[str, Box] = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "status":
            rect = group.find(f"{SVG}rect")
            assert rect is not None
            x, y = float(rect.get("x", "")), float(rect.get("y", ""))
            w, h = float(rect.get("width", "")), float(rect.get("height", ""))
            found[group.get("data-status", "")] = (x, y, x + w, y + h)
    return found


def on_border(point: tuple[float, float], box: Box) -> bool:
    (x, y), (left, top, right, bottom) = point, box
    inside = left - 0.1 <= x <= right + 0.1 and top - 0.1 <= y <= bottom + 0.1
    edge = min(abs(x - left), abs(x - right), abs(y - top), abs(y - bottom))
    return inside and edge <= 0.1


WITHOUT_LOOPS = tuple(t for t in TRANSITIONS if t.source is not t.target)
TWO_STARTS = (
    TRANSITIONS[0],
    Transition(None, "Imported", MessageStatus.SEND_FAIL, "a test table"),
    *TRANSITIONS[1:3],
)


@pytest.mark.parametrize(
    ("name", "transitions"),
    [("status-machine", TRANSITIONS), ("status-machine-no-loops", WITHOUT_LOOPS)],
)
def test_the_drawing_is_the_checked_in_one(
    name: str, transitions: tuple[Transition, ...]
) -> None:
    golden = GOLDEN.with_name(f"{name}.svg")
    svg = transitions_svg(transitions)
    if os.environ.get("MSGSTATE_UPDATE_GOLDEN") == "1":
        golden.write_text(svg, encoding="utf-8")
    assert golden.read_text(encoding="utf-8") == svg


@pytest.mark.parametrize(
    "transitions",
    [TRANSITIONS, WITHOUT_LOOPS, TRANSITIONS[:3], TWO_STARTS],
    ids=["msgstate", "without loops", "first three", "two starts"],
)
def test_every_arrow_joins_its_statuses_inside_the_canvas(
    transitions: tuple[Transition, ...],
) -> None:
    root = drawing(transitions)
    width, height = float(root.get("width", "")), float(root.get("height", ""))
    assert f"0 0 {width:.0f} {height:.0f}" == root.get("viewBox")
    nodes = boxes(root)
    drawn = {t.target.name for t in transitions}
    assert drawn == set(nodes)
    for name, (left, top, right, bottom) in nodes.items():
        assert (180.0, 48.0) == (right - left, bottom - top)
        assert 0 < left < right < width, name
        assert 0 < top < bottom < height, name
        for other, box in nodes.items():
            if other != name:
                apart = right < box[0] or box[2] < left
                assert apart or bottom < box[1] or box[3] < top, (name, other)
    start = root.find(f"{SVG}circle")
    assert start is not None
    origin = (float(start.get("cx", "")), float(start.get("cy", "")))
    assert "8" == start.get("r")

    groups = [g for g in root.iter(f"{SVG}g") if g.get("class") == "transition"]
    assert len(transitions) == len(groups)
    for t, group in zip(transitions, groups, strict=True):
        path, text = group.find(f"{SVG}path"), group.find(f"{SVG}text")
        assert path is not None
        assert text is not None
        assert label(t) == text.text
        assert "url(#arrow)" == path.get("marker-end")
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
        assert all(0 <= n <= max(width, height) for n in numbers)
        first, last = (numbers[0], numbers[1]), (numbers[-2], numbers[-1])
        target = nodes[t.target.name]
        assert on_border(last, target), (t, last, target)
        tx, ty = float(text.get("x", "")), float(text.get("y", ""))
        assert 0 < tx < width, t
        assert 0 < ty < height, t
        if t.source is None:
            assert 8.0 == pytest.approx(math.dist(first, origin), abs=0.1)
            # on the way to the curve's control point (the arrow leaves forward)
            control = (numbers[2], numbers[3])
            out = (first[0] - origin[0], first[1] - origin[1])
            ahead = (control[0] - origin[0], control[1] - origin[1])
            assert abs(out[0] * ahead[1] - out[1] * ahead[0]) < 0.1 * math.hypot(*ahead)
            assert out[0] * ahead[0] + out[1] * ahead[1] > 0
        elif t.source is t.target:
            assert path.get("d", "").split()[3] == "C", "a loop is one cubic curve"
            assert on_border(first, target)
            assert first[1] == target[3]
            assert last[1] == target[3]
            assert first[0] < last[0]
            assert ty > target[3]  # its label under the loop
        else:
            assert on_border(first, nodes[t.source.name]), (t, first)


@pytest.mark.parametrize(
    "transitions", [TRANSITIONS, TRANSITIONS[:3]], ids=["msgstate", "first three"]
)
def test_final_statuses_have_a_double_border_and_colours_follow_the_outcome(
    transitions: tuple[Transition, ...],
) -> None:
    """SEND_SUCC has no way out to another status (its Forgotten loop keeps it)."""
    root = drawing(transitions)
    rects = {
        g.get("data-status"): g.findall(f"{SVG}rect")
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "status"
    }
    finals = 2 if transitions == TRANSITIONS[:3] else 1
    assert {"SENDING": 1, "SEND_FAIL": finals, "SEND_SUCC": 2} == {
        name: len(r) for name, r in rects.items()
    }
    for outer, inner in (r for r in rects.values() if len(r) == 2):
        x, y = float(outer.get("x", "")), float(outer.get("y", ""))
        assert (x + 4, y + 4) == (float(inner.get("x", "")), float(inner.get("y", "")))
        assert ("172", "40", "none", "#334") == (
            inner.get("width"),
            inner.get("height"),
            inner.get("fill"),
            inner.get("stroke"),
        )
    fills = {name: r[0].get("fill") for name, r in rects.items()}
    assert {"SENDING": "#e3ecfa", "SEND_FAIL": "#fde2e1", "SEND_SUCC": "#dff3e3"} == (
        fills
    )
    names = [t.text for t in root.iter(f"{SVG}text") if t.get("font-weight")]
    assert sorted(f"{s.name} ({int(s)})" for s in MessageStatus if s.name in rects) == (
        sorted(names)
    )


def test_columns_follow_the_distance_from_creation() -> None:
    nodes = boxes(drawing())
    assert nodes["SEND_FAIL"][0] == nodes["SEND_SUCC"][0] > nodes["SENDING"][0]
    assert nodes["SEND_FAIL"][1] < nodes["SEND_SUCC"][1]
