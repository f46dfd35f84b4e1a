"""Strict request parameters: a JSON object body (POST) or the query string (GET).

Unknown names, wrong types and out-of-range values raise :class:`engine.errors.QueryError`
naming the parameter and what was expected, which the app turns into HTTP 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection

import falcon

from engine.errors import QueryError
from engine.inputs import nearest
from service.errors import BodyTooLargeError, UnknownSymbolError
from service.stores.base import Store, check_symbol
from service.timeparse import parse_timestamp, resolve_tz

__all__ = ["MAX_JSON_DEPTH", "Params", "json_depth", "known_symbol"]

MAX_JSON_DEPTH = 4
"""Request bodies are flat objects: anything nested deeper is refused before it is looked at."""
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}", re.ASCII)


def json_depth(doc: object) -> int:
    """How deeply ``doc`` nests arrays and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


class Params:
    """Named request values with typed, checked accessors.

    Parameters
    ----------
    values : dict
        Name -> value (JSON types from a body, strings from a query string).
    source : str
        ``"body"`` or ``"query string"``, for messages.
    """

    def __init__(self, values: dict[str, object], source: str) -> None:
        self.values = values
        self.source = source

    @classmethod
    def from_body(cls, req: falcon.Request, allowed: Collection[str], max_bytes: int = 65_536) -> Params:
        """Parse the body as one JSON object (whatever the Content-Type, as the seed's clients send it)."""
        if req.content_length is not None and req.content_length > max_bytes:
            msg = f"the request body has {req.content_length} bytes, more than {max_bytes}; send a small JSON object"
            raise BodyTooLargeError(msg)
        raw = req.bounded_stream.read(max_bytes + 1)
        if len(raw) > max_bytes:
            msg = f"the request body is larger than {max_bytes} bytes; send a small JSON object"
            raise BodyTooLargeError(msg)
        if not raw.strip():
            msg = f"the request body is empty; send a JSON object with {', '.join(sorted(allowed))}"
            raise QueryError(msg)
        try:
            doc = json.loads(raw)
        except RecursionError:
            doc = None
            depth = MAX_JSON_DEPTH + 1
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f'the request body is not valid JSON ({exc}); send a JSON object such as {{"start_ts": 1761130860000000000, "end_ts": 1761130920000000000}}'
            raise QueryError(msg) from None
        else:
            depth = json_depth(doc)
        if depth > MAX_JSON_DEPTH:
            msg = (
                f"the request body nests JSON more than {MAX_JSON_DEPTH} levels deep; send a flat JSON object"
            )
            raise QueryError(msg)
        if not isinstance(doc, dict):
            msg = f"the request body must be a JSON object, got {type(doc).__name__}"
            raise QueryError(msg)
        p = cls(doc, "body")
        p.check_names(allowed)
        return p

    @classmethod
    def from_query(cls, req: falcon.Request, allowed: Collection[str]) -> Params:
        values: dict[str, object] = {}
        for name, value in req.params.items():
            if isinstance(value, list):
                msg = f"`{name}` is given {len(value)} times in the query string; give it once"
                raise QueryError(msg)
            values[name] = value
        p = cls(values, "query string")
        p.check_names(allowed)
        return p

    def check_names(self, allowed: Collection[str]) -> None:
        unknown = sorted(set(self.values) - set(allowed))
        if unknown:
            msg = f"unknown parameter(s) {', '.join(unknown)} in the {self.source}; the parameters are {', '.join(sorted(allowed))}"
            raise QueryError(msg)

    def get(self, name: str, default: object = None) -> object:
        v = self.values.get(name)
        return default if v is None else v

    def require(self, name: str) -> object:
        if self.values.get(name) is None:
            msg = f"`{name}` is required (in the {self.source})"
            raise QueryError(msg)
        return self.values[name]

    def string(self, name: str, default: str | None = None) -> str | None:
        v = self.get(name, default)
        if v is not None and not isinstance(v, str):
            msg = f"`{name}` must be a string, got {type(v).__name__} {v!r}"
            raise QueryError(msg)
        return v

    def integer(self, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
        v = self.get(name)
        if v is None:
            return default
        if isinstance(v, str) and _INTEGER.fullmatch(v.strip()):
            v = int(v.strip())
        if isinstance(v, bool) or not isinstance(v, int):
            msg = f"`{name}` must be an integer from {lo} to {hi}, got {v!r}"
            raise QueryError(msg)
        if not lo <= v <= hi:
            msg = f"`{name}` must be from {lo} to {hi}, got {v}"
            raise QueryError(msg)
        return v

    def tz(self) -> str | None:
        tz = self.string("tz")
        resolve_tz(tz)
        return tz or None

    def timestamp(
        self, name: str, tz: str | None, default: int | None = None, fold: int | None = None
    ) -> int:
        """A ns timestamp: integer, digit string, or date-time text (read in ``tz``)."""
        v = self.values.get(name)
        if v is None:
            if default is None:
                self.require(name)
            return default  # type: ignore[return-value]
        return parse_timestamp(v, field=name, tz=tz, text_ok=True, fold=fold)

    def time_range(
        self, tz: str | None, start_name: str, end_name: str, default: tuple[int, int] | None = None
    ) -> tuple[int, int]:
        start = self.timestamp(start_name, tz, None if default is None else default[0])
        end = self.timestamp(end_name, tz, None if default is None else default[1])
        if start > end:
            msg = f"`{start_name}` ({start}) is after `{end_name}` ({end}); the range is inclusive and must not be empty"
            raise QueryError(msg)
        return start, end


def known_symbol(store: Store, value: object) -> str:
    """A well-formed symbol the store has rows for; 404 (:class:`UnknownSymbolError`) otherwise."""
    symbol = check_symbol(value)
    if not store.has_symbol(symbol):
        known = store.symbols()
        if not known:
            msg = f"no rows for symbol {symbol!r}: the store is empty"
            raise UnknownSymbolError(msg)
        near = nearest(symbol, known)
        hint = f"nearest: {', '.join(near)}; " if near else ""
        msg = f"no rows for symbol {symbol!r}; {hint}GET /api/mbo/symbols lists all {len(known):,}"
        raise UnknownSymbolError(msg)
    return symbol
