"""Stub of the optional C extension built from _record_columns.c (see that file and `storage.record_tables`)."""

from typing import Any

def columns(batches: list[Any], /) -> tuple[Any, ...]: ...
