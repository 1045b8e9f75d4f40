"""The console-style views of issue 18 against real brokers: the topic overview (size, records,
rates as sparklines from the connection's shared histories, retention, configs) and the topic
browser's pages and seek by time (ListOffsets by timestamp). Driven as a person would, checked by
what the widgets show."""

from __future__ import annotations

import re

import pandas as pd

from tests.integration.test_widgets import create_topic
from tests.support import wait_until
from workbench.sql.lag_history import lag_history_of
from workbench.sql.offset_history import offset_history_of
from workbench.widgets import TopicOverview


def sparkline_value(cell_html: str, column: int) -> str:
    values = re.findall(r'class="workbench-sparkline-value">([^<]*)<', cell_html)
    return values[column]


def sparkline_max(tooltip: str) -> float:
    return float(re.search(r"max ([\d,.]+)/s", tooltip).group(1).replace(",", ""))


def test_topic_overview_shows_size_records_rates_retention_and_configs(fresh_cluster, topic_name):
    c = fresh_cluster(1)
    create_topic(c, topic_name, 2, config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    producer = c.producer()
    for i in range(40):
        producer.send(topic_name, {"i": i, "pad": "x" * 100}, partition=i % 2)
    producer.flush()
    overview = TopicOverview(c, live=False)
    engine = c.sql_engine
    offsets, lags = offset_history_of(engine, start=False), lag_history_of(engine, start=False)
    try:
        assert "workbench-topics" in overview._dom_classes
        # Two samples with 60 records produced between them: a produce rate.
        offsets.sample()
        for i in range(60):
            producer.send(topic_name, {"i": i}, partition=i % 2)
        producer.flush()
        wait_until(lambda: offsets.sample().get(topic_name) == 100, message="the high watermarks to reach 100")
        # A group that commits 30 records between two lag samples: a consume rate.
        group = f"g-{topic_name}"
        consumer = c.consumer(group, topic_name)
        assert consumer.read(10, timeout=15, idle=0.3)
        consumer.commit()
        lags.sample()
        assert len(consumer.read(30, timeout=15, idle=0.3)) >= 1
        consumer.commit()
        lags.sample()

        frame = overview.refresh()
        row = frame[frame.topic == topic_name].iloc[0]
        assert row.partitions == 2 and row.records == 100 and row.size_bytes > 100 * 20
        assert row["retention.ms"] == "3600000" and row["cleanup.policy"] == "delete"
        assert row.configs["retention.ms"] == "3600000"
        # The rate now may already be 0 (the connection's own samplers run too); the window's
        # maximum is the burst.
        assert row.produce_per_s >= 0 and row.consume_per_s >= 0
        assert max(v for _t, v in offsets.produce_rates(topic_name)) > 0
        html = overview.table.value
        assert html.count('class="workbench-sparkline"') == 2 and "<polyline" in html
        produce_tip, consume_tip = re.findall(r'class="workbench-sparkline" title="([^"]*)"', html)
        assert sparkline_max(produce_tip) > 0 and sparkline_max(consume_tip) > 0
        assert "1 h" in html and topic_name in html and "retention.ms" in html
        assert sparkline_value(html, 0).endswith("/s") and sparkline_value(html, 0) != "–/s"

        # The history is the connection's: an overview opened later shows the rates at once.
        later = TopicOverview(c, live=False)
        try:
            again = later.refresh()
            assert again[again.topic == topic_name].iloc[0].produce_per_s is not None
            assert 'class="workbench-sparkline"' in later.table.value
        finally:
            later.close()
        consumer.close()
    finally:
        overview.close()


def test_topic_browser_seeks_by_time_with_list_offsets_and_pages_without_gaps(cluster, topic_name):
    from workbench.widgets import TopicBrowser

    create_topic(cluster, topic_name, 2)
    base = 1_700_000_000_000
    producer = cluster.producer()
    for i in range(30):  # record i at base + i s, alternating partitions: partition i%2, offset i//2
        parity = "even" if i % 2 == 0 else "odd"
        producer.send(
            topic_name, {"i": i}, key=f"k{i}", partition=i % 2, timestamp=base + i * 1000, headers={"parity": parity}
        )
    producer.flush()
    browser = TopicBrowser(cluster, topic_name, tail=False, limit=5)
    try:
        wait_until(lambda: len(browser.refresh()) == 5, message="the browser to read the topic")
        assert browser.next_button.disabled  # the newest records: nothing after them
        # Seek by time: ListOffsets finds each partition's first record at or after the time.
        when = pd.Timestamp(base + 10_000, unit="ms", tz="UTC")
        assert browser.offsets_for_time(when.isoformat()) == {0: 5, 1: 5}
        browser.seek_time.value = when.strftime("%Y-%m-%d %H:%M:%S")
        keys = lambda: list(browser.rows.key)  # noqa: E731
        browser.refresh()
        assert browser.starts == {0: 5, 1: 5} and keys() == ["k10", "k11", "k12", "k13", "k14"]
        assert "page 1" in browser.info.value and "LIMIT 5" in browser.query_text
        assert not browser.next_button.disabled
        browser.next_button.click()
        assert keys() == ["k15", "k16", "k17", "k18", "k19"] and "page 2" in browser.info.value
        browser.next_page()
        assert keys() == ["k20", "k21", "k22", "k23", "k24"]
        browser.prev_button.click()
        assert keys() == ["k15", "k16", "k17", "k18", "k19"]
        browser.prev_page()
        assert keys() == ["k10", "k11", "k12", "k13", "k14"]
        # Before the seek position: the five records before the first one shown.
        browser.seek_time.value = ""
        browser.seek_offset.value = 5
        browser.refresh()
        assert keys() == ["k10", "k11", "k12", "k13", "k14"]
        browser.prev_page()
        assert keys() == ["k5", "k6", "k7", "k8", "k9"] and "earlier page" in browser.info.value

        # Every page from offset 0, to the end: each record exactly once, in timestamp order (the
        # out-of-order k30 first), however the pages cut the partitions.
        producer.send(topic_name, {"i": 30}, key="k30", partition=0, timestamp=base - 5000)  # offset 15
        producer.flush()

        def walk(limit: int) -> list[str]:
            browser.limit.value = limit
            browser.seek_offset.value = 0
            browser.refresh()
            seen = list(browser.rows.key)
            for _ in range(40):
                page = list(browser.next_page().key)
                if not page:
                    return seen
                seen += page
            raise AssertionError("paging did not end")

        assert walk(7) == ["k30", *[f"k{i}" for i in range(30)]]
        # A record without headers shows an empty cell, never pandas' <NA> (issue 18).
        browser.seek_offset.value = 15
        browser.seek_partition.value = 0
        browser.refresh()
        assert list(browser.rows.key) == ["k30"] and browser.rows.headers.tolist() == [""]
        assert "NA&gt;" not in browser.table.value and "<NA>" not in browser.table.value
        browser.seek_partition.value = None
        # With a header filter the pages hold only matching records, still each once.
        browser.filter_header.value = "parity=even"
        assert walk(4) == [f"k{i}" for i in range(0, 30, 2)]
        browser.filter_header.value = ""

        # One partition from an offset; a time after every record: the end, no records.
        browser.limit.value = 5
        browser.seek_partition.value = 1
        browser.seek_offset.value = 12
        assert list(browser.refresh().key) == ["k25", "k27", "k29"]
        browser.seek_offset.value = -1
        browser.seek_time.value = "2100-01-01"
        assert browser.refresh().empty and browser.starts == {1: 15}
        browser.seek_partition.value = None
        browser.newest()
        assert browser.starts is None and browser.cursor is None and browser.rows.key.iloc[0] == "k29"
    finally:
        browser.close()


def test_a_dashboard_samples_rates_before_its_topics_tab_is_shown(fresh_cluster, topic_name):
    """The dashboard pauses hidden tabs; the rate history is the connection's and runs anyway, so
    the Topics tab, shown later, draws what was produced while it was hidden."""
    c = fresh_cluster(1)
    create_topic(c, topic_name, 1)
    dash = c.dashboard(topic=topic_name)
    try:
        history = offset_history_of(c.sql_engine, start=False)
        wait_until(lambda: history.samples >= 1, message="a sample while the Topics tab is hidden")
        producer = c.producer()
        for i in range(20):
            producer.send(topic_name, {"i": i})
        producer.flush()
        wait_until(
            lambda: any(v > 0 for _t, v in history.produce_rates(topic_name)),
            message="a produce rate sampled while the tab is hidden",
        )
        assert dash.tabs.selected_index == 0
        dash.tabs.selected_index = 2

        def produce_max() -> float:
            tips = re.findall(r'class="workbench-sparkline" title="([^"]*)"', dash.overview.table.value)
            return sparkline_max(tips[0]) if tips and "max" in tips[0] else 0.0

        wait_until(lambda: produce_max() > 0, message="the Topics tab to draw the rate sampled while hidden")
        assert topic_name in set(dash.overview.topics.topic)
    finally:
        dash.close()
