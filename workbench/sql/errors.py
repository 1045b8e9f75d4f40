"""Errors the SQL side raises: short messages, no wall of traceback in a notebook."""

from __future__ import annotations


class SqlError(Exception):
    """A query failed; the message is DuckDB's (or ours), and IPython shows only that."""

    def _render_traceback_(self) -> list[str]:  # IPython: replace the traceback with the message
        return [f"\x1b[31m{type(self).__name__}\x1b[0m: {self}"]


class ReadOnlyTopicError(SqlError):
    """A statement tried to write to a topic table (produce with `cluster.producer()` instead)."""


class UnknownTopicError(SqlError):
    """A query named a table that is neither a topic nor a table of the session."""
