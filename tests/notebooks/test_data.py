"""The sample datasets are what `data/generate.py` makes, small, and consistent with each other."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.notebooks.support import ROOT

DATA = ROOT / "data"
FILES = ("orders.jsonl", "payments.jsonl", "clickstream.jsonl")


def test_generator_reproduces_the_files_byte_for_byte(tmp_path):
    subprocess.run([sys.executable, str(DATA / "generate.py"), "--out", str(tmp_path)], check=True, capture_output=True)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
    assert subprocess.run([sys.executable, str(DATA / "generate.py"), "--check"], check=False).returncode == 0


def test_datasets_are_small():
    assert sum((DATA / name).stat().st_size for name in FILES) < 1_000_000


def test_every_order_has_one_payment_and_amounts_add_up():
    orders = [json.loads(line) for line in (DATA / "orders.jsonl").open()]
    payments = [json.loads(line) for line in (DATA / "payments.jsonl").open()]
    assert len(orders) == len(payments) == 400
    by_order = {p["order_id"]: p for p in payments}
    for o in orders:
        assert round(sum(i["qty"] * i["unit_price"] for i in o["items"]), 2) == o["amount"]
        p = by_order[o["order_id"]]
        assert (p["amount"], p["currency"]) == (o["amount"], o["currency"])
        assert p["processed_at"] > o["created_at"]
        assert (p["status"] == "failed") == (p["failure_reason"] is not None)
    assert sum(p["status"] == "failed" for p in payments) == 30


def test_clickstream_is_sorted_by_time():
    events = [json.loads(line) for line in (DATA / "clickstream.jsonl").open()]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    assert len({e["session_id"] for e in events}) == 220
