"""datapair engine: stream DBN MBO files into columns and hand them to sinks.

The data flow reads from the package names, each importing only the ones before it:

- :mod:`engine.dbn` (decode): DBN files -> record blocks -> canonical columns;
- :mod:`engine.pipeline`: files through sinks, in parallel processes;
- :mod:`engine.lake` and :mod:`engine.questdb` (sinks with their readers): the Parquet lake,
  the QuestDB table, and reading each back;
- ``service`` (the HTTP API, a separate package) sits on top.

Beside the flow: :mod:`engine.synth` (the day generator) and the shared modules
:mod:`engine.errors`, :mod:`engine.progress`, :mod:`engine.inputs`. The command-line modules
(``engine.ingest``, ``engine.query``, ``engine.export``, ``engine.inspect``, ``engine.synth``)
parse arguments, call one function of a package, and print.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
