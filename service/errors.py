"""Service-side refinements of :class:`engine.errors.QueryError`, each mapped to one HTTP status.

The mapping lives in :mod:`service.app` (one error handler), so resources just raise.
"""

from __future__ import annotations

from engine.errors import QueryError

__all__ = ["BodyTooLargeError", "NotAcceptableError", "TooManyRowsError", "UnknownSymbolError"]


class UnknownSymbolError(QueryError):
    """The symbol is well formed but the store has no rows for it (HTTP 404)."""


class NotAcceptableError(QueryError):
    """The Accept header names only media types we cannot write (HTTP 406)."""


class TooManyRowsError(QueryError):
    """The answer would exceed the configured row cap: page it (HTTP 413)."""


class BodyTooLargeError(QueryError):
    """The request body is larger than the service reads (HTTP 413)."""
