"""Bar and line charts as inline SVG for the HTML report: a file that opens anywhere, with
no JavaScript, stylesheet or CDN behind it. Every label is escaped here, so callers may
pass data straight from the warehouse."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 36, 28, 40  # room for axis labels and the legend
COLOURS = ("#2f6fdf", "#e07b24", "#2e9d5b", "#c23b3b", "#7b52c4", "#6b7280")


def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str) -> Markup:
    """Vertical bars, one per label, each with its value on top."""
    values = [float(v) for v in values]  # the warehouse's sums arrive as Decimal
    top = max([*values, 0]) or 1
    slot = (WIDTH - LEFT - RIGHT) / max(len(values), 1)
    parts = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x, height = LEFT + i * slot + slot * 0.15, _scale(value, 0, top)
        parts.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - BOTTOM - height:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{height:.1f}" fill="{COLOURS[0]}"><title>{escape(label)}: '
            f"{_number(value)}</title></rect>"
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM - height - 4:.1f}" '
            f'text-anchor="middle">{_number(value)}</text>'
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return _svg(title, [_axis(0, top), *parts])


def line_chart(x_labels: Sequence[str], series: Mapping[str, Sequence[float | None]], *,
               title: str, y_range: tuple[float, float] | None = None) -> Markup:
    """One line per series over evenly spaced x labels; a None value leaves a gap."""
    series = {name: [None if v is None else float(v) for v in line]
              for name, line in series.items()}
    values = [v for line in series.values() for v in line if v is not None]
    low, high = y_range or (min([*values, 0]), max([*values, 0]))
    high = high if high > low else low + 1
    step = (WIDTH - LEFT - RIGHT) / max(len(x_labels) - 1, 1)
    every = max(1, -(-len(x_labels) // 8))  # at most 8 x labels
    parts = [_axis(low, high)]
    parts += [f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - BOTTOM + 16}" '
              f'text-anchor="middle">{escape(label)}</text>'
              for i, label in enumerate(x_labels) if i % every == 0]
    for n, (name, line) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = [(LEFT + i * step, HEIGHT - BOTTOM - _scale(v, low, high), label, v)
                  for i, (label, v) in enumerate(zip(x_labels, line, strict=True))
                  if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                         'stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>'
                  f"{escape(name)}, {escape(label)}: {_number(v)}</title></circle>"
                  for x, y, label, v in points]
        parts.append(f'<text x="{LEFT + n * 130}" y="14" fill="{colour}">■ {escape(name)}</text>')
    return _svg(title, parts)


def _scale(value: float, low: float, high: float) -> float:
    return (float(value) - low) / (high - low) * (HEIGHT - TOP - BOTTOM)


def _axis(low: float, high: float) -> str:
    """Gridlines with their values at the bottom, middle and top of the plot."""
    lines = []
    for value in (low, (low + high) / 2, high):
        y = HEIGHT - BOTTOM - _scale(value, low, high)
        lines.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#ddd"/><text x="{LEFT - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{_number(value)}</text>')
    return "".join(lines)


def _svg(title: str, parts: Sequence[str]) -> Markup:
    return Markup(
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'font-family="sans-serif" font-size="11"><title>{escape(title)}</title>'
        + "".join(parts) + "</svg>"
    )


def _number(value: float) -> str:
    value = float(value)
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
