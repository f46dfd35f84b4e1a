"""The day generator: realistic synthetic XNAS.ITCH MBO days (DBN v3), deterministic for a seed.

- :mod:`~engine.synth.day`: the day (metadata, session, activity profile) and :func:`write_day`;
- :mod:`~engine.synth.kernels`: the Numba kernel writing order lifecycles record by record;
- ``python -m engine.synth`` (``datapair-synth``): the command line.

A side branch of the flow: it produces DBN files. May import: :mod:`engine.dbn` (the record
layout), :mod:`engine.errors`, :mod:`engine.inputs`, :mod:`engine.progress`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine._lazy import lazy_exports

if TYPE_CHECKING:
    from engine.synth.day import DEFAULT_SYMBOLS, SynthSummary, build_metadata, generate_blocks, write_day

__all__ = ["DEFAULT_SYMBOLS", "SynthSummary", "build_metadata", "generate_blocks", "write_day"]

__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(__all__, "day"))
