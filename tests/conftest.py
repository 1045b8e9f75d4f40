"""Shared fixtures: real broker processes in temporary directories, unique topic names."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from workbench import Cluster

# Tests start brokers with short group delays so rebalances are quick.
FAST_GROUPS = {"group_initial_rebalance_delay_ms": 0}


def require_tool(name: str) -> str:
    """Path of a system tool; skips without it, or fails when WORKBENCH_REQUIRE_ALL=1 (CI)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name})"
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)
    return path


@pytest.fixture
def topic_name(request) -> str:
    """A topic name no other test uses."""
    return f"t-{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three brokers shared by the tests of one module (tests use their own topics)."""
    with Cluster(brokers=3, data_dir=tmp_path_factory.mktemp("cluster"), config=FAST_GROUPS) as c:
        yield c


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for tests that kill, restart or reconfigure brokers."""
    clusters = []

    def make(brokers: int = 3, **kwargs) -> Cluster:
        kwargs.setdefault("config", FAST_GROUPS)
        c = Cluster(brokers=brokers, data_dir=kwargs.pop("data_dir", tmp_path / f"c{len(clusters)}"), **kwargs)
        clusters.append(c)
        return c

    yield make
    for c in clusters:
        c.stop()


#: At most this many tests may pass only on their retry (`--reruns 1` in pyproject.toml), as
#: Kafka's CI caps retries with maxTestRetryFailures: more means something is broken, not flaky.
MAX_RETRIED_TESTS = 5


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    reruns = reporter.stats.get("rerun", [])
    retried = sorted({r.nodeid for r in reruns})
    if not retried:
        return
    reporter.write_line("")
    reporter.write_sep("=", f"{len(retried)} test(s) failed once and were retried", yellow=True)
    for nodeid in retried:
        reporter.write_line(f"RETRIED {nodeid}")
        # Why the first attempt failed: a flaky test is fixed from this line, which a passing
        # retry would otherwise hide.
        for r in reruns:
            crash = getattr(getattr(r, "longrepr", None), "reprcrash", None)
            if r.nodeid == nodeid and crash is not None:
                reporter.write_line(f"    {crash.path}:{crash.lineno}: {crash.message[:600]}")
    if len(retried) > MAX_RETRIED_TESTS:
        reporter.write_line(f"more than {MAX_RETRIED_TESTS} retried tests: the run fails", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
