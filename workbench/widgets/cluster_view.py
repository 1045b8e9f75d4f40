"""`ClusterView`: brokers (alive, controller), a live partition grid (leader, replicas, ISR;
under-replicated and offline partitions highlighted), kill/restart buttons for an embedded
`Cluster`, and a timeline of leader elections.

Brokers and partitions come from `conn.describe()` (Metadata and ListOffsets) and elections
from `conn.leader_history()`, so the view reads a remote cluster the same way; only the
kill and restart buttons need a `workbench.Cluster`, and are not shown otherwise.
"""

from __future__ import annotations

import html
import time
from datetime import datetime

import ipywidgets as widgets
import pandas as pd

from workbench.embedded import is_embedded
from workbench.widgets._live import LivePanel, connection_closed, hold, message, short_error
from workbench.widgets._render import TABLE_STYLE, event_strip, frame_html
from workbench.widgets._style import DANGER_BG, WARN_BG, danger_button

#: The grid shows at most this many topics and partitions per topic (the DataFrame has all).
GRID_TOPICS = 40
GRID_PARTITIONS = 48
TIMELINE_ROWS = 20
TIMELINE_SPAN = 300.0


def _ids(value) -> list[int]:
    if value is None:
        return []
    try:
        return [int(v) for v in value]
    except TypeError:
        return []


def partition_grid(partitions: pd.DataFrame) -> str:
    """Topics as rows, partitions as columns; each cell the leader, replicas and ISR."""
    if partitions.empty:
        return '<div style="color:#777;font-size:12px">no topics yet</div>'
    rows = []
    width = min(int(partitions["partition"].max()) + 1, GRID_PARTITIONS)
    head = "<th>topic</th>" + "".join(f"<th>{p}</th>" for p in range(width))
    for topic, parts in list(partitions.groupby("topic", sort=True))[:GRID_TOPICS]:
        cells = {}
        for r in parts.itertuples():
            leader = r.leader if r.leader is not None and not pd.isna(r.leader) else -1
            replicas, isr = _ids(r.replicas), _ids(r.isr)
            if leader < 0:
                cls, style = "workbench-offline", f"background:{DANGER_BG}"
            elif len(isr) < len(replicas):
                cls, style = "workbench-under-replicated", f"background:{WARN_BG}"
            else:
                cls, style = "workbench-in-sync", ""
            tip = (
                f"{topic}[{r.partition}] leader {leader} epoch {r.leader_epoch} replicas {replicas} isr {isr} "
                f"high watermark {r.high_watermark}"
            )
            cells[int(r.partition)] = (
                f'<td class="{cls}" style="{style}" title="{html.escape(tip)}">'
                f"<b>{'offline' if leader < 0 else f'L{leader}'}</b><br>"
                f"<small>r {','.join(map(str, replicas))}</small><br>"
                f"<small>isr {','.join(map(str, isr))}</small></td>"
            )
        row = "".join(cells.get(p, "<td></td>") for p in range(width))
        rows.append(f"<tr><td><b>{html.escape(str(topic))}</b></td>{row}</tr>")
    return (
        f'{TABLE_STYLE}<div class="workbench-partition-grid" style="max-height:420px;overflow:auto">'
        f'<table class="workbench-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></div>"
    )


