"""HTML tables and a small SVG line chart, as strings for `ipywidgets.HTML`.

Plots are drawn as inline SVG by hand rather than with matplotlib: an SVG of a few
kilobytes renders crisply in JupyterLab, Notebook 7, VS Code and Binder with no front-end
extension, costs well under a millisecond to build on the kernel (so a 4/s refresh does not
compete with the user's code), adds no dependency, and is plain text a test can assert on.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import datetime

import pandas as pd

from workbench.widgets._style import DANGER, DANGER_BG, MUTED, PRIMARY, STATUS_COLOURS, WARN_BG

PALETTE = [PRIMARY, "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

TABLE_STYLE = (
    "<style>"
    ".workbench-table{border-collapse:collapse;font-size:12px;font-family:var(--jp-code-font-family,monospace)}"
    ".workbench-table th{background:var(--jp-layout-color2,#eee);text-align:left;padding:2px 8px;"
    "position:sticky;top:0;z-index:2;white-space:nowrap}"
    ".workbench-table tbody tr:hover td{background:var(--jp-layout-color2,#f3f3f3)}"
    # The first column (a topic's name, a row's identity) stays in view while the rest scrolls sideways.
    ".workbench-table.workbench-sticky-first td:first-child{position:sticky;left:0;z-index:1;"
    "background:var(--jp-layout-color1,#fff);font-weight:bold}"
    ".workbench-table.workbench-sticky-first th:first-child{left:0;z-index:3}"
    ".workbench-table td{padding:2px 8px;border-top:1px solid var(--jp-border-color2,#ddd);"
    "vertical-align:top;max-width:480px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}"
    f".workbench-table tr.workbench-warn td{{background:{WARN_BG}}}"
    f".workbench-table tr.workbench-bad td{{background:{DANGER_BG}}}"
    ".workbench-table td.workbench-long{white-space:normal}"
    ".workbench-table details summary{cursor:pointer;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;"
    "max-width:480px}"
    ".workbench-table details pre{white-space:pre-wrap;word-break:break-all;max-width:720px;margin:2px 0}"
    ".workbench-scroll{max-height:420px;max-width:100%;overflow:auto}"
    ".workbench-badge{display:inline-block;padding:0 6px;border-radius:3px;color:white;font-weight:bold}"
    "</style>"
)


def _json_scalar(value):
    """Inside a list or struct cell: NULLs as null (never NaN or <NA>), bytes as text."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).isoformat(timespec="milliseconds")
    return str(value)


