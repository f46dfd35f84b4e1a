"""Decode: DBN files -> MBO record blocks -> canonical columns.

The first stage of the flow. What lives here:

- :mod:`~engine.dbn.stream`: open a file as a byte stream (plain or zstd, truncation detected);
- :mod:`~engine.dbn.metadata`: the metadata header (v1-v3) and the MBO record layout;
- :mod:`~engine.dbn.reader`: :class:`DBNReader`, records in blocks as zero-copy NumPy views;
- :mod:`~engine.dbn.kernels`: Numba kernels (record walking, records -> columns, symbols, days);
- :mod:`~engine.dbn.symbology`: instrument_id -> symbol by (id, UTC date of ts_recv);
- :mod:`~engine.dbn.columns`: the canonical ``mbo_ticks`` schema and :func:`iter_column_blocks`;
- :mod:`~engine.dbn.summary`: a whole-file decode summary (``engine.inspect``).

May import: :mod:`engine.errors` and third-party libraries only (it is the bottom of the flow).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.dbn.columns import (
        ACTION_DICT,
        COLUMNS,
        MBO_SCHEMA,
        SIDE_DICT,
        ColumnBlock,
        FileColumns,
        iter_column_blocks,
    )
    from engine.dbn.kernels import ACTIONS, NS_PER_DAY, SIDES
    from engine.dbn.metadata import (
        DEFAULT_BLOCK_BYTES,
        MBO_DTYPE,
        MBO_DTYPE_TS_OUT,
        UNDEF_PRICE,
        UNDEF_TIMESTAMP,
        MappingInterval,
        Metadata,
        SymbolMapping,
        read_metadata,
    )
    from engine.dbn.reader import DBNReader, SymbolMappingRecord
    from engine.dbn.summary import inspect_file
    from engine.dbn.symbology import Symbology

__all__ = [
    "ACTIONS",
    "ACTION_DICT",
    "COLUMNS",
    "DEFAULT_BLOCK_BYTES",
    "MBO_DTYPE",
    "MBO_DTYPE_TS_OUT",
    "MBO_SCHEMA",
    "NS_PER_DAY",
    "SIDES",
    "SIDE_DICT",
    "UNDEF_PRICE",
    "UNDEF_TIMESTAMP",
    "ColumnBlock",
    "DBNReader",
    "FileColumns",
    "MappingInterval",
    "Metadata",
    "SymbolMapping",
    "SymbolMappingRecord",
    "Symbology",
    "inspect_file",
    "iter_column_blocks",
    "read_metadata",
]

_EXPORTS = {
    "ACTION_DICT": "columns", "COLUMNS": "columns", "MBO_SCHEMA": "columns", "SIDE_DICT": "columns",
    "ColumnBlock": "columns", "FileColumns": "columns", "iter_column_blocks": "columns",
    "ACTIONS": "kernels", "NS_PER_DAY": "kernels", "SIDES": "kernels",
    "DEFAULT_BLOCK_BYTES": "metadata", "MBO_DTYPE": "metadata", "MBO_DTYPE_TS_OUT": "metadata",
    "UNDEF_PRICE": "metadata", "UNDEF_TIMESTAMP": "metadata", "MappingInterval": "metadata",
    "Metadata": "metadata", "SymbolMapping": "metadata", "read_metadata": "metadata",
    "DBNReader": "reader", "SymbolMappingRecord": "reader", "inspect_file": "summary",
    "Symbology": "symbology",
}  # fmt: skip
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
