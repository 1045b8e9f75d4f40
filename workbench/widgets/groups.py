"""`GroupMonitor`: every consumer group, its lag per partition, a live lag plot, a status per
group in the manner of Burrow, and resetting a stopped group's offsets.

Groups and lag come from the connection's one lag history (`workbench.sql.lag_history`, the
same samples as `wb.consumer_lag_history`, read over the Kafka protocol every 2 s and kept for an
hour), so every monitor and dashboard of a connection shows the same statuses and a monitor
opened later plots the past hour. Resets use the admin client's `alter_consumer_group_offsets`,
which Kafka accepts only for a group with no active members (status STOP or no lag at all).
"""

from __future__ import annotations

import math
import time
from datetime import datetime

import ipywidgets as widgets
import pandas as pd

from workbench.sql.burrow import SEVERITY
from workbench.sql.lag_history import QUERY, lag_history_of
from workbench.widgets._live import (
    LivePanel,
    admin_client,
    connection_closed,
    hold,
    message,
    short_error,
    start_sql,
)
from workbench.widgets._render import badge, frame_html, line_chart
from workbench.widgets._style import danger_button

__all__ = ["QUERY", "GroupMonitor", "parse_reset_target"]

#: Seconds of lag history shown in the plot by default (the connection keeps an hour; set
#: `monitor.plot_span` up to 3600 to see all of it).
PLOT_SPAN = 300.0


def _as_list(value) -> list:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return list(value)


def parse_reset_target(to) -> tuple[str, int | None]:
    """("earliest" | "latest" | "timestamp", epoch ms) from "earliest", "latest", a datetime, an
    ISO string ("2024-05-01 12:00", UTC unless it says otherwise) or epoch milliseconds."""
    if isinstance(to, str) and to.strip().lower() in ("earliest", "latest"):
        return to.strip().lower(), None
    if isinstance(to, bool) or to is None:
        raise ValueError(f'reset to "earliest", "latest" or a timestamp, not {to!r}')
    if isinstance(to, int | float):
        return "timestamp", int(to)
    try:
        ts = pd.Timestamp(to)
    except (ValueError, TypeError):
        raise ValueError(
            f'cannot read {to!r} as a time; use "earliest", "latest", "2024-05-01 12:00:00" (UTC) or epoch milliseconds'
        ) from None
    if pd.isna(ts):
        raise ValueError(f"cannot read {to!r} as a time")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return "timestamp", int(ts.timestamp() * 1000)


