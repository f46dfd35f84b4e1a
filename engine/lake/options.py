"""How lake files are encoded and laid out: :class:`ParquetOptions`, the stripe columns, and the
encoder process the pipeline pairs with each file worker (:func:`offload_spec`).

Light on purpose (NumPy only): the parent of an ingest run needs these to plan the run, and the
encoding itself (pyarrow, Numba: :mod:`engine.lake.encode`) loads only in the processes that encode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.pipeline.offload import OffloadSpec

__all__ = ["ROW_BYTES", "ROW_DTYPES", "ParquetOptions", "offload_spec"]

ROW_DTYPES: dict[str, np.dtype] = {
    "ts_event": np.dtype(np.int64), "symbol": np.dtype(np.int32), "instrument_id": np.dtype(np.int32),
    "publisher_id": np.dtype(np.int16), "order_id": np.dtype(np.int64), "price_raw": np.dtype(np.int64),
    "price": np.dtype(np.float64), "size": np.dtype(np.int32), "flags": np.dtype(np.int16),
    "channel_id": np.dtype(np.int16), "action": np.dtype(np.int8), "side": np.dtype(np.int8),
    "ts_recv": np.dtype(np.int64), "ts_in_delta": np.dtype(np.int32), "sequence": np.dtype(np.int64),
}  # fmt: skip
"""NumPy dtype of each column in a stripe buffer (``symbol``/``action``/``side`` are codes)."""
ROW_BYTES = sum(dt.itemsize for dt in ROW_DTYPES.values())


@dataclass(frozen=True)
class ParquetOptions:
    """How lake files are encoded and laid out (picklable: it travels to worker processes).

    Parameters
    ----------
    stripe_rows : int
        Rows buffered, then ordered by symbol (stably: feed order within a symbol) and encoded
        together as one part.
    first_stripe_rows : int
        Rows of a file's first stripe; each next stripe doubles, up to ``stripe_rows``. The
        encoder waits for the first stripe: a 512K-row one kept it idle for the first ~0.25 s of
        every file (decoding, converting and sorting 512K rows), a 64K-row one for ~0.03 s.
    row_group_rows : int
        Target rows per row group: smaller symbols are packed together up to this size.
    max_row_group_rows : int
        Largest row group; a busy symbol's run is split evenly into groups up to this size.
    compression, compression_level : str, int
        Parquet codec (zstd) and its level, for the ``compressed_columns``; the others are written
        uncompressed: measured column by column on a generated day (the table is in the README),
        zstd costs 5-20 ns a row on a dictionary-encoded or delta-encoded column for 0-1 byte a
        row saved, and pays only on the plain columns whose values repeat within a row group.
    data_page_size : int
        Target bytes per data page.
    dictionary_columns : tuple of str
        Columns with dictionary encoding (few distinct values per row group, prices included: a row
        group is mostly one symbol); the others are plain (ids and flags, which zstd shrinks to
        nothing for less than a dictionary costs) ...
    delta_columns : tuple of str
        ... except these, DELTA_BINARY_PACKED (timestamps, sequence, order ids: small steps).
        Both encodings are read by every Parquet reader (DuckDB 1.x included).
    compressed_columns : tuple of str
        Columns compressed with ``compression``.
    statistics_columns : tuple of str
        Columns with min/max statistics in every row group (what readers filter on).
    encode_threads : int
        Threads of a :class:`ThreadEncoder` (and of an encoder process). One is enough beside a
        decoding process on two cores (decoding and encoding cost about the same) and keeps the
        process tree under 512 MiB; more threads help with more cores.
    slots : int
        Stripe slots of an encoder: stripes being encoded or waiting (``encode_threads + 1``
        keeps the encoder busy while the next stripe is sorted).
    steal : bool
        When the encoder process has no free slot, the decoding process encodes the stripe
        itself instead of waiting (both cores busy whichever stage is slower); so does it with a
        file's last stripe while the encoder is still busy with the one before.
    """

    stripe_rows: int = 512 * 1024
    first_stripe_rows: int = 64 * 1024
    row_group_rows: int = 64 * 1024
    max_row_group_rows: int = 128 * 1024
    compression: str = "zstd"
    compression_level: int = 1
    data_page_size: int = 1 << 20
    dictionary_columns: tuple[str, ...] = (
        "symbol", "action", "side", "price_raw", "price", "size", "ts_in_delta",
    )  # fmt: skip
    delta_columns: tuple[str, ...] = ("ts_event", "ts_recv", "sequence", "order_id")
    compressed_columns: tuple[str, ...] = ("instrument_id", "publisher_id", "channel_id", "flags")
    statistics_columns: tuple[str, ...] = (
        "ts_event",
        "symbol",
        "instrument_id",
        "order_id",
        "ts_recv",
        "sequence",
    )
    encode_threads: int = 1
    slots: int = 2
    steal: bool = True

    def writer_kwargs(self, skip_statistics: tuple[str, ...] = ()) -> dict[str, Any]:
        """Keyword arguments of :class:`pyarrow.parquet.ParquetWriter` (``skip_statistics``: columns
        whose statistics the caller writes itself)."""
        import pyarrow.parquet as pq

        from engine.dbn.columns import COLUMNS

        return {
            "compression": {
                c: (self.compression if c in self.compressed_columns else "none") for c in COLUMNS
            },
            "compression_level": {c: self.compression_level for c in self.compressed_columns},
            "use_dictionary": list(self.dictionary_columns),
            "column_encoding": {c: "DELTA_BINARY_PACKED" for c in self.delta_columns} or None,
            "write_statistics": [c for c in self.statistics_columns if c not in skip_statistics],
            "data_page_size": self.data_page_size,
            "write_page_index": False,  # parts are moved by offset (engine.lake.footer): no page index
            "sorting_columns": [pq.SortingColumn(COLUMNS.index("symbol"))],  # then feed order
        }


def offload_spec(options: ParquetOptions) -> OffloadSpec:
    """The helper process the pipeline pairs with each file worker to encode its stripes."""
    return OffloadSpec(
        dtypes=ROW_DTYPES,
        rows=options.stripe_rows,
        slots=options.slots,
        threads=options.encode_threads,
        handler="engine.lake.encode:encode_job",
        install="engine.lake.encode:set_worker_encoder",
        name="Parquet encoder",
        warm="engine.lake.encode:warm_encoder",
    )
