"""`TransactionsPanel`: the transactions open on the cluster, with their age and partitions.

A transaction left open (a producer that hangs, or died before its timeout) holds back every
read_committed reader of its partitions at its first offset, the last stable offset: this panel
says which, since when, and on which partitions. It reads ListTransactions and
DescribeTransactions (KIP-664) through the connection (`open_transactions()`), so it works
against any Kafka 3.0+ cluster; the same rows are `wb.transactions` in SQL. When the cluster
stops the panel says so and keeps the last table, marked as of when it was read.
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import pandas as pd

from workbench.widgets._live import LivePanel, message
from workbench.widgets._render import frame_html

__all__ = ["TransactionsPanel"]

#: An open transaction older than this is shown as a warning (Kafka's default
#: transaction.timeout.ms is 60 s: past it, the coordinator should have aborted it).
OLD_AFTER_S = 60.0


class TransactionsPanel(LivePanel):
    """Open transactions: id, producer id/epoch, state, age, timeout, partitions, coordinator."""

    css_class = "workbench-transactions"
    error_prefix = "cluster unreachable: "

    def __init__(self, conn, *, interval: float = 2.0, live: bool = True) -> None:
        super().__init__(conn)
        self.transactions = pd.DataFrame()
        self.read_at: float | None = None
        self.error = ""
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.live = widgets.Checkbox(value=live, description="live", indent=False, layout=widgets.Layout(width="80px"))
        self.info = widgets.HTML()
        self.table = widgets.HTML()
        self.table.add_class("workbench-transactions-table")
        self.children = [
            widgets.HBox([widgets.HTML("<b>Open transactions</b>"), self.refresh_button, self.live, self.info]),
            self.table,
        ]
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.live.observe(self._on_live, "value")
        self._poller = self._loop("transactions", self._step, interval, on_error=self._show_error)
        if live:
            self._poller.start()
        else:
            self.refresh()

    def _result(self) -> pd.DataFrame:
        return self.transactions

    def _refresh_locked(self) -> None:
        df = self.conn.open_transactions()
        self.transactions, self.read_at, self.error = df, time.time(), ""
        old = int((df["age_s"].fillna(0) > OLD_AFTER_S).sum()) if len(df) else 0
        text = f"{len(df)} open" + (f", {old} older than {OLD_AFTER_S:.0f} s" if old else "")
        shown = df.assign(partitions=[", ".join(p) for p in df["partitions"]]) if len(df) else df
        html = frame_html(
            shown,
            css_class="workbench-transactions-frame",
            row_class=lambda r: "workbench-warn" if (r["age_s"] or 0) > OLD_AFTER_S else "",
            empty="no open transaction: every read_committed reader can read up to the high watermark",
        )
        self.table.value = html
        self.info.value = message(text, "warn" if old else "info")

    def _show_stopped(self) -> None:
        super()._show_stopped()
        if self.read_at is not None and "as of" not in self.table.value:
            when = time.strftime("%H:%M:%S", time.localtime(self.read_at))
            self.table.value = message(f"as of {when}, before the cluster stopped:", "info") + self.table.value
