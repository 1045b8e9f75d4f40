"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workbench.protocol import records


@pytest.fixture(params=["compiled", "python"])
def record_walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test once with `check_records` walking uncompressed batches with the compiled
    extension (`workbench.protocol._record_walk`) and once with the pure-Python path, the one a
    machine without a C compiler or with WORKBENCH_PURE_PYTHON=1 takes. Without the extension the
    compiled run skips (test_record_walk.py's build test fails under WORKBENCH_REQUIRE_ALL=1)."""
    if request.param == "compiled":
        walk = records._load_walk() if records._WALK is None else records._WALK
        if walk is None:
            pytest.skip("workbench.protocol._record_walk is not built (or WORKBENCH_PURE_PYTHON=1)")
        monkeypatch.setattr(records, "_WALK", walk)
    else:
        monkeypatch.setattr(records, "_WALK", None)
    yield request.param
