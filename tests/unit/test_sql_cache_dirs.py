"""`~/.cache/workbench` is pruned: directories unused for a week and held by no connection go."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from workbench.sql.cache_dirs import mark_in_use, prune_cache


def _aged(path, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def test_prune_removes_old_unheld_directories_only(tmp_path):
    old, recent, held, foreign = (tmp_path / n for n in ("0123456789ab", "ba9876543210", "aaaaaaaaaaaa", "notes"))
    for d in (old, recent, held, foreign):
        (d / "broker-local").mkdir(parents=True)
    lock = mark_in_use(held)
    for d in (old, held, foreign):
        _aged(d, 30)
    _aged(held / ".in-use", 30)
    removed = prune_cache(tmp_path, max_age_days=7)
    assert removed == [old]
    assert not old.exists() and recent.exists() and held.exists() and foreign.exists()
    lock.close()
    assert prune_cache(tmp_path, max_age_days=7) == [held]  # released: now it may go


def test_cli_cache_clear_empties_the_cache(tmp_path):
    (tmp_path / "0123456789ab").mkdir()
    env = {**os.environ, "WORKBENCH_CACHE_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "cache", "clear"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "removed 1 cache directory" in out.stdout
    assert not (tmp_path / "0123456789ab").exists()
