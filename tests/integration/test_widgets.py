"""Notebook widgets against real brokers, driven as a person would (`.click()`, setting values),
checked by what they show and by the records that reached the cluster. No browser needed."""

from __future__ import annotations

import csv
import json
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition

import workbench
from tests.support import wait_until
from workbench.client import Delivery
from workbench.widgets import (
    BurrowEvaluator,
    ClusterView,
    Dashboard,
    GroupMonitor,
    ProducerPanel,
    SqlPanel,
    TopicBrowser,
)

WIDGET_THREADS = ("workbench-widget-", "workbench-leader-history", "workbench-sql-watch")


def create_topic(cluster, name: str, partitions: int, **kwargs) -> None:
    """Create a topic and wait until every broker's metadata lists it (widgets ask any broker)."""
    from confluent_kafka.admin import AdminClient

    cluster.create_topic(name, partitions=partitions, **kwargs)
    admins = [AdminClient({"bootstrap.servers": server}) for server in cluster.bootstrap_servers.split(",")]

    def known(admin) -> bool:
        topic = admin.list_topics(timeout=5).topics.get(name)
        return topic is not None and topic.error is None and len(topic.partitions) == partitions

    wait_until(lambda: all(known(a) for a in admins), message=f"every broker to know {name}")


def widget_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(WIDGET_THREADS) and t.is_alive()}


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 15.0) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append(msg)
        end = time.monotonic() + 0.3  # and nothing more than expected
        while time.monotonic() < end:
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


def text_of(widget) -> str:
    return widget.value


# ---------------------------------------------------------------------------------------------- producer


def test_producer_send_shows_the_delivery_report_and_the_record_arrives(cluster, topic_name):
    create_topic(cluster, topic_name, 3)
    panel = ProducerPanel(cluster, topic=topic_name)
    try:
        assert "workbench-producer" in panel._dom_classes
        assert panel.send_button.description == "Send" and "workbench-send" in panel.send_button._dom_classes
        wait_until(lambda: topic_name in panel.topic.options, message="the new topic in the dropdown")
        panel.key.value = "customer-7"
        panel.value.value = '{"id": 1, "amount": 9.5}'
        panel.headers.value = '{"source": "notebook", "n": 2}'
        panel.partition.value = 2
        assert not panel.send_button.disabled
        panel.send_button.click()
        delivery = wait_until(
            lambda: isinstance(panel.last_delivery, Delivery) and panel.last_delivery,
            message="a delivery report",
        )
        assert (delivery.topic, delivery.partition, delivery.offset) == (topic_name, 2, 0)
        assert "partition 2 offset 0" in panel.status.value
        [msg] = consume_all(cluster.bootstrap_servers, topic_name, 3, 1)
        assert msg.partition() == 2 and msg.key() == b"customer-7"
        assert json.loads(msg.value()) == {"id": 1, "amount": 9.5}
        assert dict(msg.headers()) == {"source": b"notebook", "n": b"2"}
    finally:
        panel.close()


def test_bad_input_is_shown_inline_and_disables_send(cluster, topic_name):
    create_topic(cluster, topic_name, 1)
    panel = ProducerPanel(cluster, topic=topic_name)
    try:
        panel.value.value = '{"id": 1,'
        assert panel.send_button.disabled
        assert "not valid JSON" in panel.value_error.value
        assert panel.send() is False and "not sent" in panel.status.value
        panel.value.value = '{"id": 1}'
        assert not panel.send_button.disabled and panel.value_error.value == ""
        panel.headers.value = "[1, 2]"
        assert panel.send_button.disabled and "must be a JSON object" in panel.headers_error.value
        panel.headers.value = ""
        # A topic that does not exist: Send waits for Create.
        missing = topic_name + "-new"
        panel.topic.value = missing
        assert panel.send_button.disabled and "does not exist" in panel.topic_status.value
        panel.new_partitions.value = 2
        panel.create_button.click()
        assert "created topic" in panel.topic_status.value
        wait_until(lambda: missing in cluster.topics(), message="the topic created")
        assert not panel.send_button.disabled
        assert [label for label, _ in panel.partition.options] == ["auto", "0", "1"]
        panel.topic.value = "not a valid name!"
        assert panel.send_button.disabled and "not a valid topic name" in panel.topic_status.value
        panel.topic.value = topic_name
        # A bad rate keeps the generator from starting, with the reason shown.
        panel.generator_rate.value = -5
        assert panel.generator_start.disabled and "rate must be" in panel.generator_status.value
        assert panel.start_generator() is False and not panel.generator_running
        panel.generator_rate.value = 10
        assert not panel.generator_start.disabled
        assert consume_all(cluster.bootstrap_servers, topic_name, 1, 0, timeout=0.5) == []
    finally:
        panel.close()


