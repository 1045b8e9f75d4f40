"""The CI mix of the chaos harness: a couple of minutes of faults that must leave no anomaly.

`tests.chaos.nemesis.CI_MIX` lists the nemeses run here: since raft12, every nemesis of the plain
workload. 150 s of faults strike 10-15 of them, a different draw per run (the runner shuffles
the mix each round); the long command (`python -m tests.chaos --minutes N`) runs them all; the
README's Reliability section says what each found. WORKBENCH_CHAOS_SECONDS sets the length
(default 150 s of faults; the run then heals, reads everything back and checks).

The txn workload has its own, shorter mix (`CI_TXN_MIX`: leader, follower and transaction
coordinator kills and pauses; WORKBENCH_CHAOS_TXN_SECONDS, default 75 s): transactions committed
and aborted, read_committed readers, and `checker.check_transactions` must find nothing.
"""

from __future__ import annotations

import os

import pytest

from tests.chaos.nemesis import CI_MIX, CI_TXN_MIX
from tests.chaos.runner import Settings, run, write_json

SECONDS = float(os.environ.get("WORKBENCH_CHAOS_SECONDS", "150"))
TXN_SECONDS = float(os.environ.get("WORKBENCH_CHAOS_TXN_SECONDS", "75"))


@pytest.mark.chaos
@pytest.mark.timeout(int(SECONDS) + 360)
def test_ci_mix_leaves_no_anomaly(tmp_path):
    result = run(Settings(seconds=SECONDS, nemeses=list(CI_MIX), data_dir=str(tmp_path / "cluster"), keep_data=True))
    table = result.table()
    print("\n" + table)
    write_json(result, tmp_path / "chaos-result.json")
    stats = result.report.stats
    # The run did what it says: faults happened, records were acknowledged and read back in full.
    assert sum(stats["faults"].values()) >= min(len(CI_MIX), 8), table
    assert stats["sends"]["ok"] > 1000, table
    assert all(result.history.final_read_complete.values()), table
    assert result.report.valid, table


@pytest.mark.chaos
@pytest.mark.timeout(int(TXN_SECONDS) + 360)
def test_txn_ci_mix_leaves_no_anomaly(tmp_path):
    result = run(
        Settings(
            seconds=TXN_SECONDS,
            nemeses=list(CI_TXN_MIX),
            workload="txn",
            data_dir=str(tmp_path / "cluster"),
            keep_data=True,
        )
    )
    table = result.table()
    print("\n" + table)
    write_json(result, tmp_path / "chaos-result.json")
    stats = result.report.stats
    # A shuffled round robin over the mix: on a loaded machine the heals are slow and the last
    # nemesis of the round may not strike in time; both kinds of fault must have.
    assert sum(stats["faults"].values()) >= len(CI_TXN_MIX) - 1, table
    assert {f.nemesis.split("-")[0] for f in result.history.faults if not f.skipped} >= {"kill", "pause"}, table
    assert any("coordinator of" in role for f in result.history.faults for role in f.roles), table
    assert stats["txns"]["committed"] > 50 and stats["txns"]["aborted"] > 10, table
    assert all(result.history.txn_final_read_complete.values()), table
    assert result.report.valid, table
