"""The status machine as an SVG drawing, computed from :data:`~msgstate.TRANSITIONS`.

No network and no JavaScript: statuses are laid out in columns by their distance
from creation, each transition is a straight or curved arrow labelled with its
event (and note); one that keeps the status (``Forgotten``) is a loop under its
node. Colours and fonts are SVG presentation attributes, not ``style``,
so the drawing passes the console's Content-Security-Policy when inlined.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from msgstate.status import TRANSITIONS, MessageStatus, Transition

__all__ = ["transitions_svg"]

_W, _H = 180, 48  # node size
_COL, _ROW = 420, 210  # distance between columns / rows
_MARGIN = 40
_START = "start"
_LOOP = 70  # room under a node for a loop (a transition to the same status)


def _ranks(transitions: Sequence[Transition]) -> dict[str, int]:
    ranks = {_START: 0}
    frontier = [_START]
    while frontier:
        following = []
        for node in frontier:
            for t in transitions:
                source = _START if t.source is None else t.source.name
                if source == node and t.target.name not in ranks:
                    ranks[t.target.name] = ranks[node] + 1
                    following.append(t.target.name)
        frontier = following
    return ranks


def _clip(
    cx: float, cy: float, tx: float, ty: float, start: bool
) -> tuple[float, float]:
    """The point where the ray from the node's centre toward (tx, ty) leaves it."""
    dx, dy = tx - cx, ty - cy  # never both 0: (tx, ty) is off the node's centre
    if start:
        r = 8 / math.hypot(dx, dy)
        return cx + dx * r, cy + dy * r
    scale = min(
        (_W / 2) / abs(dx) if dx else math.inf, (_H / 2) / abs(dy) if dy else math.inf
    )
    return cx + dx * scale, cy + dy * scale


def _loop(x: float, y: float, label: str) -> str:
    """A transition from a status to itself: a loop under the left half of the
    node, labelled under the loop."""
    bottom = y + _H / 2
    x0, x1 = x - 70, x - 30
    depth = _LOOP - 25
    return (
        f'<g class="transition"><path d="M {x0:.1f} {bottom:.1f} C {x0 - 20:.1f} '
        f"{bottom + depth:.1f} {x1 + 20:.1f} {bottom + depth:.1f} {x1:.1f} "
        f'{bottom:.1f}" fill="none" stroke="#334" stroke-width="1.5" '
        'marker-end="url(#arrow)"/>'
        f'<text x="{(x0 + x1) / 2:.1f}" y="{bottom + _LOOP:.1f}" '
        'text-anchor="middle" fill="#123" stroke="#fff" stroke-width="4" '
        f'paint-order="stroke">{escape(label)}</text></g>'
    )


def transitions_svg(transitions: Sequence[Transition] = TRANSITIONS) -> str:
    """An SVG document drawing ``transitions`` (by default, msgstate's table)."""
    ranks = _ranks(transitions)
    columns: dict[int, list[str]] = {}
    for node, rank in ranks.items():
        columns.setdefault(rank, []).append(node)
    tallest = max(len(nodes) for nodes in columns.values())
    loops = any(t.source is t.target for t in transitions)
    height = _MARGIN * 2 + (tallest - 1) * _ROW + _H + 60 + (_LOOP if loops else 0)
    width = _MARGIN * 2 + max(columns) * _COL + _W + 160
    centre: dict[str, tuple[float, float]] = {}
    for rank, nodes in columns.items():
        top = (height - (_LOOP if loops else 0)) / 2 - (len(nodes) - 1) * _ROW / 2
        for i, node in enumerate(nodes):
            x = _MARGIN + rank * _COL + (_W / 2 if node != _START else 10)
            centre[node] = (x, top + i * _ROW)
    pairs = {
        (_START if t.source is None else t.source.name, t.target.name)
        for t in transitions
    }
    finals = {  # no way out to another status (a loop keeps the status)
        s.name
        for s in MessageStatus
        if s.name in ranks
        and not any(t.source is s and t.target is not s for t in transitions)
    }
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} '
        f'{height:.0f}" width="{width:.0f}" height="{height:.0f}" role="img" '
        'aria-labelledby="machine-title" font-family="sans-serif" font-size="13">',
        '<title id="machine-title">msgstate status machine</title>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#334"/></marker></defs>',
    ]
    for t in transitions:
        source = _START if t.source is None else t.source.name
        target = t.target.name
        (sx, sy), (tx, ty) = centre[source], centre[target]
        label = t.event if not t.note else f"{t.event} ({t.note})"
        if source == target:
            out.append(_loop(sx, sy, label))
            continue
        if ranks[source] == ranks[target]:
            bend = 90.0
        elif (target, source) in pairs:
            bend = 55.0
        else:
            bend = 0.0
        mx, my = (sx + tx) / 2, (sy + ty) / 2
        length = math.hypot(tx - sx, ty - sy)  # > 0: distinct nodes, loops aside
        nx, ny = (ty - sy) / length, -(tx - sx) / length  # left of the direction
        cx, cy = mx + nx * bend, my + ny * bend
        x0, y0 = _clip(sx, sy, cx, cy, source == _START)
        x1, y1 = _clip(tx, ty, cx, cy, False)
        # the label sits just outside the curve's bulge (or above a straight arrow)
        lx = 0.25 * x0 + 0.5 * cx + 0.25 * x1 + (nx * 12 if bend else 0)
        ly = 0.25 * y0 + 0.5 * cy + 0.25 * y1
        if bend:
            ly += ny * 22 + (14 if ny > 0 else 4)
        anchor = "start" if bend and ranks[source] == ranks[target] else "middle"
        out.append(
            f'<g class="transition"><path d="M {x0:.1f} {y0:.1f} Q {cx:.1f} {cy:.1f} '
            f'{x1:.1f} {y1:.1f}" fill="none" stroke="#334" stroke-width="1.5" '
            'marker-end="url(#arrow)"/>'
            f'<text x="{lx + (8 if anchor == "start" else 0):.1f}" '
            f'y="{ly - 6:.1f}" text-anchor="{anchor}" fill="#123" stroke="#fff" '
            f'stroke-width="4" paint-order="stroke">{escape(label)}</text></g>'
        )
    for node, (x, y) in centre.items():
        if node == _START:
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="#334"/>')
            continue
        status = MessageStatus[node]
        fill = {"SEND_SUCC": "#dff3e3", "SEND_FAIL": "#fde2e1"}.get(node, "#e3ecfa")
        out.append(
            f'<g class="status" data-status={quoteattr(node)}>'
            f'<rect x="{x - _W / 2:.1f}" y="{y - _H / 2:.1f}" width="{_W}" '
            f'height="{_H}" rx="10" fill="{fill}" stroke="#334" stroke-width="1.5"/>'
        )
        if node in finals:
            out.append(
                f'<rect x="{x - _W / 2 + 4:.1f}" y="{y - _H / 2 + 4:.1f}" '
                f'width="{_W - 8}" height="{_H - 8}" rx="7" fill="none" '
                'stroke="#334"/>'
            )
        out.append(
            f'<text x="{x:.1f}" y="{y + 5:.1f}" text-anchor="middle" '
            f'font-weight="bold" fill="#123">{escape(node)} ({int(status)})</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