def test_generator_replays_a_template_at_a_rate_and_stops(cluster, topic_name, tmp_path):
    create_topic(cluster, topic_name, 2)
    panel = ProducerPanel(cluster, topic=topic_name)
    try:
        panel.generator_mode.value = "template"
        panel.generator_template.value = '{"n": {i}, "at": "{now}"}'
        panel.generator_key.value = "k{i}"
        panel.generator_rate.value = 40
        panel.generator_limit.value = 20
        panel.generator_start.click()
        assert panel.generator_running and not panel.generator_stop.disabled
        wait_until(lambda: not panel.generator_running, message="the generator to finish")
        assert panel.generated == 20 and "done · 20 delivered" in panel.generator_status.value
        assert not panel.generator_start.disabled and panel.generator_stop.disabled
        records = consume_all(cluster.bootstrap_servers, topic_name, 2, 20)
        assert sorted(json.loads(m.value())["n"] for m in records) == list(range(20))
        assert {m.key() for m in records} == {f"k{i}".encode() for i in range(20)}
        # Paced at the rate asked: 20 records at 40/s are created over at least 19/40 s (the
        # records' own timestamps, so a loaded machine can only make the span longer).
        stamps = sorted(m.timestamp()[1] for m in records)
        assert stamps[-1] - stamps[0] >= 400, stamps

        # A dataset file, once through, keyed by a field; then an endless template stopped by hand.
        dataset = tmp_path / "tiny.jsonl"
        dataset.write_text("".join(json.dumps({"order": i, "customer": f"c{i % 2}"}) + "\n" for i in range(5)))
        panel.generator_mode.value = "dataset"
        panel.generator_file.value = str(dataset)
        panel.generator_key.value = "{customer}"
        panel.generator_limit.value = 0
        panel.generator_rate.value = 200
        assert panel.start_generator()
        wait_until(lambda: not panel.generator_running, message="the dataset replay")
        assert panel.generated == 5
        records = consume_all(cluster.bootstrap_servers, topic_name, 2, 25)
        replayed = [json.loads(m.value()) | {"key": m.key()} for m in records if b"order" in m.value()]
        assert len(records) == 25 and sorted(r["order"] for r in replayed) == list(range(5))
        assert all(r["key"] == r["customer"].encode() for r in replayed)

        panel.generator_mode.value = "template"
        panel.generator_limit.value = 0
        panel.generator_rate.value = 50
        assert panel.start_generator()
        time.sleep(0.4)
        panel.generator_stop.click()
        wait_until(lambda: not panel.generator_running, message="the generator to stop")
        count = panel.generated
        assert 5 <= count < 60 and "stopped" in panel.generator_status.value
        time.sleep(0.3)
        assert panel.generated == count
    finally:
        panel.close()


# ---------------------------------------------------------------------------------------------- groups


