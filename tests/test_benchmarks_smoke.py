"""The benchmark suite runs end to end at smoke size and emits well-formed JSON (issue 6).

No timing is asserted: the figures depend on the machine. This only guards that every section still
runs (or says why it was skipped) as the broker changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {"peers", "producer", "consumer", "latency", "profile", "startup", "sql", "failover", "scaling"}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_run_all_smoke_emits_every_section(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(tmp_path.glob("*-smoke.json"))
    assert len(files) == 1, files
    result = json.loads(files[0].read_text())

    assert result["meta"]["smoke"] is True
    assert result["meta"]["cpus"] >= 1
    sections = result["sections"]
    assert set(sections) == SECTIONS
    for name, section in sections.items():
        assert section["status"] in ("ok", "skipped"), (name, section)
        if section["status"] == "skipped":
            assert section["reason"], name

    for case in ("rf1_acks1", "rf3_acksall"):
        producer = sections["producer"][case]
        assert producer["workbench_records_per_s"] > 0 and producer["mock_records_per_s"] > 0
        assert producer["errors"] == 0
        assert {"ratio_to_mock", "ratio_to_loopback", "rss_idle_mb", "rss_under_load_peak_mb"} <= set(producer)
        assert sections["consumer"][case]["workbench"]["records"] == producer["records"]
        latency = sections["latency"][case]
        assert {"p50_ms", "p99_ms", "max_ms"} <= set(latency["workbench"]) and latency["workbench"]["records"] > 0
        assert {"p50_ms", "p99_ms", "max_ms"} <= set(latency["mock"])
        profile = sections["profile"][case]
        assert profile.get("status") == "skipped" or "brokers" in profile

    assert sections["peers"]["loopback"]["records_per_s"] > 0
    assert {"brokers_1", "brokers_3"} <= set(sections["startup"])
    assert sections["sql"]["runs"] and "ratio" in sections["sql"]["runs"][0]
    assert sections["failover"]["trials"]
    scaling = sections["scaling"]
    assert [r["partitions"] for r in scaling["producer_by_partitions"]] == [1, 10, 100, 1000]
    assert scaling["restart_recovery_by_log_size"]
    assert isinstance(result["table"], list) and all(isinstance(row, list) for row in result["table"])


@pytest.mark.timeout(300)
def test_request_cost_runs_and_emits_json(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "request_cost.py"),
            "--small",
            "300",
            "--large",
            "5",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = tmp_path.glob("request_cost-*.json")
    result = json.loads(path.read_text())
    for case in ("small_sequential", "small_pipelined_16", "large_1mb_10k_records"):
        assert result[case]["requests"] > 0 and result[case]["broker_cpu_us_per_request"] >= 0
    assert result["large_1mb_10k_records"]["records_per_s"] > 0


@pytest.mark.timeout(300)
def test_latency_by_rate_runs_and_emits_json(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "latency_by_rate.py"),
            "--rf",
            "1",
            "--rates",
            "500",
            "--seconds",
            "1",
            "--warmup",
            "0.5",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = tmp_path.glob("latency_by_rate-*.json")
    [row] = json.loads(path.read_text())["rows"]
    assert row["rf"] == 1 and row["rate"] == 500 and row["p99_ms"] >= row["p50_ms"] > 0
    assert row["broker_cpu_s"]


@pytest.mark.timeout(400)
def test_fetch_sessions_benchmark_runs_both_settings_and_emits_json(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "fetch_sessions.py"),
            "--rf",
            "2",
            "--rate",
            "500",
            "--seconds",
            "1",
            "--warmup",
            "0.5",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=360,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = tmp_path.glob("fetch_sessions-*.json")
    result = json.loads(path.read_text())
    assert sorted(r["sessions"] for r in result["runs"]) == ["off", "on"]
    assert all(r["rf"] == 2 and r["p99_ms"] >= r["p50_ms"] > 0 for r in result["runs"])
    assert set(result["median"]) == {"on", "off"} and len(result["runs"][0]["loadavg_before"]) == 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cost_growth_measures_each_size_next_to_the_mock_and_names_the_shape(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "cost_growth.py"),
            "--smoke",
            "--only",
            "partitions",
            "connections",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = tmp_path.glob("cost_growth-*-smoke.json")
    result = json.loads(path.read_text())
    for section, key in (("partitions", "partitions"), ("connections", "connections")):
        rows = result[section]["rows"]
        assert [r[key] for r in rows] == ([1, 10] if key == "partitions" else [1, 20]), result[section]
        assert all(r["records_per_s"] > 0 and r["mock_records_per_s"] > 0 and r["errors"] == 0 for r in rows)
        assert all(r["rss_mb_loaded"] > 0 and r["ack_ms_p99"] >= r["ack_ms_p50"] for r in rows)
        assert set(result[section]["shape"]) == {"records_per_s", "ack_ms_p99", "rss_mb_growth"}
    assert all(r["mock_ack_ms_p99"] >= r["mock_ack_ms_p50"] > 0 for r in result["partitions"]["rows"])
    assert "## partitions" in proc.stdout and "load average" in proc.stdout
