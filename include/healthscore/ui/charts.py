"""Charts rendered on the server as inline SVG: no JavaScript, no CDN, readable air-gapped and in a PDF."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from html import escape
from typing import Any


def _fmt(value: float) -> str:
    return f"{value:.1f}"


def score_history_svg(history: Sequence[Mapping[str, Any]], lines: Mapping[str, float],
                      colors: Mapping[str, str], width: int = 720, height: int = 240) -> str:
    """Score over time (0..100) with the account's band lines; an override is drawn as its own dashed line.

    ``history``: rows with as_of_date, score (None when unscored) and override_score. ``lines``: band name ->
    the score at which that band starts (drawn as a horizontal line labelled with the name).
    """
    left, right, top, bottom = 44, 110, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    points = [(r["as_of_date"], r.get("score"), r.get("override_score")) for r in history]
    days = [p[0] for p in points]
    first, last = (min(days), max(days)) if days else (date.today(), date.today())
    span = max((last - first).days, 1)

    def x(day: date) -> float:
        return left + plot_w * ((day - first).days / span if len(days) > 1 else 0.5)

    def y(score: float) -> float:
        return top + plot_h * (1 - score / 100)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-label="Score history">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for tick in (0, 25, 50, 75, 100):
        parts.append(f'<text x="{left - 6}" y="{_fmt(y(tick) + 4)}" text-anchor="end" font-size="11" '
                     f'fill="#666">{tick}</text>')
    for name, level in sorted(lines.items(), key=lambda kv: -kv[1]):
        color = escape(colors.get(name, "#888"))
        parts.append(f'<line class="band-line" data-band="{escape(name)}" x1="{left}" x2="{left + plot_w}" '
                     f'y1="{_fmt(y(level))}" y2="{_fmt(y(level))}" stroke="{color}" stroke-dasharray="4 3"/>')
        parts.append(f'<text x="{left + plot_w + 6}" y="{_fmt(y(level) + 4)}" font-size="11" fill="{color}">'
                     f'{escape(name)} &#8805; {level:g}</text>')
    for label_day in sorted({first, last}):
        parts.append(f'<text x="{_fmt(x(label_day))}" y="{height - 8}" text-anchor="middle" font-size="11" '
                     f'fill="#666">{label_day.isoformat()}</text>')
    scored = [(d, s) for d, s, _ in points if s is not None]
    if scored:
        path = " ".join(f"{'M' if i == 0 else 'L'}{_fmt(x(d))},{_fmt(y(s))}" for i, (d, s) in enumerate(scored))
        parts.append(f'<path class="score-line" d="{path}" fill="none" stroke="#1565c0" stroke-width="2"/>')
        for d, s in scored:
            parts.append(f'<circle class="score-point" cx="{_fmt(x(d))}" cy="{_fmt(y(s))}" r="3" fill="#1565c0">'
                         f'<title>{d.isoformat()}: {s:g}</title></circle>')
    overridden = [(d, o) for d, _, o in points if o is not None]
    if overridden:
        path = " ".join(f"{'M' if i == 0 else 'L'}{_fmt(x(d))},{_fmt(y(o))}" for i, (d, o) in enumerate(overridden))
        parts.append(f'<path class="override-line" d="{path}" fill="none" stroke="#6a1b9a" stroke-width="2" '
                     'stroke-dasharray="6 3"/>')
    if not scored and not overridden:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="#666">'
                     'no scores yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(items: Sequence[tuple[str, float, str]], width: int = 360, bar_h: int = 20,
             value_format: str = "{:,.0f}") -> str:
    """Horizontal bars: (label, value, colour) per row, scaled to the largest value."""
    label_w, value_w = 110, 90
    height = bar_h * max(len(items), 1) + 8
    largest = max((v for _, v, _ in items), default=0) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart bars" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">']
    for i, (label, value, color) in enumerate(items):
        top = 4 + i * bar_h
        length = (width - label_w - value_w) * (value / largest)
        parts.append(f'<text x="{label_w - 6}" y="{top + bar_h * 0.7}" text-anchor="end" font-size="12">'
                     f'{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{top + 2}" width="{_fmt(max(length, 0))}" height="{bar_h - 6}" '
                     f'fill="{escape(color)}"/>')
        parts.append(f'<text x="{_fmt(label_w + max(length, 0) + 4)}" y="{top + bar_h * 0.7}" font-size="12">'
                     f'{escape(value_format.format(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)
