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

__all__ = ["DBN_PATTERNS", "date_arg", "find_inputs", "nearest", "parse_symbols", "read_symbol_filter"]


def parse_symbols(text: str) -> set[str]:
    """``"NVDA, AAPL"`` -> ``{"NVDA", "AAPL"}`` (comma or newline separated, ``#`` comments)."""
    out = set()
    for line in text.replace(",", "\n").splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            out.add(s)
    return out


def read_symbol_filter(path: str | os.PathLike[str], source: str = "--symbol-filter") -> set[str]:
    """Symbols from a filter file: one per line, ``#`` starts a comment, blank lines ignored.

    ``source`` says where the path came from (``--symbol-filter`` or ``SYMBOL_FILTER``), for messages.

    Raises
    ------
    ConfigError
        If the file cannot be read or names no symbol.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        msg = f"{source} {p}: cannot read it ({reason})"
        raise ConfigError(msg) from None
    symbols = set()
    for line in text.splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            symbols.add(s)
    if not symbols:
        msg = f"{source} {p}: no symbol in it, expected one symbol per line"
        raise ConfigError(msg)
    return symbols


DBN_PATTERNS = ("*.dbn.zst", "*.dbn")
"""The files a directory input contributes."""


def find_inputs(paths: Sequence[str | os.PathLike[str]], recursive: bool = False) -> list[Path]:
    """Expand the inputs: files as given, directories scanned for ``*.dbn.zst`` and ``*.dbn``.

    With ``recursive``, subdirectories too (Databento batch downloads nest files by day). Files
    come back sorted by path within each directory, each once.

    Raises
    ------
    ConfigError
        If a path does not exist or a directory holds no DBN file (the message lists what was
        looked for).
    """
    out: list[Path] = []
    seen = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                {
                    q
                    for pat in DBN_PATTERNS
                    for q in (p.rglob(pat) if recursive else p.glob(pat))
                    if q.is_file()
                }
            )
            if not found:
                where = "this directory or below it" if recursive else "this directory"
                hint = "" if recursive else " (subdirectories are not searched without --recursive)"
                msg = f"{p}: no {' or '.join(DBN_PATTERNS)} file in {where}{hint}"
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


def nearest(wanted: str, known: Sequence[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``known`` closest to ``wanted`` (for "did you mean" hints)."""
    import difflib

    exact = [k for k in known if k.casefold() == wanted.casefold()]
    close = difflib.get_close_matches(wanted, list(known), n=n, cutoff=0.5)
    return list(dict.fromkeys(exact + close))[:n]