def cell_text(value) -> str:
    """A cell as plain text: lists and dicts as JSON-ish text, timestamps to the millisecond."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else str(value)
    if isinstance(value, pd.Timestamp | datetime):
        if pd.isna(value):
            return ""
        return pd.Timestamp(value).isoformat(timespec="milliseconds")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict | list | tuple) or hasattr(value, "tolist"):
        import json

        raw = value.tolist() if hasattr(value, "tolist") else value
        try:
            return json.dumps(raw, ensure_ascii=False, default=_json_scalar)
        except (TypeError, ValueError):
            return str(raw)
    try:
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    return str(value)


#: Cells longer than this show their start and expand (a `<details>`) to the whole value,
#: pretty-printed when it is JSON.
CELL_CUT = 80


def _pretty(text: str) -> str:
    import json

    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, TypeError):
        return text


def cell_html(text: str) -> str:
    """A `<td>` for plain text: short values as they are, long ones expandable."""
    if len(text) <= CELL_CUT:
        return f'<td title="{html.escape(text[:2000])}">{html.escape(text)}</td>'
    return (
        f'<td class="workbench-long"><details><summary>{html.escape(text[:CELL_CUT])}…</summary>'
        f"<pre>{html.escape(_pretty(text))}</pre></details></td>"
    )


def badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, MUTED)
    return (
        f'<span class="workbench-badge workbench-status-{html.escape(status)}" '
        f'style="background:{colour}">{html.escape(status)}</span>'
    )


def frame_html(
    df: pd.DataFrame | None,
    *,
    max_rows: int = 200,
    css_class: str = "",
    row_class: Callable[[pd.Series], str] | None = None,
    raw_html_columns: Sequence[str] = (),
    empty: str = "(no rows)",
    sticky_first: bool = False,
) -> str:
    """A DataFrame as an escaped HTML table (first `max_rows` rows, with a note when cut), in one
    box that scrolls both ways under a sticky header (and, with `sticky_first`, a sticky first column)."""
    if df is None or df.empty:
        return f'<div class="{css_class}" style="color:#777;font-size:12px">{html.escape(empty)}</div>'
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    rows = []
    for _, row in shown.iterrows():
        cls = row_class(row) if row_class is not None else ""
        cells = []
        for col in shown.columns:
            value = row[col]
            if col in raw_html_columns:
                cells.append(f"<td>{value}</td>")
            else:
                cells.append(cell_html(cell_text(value)))
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    note = ""
    if len(df) > max_rows:
        note = f'<div style="color:#777;font-size:12px">showing {max_rows} of {len(df)} rows</div>'
    return (
        f'{TABLE_STYLE}<div class="{css_class} workbench-scroll">'
        f'<table class="workbench-table{" workbench-sticky-first" if sticky_first else ""}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        f"</table></div>{note}"
    )


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    now: float,
    span: float = 120.0,
    width: int = 640,
    height: int = 200,
    y_label: str = "",
    css_class: str = "",
) -> str:
    """An SVG line chart of `series` (name -> [(unix time, y)]) over the last `span` seconds."""
    left, right, top, bottom = 56, 150, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [y for points in series.values() for _, y in points if y is not None]
    y_max = _nice_ceiling(max(values) if values else 0.0)
    start = now - span

    def x(t: float) -> float:
        return left + plot_w * min(max((t - start) / span, 0.0), 1.0)

    def y(v: float) -> float:
        return top + plot_h * (1 - v / y_max)

    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" style="font:11px sans-serif">'
        ),
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>',
    ]
    for i in range(5):  # horizontal grid and y ticks
        v = y_max * i / 4
        yy = y(v)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
        label = f"{v:g}" if v < 1e6 else f"{v:.2e}"
        parts.append(f'<text x="{left - 4}" y="{yy + 4:.1f}" text-anchor="end" fill="#555">{label}</text>')
    for i in range(5):  # x ticks: seconds ago
        t = start + span * i / 4
        ago = now - t
        parts.append(
            f'<text x="{x(t):.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="#555">'
            f"{'now' if ago < 0.5 else f'-{ago:.0f}s'}</text>"
        )
    if y_label:
        parts.append(
            f'<text x="12" y="{top + plot_h / 2}" transform="rotate(-90 12 {top + plot_h / 2})" '
            f'text-anchor="middle" fill="#555">{html.escape(y_label)}</text>'
        )
    for i, (name, points) in enumerate(sorted(series.items())):
        colour = PALETTE[i % len(PALETTE)]
        pts = [(x(t), y(v)) for t, v in points if t >= start - 1 and v is not None]
        title = f"<title>{html.escape(name)}</title>"
        if len(pts) == 1:
            parts.append(f'<circle cx="{pts[0][0]:.1f}" cy="{pts[0][1]:.1f}" r="2.5" fill="{colour}">{title}</circle>')
        elif pts:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" points="{path}">{title}</polyline>'
            )
        ly = top + 10 + 14 * i
        if ly < height - 4:
            last = points[-1][1] if points else None
            label = name if len(name) <= 16 else name[:15] + "…"
            parts.append(
                f'<rect x="{left + plot_w + 8}" y="{ly - 8}" width="10" height="3" fill="{colour}"/>'
                f'<text x="{left + plot_w + 22}" y="{ly - 4}" fill="#333">{title}{html.escape(label)}'
                f"{'' if last is None else f' {last:g}'}</text>"
            )
    if not values:
        parts.append(
            f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" fill="#999">no data yet</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def event_strip(
    times: list[float],
    labels: list[str],
    *,
    now: float,
    span: float = 300.0,
    width: int = 640,
    height: int = 44,
    css_class: str = "",
) -> str:
    """An SVG strip with one tick per event (e.g. a leader election) over the last `span` seconds."""
    left, right = 8, 8
    plot_w = width - left - right
    start = now - span
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" style="font:10px sans-serif">'
        ),
        f'<line x1="{left}" x2="{left + plot_w}" y1="20" y2="20" stroke="#bbb"/>',
    ]
    for t, label in zip(times, labels, strict=False):
        if t < start:
            continue
        xx = left + plot_w * (t - start) / span
        parts.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="10" y2="30" stroke="{DANGER}" stroke-width="2">'
            f"<title>{html.escape(label)}</title></line>"
        )
    parts.append(
        f'<text x="{left}" y="{height - 2}" fill="#555">-{span:.0f}s</text>'
        f'<text x="{left + plot_w}" y="{height - 2}" text-anchor="end" fill="#555">now</text></svg>'
    )
    return "".join(parts)


def sparkline(
    points: Sequence[tuple[float, float]],
    *,
    now: float,
    span: float = 300.0,
    width: int = 120,
    height: int = 26,
    colour: str = PRIMARY,
    unit: str = "/s",
    css_class: str = "workbench-sparkline",
) -> str:
    """A small SVG line of `points` ([(unix time, value)]) over the last `span` seconds, then the
    latest value as text: the topic overview's produce and consume rates. The y axis starts at 0
    and ends at the window's maximum (written in the tooltip), so a flat line at the bottom is
    "nothing happening", not a zoomed-in wobble."""
    start = now - span
    shown = [(t, v) for t, v in points if t >= start]
    top = max((v for _, v in shown), default=0.0)
    last = shown[-1][1] if shown else None
    label = "–" if last is None else (f"{last:,.0f}" if last >= 10 else f"{last:.1f}".rstrip("0").rstrip("."))
    tip = (
        "no samples yet"
        if last is None
        else f"now {label}{unit}, max {top:,.1f}{unit} over the last {span / 60:.0f} min ({len(shown)} samples)"
    )

    def x(t: float) -> float:
        return 1 + (width - 2) * min(max((t - start) / span, 0.0), 1.0)

    def y(v: float) -> float:
        return height - 2 - (height - 4) * (v / top if top > 0 else 0.0)

    line = ""
    if len(shown) == 1:
        line = f'<circle cx="{x(shown[0][0]):.1f}" cy="{y(shown[0][1]):.1f}" r="1.8" fill="{colour}"/>'
    elif shown:
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in shown)
        area = f"{x(shown[0][0]):.1f},{height - 1} {path} {x(shown[-1][0]):.1f},{height - 1}"
        line = (
            f'<polygon points="{area}" fill="{colour}" fill-opacity="0.12" stroke="none"/>'
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        )
    return (
        f'<span class="{css_class}" title="{html.escape(tip)}" style="white-space:nowrap">'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'style="vertical-align:middle"><line x1="0" x2="{width}" y1="{height - 1}" y2="{height - 1}" stroke="#ddd"/>'
        f'{line}</svg> <span class="workbench-sparkline-value">{html.escape(label)}{html.escape(unit)}</span></span>'
    )
