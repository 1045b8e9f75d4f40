"""The widgets' pure pieces: rates from offset samples, the sparkline SVG, the one style."""

from __future__ import annotations

import re

import ipywidgets as widgets

from workbench.sql.offset_history import rates
from workbench.widgets import _style
from workbench.widgets._render import sparkline
from workbench.widgets.topic_overview import human_bytes, human_ms, human_retention_bytes


def test_rates_are_offset_growth_per_second_and_never_negative():
    samples = [(10.0, 100), (12.0, 140), (14.0, 140), (15.0, 90), (17.0, 110)]
    assert rates(samples) == [(12.0, 20.0), (14.0, 0.0), (15.0, 0.0), (17.0, 10.0)]
    assert rates([]) == [] and rates([(1.0, 5)]) == []
    assert rates([(1.0, 5), (1.0, 7), (3.0, 11)]) == [(3.0, 2.0)]  # same time: the later count wins


def test_sparkline_draws_the_window_and_writes_the_latest_value():
    svg = sparkline([(0.0, 1.0), (90.0, 3.0), (100.0, 12.5), (110.0, 4.0)], now=120.0, span=60.0)
    assert 'class="workbench-sparkline"' in svg and "<polyline" in svg
    points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    assert len(points) == 3  # the sample at t=0 is outside the last 60 s
    ys = [float(p.split(",")[1]) for p in points]
    assert min(ys) == ys[1]  # the maximum (12.5) is drawn highest
    assert ">4/s<" in svg and "max 12.5/s" in svg
    empty = sparkline([], now=120.0)
    assert 'class="workbench-sparkline"' in empty and "<polyline" not in empty and "no samples yet" in empty


def test_one_primary_and_one_danger_colour():
    primary, danger = _style.primary_button(description="Run"), _style.danger_button(description="Kill")
    assert primary.style.button_color == _style.PRIMARY and primary.button_style == "primary"
    assert danger.style.button_color == _style.DANGER and danger.button_style == "danger"
    assert "workbench-primary" in primary._dom_classes and "workbench-danger" in danger._dom_classes
    assert _style.MESSAGE_COLOURS["error"] == _style.STATUS_COLOURS["STOP"] == _style.DANGER
    assert isinstance(primary, widgets.Button)


def test_human_units_of_the_overview():
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(None) == "" and human_bytes(12) == "12 B"
    assert human_ms("604800000") == "7 d" and human_ms("-1") == "forever" and human_ms("1500") == "1500 ms"
    assert human_retention_bytes("-1") == "unlimited" and human_retention_bytes("1048576") == "1.0 MiB"


def test_wide_tables_scroll_in_one_box_under_a_sticky_header():
    import pandas as pd

    from workbench.widgets._render import TABLE_STYLE, frame_html

    wide = pd.DataFrame([{f"column_{i}": "x" * 30 for i in range(40)}])
    out = frame_html(wide, sticky_first=True)
    assert out.count('workbench-scroll">') == 1 and 'class="workbench-table workbench-sticky-first"' in out
    assert ".workbench-scroll{max-height:420px;max-width:100%;overflow:auto}" in TABLE_STYLE
    assert "position:sticky;top:0" in TABLE_STYLE and "td:first-child{position:sticky;left:0" in TABLE_STYLE
    assert 'class="workbench-table"' in frame_html(wide)
