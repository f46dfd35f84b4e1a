"""The one error tree of datapair.

Every failure a user can cause or meet (bad input file, unreachable server, bad query) is raised
as a subclass of :class:`DatapairError`, so CLIs can print its message and exit non-zero without a
traceback, and the service can map it to an HTTP status.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatapairError",
    "DecodeError",
    "QueryError",
    "SinkError",
    "StoreUnavailableError",
]


class DatapairError(Exception):
    """Base class of every error datapair raises on purpose."""


class DecodeError(DatapairError):
    """A DBN file or stream could not be read: names the file, the byte offset and what was expected."""

    def __init__(self, path: object, offset: int | None, expected: str) -> None:
        self.path = str(path)
        self.offset = offset
        self.expected = expected
        where = f"{self.path}" if offset is None else f"{self.path} at byte {offset}"
        super().__init__(f"{where}: {expected}")


class SinkError(DatapairError):
    """A sink (Parquet lake, QuestDB) could not take the data."""


class QueryError(DatapairError):
    """A query over the lake or a store was malformed or matched nothing."""


class ConfigError(DatapairError):
    """A setting (env var, CLI flag, URL) has a value we cannot use."""


class StoreUnavailableError(DatapairError):
    """The store behind the service (lake directory, QuestDB server) cannot be reached."""
