"""Build the Go interop programs offline, from Debian's packaged sources.

Debian ships sarama and kafka-go as source under /usr/share/gocode (packages
golang-github-shopify-sarama-dev and golang-github-segmentio-kafka-go-dev), so
the programs are built in GOPATH mode (GO111MODULE=off) against that tree: no
module download, no network. Without `go` or the sources the test skips, and
fails under WORKBENCH_REQUIRE_ALL=1 (CI), as tests/conftest.py does for kcat.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool

GOCODE = Path("/usr/share/gocode")
HERE = Path(__file__).parent


def require_go_package(import_path: str, debian_package: str) -> None:
    if not (GOCODE / "src" / import_path).is_dir():
        message = f"{import_path} sources are not installed (apt-get install {debian_package})"
        if os.environ.get("WORKBENCH_REQUIRE_ALL") == "1":
            pytest.fail(message + "; WORKBENCH_REQUIRE_ALL=1 turns this skip into a failure")
        pytest.skip(message)


def build(program: str, out_dir: Path) -> Path:
    """`go build` tests/interop/<program>/main.go into out_dir; returns the binary."""
    go = require_tool("go")
    binary = out_dir / program
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": str(GOCODE),
        "GOFLAGS": "",
        "GOPROXY": "off",
        "GOCACHE": str(out_dir / "gocache"),
        "CGO_CFLAGS": "-Wno-deprecated-declarations",
    }
    result = subprocess.run(
        [go, "build", "-o", str(binary), "main.go"],
        cwd=HERE / program,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"go build {program} failed:\n{result.stderr}"
    return binary
