"""`Dashboard`: the six widgets in tabs (`cluster.dashboard()`).

Only the tab on screen refreshes: the others pause their live loops (their threads idle)
and catch up the moment they are selected, so a dashboard costs the cluster what one widget does.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from workbench.embedded import is_embedded
from workbench.widgets._live import LivePanel
from workbench.widgets.browser import TopicBrowser
from workbench.widgets.cluster_view import ClusterView
from workbench.widgets.groups import GroupMonitor
from workbench.widgets.producer import ProducerPanel
from workbench.widgets.sql_panel import SqlPanel
from workbench.widgets.topic_overview import TopicOverview


class Dashboard(LivePanel):
    """Produce, Browse, Topics, Groups, Cluster and SQL tabs over one connection."""

    css_class = "workbench-dashboard"

    def __init__(self, conn, *, topic: str | None = None) -> None:
        super().__init__(conn)
        self.producer = ProducerPanel(conn, topic=topic)
        self.browser = TopicBrowser(conn, topic if topic is not None else (self.producer.topic.value or None))
        self.overview = TopicOverview(conn)
        self.monitor = GroupMonitor(conn)
        self.view = ClusterView(conn)
        self.sql = SqlPanel(conn)
        self.panels = [self.producer, self.browser, self.overview, self.monitor, self.view, self.sql]
        self.tabs = widgets.Tab(children=self.panels)
        for i, title in enumerate(["Produce", "Browse", "Topics", "Groups", "Cluster", "SQL"]):
            self.tabs.set_title(i, title)
        kind = "embedded cluster" if is_embedded(conn) else "connected to"
        self.header = widgets.HTML(f"<b>workbench</b> · {kind} <code>{html.escape(conn.bootstrap_servers)}</code>")
        self.status = widgets.HTML()  # "stopped: ..." once the cluster stops
        self.children = [widgets.HBox([self.header, self.status]), self.tabs]
        # A producer's Send should show up in the browser at once: keep the browser tailing while
        # the producer tab is on screen too.
        self.tabs.observe(self._on_tab, "selected_index")
        self.tabs.selected_index = 0
        self._on_tab({"new": 0})

    def _status_widget(self):
        return self.status

    def _action_buttons(self) -> list:
        return []  # each panel disables its own

    def _on_tab(self, change) -> None:
        selected = change["new"]
        for i, panel in enumerate(self.panels):
            visible = i == selected or (selected == 0 and panel is self.browser)
            panel.resume() if visible else panel.pause()

    def pause(self) -> None:
        for panel in self.panels:
            panel.pause()

    def resume(self) -> None:
        self._on_tab({"new": self.tabs.selected_index or 0})

    def _stop_threads(self) -> None:
        for panel in self.panels:
            panel.close()
        super()._stop_threads()
