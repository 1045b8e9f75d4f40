"""SQL on topics: DuckDB over the brokers' Parquet files plus the live tail (see README, "SQL on topics")."""

from workbench.sql.errors import ReadOnlyTopicError, SqlError, UnknownTopicError
from workbench.sql.mixin import SqlMixin

__all__ = ["ReadOnlyTopicError", "SqlError", "SqlMixin", "UnknownTopicError"]
