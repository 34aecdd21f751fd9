"""Charts as inline SVG, drawn on the server: no JavaScript, no CDN, readable when printed.

Each function takes plain numbers and returns markup that is safe to embed (every label is
escaped here). Colours come from CSS classes (``series-*``, ``sev-*``) so the stylesheet owns
the palette and the charts follow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_W, _H = 560, 200  # viewBox; the SVG scales to its container
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 12, 12, 34
_CHAR_W = 7.0  # axis text is 11px; wider than any digit or letter of a date label
_GAP = 8.0  # at least this much between two x labels


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a line chart: a label, a CSS class, one value per x position."""

    label: str
    css: str
    values: Sequence[int]


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for mult in (1, 2, 5):
            if step * mult >= value:
                return step * mult
        step *= 10


def _ticks(top: int) -> list[int]:
    """Whole-number y ticks from 0 to ``top``: a count axis must never read ``1, 0, 0``
    (half of 1 rounded) nor put ``2`` where 2.5 is."""
    if top % 2 == 0:
        return [0, top // 2, top]
    if top <= 5:
        return list(range(top + 1))
    return [0, top]


def _y_axis(top: int, plot_h: float) -> list[str]:
    out = []
    for value in _ticks(top):
        y = _TOP + plot_h * (1 - value / top)
        out.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    return out


def _extent(x: float, text: str, anchor: str) -> tuple[float, float]:
    """Where a label of the axis font will be drawn (an estimate on the safe side)."""
    width = len(text) * _CHAR_W
    if anchor == "start":
        return x, x + width
    if anchor == "end":
        return x - width, x
    return x - width / 2, x + width / 2


def _x_labels(xs: Sequence[float], labels: Sequence[str]) -> list[tuple[float, str, str]]:
    """The x labels to draw (x, text, anchor): the first and the last always, others only
    where they do not touch a neighbour. Picking every n-th label by count alone let the
    last two collide on a 30-scan chart."""
    n = len(labels)
    if n == 0:
        return []
    if n == 1:
        return [(xs[0], labels[0], "middle")]
    first = (xs[0], labels[0], "start")
    last = (xs[-1], labels[-1], "end")
    last_left = _extent(*last)[0]
    kept = [first]
    right = _extent(*first)[1]
    for i in range(1, n - 1):
        left, end = _extent(xs[i], labels[i], "middle")
        if left >= right + _GAP and end + _GAP <= last_left:
            kept.append((xs[i], labels[i], "middle"))
            right = end
    if last_left >= _extent(*kept[-1])[1] + _GAP:
        kept.append(last)
    else:  # two points only, too close: the newest label is the one people look for
        kept[-1] = last
    return kept


def _svg(title: str, body: list[str], legend: str = "") -> Markup:
    return Markup(
        f'<figure class="chart"><svg viewBox="0 0 {_W} {_H}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>{legend}</figure>"
    )


def empty(title: str, message: str) -> Markup:
    """What a chart shows when there is nothing to draw yet (said, not a blank box)."""
    return Markup(
        f'<figure class="chart chart-empty" aria-label="{escape(title)}">'
        f"<p>{escape(message)}</p></figure>"
    )


def bars(
    title: str, labels: Sequence[str], values: Sequence[int], css: Sequence[str] | str = "series-a"
) -> Markup:
    """Vertical bars, one per label, each with its value on top."""
    if not values or max(values) == 0:
        return empty(title, "Nothing to show yet.")
    top = _nice_max(max(values))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / len(values)
    width = max(4.0, min(slot * 0.7, 60.0))
    body = _y_axis(top, plot_h)
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        cls = css if isinstance(css, str) else css[i]
        h = plot_h * value / top
        x = _LEFT + slot * i + (slot - width) / 2
        y = _TOP + plot_h - h
        cx = x + width / 2
        body.append(
            f'<rect class="{escape(cls)}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
            f'height="{h:.1f}" rx="2"><title>{escape(label)}: {value}</title></rect>'
            f'<text class="value" x="{cx:.1f}" y="{y - 4:.1f}" text-anchor="middle">{value}</text>'
            f'<text class="axis" x="{cx:.1f}" y="{_H - _BOTTOM + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return _svg(title, body)


def lines(title: str, x_labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """A line per series over the same x positions (e.g. one point per scan), with a legend."""
    points = len(x_labels)
    if points == 0 or not series:
        return empty(title, "No scans recorded yet.")
    top = _nice_max(max((max(s.values, default=0) for s in series), default=0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / max(points - 1, 1)
    body = _y_axis(top, plot_h)

    def xy(i: int, v: int) -> tuple[float, float]:
        x = _LEFT + (step * i if points > 1 else plot_w / 2)
        return x, _TOP + plot_h * (1 - v / top)

    for s in series:
        coords = [xy(i, v) for i, v in enumerate(s.values)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        body.append(f'<polyline class="line {escape(s.css)}" points="{path}"/>')
        if coords:  # the latest value, written: the number people look for first
            lx, ly = coords[-1]
            body.append(
                f'<text class="value" x="{lx - 6:.1f}" y="{ly - 7:.1f}" text-anchor="end">'
                f"{s.values[-1]}</text>"
            )
        for (x, y), v, lab in zip(coords, s.values, x_labels, strict=True):
            body.append(
                f'<circle class="dot {escape(s.css)}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                f"<title>{escape(s.label)} at {escape(lab)}: {v}</title></circle>"
            )
    xs = [xy(i, 0)[0] for i in range(points)]
    for x, lab, anchor in _x_labels(xs, x_labels):
        body.append(
            f'<text class="axis" x="{x:.1f}" y="{_H - _BOTTOM + 16}" '
            f'text-anchor="{anchor}">{escape(lab)}</text>'
        )
    legend = "".join(
        f'<li><span class="swatch {escape(s.css)}"></span>{escape(s.label)}</li>' for s in series
    )
    return _svg(title, body, f'<ul class="legend">{legend}</ul>')


def meter(parts: Sequence[tuple[str, str, int]]) -> Markup:
    """One horizontal stacked bar (label, css, count), e.g. VMs by state; legend underneath."""
    total = sum(n for _, _, n in parts)
    if total == 0:
        return Markup('<p class="muted">None.</p>')
    cells, x = [], 0.0
    for label, css, n in parts:
        if not n:
            continue
        w = 100 * n / total
        cells.append(
            f'<rect class="{escape(css)}" x="{x:.3f}" y="0" width="{w:.3f}" height="10">'
            f"<title>{escape(label)}: {n}</title></rect>"
        )
        x += w
    legend = "".join(
        f'<li><span class="swatch {escape(css)}"></span>{escape(label)} <b>{n}</b></li>'
        for label, css, n in parts
        if n
    )
    return Markup(
        '<svg class="meter" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="distribution">{"".join(cells)}</svg>'
        f'<ul class="legend">{legend}</ul>'
    )