class GroupMonitor(LivePanel):
    """Consumer groups with state, members, lag per partition, a lag plot and Burrow-style status."""

    css_class = "workbench-groups"

    def __init__(
        self,
        conn,
        *,
        interval: float = 1.0,
        window: int = 10,
        stall_after: float = 10.0,
        stop_after: float = 60.0,
        live: bool = True,
    ) -> None:
        super().__init__(conn)
        start_sql(conn)
        self.lag_history = lag_history_of(conn.sql_engine, start=False)
        # The connection's history judges statuses; the first monitor's settings shape it.
        if self.lag_history.samples == 0:
            self.lag_history.evaluator.window = max(3, int(window))
            self.lag_history.evaluator.stall_after = stall_after
            self.lag_history.evaluator.stop_after = stop_after
        self.lag_history.interval = min(self.lag_history.interval, max(1.0, float(interval)))
        self.evaluator = self.lag_history.evaluator
        self.plot_span = PLOT_SPAN
        self.status: dict[str, str] = {}
        self.groups = pd.DataFrame()
        self.lag = pd.DataFrame()
        self.error = ""

        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.live = widgets.Checkbox(value=live, description="live", indent=False, layout=widgets.Layout(width="80px"))
        self.info = widgets.HTML()
        self.groups_table = widgets.HTML()
        self.groups_table.add_class("workbench-groups-table")
        self.plot = widgets.HTML()
        self.plot.add_class("workbench-lag-plot")
        self.partitions_table = widgets.HTML()
        self.partitions_table.add_class("workbench-lag-table")
        self.reset_group_select = widgets.Dropdown(options=[], description="group")
        self.reset_to = widgets.Dropdown(
            options=["earliest", "latest", "timestamp"],
            value="earliest",
            description="to",
            layout=widgets.Layout(width="200px"),
        )
        self.reset_timestamp = widgets.Text(
            placeholder="2024-05-01 12:00:00 (UTC)", layout=widgets.Layout(width="200px")
        )
        self.reset_button = danger_button(description="Reset offsets", icon="undo")
        self.reset_message = widgets.HTML()
        self.children = [
            widgets.HBox([widgets.HTML("<b>Consumer groups</b>"), self.refresh_button, self.live, self.info]),
            self.groups_table,
            self.plot,
            self.partitions_table,
            widgets.HTML("<b>Reset offsets</b> of a group with no active members (status STOP, or state Empty)"),
            widgets.HBox([self.reset_group_select, self.reset_to, self.reset_timestamp, self.reset_button]),
            self.reset_message,
        ]
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.reset_button.on_click(lambda _b: self._reset_clicked())
        self.reset_group_select.observe(lambda _c: self._update_reset_button(), "value")
        self.live.observe(self._on_live, "value")
        self._poller = self._loop("groups", self._step, interval, on_error=self._show_error)
        if live:
            self._poller.start()
        else:
            self.refresh()

    # ------------------------------------------------------------------ refresh
    error_prefix = "cannot read groups: "

    def refresh(self) -> pd.DataFrame:
        """Read groups and lag now (a new sample of the connection's history); returns the lag shown."""
        self._fresh_sample = True
        return super().refresh()

    def _result(self) -> pd.DataFrame:
        """`refresh()` returns the per-partition lag shown."""
        return self.lag

    def _show_error(self, exc: BaseException) -> None:
        self.status = {g: "ERR" for g in self.status}
        super()._show_error(exc)

    @property
    def history(self) -> dict[str, list[tuple[float, float]]]:
        """group -> [(unix time, total lag)] over the plot's span, from the connection's history."""
        return self.lag_history.totals(since=time.time() - self.plot_span)

    def _refresh_locked(self) -> None:
        if connection_closed(self.conn) or self._closed:
            return
        history = self.lag_history.start()
        latest = history.latest
        stale = latest is None or time.time() - latest[0] > max(history.interval, self._poller.interval) * 1.5
        if stale or self.__dict__.pop("_fresh_sample", False):
            history.sample()  # nothing recent (first refresh, or an explicit refresh()): read now
            latest = history.latest
        assert latest is not None
        now, frame, status = latest
        groups, lag = self._split(frame)
        status = {g: status.get(g, "OK") for g in groups["group_id"]}
        if not lag.empty:
            lag = lag.assign(
                status=[
                    self.evaluator.partition_status(r.group_id, r.topic, int(r.partition)) for r in lag.itertuples()
                ]
            )
        groups = groups.assign(status=[status[g] for g in groups["group_id"]]) if not groups.empty else groups
        self.groups, self.lag, self.status, self.error = groups, lag, status, ""
        self._render(now)

    @staticmethod
    def _split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        group_cols = ["group_id", "protocol", "state", "members", "member_list"]
        if frame.empty:
            return pd.DataFrame(columns=[*group_cols, "partitions", "lag", "max_lag_seconds"]), pd.DataFrame(
                columns=[
                    "group_id",
                    "topic",
                    "partition",
                    "committed_offset",
                    "log_end_offset",
                    "lag",
                    "lag_seconds",
                ]
            )
        lag = (
            frame[frame["topic"].notna()]
            .drop(columns=["state", "protocol", "members", "member_list"], errors="ignore")
            .reset_index(drop=True)
        )
        lag["partition"] = lag["partition"].astype(int)
        groups = frame.drop_duplicates("group_id").reindex(columns=group_cols).reset_index(drop=True)
        totals = lag.groupby("group_id").agg(
            partitions=("partition", "size"), lag=("lag", "sum"), max_lag_seconds=("lag_seconds", "max")
        )
        groups = groups.join(totals, on="group_id")
        groups["partitions"] = groups["partitions"].fillna(0).astype(int)
        groups["lag"] = groups["lag"].fillna(0).astype(int)
        return groups, lag

    def _render(self, now: float) -> None:
        shown_groups = self.groups.copy()
        if not shown_groups.empty:
            shown_groups["member_list"] = [
                ", ".join(sorted({str(m.get("client_id") or m.get("member_id", "")[:12]) for m in _as_list(ms)}))
                for ms in shown_groups["member_list"]
            ]
            shown_groups = shown_groups.rename(columns={"member_list": "clients"})
            shown_groups["status"] = [badge(s) for s in shown_groups["status"]]

        def group_class(row) -> str:
            return {
                "WARN": "workbench-warn",
                "STALL": "workbench-warn",
                "STOP": "workbench-bad",
                "ERR": "workbench-bad",
            }.get(self.status.get(row["group_id"], "OK"), "")

        def partition_class(row) -> str:
            s = row.get("status", "OK")
            return "workbench-bad" if SEVERITY.get(s, 0) >= 2 else ("workbench-warn" if s == "WARN" else "")

        groups_html = frame_html(
            shown_groups,
            css_class="workbench-groups-list",
            row_class=group_class,
            raw_html_columns=["status"],
            empty="no consumer groups yet",
        )
        lag_html = frame_html(
            self.lag,
            css_class="workbench-lag-rows",
            row_class=partition_class,
            empty="no committed offsets yet",
        )
        plot_html = line_chart(
            self.history,
            now=now,
            span=self.plot_span,
            y_label="lag (records)",
            css_class="workbench-lag-svg",
        )
        options = list(self.groups["group_id"]) if not self.groups.empty else []
        stamp = datetime.now().strftime("%H:%M:%S")
        if self._closed or connection_closed(self.conn):
            return
        with hold(self.groups_table, self.partitions_table, self.plot, self.info, self.reset_group_select):
            self.groups_table.value = groups_html
            self.partitions_table.value = lag_html
            self.plot.value = plot_html
            self.info.value = message(f"updated {stamp}", "info")
            if list(self.reset_group_select.options) != options:
                current = self.reset_group_select.value
                self.reset_group_select.options = options
                if current in options:
                    self.reset_group_select.value = current
            self._update_reset_button()

    def _update_reset_button(self) -> None:
        """Reset is offered only where Kafka accepts it: a group with no active members."""
        reason = self.closed_reason()
        group = self.reset_group_select.value
        if reason is None and not group:
            reason = "choose a group"
        if reason is None and not self.groups.empty:
            row = self.groups[self.groups["group_id"] == group]
            members = int(row["members"].iloc[0]) if not row.empty and pd.notna(row["members"].iloc[0]) else 0
            if members:
                reason = f"{group!r} has {members} active member(s): stop its consumers first"
        self.reset_button.disabled = reason is not None
        self.reset_button.tooltip = reason or f"move {group!r} to the chosen position"

    # ------------------------------------------------------------------ reset
    def _reset_clicked(self) -> None:
        group = self.reset_group_select.value
        if not group:
            self.reset_message.value = message("choose a group first")
            return
        to = self.reset_to.value if self.reset_to.value != "timestamp" else self.reset_timestamp.value.strip()
        if not to:
            self.reset_message.value = message("type a time to reset to, e.g. 2024-05-01 12:00:00 (UTC)")
            return
        self.reset_group(group, to=to)

    def reset_group(self, group: str, to="earliest", *, topic: str | None = None) -> dict | None:
        """Move a group with no active members to the earliest or latest offsets, or to the first
        offset at or after a time, on every partition of the topics it has committed (or of `topic`).

        Returns {(topic, partition): new offset}; on a problem shows it inline and returns None."""
        try:
            result = self._reset(group, to, topic)
        except Exception as exc:
            self.reset_message.value = message(f"reset of {group!r} failed: {short_error(exc)}")
            return None
        where = ", ".join(f"{t}[{p}]→{o}" for (t, p), o in sorted(result.items()))
        self.reset_message.value = message(f"reset {group!r} to {to}: {where}", "ok")
        self._poller.poke()
        return result

    def _reset(self, group: str, to, topic: str | None) -> dict:
        from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
        from confluent_kafka.admin import OffsetSpec

        if not isinstance(group, str) or not group:
            raise ValueError("name a consumer group")
        kind, ts = parse_reset_target(to)
        admin = admin_client(self.conn)
        try:
            description = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
        except KafkaException as exc:
            raise ValueError(f"cannot describe group {group!r}: {exc.args[0].str()}") from None
        state = getattr(description.state, "name", str(description.state))
        if description.members:
            raise ValueError(
                f"group {group!r} has {len(description.members)} active member(s) (state {state}); "
                "stop its consumers first: Kafka resets only a group with no members"
            )
        if topic is not None:
            topics = {topic}
        else:
            offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=10)[
                group
            ].result()
            topics = {tp.topic for tp in offsets.topic_partitions if tp.error is None}
            if not topics:
                raise ValueError(f"group {group!r} has no committed offsets: pass topic= to say which topic")
        md = admin.list_topics(timeout=10)
        partitions = []
        for name in sorted(topics):
            tm = md.topics.get(name)
            if tm is None or tm.error is not None:
                raise ValueError(f"unknown topic {name!r}")
            partitions += [(name, p) for p in sorted(tm.partitions)]
        spec = {"earliest": OffsetSpec.earliest(), "latest": OffsetSpec.latest()}.get(kind) or OffsetSpec.for_timestamp(
            ts
        )
        futures = admin.list_offsets({TopicPartition(t, p): spec for t, p in partitions}, request_timeout=10)
        targets = {}
        latest_needed = []
        for tp, fut in futures.items():
            offset = fut.result().offset
            if offset < 0:  # no record at or after the time: the end of the partition
                latest_needed.append(tp)
            else:
                targets[(tp.topic, tp.partition)] = offset
        if latest_needed:
            more = admin.list_offsets(
                {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in latest_needed},
                request_timeout=10,
            )
            for tp, fut in more.items():
                targets[(tp.topic, tp.partition)] = fut.result().offset
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o) for (t, p), o in targets.items()])
        try:
            done = admin.alter_consumer_group_offsets([request], request_timeout=10)[group].result()
        except KafkaException as exc:
            raise ValueError(exc.args[0].str()) from None
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in done.topic_partitions if tp.error]
        if failed:
            raise ValueError("; ".join(failed))
        return targets
