"""The API-version ledger (workbench/broker/api_ledger.toml) matches what the broker advertises.

Fails when an advertised (API, version) has no test named for it, when the
ledger names a test that does not exist, or when it claims a version or API
the broker does not advertise.
"""

from __future__ import annotations

import ast
import tomllib
from functools import cache
from pathlib import Path

import pytest

from workbench.broker.apis import SUPPORTED_APIS
from workbench.security.enforce import SASL_APIS

ROOT = Path(__file__).resolve().parents[2]
LEDGER = ROOT / "workbench" / "broker" / "api_ledger.toml"
ADVERTISED = {**SUPPORTED_APIS, **SASL_APIS}  # SASL's two only when SASL is enabled


def _range(text: str) -> range:
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def _entries() -> dict[int, dict]:
    apis = tomllib.loads(LEDGER.read_text())["api"]
    by_key = {}
    for api in apis:
        assert api["key"] not in by_key, f"api {api['key']} listed twice"
        by_key[api["key"]] = api
    return by_key


@cache
def _test_functions(path: str) -> frozenset[str]:
    tree = ast.parse((ROOT / path).read_text())
    return frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))


def test_every_advertised_api_has_an_entry_and_nothing_else_does():
    entries = _entries()
    assert sorted(entries) == sorted(ADVERTISED)


@pytest.mark.parametrize("key", sorted(ADVERTISED))
def test_every_advertised_version_is_exercised(key):
    api = _entries()[key]
    lo, hi = ADVERTISED[key]
    assert _range(api["versions"]) == range(lo, hi + 1), f"{api['name']}: ledger says {api['versions']}"
    covered: set[int] = set()
    for ex in api.get("exercised", []):
        versions = _range(ex["versions"])
        assert set(versions) <= set(range(lo, hi + 1)), f"{api['name']}: v{ex['versions']} is not advertised"
        assert ex["tests"], f"{api['name']} v{ex['versions']}: no tests named"
        covered |= set(versions)
    missing = sorted(set(range(lo, hi + 1)) - covered)
    assert not missing, f"{api['name']} (key {key}) advertises v{missing} with no test in the ledger"


def test_every_named_test_exists():
    for api in _entries().values():
        for ex in api.get("exercised", []):
            for node in ex["tests"]:
                path, _, name = node.partition("::")
                assert (ROOT / path).is_file(), f"{api['name']}: {path} does not exist"
                assert name.split("[")[0] in _test_functions(path), f"{api['name']}: {node} does not exist"