class ClusterView(LivePanel):
    """Brokers and partitions as they change; kill/restart (embedded clusters); elections."""

    css_class = "workbench-cluster"

    def __init__(self, conn, *, interval: float = 1.0, live: bool = True, internal: bool = False) -> None:
        super().__init__(conn)
        self.embedded = is_embedded(conn)
        self.internal = internal
        self.brokers = pd.DataFrame(columns=["id", "address", "alive", "controller"])
        self.partitions = pd.DataFrame()
        self.controller_id: int | None = None
        self.error = ""
        self._history = None

        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.live = widgets.Checkbox(value=live, description="live", indent=False, layout=widgets.Layout(width="80px"))
        self.info = widgets.HTML()
        self.brokers_table = widgets.HTML()
        self.brokers_table.add_class("workbench-brokers-table")
        self.kill_buttons: dict[int, widgets.Button] = {}
        self.restart_buttons: dict[int, widgets.Button] = {}
        self.action_message = widgets.HTML()
        actions = []
        if self.embedded:
            for node_id in sorted(conn.brokers):
                kill = danger_button(
                    description=f"Kill {node_id}",
                    icon="bolt",
                    tooltip=f"SIGKILL broker {node_id} (a crash)",
                    layout=widgets.Layout(width="100px"),
                )
                restart = widgets.Button(
                    description=f"Restart {node_id}",
                    icon="play",
                    tooltip=f"start broker {node_id} again on its port and data",
                    layout=widgets.Layout(width="110px"),
                )
                kill.add_class("workbench-kill")
                restart.add_class("workbench-restart")
                kill.on_click(lambda _b, n=node_id: self.kill(n))
                restart.on_click(lambda _b, n=node_id: self.restart(n))
                self.kill_buttons[node_id] = kill
                self.restart_buttons[node_id] = restart
                actions.append(widgets.HBox([kill, restart]))
        self.grid = widgets.HTML()
        self.grid.add_class("workbench-partition-grid")
        self.timeline_strip = widgets.HTML()
        self.timeline_table = widgets.HTML()
        self.timeline_table.add_class("workbench-elections")
        self.children = [
            widgets.HBox([widgets.HTML("<b>Brokers</b>"), self.refresh_button, self.live, self.info]),
            self.brokers_table,
            widgets.HBox(actions, layout=widgets.Layout(flex_flow="row wrap")),
            self.action_message,
            widgets.HTML(
                "<b>Partitions</b> (L leader · r replicas · isr in-sync replicas; "
                f"<span style='background:{WARN_BG}'>under-replicated</span>, "
                f"<span style='background:{DANGER_BG}'>offline</span>)"
            ),
            self.grid,
            widgets.HTML("<b>Leader elections</b>"),
            self.timeline_strip,
            self.timeline_table,
        ]
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.live.observe(self._on_live, "value")
        self._poller = self._loop(
            "cluster", self._step, interval, on_error=self._show_error, on_closed=self._stop_history
        )
        if live:
            self._poller.start()
        else:
            self.refresh()

    # ------------------------------------------------------------------ data
    @property
    def timeline(self) -> pd.DataFrame:
        """Leader changes seen since the view opened (time, topic, partition, old/new leader, reason)."""
        if self._history is None:
            return pd.DataFrame(
                columns=[
                    "time",
                    "topic",
                    "partition",
                    "old_leader",
                    "new_leader",
                    "leader_epoch",
                    "isr",
                    "reason",
                ]
            )
        return self._history.frame()

    def _ensure_history(self) -> None:
        if self._history is None and not self._closed and not connection_closed(self.conn):
            shared = getattr(self.conn, "shared_leader_history", None)
            self._history = shared() if callable(shared) else self.conn.leader_history()

    def _stop_history(self) -> None:
        # The connection's shared history outlives this view (a later dashboard shows the past);
        # it stops with the connection. A private one (an old-style connection) stops here.
        shared = getattr(self.conn, "__dict__", {}).get("_leader_history")
        if self._history is not None and self._history is not shared:
            self._history.stop()

    error_prefix = "cluster unreachable: "

    def _result(self) -> pd.DataFrame:
        """`refresh()` returns the brokers frame shown."""
        return self.brokers

    def _refresh_locked(self) -> None:
        if connection_closed(self.conn) or self._closed:
            return
        self._ensure_history()
        description = self.conn.describe(internal=self.internal)
        partitions = description.partitions.copy()
        if not partitions.empty:
            partitions["under_replicated"] = [
                len(_ids(i)) < len(_ids(r)) for i, r in zip(partitions["isr"], partitions["replicas"], strict=False)
            ]
            partitions["offline"] = [pd.isna(v) or v < 0 for v in partitions["leader"]]
        brokers = description.brokers.copy()
        if not partitions.empty and not brokers.empty:
            led = partitions.groupby("leader").size()
            brokers["leaders"] = [int(led.get(b, 0)) for b in brokers["id"]]
        self.brokers, self.partitions = brokers, partitions
        self.controller_id, self.error = description.controller_id, ""
        self._render()

    def _render(self) -> None:
        now = time.time()
        timeline = self.timeline
        brokers_html = frame_html(
            self.brokers.assign(
                alive=["● alive" if a else "✕ down" for a in self.brokers["alive"]],
                controller=["controller" if c else "" for c in self.brokers["controller"]],
            ),
            css_class="workbench-broker-rows",
            row_class=lambda row: "" if row["alive"].startswith("●") else "workbench-bad",
            empty="no brokers answer",
        )
        shown_events = timeline.iloc[::-1].head(TIMELINE_ROWS)
        events_html = frame_html(
            shown_events,
            css_class="workbench-election-rows",
            empty="no leader elections in the last hour",
        )
        strip = event_strip(
            [t.timestamp() for t in timeline["time"]],
            [f"{r.topic}[{r.partition}] {r.old_leader}→{r.new_leader}: {r.reason}" for r in timeline.itertuples()],
            now=now,
            span=TIMELINE_SPAN,
        )
        grid_html = partition_grid(self.partitions)
        under = int(self.partitions["under_replicated"].sum()) if "under_replicated" in self.partitions else 0
        offline = int(self.partitions["offline"].sum()) if "offline" in self.partitions else 0
        summary = (
            f"controller {self.controller_id} · {int(self.brokers['alive'].sum())}/{len(self.brokers)} "
            f"brokers alive · {len(self.partitions)} partitions, {under} under-replicated, "
            f"{offline} offline · {datetime.now():%H:%M:%S}"
        )
        notes = replica_notes(self.partitions)
        if notes:
            summary += " · " + "; ".join(notes[:3]) + (f" (+{len(notes) - 3} more)" if len(notes) > 3 else "")
        alive = dict(zip(self.brokers["id"], self.brokers["alive"], strict=False))
        if self._closed or connection_closed(self.conn):
            return
        with hold(
            self.brokers_table,
            self.grid,
            self.timeline_strip,
            self.timeline_table,
            self.info,
            *self.kill_buttons.values(),
            *self.restart_buttons.values(),
        ):
            self.brokers_table.value = brokers_html
            self.grid.value = grid_html
            self.timeline_strip.value = strip
            self.timeline_table.value = events_html
            self.info.value = message(summary, "warn" if under or offline else "info")
            for node_id, button in self.kill_buttons.items():
                up = bool(alive.get(node_id, False))
                button.disabled = not up
                button.tooltip = f"SIGKILL broker {node_id} (a crash)" if up else f"broker {node_id} is down"
            for node_id, button in self.restart_buttons.items():
                up = bool(alive.get(node_id, False))
                button.tooltip = (
                    f"restart broker {node_id} (SIGTERM, then start it again on its port and data)"
                    if up
                    else f"start broker {node_id} again on its port and data"
                )

    def _show_stopped(self) -> None:
        """Besides the status line and buttons: no broker is shown alive any more."""
        super()._show_stopped()
        if self.brokers.empty:
            return
        self.brokers = self.brokers.assign(alive=False)
        self.brokers_table.value = frame_html(
            self.brokers.assign(
                alive="✕ stopped", controller=["controller" if c else "" for c in self.brokers["controller"]]
            ),
            css_class="workbench-broker-rows",
            row_class=lambda _row: "workbench-bad",
        )

    # ------------------------------------------------------------------ actions
    def kill(self, node_id: int) -> bool:
        """SIGKILL one broker of an embedded cluster."""
        return self._act("kill", node_id)

    def restart(self, node_id: int) -> bool:
        """Start a killed or stopped broker of an embedded cluster again."""
        return self._act("restart", node_id)

    def _act(self, action: str, node_id: int) -> bool:
        if not self.embedded:
            self.action_message.value = message("kill and restart need a workbench.Cluster started here")
            return False
        try:
            if action == "kill":
                self.conn.kill_broker(node_id)
                text = f"killed broker {node_id} (SIGKILL)"
            else:
                self.action_message.value = message(f"starting broker {node_id}…", "info")
                self.conn.restart_broker(node_id)
                text = f"restarted broker {node_id}"
        except Exception as exc:
            self.action_message.value = message(f"{action} broker {node_id} failed: {short_error(exc)}")
            return False
        self.action_message.value = message(text, "ok")
        self._poller.poke()
        return True

    def _stop_threads(self) -> None:
        super()._stop_threads()
        self._stop_history()


def replica_notes(partitions: pd.DataFrame) -> list[str]:
    """One line per replica that is not simply in sync (describe's `replica_states`): catching
    up after a restart, log dir offline, a damaged range being repaired or lost."""
    if partitions.empty or "replica_states" not in partitions:
        return []
    out = []
    for row in partitions.itertuples():
        for replica, state in (row.replica_states or {}).items():
            if state != "in sync":
                out.append(f"{row.topic}[{row.partition}] replica {replica}: {state}")
    return out
