"""The console-style views of issue 18 against real brokers: the topic overview (size, records,
rates as sparklines from the connection's shared histories, retention, configs) and the topic
browser's pages and seek by time (ListOffsets by timestamp). Driven as a person would, checked by
what the widgets show."""

from __future__ import annotations

import re

from tests.integration.test_widgets import create_topic
from tests.support import wait_until
from workbench.sql.lag_history import lag_history_of
from workbench.sql.offset_history import offset_history_of
from workbench.widgets import TopicOverview


def sparkline_value(cell_html: str, column: int) -> str:
    values = re.findall(r'class="workbench-sparkline-value">([^<]*)<', cell_html)
    return values[column]


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
        assert row.produce_per_s > 0 and row.consume_per_s > 0
        html = overview.table.value
        assert html.count('class="workbench-sparkline"') >= 2 and ("<polyline" in html or "<circle" in html)
        assert "1 h" in html and topic_name in html and "retention.ms" in html
        assert sparkline_value(html, 0) not in ("–/s", "0/s")

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
