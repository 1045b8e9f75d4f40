"""`TopicBrowser`: the records of one topic as a table: the newest ones, tailed live, or from
an offset or a time, a page at a time; filtered by key, by value text, by header or by any SQL
predicate; exported to CSV.

Seeking by time asks the brokers (ListOffsets with a timestamp, as `kafka-console-consumer` and
Kafka consoles do) for each partition's first offset at or after that time; seeking by offset
starts each partition there. Pages are keyset pages over the table's order (timestamp, partition,
offset): *Next* reads the `limit` records after the last one shown, *Prev* the `limit` before the
first one, so a page never skips or repeats a record (even with out-of-order timestamps or a
filter) and each page is one `ORDER BY ... LIMIT` query: the topic is never loaded whole.

Values in Confluent's wire format (Avro, JSON Schema, Protobuf with a schema id) are shown
decoded by their registered schema.

Records are read with the SQL layer (`conn.sql`), which reads the brokers' Parquet history
plus the live tail fetched over the Kafka protocol up to each high watermark, so the table
shows exactly what consumers can see, and a SQL predicate can use the topic's flattened
JSON columns (`amount > 10 AND status = 'paid'`).
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd

from workbench.embedded import is_embedded
from workbench.widgets._live import (
    LivePanel,
    admin_client,
    connection_closed,
    hold,
    message,
    short_error,
    start_sql,
)
from workbench.widgets._render import frame_html
from workbench.widgets._schemas import decode_for_display, framed_id, registry_url
from workbench.widgets._style import primary_button

COLUMNS = ["partition", "offset", "timestamp", "key", "value", "headers"]
MAX_ROWS = 5000
SELECT = 'partition, "offset", timestamp, key, value, headers'

#: A page boundary: (timestamp in epoch ms, partition, offset) of a record, the table's sort key.
PageKey = tuple[int, int, int]


def _ts_literal(ms: int) -> str:
    """A TIMESTAMPTZ literal: compared with the bare column, DuckDB can skip Parquet row groups by
    their min/max statistics (a function of the column, like `epoch_ms(timestamp)`, could not)."""
    return sql_string(pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat(timespec="milliseconds")) + "::TIMESTAMPTZ"


def _key_after(key: PageKey) -> str:
    """SQL: the records after `key` in (timestamp, partition, offset) order."""
    ms, p, o = (int(v) for v in key)
    t = _ts_literal(ms)
    return f'(timestamp >= {t} AND (timestamp > {t} OR partition > {p} OR (partition = {p} AND "offset" > {o})))'


def _key_before(key: PageKey) -> str:
    ms, p, o = (int(v) for v in key)
    t = _ts_literal(ms)
    return f'(timestamp <= {t} AND (timestamp < {t} OR partition < {p} OR (partition = {p} AND "offset" < {o})))'


def _epoch_ms(value) -> int:
    return int(pd.Timestamp(value).value // 1_000_000)


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def parse_time(text: str) -> pd.Timestamp:
    """A time typed by a person: ISO ("2024-05-01 12:00:00", UTC unless it says otherwise) or epoch ms."""
    text = text.strip()
    try:
        ts = pd.Timestamp(int(text), unit="ms") if text.isdigit() else pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(
            f"cannot read {text!r} as a time; write e.g. 2024-05-01 12:00:00 (UTC) or epoch milliseconds"
        ) from None
    if pd.isna(ts):
        raise ValueError(f"cannot read {text!r} as a time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def _cleaner_note(conn: Any, topic: str) -> str:
    """The log cleaner's progress on ``topic`` for an embedded cluster (it knows its brokers'
    directories: `workbench.cleaner_state`); '' for other connections and uncompacted topics."""
    if not is_embedded(conn):
        return ""
    data_dir = conn.data_dir
    from workbench.cleaner_state import topic_summary

    try:
        return topic_summary(data_dir, topic)
    except Exception:  # a broker rewriting its state file: no note this time
        return ""


def _headers_text(value) -> str:
    if value is None or value is pd.NA:  # a record without headers: an empty cell, not "<NA>"
        return ""
    try:
        items = list(value)
    except TypeError:
        return str(value)
    if not items:
        return ""
    out = {}
    for h in items:
        raw = h.get("value") if isinstance(h, dict) else None
        out[str(h.get("key") if isinstance(h, dict) else h)] = (
            raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        )
    return json.dumps(out, ensure_ascii=False)


class TopicBrowser(LivePanel):
    """Browse one topic: tail, seek (by offset or time), page (Prev/Next), filter, export, send on."""

    css_class = "workbench-browser"

    def __init__(
        self, conn, topic: str | None = None, *, interval: float = 1.0, limit: int = 100, tail: bool = True
    ) -> None:
        super().__init__(conn)
        self.rows = pd.DataFrame(columns=COLUMNS)
        self.query_text = ""
        self.error = ""
        self.last_export: Path | None = None
        self._partitions: dict[str, int] = {}
        self._requested = False
        self._shown_signature = None
        #: Where each partition starts after a seek ({partition: offset}), None for the newest records.
        self.starts: dict[int, int] | None = None
        #: The page shown: None (from the seek position, or the newest), or ("after"|"before", key).
        self.cursor: tuple[str, PageKey] | None = None
        self._pages: list[tuple[str, PageKey] | None] = []  # the cursors Next came from, for Prev
        self._seek_dirty = True

        self.topic = widgets.Combobox(
            description="topic",
            ensure_option=False,
            continuous_update=False,
            placeholder="topic name",
            layout=widgets.Layout(width="360px"),
        )
        self.tail = widgets.Checkbox(
            value=tail, description="tail (live)", indent=False, layout=widgets.Layout(width="110px")
        )
        self.limit = widgets.BoundedIntText(
            value=limit, min=1, max=MAX_ROWS, description="rows", layout=widgets.Layout(width="160px")
        )
        self.refresh_button = widgets.Button(
            description="Refresh", icon="refresh", layout=widgets.Layout(width="100px")
        )
        self.seek_partition = widgets.Dropdown(
            options=[("all", None)], value=None, description="partition", layout=widgets.Layout(width="180px")
        )
        self.seek_offset = widgets.IntText(
            value=-1,
            description="from offset",
            tooltip="-1: the newest records",
            layout=widgets.Layout(width="180px"),
        )
        self.seek_time = widgets.Text(
            description="from time",
            placeholder="2024-05-01 12:00:00",
            continuous_update=False,
            layout=widgets.Layout(width="260px"),
        )
        self.newest_button = widgets.Button(
            description="Newest", icon="fast-forward", layout=widgets.Layout(width="100px")
        )
        self.prev_button = widgets.Button(
            description="Prev", icon="chevron-left", tooltip="the page before", layout=widgets.Layout(width="90px")
        )
        self.next_button = widgets.Button(
            description="Next", icon="chevron-right", tooltip="the page after", layout=widgets.Layout(width="90px")
        )
        self.prev_button.add_class("workbench-prev-page")
        self.next_button.add_class("workbench-next-page")
        self.filter_key = widgets.Text(
            description="key",
            placeholder="contains",
            continuous_update=False,
            layout=widgets.Layout(width="220px"),
        )
        self.filter_text = widgets.Text(
            description="value",
            placeholder="contains text",
            continuous_update=False,
            layout=widgets.Layout(width="260px"),
        )
        self.filter_header = widgets.Text(
            description="header",
            placeholder="name or name=value",
            continuous_update=False,
            layout=widgets.Layout(width="240px"),
        )
        self.sql_filter = widgets.Text(
            description="where",
            placeholder="SQL, e.g. amount > 10",
            continuous_update=False,
            layout=widgets.Layout(width="360px"),
        )
        self.export_path = widgets.Text(
            description="CSV file",
            placeholder="<topic>.csv in the working directory",
            layout=widgets.Layout(width="360px"),
        )
        self.export_button = widgets.Button(
            description="Export CSV", icon="download", layout=widgets.Layout(width="120px")
        )
        self.export_link = widgets.HTML()
        self.send_to = widgets.Combobox(
            description="send to",
            placeholder="topic (e.g. orders-retry)",
            ensure_option=False,
            continuous_update=False,
            layout=widgets.Layout(width="360px"),
        )
        self.send_to_button = primary_button(
            description="Send shown",
            icon="share",
            tooltip="re-produce the records shown (byte-exact) to another topic",
            layout=widgets.Layout(width="140px"),
        )
        self.send_to_button.add_class("workbench-send-to")
        self.send_to_message = widgets.HTML()
        self.info = widgets.HTML()
        self.table = widgets.HTML()
        self.table.add_class("workbench-browser-table")
        self.children = [
            widgets.HBox([self.topic, self.tail, self.limit, self.refresh_button]),
            widgets.HBox(
                [
                    self.seek_partition,
                    self.seek_offset,
                    self.seek_time,
                    self.newest_button,
                    self.prev_button,
                    self.next_button,
                ]
            ),
            widgets.HBox([self.filter_key, self.filter_text, self.filter_header, self.sql_filter]),
            self.info,
            self.table,
            widgets.HBox([self.export_path, self.export_button]),
            widgets.HBox([self.send_to, self.send_to_button]),
            self.send_to_message,
            self.export_link,
        ]
        self.topic.observe(self._on_topic, "value")
        # A new position or filter starts again at page one; a new page size keeps the page's start.
        for w in (self.seek_partition, self.seek_offset, self.seek_time):
            w.observe(lambda _c: self._seek_changed(), "value")
        for w in (self.filter_key, self.filter_text, self.filter_header, self.sql_filter):
            w.observe(lambda _c: self._filter_changed(), "value")
        self.limit.observe(lambda _c: self._request(), "value")
        self.tail.observe(self._on_tail, "value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.newest_button.on_click(lambda _b: self.newest())
        self.prev_button.on_click(lambda _b: self.prev_page())
        self.next_button.on_click(lambda _b: self.next_page())
        self.export_button.on_click(lambda _b: self.export())
        self.send_to_button.on_click(lambda _b: self.send_shown())

        start_sql(conn)
        self._poller = self._loop("browser", self._step, interval, on_error=self._show_error)
        try:
            self._refresh_topics()
        except Exception as exc:
            self._show_error(exc)
        if topic is not None:
            self.topic.value = topic
        self._poller.start()

    # ------------------------------------------------------------------ topics
    def _admin(self):
        if not hasattr(self, "_admin_client"):
            self._admin_client = admin_client(self.conn)
        return self._admin_client

    def _refresh_topics(self) -> None:
        md = self._admin().list_topics(timeout=3)
        self._partitions = {
            n: len(t.partitions) for n, t in md.topics.items() if not n.startswith("__") and t.error is None
        }
        options = sorted(self._partitions)
        if list(self.topic.options) != options:
            self.topic.options = options
        self._update_partition_options()

    def _update_partition_options(self) -> None:
        count = self._partitions.get(self.topic.value, 0)
        options = [("all", None)] + [(str(p), p) for p in range(count)]
        if list(self.seek_partition.options) != options:
            current = self.seek_partition.value
            with hold(self.seek_partition):
                self.seek_partition.options = options
                self.seek_partition.value = current if current is not None and current < count else None

    def _on_topic(self, _change=None) -> None:
        if self.topic.value and self.topic.value not in self._partitions:
            try:
                self._refresh_topics()
            except Exception as exc:
                self._show_error(exc)
        self._update_partition_options()
        self._shown_signature = None
        self._seek_changed()

    # ------------------------------------------------------------------ reading
    def _on_tail(self, change) -> None:
        if change["new"]:
            self._request()

    def _request(self) -> None:
        """Refresh soon, on the background thread (typing never waits for the cluster)."""
        self._requested = True
        self._poller.poke()

    def newest(self) -> pd.DataFrame:
        """Back to the newest records (clears the seek position and the page)."""
        with hold(self.seek_offset, self.seek_time):
            self.seek_offset.value = -1
            self.seek_time.value = ""
        self._seek_changed()
        return self.refresh()

    def _seek_changed(self) -> None:
        """A new position was asked for: resolve it (ListOffsets) on the next refresh, page one."""
        self._seek_dirty = True
        self.cursor, self._pages = None, []
        self._request()

    def _filter_changed(self) -> None:
        if self.cursor is not None or self._pages:
            self._seek_changed()
        else:
            self._request()

    # ------------------------------------------------------------------ seek and pages
    def offsets_for_time(self, when, partitions: list[int] | None = None) -> dict[int, int]:
        """{partition: the first offset whose timestamp is at or after `when`} of the browser's
        topic, from the brokers (ListOffsets with a timestamp); a partition with no such record
        gives its end offset (the high watermark), as Kafka's consumers seek there.
        `when` is what the `from time` box takes, a `datetime`, or epoch ms."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        topic = self.topic.value.strip()
        if isinstance(when, int):
            ms = when
        else:
            ts = parse_time(when) if isinstance(when, str) else pd.Timestamp(when)
            ms = _epoch_ms(ts.tz_localize("UTC") if ts.tzinfo is None else ts)
        if partitions is None:
            partitions = list(range(self._partitions.get(topic, 0)))
        admin = self._admin()
        out: dict[int, int] = {}
        for spec_of in (lambda: OffsetSpec.for_timestamp(ms), OffsetSpec.latest):
            wanted = [p for p in partitions if out.get(p, -1) < 0]
            if not wanted:
                break
            futures = admin.list_offsets({TopicPartition(topic, p): spec_of() for p in wanted}, request_timeout=10)
            for tp, future in futures.items():
                out[tp.partition] = future.result().offset
        return out

    def _resolve_seek(self) -> None:
        partition = self.seek_partition.value
        partitions = (
            [int(partition)] if partition is not None else list(range(self._partitions.get(self.topic.value, 0)))
        )
        starts: dict[int, int] | None = None
        if self.seek_offset.value is not None and self.seek_offset.value >= 0:
            starts = {p: int(self.seek_offset.value) for p in partitions}
        if self.seek_time.value.strip():
            by_time = self.offsets_for_time(self.seek_time.value, partitions)
            starts = {p: max(by_time[p], (starts or {}).get(p, 0)) for p in partitions}
        self.starts, self._seek_dirty = starts, False

    def next_page(self) -> pd.DataFrame:
        """The `limit` records after the last one shown (in timestamp, partition, offset order)."""
        rows = self.rows
        if rows.empty:
            self.info.value = message("no records shown to page from", "info")
            return rows
        last = rows.loc[rows[["timestamp", "partition", "offset"]].apply(tuple, axis=1).idxmax()]
        self._pages.append(self.cursor)
        self.cursor = ("after", (_epoch_ms(last["timestamp"]), int(last["partition"]), int(last["offset"])))
        self.tail.value = False
        return self.refresh()

    def prev_page(self) -> pd.DataFrame:
        """The page before: the one Next came from, else the `limit` records before the first shown
        (in the whole topic's timestamp, partition, offset order: the seek position is left behind)."""
        if self._pages:
            self.cursor = self._pages.pop()
        else:
            rows = self.rows
            if rows.empty:
                self.info.value = message("no records shown to page from", "info")
                return rows
            first = rows.loc[rows[["timestamp", "partition", "offset"]].apply(tuple, axis=1).idxmin()]
            self.cursor = ("before", (_epoch_ms(first["timestamp"]), int(first["partition"]), int(first["offset"])))
            self.starts = None  # before the seek position: the whole topic, in the table's order
        self.tail.value = False
        return self.refresh()

    def build_query(self, select: str = SELECT) -> str:
        """The SQL the browser runs for its current topic, position, page and filters: one
        `ORDER BY ... LIMIT` query, whatever the topic's size."""
        topic = self.topic.value.strip()
        if not topic:
            raise ValueError("choose a topic")
        conditions = []
        partition = self.seek_partition.value
        if partition is not None:
            conditions.append(f"partition = {int(partition)}")
        if self.seek_time.value.strip():
            parse_time(self.seek_time.value)  # a time nobody can read is an error, not "the newest"
        if self.starts is not None:
            starts = " OR ".join(f'(partition = {int(p)} AND "offset" >= {int(o)})' for p, o in self.starts.items())
            conditions.append(f"({starts or 'false'})")
        if self.cursor is not None:
            direction, key = self.cursor
            conditions.append(_key_after(key) if direction == "after" else _key_before(key))
        if self.filter_key.value:
            conditions.append(f"contains(key, {sql_string(self.filter_key.value)})")
        if self.filter_text.value:
            conditions.append(f"contains(value, {sql_string(self.filter_text.value)})")
        if self.filter_header.value.strip():
            name, has_value, wanted = self.filter_header.value.strip().partition("=")
            test = f"h.key = {sql_string(name.strip())}"
            if has_value:
                test += f" AND decode(h.value) = {sql_string(wanted.strip())}"
            conditions.append(f"len(list_filter(headers, lambda h: {test})) > 0")
        if self.sql_filter.value.strip():
            conditions.append(f"({self.sql_filter.value.strip()})")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        if self._descending():
            order = 'timestamp DESC, partition DESC, "offset" DESC'
        else:
            order = 'timestamp, partition, "offset"'
        return f"SELECT {select} FROM {sql_identifier(topic)}{where} ORDER BY {order} LIMIT {int(self.limit.value)}"

    def _descending(self) -> bool:
        """Newest first (no seek, no page), or a Prev page read backwards (shown oldest first)."""
        if self.cursor is not None:
            return self.cursor[0] == "before"
        return self.starts is None

    def _page_note(self, rows: pd.DataFrame) -> str:
        if self.starts is None and self.cursor is None:
            return ""
        spans = [f"p{p} {int(g.min())}–{int(g.max())}" for p, g in rows.groupby("partition")["offset"] if len(g)]
        page = f"page {len(self._pages) + 1}" if self.cursor is None or self.cursor[0] == "after" else "earlier page"
        return f" · {page}: " + (", ".join(spans[:4]) + (" …" if len(spans) > 4 else "") if spans else "no records")

    def _step(self) -> None:
        if self._requested or self.tail.value:
            self._requested = False
            self._refresh()

    def refresh(self) -> pd.DataFrame:
        """Read the records now; returns what is shown (also `browser.rows`)."""
        self._requested = False
        return super().refresh()

    def _result(self) -> pd.DataFrame:
        return self.rows

    def _refresh_locked(self) -> None:
        if connection_closed(self.conn) or self._closed:
            return
        if not self.topic.value.strip():
            self.info.value = message("choose a topic", "info")
            return
        if self.topic.value not in self._partitions:
            self._refresh_topics()
        if self._seek_dirty:
            self._resolve_seek()
        query = self.build_query()
        frame = self.conn.sql(self.build_query(select=f"{SELECT}, value_bytes"))  # raw bytes: framed values
        if self.cursor is not None and self.cursor[0] == "before":
            frame = frame.iloc[::-1].reset_index(drop=True)  # read backwards, shown oldest first
        rows = pd.DataFrame(
            {
                "partition": frame["partition"].astype(int),
                "offset": frame["offset"].astype("int64"),
                "timestamp": frame["timestamp"],
                "key": frame["key"],
                "value": self._values(frame),
                "headers": [_headers_text(h) for h in frame["headers"]],
            },
            columns=COLUMNS,
        )
        self.rows, self.query_text, self.error = rows, query, ""
        signature = (query, tuple(zip(rows["partition"], rows["offset"], strict=False)))
        note = f"{len(rows)} records{self._page_note(rows)} · {datetime.now():%H:%M:%S}" + (
            " · tailing" if self.tail.value else ""
        )
        cleaner = _cleaner_note(self.conn, self.topic.value)
        if cleaner:
            note += " · " + cleaner
        if self._closed or connection_closed(self.conn):
            return
        newest = self.starts is None and self.cursor is None
        self.next_button.disabled = newest  # nothing is newer than the newest
        self.next_button.tooltip = "already the newest records" if newest else "the page after"
        if signature == self._shown_signature:
            self.info.value = message(note, "info")
            return
        self._shown_signature = signature
        filtered = " WHERE " in query
        table = frame_html(
            rows,
            max_rows=MAX_ROWS,
            css_class="workbench-browser-rows",
            empty="no records match" if filtered else "no records yet",
        )
        with hold(self.table, self.info):
            self.table.value = table
            self.info.value = message(note, "info")

    def _values(self, frame: pd.DataFrame) -> list:
        """The value column: Confluent-framed values (magic byte, schema id) decoded by their
        registered schema and shown as JSON, the others as the SQL view's text."""
        url = registry_url(self.conn)
        out = []
        for text, raw in zip(frame["value"], frame["value_bytes"], strict=False):
            decoded = decode_for_display(url, raw) if framed_id(raw) is not None else None
            out.append(decoded if decoded is not None else text)
        return out

    # ------------------------------------------------------------------ send to another topic
    def send_shown(self, topic: str | None = None):
        """Re-produce the records the browser shows (its topic, position and filters), byte-exact,
        to `topic` (default: the `send to` box): `conn.produce_from` with the browser's query.
        Returns the `ProduceFromResult`, or None after showing the problem."""
        target = (topic or self.send_to.value or "").strip()
        try:
            if not target:
                raise ValueError("type the topic to send the records to")
            if target == self.topic.value.strip():
                raise ValueError("choose another topic than the one shown (that would duplicate its records)")
            query = self.build_query(select="*")
            result = self.conn.produce_from(query, topic=target)
        except Exception as exc:
            self.send_to_message.value = message(f"not sent: {short_error(exc)}")
            return None
        self.send_to_message.value = message(
            f"sent {result.records} records to {target} ({result.seconds:.2f} s, byte-exact)", "ok"
        )
        return result

    # ------------------------------------------------------------------ export
    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the rows shown to a CSV file (`export_path`, default `<topic>.csv`) and offer
        them as a download link; returns the file written."""
        rows = self.rows
        text = rows.to_csv(index=False)
        target = Path(path or self.export_path.value.strip() or f"{self.topic.value or 'records'}.csv")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            self.export_link.value = message(f"cannot write {target}: {exc}")
            return None
        self.last_export = target
        data = base64.b64encode(text.encode("utf-8")).decode("ascii")
        self.export_link.value = (
            f'<a class="workbench-export-link" download="{html.escape(target.name)}" '
            f'href="data:text/csv;charset=utf-8;base64,{data}">download {len(rows)} rows as CSV</a>'
            f" · written to <code>{html.escape(str(target))}</code>"
        )
        return target
