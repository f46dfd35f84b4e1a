"""Table helpers shared by tests."""

from __future__ import annotations

import pyarrow as pa


def plain(t: pa.Table) -> dict[str, list]:
    """Columns as Python lists, dictionaries decoded, NaN as None (so equality is exact)."""
    out = {}
    for name in t.column_names:
        col = t.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(pa.string())
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        vals = col.to_pylist()
        if name == "price":
            vals = [None if v is None or v != v else v for v in vals]
        out[name] = vals
    return out
