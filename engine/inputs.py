"""Which inputs a run takes: DBN files and directories, and the symbol filter.

Shared by every ingest CLI path (the lake and QuestDB) so they select files and symbols alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["date_arg", "find_inputs", "parse_symbols", "read_symbol_filter"]


def parse_symbols(text: str) -> set[str]:
    """``"NVDA, AAPL"`` -> ``{"NVDA", "AAPL"}`` (comma or newline separated, ``#`` comments)."""
    out = set()
    for line in text.replace(",", "\n").splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            out.add(s)
    return out


def read_symbol_filter(path: str | os.PathLike[str]) -> set[str]:
    """Symbols from a filter file: one per line, ``#`` starts a comment, blank lines ignored.

    Raises
    ------
    ConfigError
        If the file cannot be read or names no symbol.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"SYMBOL_FILTER file {p}: cannot read it ({exc})"
        raise ConfigError(msg) from None
    symbols = set()
    for line in text.splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            symbols.add(s)
    if not symbols:
        msg = f"SYMBOL_FILTER file {p}: no symbol in it, expected one symbol per line"
        raise ConfigError(msg)
    return symbols


def find_inputs(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand the inputs: files as given, directories scanned (not recursively) for ``*.dbn.zst``.

    Raises
    ------
    ConfigError
        If a path does not exist or a directory holds no ``*.dbn.zst`` file.
    """
    out: list[Path] = []
    seen = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.glob("*.dbn.zst") if q.is_file())
            if not found:
                msg = f"{p}: no *.dbn.zst file in this directory"
                raise ConfigError(msg)
        elif p.is_file():
            found = [p]
        else:
            msg = f"{p}: no such file or directory"
            raise ConfigError(msg)
        for q in found:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                out.append(q)
    return out


def date_arg(text: str) -> dt.date:
    """argparse ``type=`` for a ``YYYY-MM-DD`` day (a usage error, exit 2, otherwise)."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        msg = f"expected a date YYYY-MM-DD, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