def test_group_monitor_shows_lag_and_resets_an_empty_group(cluster, topic_name):
    create_topic(cluster, topic_name, 2)
    producer = cluster.producer()
    for i in range(10):
        producer.send(topic_name, {"i": i}, partition=0, timestamp=int(time.time() * 1000) - 3000)
    producer.flush()
    group = f"g-{topic_name}"
    committer = cluster.consumer(group)
    committer.raw.commit(offsets=[TopicPartition(topic_name, 0, 3)], asynchronous=False)
    committer.close()

    monitor = GroupMonitor(cluster, live=False)
    try:
        assert "workbench-groups" in monitor._dom_classes
        monitor.refresh()
        row = monitor.lag[(monitor.lag.group_id == group) & (monitor.lag.partition == 0)].iloc[0]
        assert (row.committed_offset, row.log_end_offset, row.lag) == (3, 10, 7)
        assert row.lag_seconds >= 2.5
        assert monitor.status[group] == "STOP"  # lag, and no member committing
        assert group in monitor.groups_table.value and "STOP" in monitor.groups_table.value
        assert "<svg" in monitor.plot.value and group in monitor.plot.value

        assert monitor.reset_group(group, to="earliest") == {(topic_name, 0): 0, (topic_name, 1): 0}
        assert "reset" in monitor.reset_message.value
        check = Consumer({"bootstrap.servers": cluster.bootstrap_servers, "group.id": group})
        committed = check.committed([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10)
        check.close()
        assert [tp.offset for tp in committed] == [0, 0]
        monitor.refresh()
        assert monitor.lag[monitor.lag.group_id == group]["lag"].sum() == 10

        # The reset controls, and a time after every record: the end of each partition.
        monitor.reset_group_select.value = group
        monitor.reset_to.value = "timestamp"
        monitor.reset_timestamp.value = "2100-01-01 00:00:00"
        monitor.reset_button.click()
        monitor.refresh()
        assert monitor.lag[monitor.lag.group_id == group]["lag"].sum() == 0
        assert monitor.status[group] == "OK"
        assert monitor.reset_group(group, to="next tuesday") is None
        assert "cannot read" in monitor.reset_message.value

        # A group with an active member is refused, readably.
        active = cluster.consumer(f"{group}-active", topic_name)
        try:
            wait_until(lambda: active.poll(0.2) is not None, message="the active consumer to read")
            assert monitor.reset_group(f"{group}-active", to="earliest") is None
            assert "active member" in monitor.reset_message.value
        finally:
            active.close()
    finally:
        monitor.close()


def test_burrow_rules_over_a_sliding_window():
    ev = BurrowEvaluator(window=5, stall_after=10, stop_after=60)
    for t, (committed, lag) in enumerate([(0, 5), (5, 8), (10, 12), (15, 20)]):
        ev.observe(float(t), "slow", "STABLE", [("t", 0, committed, lag)])
    assert ev.status("slow") == "WARN"  # lag grew at every sample while offsets moved
    for t, lag in enumerate([5, 9, 3, 4]):
        ev.observe(float(t), "fine", "STABLE", [("t", 0, t * 10, lag)])
    assert ev.status("fine") == "OK"
    for t in range(0, 15, 3):
        ev.observe(float(t), "stuck", "STABLE", [("t", 0, 42, 7)])
    assert ev.status("stuck") == "STALL"  # members, offsets still for 12 s, lag > 0
    ev.observe(70.0, "stuck", "STABLE", [("t", 0, 42, 7)])
    # A group with active members is never STOP (that is the state the reset section accepts,
    # "no active members"): no progress for over a minute is still STALL (issue 18).
    assert ev.status("stuck") == "STALL"
    ev.observe(71.0, "stuck", "STABLE", [("t", 0, 30, 19)])
    assert ev.status("stuck") == "ERR"  # the committed offset went backwards (Burrow's rewind)
    ev.observe(0.0, "gone", "EMPTY", [("t", 0, 3, 7), ("t", 1, 5, 0)])
    assert ev.status("gone") == "STOP" and ev.partition_status("gone", "t", 1) == "OK"
    ev.observe(0.0, "idle", "EMPTY", [("t", 0, 9, 0)])
    assert ev.status("idle") == "OK"  # nothing to consume is not a problem


# ---------------------------------------------------------------------------------------------- cluster


def test_cluster_view_kill_and_restart_with_an_election_on_the_timeline(fresh_cluster, topic_name):
    c = fresh_cluster(3)
    create_topic(c, topic_name, 3, replication_factor=3)
    view = ClusterView(c, interval=0.5)
    try:
        assert "workbench-cluster" in view._dom_classes
        assert sorted(view.kill_buttons) == sorted(view.restart_buttons) == [1, 2, 3]
        wait_until(lambda: topic_name in view.grid.value, message="the partition grid")
        assert view.brokers["alive"].all() and view.brokers["controller"].sum() == 1
        assert topic_name in view.grid.value and "workbench-in-sync" in view.grid.value
        victim = int(view.partitions[view.partitions.topic == topic_name].iloc[0].leader)

        view.kill_buttons[victim].click()
        assert "killed broker" in view.action_message.value
        wait_until(lambda: not view.brokers.set_index("id").alive[victim], message="the broker shown down")
        wait_until(lambda: (view.timeline.old_leader == victim).any(), timeout=20, message="an election")
        event = view.timeline[view.timeline.old_leader == victim].iloc[0]
        assert event.new_leader != victim and "left" in event.reason
        wait_until(lambda: "workbench-under-replicated" in view.grid.value, message="under-replicated cells")
        assert view.kill_buttons[victim].disabled
        wait_until(
            lambda: f"broker {victim} left the cluster" in view.timeline_table.value,
            message="the election in the timeline table",
        )
        assert "<line" in view.timeline_strip.value

        view.restart_buttons[victim].click()
        assert "restarted broker" in view.action_message.value, view.action_message.value
        wait_until(
            lambda: view.brokers.set_index("id").alive[victim],
            timeout=30,
            message=f"the broker back ({view.info.value}, {view.brokers.to_dict('records')})",
        )
        wait_until(lambda: not view.kill_buttons[victim].disabled, message="Kill enabled again")
    finally:
        view.close()


# ---------------------------------------------------------------------------------------------- browser


def test_topic_browser_tails_seeks_filters_and_exports(cluster, topic_name, tmp_path):
    create_topic(cluster, topic_name, 2)
    producer = cluster.producer()
    for i in range(10):
        producer.send(topic_name, {"i": i, "name": f"n{i}"}, key=f"k{i}", partition=i % 2, headers={"h": f"v{i}"})
    producer.flush()
    browser = TopicBrowser(cluster, topic_name)
    panel = ProducerPanel(cluster, topic=topic_name)
    try:
        assert "workbench-browser" in browser._dom_classes
        assert "workbench-browser-table" in browser.table._dom_classes
        rows = browser.refresh()
        assert len(rows) == 10 and list(rows.columns) == [
            "partition",
            "offset",
            "timestamp",
            "key",
            "value",
            "headers",
        ]
        assert '"name":"n3"' in browser.table.value.replace("&quot;", '"') or "n3" in browser.table.value
        assert json.loads(rows[rows.key == "k4"].iloc[0]["headers"]) == {"h": "v4"}

        # Tailing: a record sent from the producer panel shows up by itself.
        panel.value.value = '{"marker": "sent-from-the-panel"}'
        panel.send_button.click()
        wait_until(lambda: "sent-from-the-panel" in browser.table.value, message="the new record in the table")
        assert browser.rows.iloc[0]["value"] == '{"marker":"sent-from-the-panel"}'  # newest first

        browser.tail.value = False
        browser.seek_partition.value = 0
        browser.seek_offset.value = 3
        rows = browser.refresh()
        assert set(rows.partition) == {0} and rows.offset.min() >= 3 and rows.offset.is_monotonic_increasing
        browser.newest()
        browser.seek_partition.value = None
        browser.seek_time.value = "2100-01-01"
        assert browser.refresh().empty
        browser.seek_time.value = "yesterday-ish"
        browser.refresh()
        assert "cannot read" in browser.info.value
        browser.seek_time.value = ""

        browser.filter_text.value = "n7"
        assert browser.refresh().key.tolist() == ["k7"]
        browser.filter_text.value = ""
        browser.filter_key.value = "k2"
        assert browser.refresh().key.tolist() == ["k2"]
        browser.filter_key.value = ""
        browser.filter_header.value = "h=v3"  # by header name and value (issue 18)
        assert list(browser.refresh().key) == ["k3"]
        browser.filter_header.value = "h"
        assert len(browser.refresh()) == 10
        browser.filter_header.value = ""
        browser.sql_filter.value = "i >= 8"
        assert sorted(browser.refresh().key) == ["k8", "k9"]
        browser.sql_filter.value = "no_such_column = 1"
        browser.refresh()
        assert "no_such_column" in browser.info.value and sorted(browser.rows.key) == ["k8", "k9"]
        browser.sql_filter.value = "i >= 8"
        browser.refresh()

        browser.export_path.value = str(tmp_path / "out" / "shown.csv")
        browser.export_button.click()
        with open(tmp_path / "out" / "shown.csv", newline="") as f:
            exported = list(csv.DictReader(f))
        assert sorted(r["key"] for r in exported) == ["k8", "k9"]
        assert 'href="data:text/csv;charset=utf-8;base64,' in browser.export_link.value

        # Send the records shown (the filter keeps k8, k9) to another topic, byte-exact (issue 18).
        target = topic_name + "-copy"
        create_topic(cluster, target, 1)
        browser.send_to.value = target
        browser.send_to_button.click()
        assert "sent 2 records" in browser.send_to_message.value, browser.send_to_message.value
        copied = consume_all(cluster.bootstrap_servers, target, 1, 2)
        assert sorted(m.key() for m in copied) == [b"k8", b"k9"]
        assert sorted(m.headers() for m in copied) == [[("h", b"v8")], [("h", b"v9")]]
        assert browser.send_shown(topic_name) is None and "another topic" in browser.send_to_message.value

        browser.topic.value = "no-such-topic-here"
        browser.refresh()
        assert "no topic or table" in browser.info.value
    finally:
        browser.close()
        panel.close()


# ---------------------------------------------------------------------------------------------- SQL


def test_sql_panel_runs_shows_errors_keeps_history_and_goes_live(cluster, topic_name):
    create_topic(cluster, topic_name, 1)
    producer = cluster.producer()
    for i in range(3):
        producer.send(topic_name, {"amount": i})
    producer.flush()
    sql = SqlPanel(cluster)
    try:
        assert "workbench-sql" in sql._dom_classes
        count = f'SELECT count(*) AS n, sum(amount) AS total FROM "{topic_name}"'
        sql.query.value = count
        sql.run_button.click()
        assert sql.result["n"].tolist() == [3] and sql.result["total"].tolist() == [3]
        assert " ms" in sql.elapsed.value and "1 rows" in sql.elapsed.value
        assert sql.error.value == "" and "<table" in sql.output.value

        sql.query.value = "SELECT * FROM no_such_table_anywhere"
        sql.run_button.click()  # no exception: the message is shown
        assert "no topic or table named" in sql.error.value and "Traceback" not in sql.error.value
        # The old result goes (issue 18): under the error it looked like this query's answer.
        assert sql.result is None and "<table" not in sql.output.value
        sql.query.value = "SELEC 1"
        sql.run_button.click()
        assert "Parser Error" in sql.error.value

        assert sql.queries == ["SELEC 1", "SELECT * FROM no_such_table_anywhere", count]
        sql.history.value = count  # picking from the history fills the query box
        assert sql.query.value == count

        sql.live.value = True
        wait_until(lambda: "live" in sql.elapsed.value, message="a live result")
        for _ in range(2):
            producer.send(topic_name, {"amount": 10})
        producer.flush()
        wait_until(lambda: sql.result is not None and sql.result["n"].tolist() == [5], message="the live re-run")
        sql.live.value = False
        assert not any(t.name == "workbench-sql-watch" for t in threading.enumerate())
    finally:
        sql.close()


# ---------------------------------------------------------------------------------------------- together


def test_dashboard_over_workbench_connect_has_no_kill_buttons(cluster, topic_name, tmp_path):
    create_topic(cluster, topic_name, 1)
    conn = workbench.connect(cluster.bootstrap_servers, data_dir=str(tmp_path / "cache"))
    dash = conn.dashboard(topic=topic_name)
    try:
        assert isinstance(dash, Dashboard) and "workbench-dashboard" in dash._dom_classes
        assert [dash.tabs.get_title(i) for i in range(6)] == ["Produce", "Browse", "Topics", "Groups", "Cluster", "SQL"]
        assert dash.view.kill_buttons == {} and dash.view.restart_buttons == {}
        assert "workbench-kill" not in str(dash.view.children)
        dash.producer.value.value = '{"via": "connect"}'
        dash.producer.send_button.click()
        wait_until(
            lambda: '"via":"connect"' in "".join(dash.browser.rows["value"].dropna()),
            message="the record in the browser",
        )
        dash.tabs.selected_index = 4
        wait_until(lambda: not dash.view.brokers.empty and dash.view.brokers["alive"].all(), message="the brokers")
        dash.tabs.selected_index = 5
        assert dash.sql.run(f'SELECT value FROM "{topic_name}"')["value"].tolist() == ['{"via":"connect"}']
    finally:
        dash.close()
    # The widgets' own threads end with the dashboard; the leader history is the connection's (a
    # dashboard opened later shows the past, issue 18) and ends with `conn.close()`.
    wait_until(
        lambda: not {t for t in widget_threads() if t.name != "workbench-leader-history"},
        timeout=10,
        message="every widget thread to end",
    )
    conn.close()
    wait_until(lambda: not widget_threads(), timeout=10, message="the connection's leader history to end")


def test_close_stops_every_thread_and_so_does_stopping_the_cluster(fresh_cluster, topic_name):
    c = fresh_cluster(1)
    create_topic(c, topic_name, 1)
    before = widget_threads()
    dash = c.dashboard(topic=topic_name)
    dash.producer.generator_mode.value = "template"
    dash.producer.generator_rate.value = 100
    dash.producer.start_generator()
    dash.sql.query.value = f'SELECT count(*) FROM "{topic_name}"'
    dash.sql.live.value = True
    for i in range(6):  # visit every tab so every live loop has run
        dash.tabs.selected_index = i
        time.sleep(0.2)
    started = widget_threads() - before
    assert {t.name for t in started} >= {
        "workbench-widget-producer-generator",
        "workbench-widget-browser",
        "workbench-widget-groups",
        "workbench-widget-topics",
        "workbench-widget-cluster",
        "workbench-leader-history",
        "workbench-sql-watch",
    }
    dash.close()
    # (The leader history is the connection's: it outlives a dashboard and ends with the cluster.)
    assert not [t for t in started if t.is_alive() and t.name != "workbench-leader-history"]

    # Without close(): stopping the cluster ends the widgets' loops too.
    view, monitor, browser = c.cluster_view(), c.group_monitor(), c.topic_browser(topic_name)
    producer, sql, overview = c.producer_panel(topic=topic_name), c.sql_panel(), c.topic_overview_panel()
    time.sleep(0.5)
    started = widget_threads() - before
    assert started
    c.stop()
    wait_until(lambda: not [t for t in started if t.is_alive()], timeout=15, message="threads to end")
    try:
        # Every widget says the cluster is stopped, and no action button is left to click (issue 18:
        # the view said "3/3 brokers alive", the browser "tailing", and Kill reported success).
        for w in (view, monitor, browser, producer, sql, overview):
            assert "workbench-stopped" in w._status_widget().value, type(w).__name__
            assert "cluster is stopped" in w._status_widget().value
            buttons = w._action_buttons()
            assert buttons and all(b.disabled for b in buttons), type(w).__name__
            assert all("cluster is stopped" in b.tooltip for b in buttons), type(w).__name__
        assert "tailing" not in browser.info.value and "alive" not in view.info.value
        assert "● alive" not in view.brokers_table.value and not view.brokers["alive"].any()
        assert not view.kill(1) and "stopped" in view.action_message.value
    finally:
        for w in (view, monitor, browser, producer, sql, overview):
            w.close()


@pytest.mark.parametrize(
    "factory", ["producer_panel", "group_monitor", "cluster_view", "topic_browser", "sql_panel", "topic_overview_panel"]
)
def test_each_widget_has_its_css_class(cluster, factory):
    widget = getattr(cluster, factory)()
    try:
        name = {
            "producer_panel": "producer",
            "group_monitor": "groups",
            "cluster_view": "cluster",
            "topic_browser": "browser",
            "sql_panel": "sql",
            "topic_overview_panel": "topics",
        }[factory]
        assert f"workbench-{name}" in widget._dom_classes
    finally:
        widget.close()


def test_lag_history_is_the_connections_and_a_later_monitor_shows_the_past(fresh_cluster, topic_name):
    """One history per connection (issue 18): `wb.consumer_lag_history` and every group monitor
    read the same samples, so a monitor opened later plots what happened before it."""
    c = fresh_cluster(1)
    create_topic(c, topic_name, 2)
    producer = c.producer()
    for i in range(20):
        producer.send(topic_name, {"i": i}, partition=i % 2)
    producer.flush()
    group = f"g-{topic_name}"
    consumer = c.consumer(group, topic_name)
    assert len(consumer.read(5, timeout=15, idle=0.5)) >= 1
    consumer.commit()
    first = GroupMonitor(c, live=False)
    try:
        first.refresh()
        first.refresh()
        history = c.sql(f"SELECT * FROM wb.consumer_lag_history WHERE group_id = '{group}'")
        assert len(history) >= 4 and set(history.partition) == {0, 1}
        assert set(history.columns) >= {"time", "lag", "lag_seconds", "status", "committed_offset"}
        assert set(history.status) <= {"OK", "WARN", "STALL", "STOP", "ERR"}
        # An active member: never STOP (that is what the reset section means by "stopped").
        assert first.status[group] != "STOP"
        first.reset_group_select.value = group
        assert first.reset_button.disabled and "active member" in first.reset_button.tooltip
        later = GroupMonitor(c, live=False)
        try:
            assert later.lag_history is first.lag_history
            assert len(later.history[group]) >= 2  # the samples taken before it opened
        finally:
            later.close()
    finally:
        first.close()
        consumer.close()
