"""`TopicOverview`: the topic list a Kafka console opens on: partitions, replication factor,
records, size on disk, produce and consume rates as sparklines, retention and cleanup settings,
and every config that is not a default.

The table is `conn.topic_overview()` (Metadata, ListOffsets and DescribeConfigs through the Kafka
protocol; sizes from an embedded cluster's files). The rates come from the connection's shared
histories, never from this widget's own samples, so an overview opened later shows the last hour
at once: produce from `workbench.sql.offset_history` (high watermarks), consume from the lag
history's committed offsets (`wb.consumer_lag_history`).
"""

from __future__ import annotations

import time
from datetime import datetime

import ipywidgets as widgets
import pandas as pd

from workbench.sql.lag_history import lag_history_of
from workbench.sql.offset_history import consume_rates, offset_history_of
from workbench.widgets._live import LivePanel, connection_closed, hold, message, start_sql
from workbench.widgets._render import frame_html, sparkline
from workbench.widgets._style import OK, PRIMARY

#: Seconds of rate history in each sparkline (the connection keeps an hour; `overview.span`).
SPARK_SPAN = 300.0

COLUMNS = [
    "topic",
    "partitions",
    "replicas",
    "records",
    "size",
    "produce",
    "consume",
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "min.insync.replicas",
    "under-replicated",
    "offline",
    "configs",
]


def human_bytes(value) -> str:
    """1536 -> '1.5 KiB'; NULL (a remote cluster's size is not known here) -> ''."""
    if value is None or pd.isna(value):
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


def human_ms(value) -> str:
    """Kafka's retention.ms as a person reads it: '604800000' -> '7 d', '-1' -> 'forever'."""
    if value is None or value == "":
        return ""
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return str(value)
    if ms < 0:
        return "forever"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def human_retention_bytes(value) -> str:
    if value is None or value == "":
        return ""
    try:
        size = int(value)
    except (TypeError, ValueError):
        return str(value)
    return "unlimited" if size < 0 else human_bytes(size)


def _row_class(row: pd.Series) -> str:
    if row["offline"]:
        return "workbench-bad"
    return "workbench-warn" if row["under-replicated"] else ""


class TopicOverview(LivePanel):
    """Every topic with its size, records, rates (sparklines), retention, cleanup and configs."""

    css_class = "workbench-topics"
    error_prefix = "cluster unreachable: "

    def __init__(self, conn, *, interval: float = 2.0, live: bool = True, internal: bool = False) -> None:
        super().__init__(conn)
        self.internal = internal
        self.span = SPARK_SPAN
        #: The last `conn.topic_overview()` frame with the rates added (`produce_per_s`, `consume_per_s`).
        self.topics = pd.DataFrame()
        self.error = ""
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.live = widgets.Checkbox(value=live, description="live", indent=False, layout=widgets.Layout(width="80px"))
        self.info = widgets.HTML()
        self.table = widgets.HTML()
        self.table.add_class("workbench-topics-table")
        self.children = [
            widgets.HBox([widgets.HTML("<b>Topics</b>"), self.refresh_button, self.live, self.info]),
            self.table,
            widgets.HTML(
                '<div style="color:#777;font-size:12px">produce: records/s reaching the high watermark · '
                "consume: records/s committed by all groups · last 5 min · configs: the non-default ones</div>"
            ),
        ]
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.live.observe(self._on_live, "value")
        start_sql(conn)
        if not connection_closed(conn):
            # Sampling starts now, not at the first refresh: a dashboard's Topics tab shown later
            # (its loop paused until then) draws what happened since the dashboard opened.
            offset_history_of(conn.sql_engine)
            lag_history_of(conn.sql_engine)
        self._poller = self._loop("topics", self._step, interval, on_error=self._show_error)
        if live:
            self._poller.start()
        else:
            self.refresh()

    def _histories(self):
        engine = self.conn.sql_engine
        offsets, lags = offset_history_of(engine), lag_history_of(engine)
        if offsets.samples == 0:
            offsets.sample(engine)  # the first look has a point to start from
        return offsets, lags

    def _result(self) -> pd.DataFrame:
        return self.topics

    def _refresh_locked(self) -> None:
        offsets, lags = self._histories()
        overview = self.conn.topic_overview(internal=self.internal)
        now = time.time()
        since = now - self.span
        produce = {t: offsets.produce_rates(t, since) for t in overview["topic"]}
        consume = {t: consume_rates(lags, t, since) for t in overview["topic"]}
        overview = overview.assign(
            produce_per_s=[produce[t][-1][1] if produce[t] else None for t in overview["topic"]],
            consume_per_s=[consume[t][-1][1] if consume[t] else None for t in overview["topic"]],
        )
        shown = pd.DataFrame(
            {
                "topic": overview["topic"],
                "partitions": overview["partitions"],
                "replicas": overview["replication_factor"],
                "records": [f"{int(r):,}" for r in overview["records"]],
                "size": [human_bytes(v) for v in overview["size_bytes"]],
                "produce": [sparkline(produce[t], now=now, span=self.span, colour=PRIMARY) for t in overview["topic"]],
                "consume": [sparkline(consume[t], now=now, span=self.span, colour=OK) for t in overview["topic"]],
                "cleanup.policy": overview["cleanup.policy"],
                "retention.ms": [human_ms(v) for v in overview["retention.ms"]],
                "retention.bytes": [human_retention_bytes(v) for v in overview["retention.bytes"]],
                "min.insync.replicas": overview["min.insync.replicas"],
                "under-replicated": overview["under_replicated"],
                "offline": overview["offline"],
                "configs": overview["configs"],
            },
            columns=COLUMNS,
        )
        table = frame_html(
            shown,
            css_class="workbench-topic-rows",
            raw_html_columns=("produce", "consume"),
            row_class=_row_class,
            sticky_first=True,
            empty="no topics yet",
        )
        total = int(overview["size_bytes"].fillna(0).sum()) if not overview.empty else 0
        note = f"{len(overview)} topics · {human_bytes(total)} on disk · {datetime.now():%H:%M:%S}"
        if self._closed or connection_closed(self.conn):
            return
        self.topics, self.error = overview, ""
        with hold(self.table, self.info):
            self.table.value = table
            self.info.value = message(note, "info")
