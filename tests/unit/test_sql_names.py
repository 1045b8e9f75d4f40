"""Which tables a query reads (what `refresh_for` refreshes), and the engine's lifecycle, without brokers."""

from __future__ import annotations

import threading

import duckdb
import pytest

from workbench.sql import SqlMixin
from workbench.sql import engine as engine_module
from workbench.sql.engine import SqlEngine
from workbench.sql.flatten import infer_sql, infer_structure, normalize


class _NoFiles:
    def directory(self, topic, info):
        return None


@pytest.fixture
def engine(tmp_path):
    e = SqlEngine("127.0.0.1:1", tmp_path, _NoFiles(), compact=False)
    e._topics.update({"orders": None, "page-views": None, "pay": None})  # only the names are used
    yield e
    e.close()


def test_window_macros_and_using_joins_do_not_hide_the_tables(engine):
    # Binding on a fresh connection failed on both and returned no names: never refreshed.
    assert engine.referenced_names(
        "SELECT tumble(timestamp, INTERVAL 10 seconds) AS window, count(*) FROM orders GROUP BY ALL"
    ) == {"orders"}
    assert engine.referenced_names(
        'SELECT w, count(*) FROM "page-views", unnest(hop(timestamp, INTERVAL 1 minute, INTERVAL 10 seconds)) '
        "AS h(w) GROUP BY w"
    ) == {"page-views"}
    assert engine.referenced_names(
        "SELECT * FROM wb.consumer_groups JOIN wb.consumer_group_members USING (group_id)"
    ) == {"wb.consumer_groups", "wb.consumer_group_members"}
    assert engine.referenced_names(
        "WITH x AS (SELECT * FROM orders) SELECT (SELECT 1 FROM main.pay) FROM x JOIN wb.brokers USING (y)"
    ) >= {"orders", "main.pay", "wb.brokers"}
    assert engine.referenced_names("SELECT 1") == set()


def test_statements_that_do_not_bind_fall_back_to_known_names_in_the_text(engine):
    names = engine.referenced_names(
        "INSERT INTO mine SELECT tumble(o.timestamp, INTERVAL 1 minute) FROM orders o "
        "JOIN wb.consumer_lag USING (partition)"
    )
    assert {"orders", "wb.consumer_lag"} <= names and "pay" not in names
    assert engine._names_in_text('SELECT * FROM "page-views" JOIN paying ON true') == {"page-views"}


def test_fast_inference_matches_the_aggregate():
    con = duckdb.connect()
    con.execute("""CREATE TABLE raw AS SELECT encode(v) AS value FROM (VALUES ('{"a":1}'), ('{"a":"x","n":null}'),
        ('{"b":1.5}'), ('{"b":2,"c":[1,{"x":1}]}'), ('[1]'), ('nope'), (NULL), ('{"u":{"p":1}}'),
        ('{"u":{"q":true}}')) t(v)""")
    expected = normalize(__import__("json").loads(con.execute(infer_sql("raw")).fetchall()[0][0]))
    assert (
        infer_structure(con, "raw")
        == expected
        == {"a": "JSON", "b": "DOUBLE", "c": ["JSON"], "u": {"p": "BIGINT", "q": "BOOLEAN"}}
    )


class _Conn(SqlMixin):
    def __init__(self, root):
        self.bootstrap_servers = "127.0.0.1:1"
        self.sql_data_dir = root


def test_one_engine_for_concurrent_first_use_and_close_sql_stops_its_threads(tmp_path, monkeypatch):
    made = []
    real_init = SqlEngine.__init__

    def slow_init(self, *args, **kwargs):
        made.append(self)
        threading.Event().wait(0.2)  # widen the window two first uses used to race in
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(engine_module.SqlEngine, "__init__", slow_init)
    conn = _Conn(tmp_path)
    got = []
    threads = [threading.Thread(target=lambda: got.append(conn.sql_engine)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len({id(e) for e in got}) == 1
    compactor = got[0]._compactor
    assert compactor.is_alive()
    conn.close_sql()
    conn.close_sql()  # idempotent
    assert not compactor.is_alive() and conn._sql_engine is None
    got[0].close()  # the engine's own close is idempotent too
