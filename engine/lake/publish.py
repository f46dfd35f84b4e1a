"""Publish a locally staged lake into a remote one (object storage), merging shared days.

A remote lake is written in two steps: the ordinary sink writes a *staging* lake in a local
temporary directory (same code, same footers), then :func:`publish_staged` moves each staged file
into the remote lake. When the remote lake already holds that day file with rows of *other*
sources (another symbol-split file of the day, ingested earlier), those rows are kept: their row
groups are copied as they are (no decoding, :class:`~engine.lake.footer.PartAssembler`) into a
merged file with a merged footer, exactly as :func:`engine.lake.outputs.commit_output` does
locally. Each file is then uploaded under a temporary key and published by copy + delete
(:meth:`engine.lake.store.LakeDir.publish`), so a final key is never half written.

Nothing here locks: the caller runs one writer per day group at a time
(:mod:`engine.lake.groups`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from engine.errors import SinkError
from engine.lake.footer import PartAssembler
from engine.lake.layout import list_lake, read_lake_info
from engine.lake.outputs import merge_sources
from engine.lake.store import LakeDir
from engine.tempfiles import temp_path

__all__ = ["publish_staged"]


def _merged(staged: Path, remote_copy: Path, name: str, replace_damaged: bool) -> Path:
    """``staged`` plus the rows of ``remote_copy`` whose sources it does not replace (a new file)."""
    mine = read_lake_info(staged)
    try:
        theirs = read_lake_info(remote_copy)
        problem = (
            None
            if theirs.complete
            else f"its footer says {theirs.rows:,} rows but it holds {theirs.num_rows:,}"
        )
    except SinkError as exc:
        theirs, problem = None, str(exc)
    if problem is not None or theirs is None:
        if replace_damaged:
            return staged
        msg = (
            f"{name} exists in the lake but is not a complete lake file ({problem}), so the rows of its "
            f"other sources cannot be kept; re-ingest every source file of that day with --force"
        )
        raise SinkError(msg)
    others = [
        s for s in theirs.sources if s.row_groups[1] > 0 and not any(m.replaces(s) for m in mine.sources)
    ]
    if not others:
        return staged
    merged = PartAssembler(temp_path(staged, "merge"))
    try:
        parts = [(remote_copy, s) for s in others] + [(staged, s) for s in mine.sources]
        merge_sources(merged, parts, mine.day or "", mine.symbol, name)
    except BaseException:
        merged.abort()
        raise
    return merged.path


def publish_staged(staging: Path, lake: LakeDir, *, replace_damaged: bool = False) -> list[str]:
    """Move every lake file of the local ``staging`` lake into ``lake``; returns their URLs.

    Raises
    ------
    SinkError
        If a remote day file is damaged (unless ``replace_damaged``) or its row groups disagree
        with its footer; files published before the error stay (each is complete on its own).
    """
    out = []
    for f in list_lake(staging, by_symbol=None):
        staged = Path(f.path)
        name = staged.name
        remote_copy = temp_path(staged, "remote")
        try:
            have = lake.download(name, remote_copy)
            final = _merged(staged, remote_copy, name, replace_damaged) if have else staged
            out.append(str(lake.publish(final, name)))
            if final != staged:
                final.unlink(missing_ok=True)
        finally:
            with contextlib.suppress(FileNotFoundError):
                remote_copy.unlink()
    return out
