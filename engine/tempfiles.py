"""One naming rule for every temporary file datapair writes, and one cleaner.

Every writer (lake files and parts, the export's download, the generator) writes under
``.NAME[.PURPOSE].<pid>.<8 hex>.tmp`` beside the final ``NAME`` and renames into place when
complete, so a reader never sees a half-written file under a final name. The writer's process
id is in the name: :func:`remove_stale_temps` deletes the ones whose writer no longer runs (a
killed run), and never those of a live writer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TEMP_PATTERN", "pid_alive", "remove_stale_temps", "replacing", "temp_path"]

TEMP_PATTERN = re.compile(r"^\..+\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def temp_path(final: str | os.PathLike[str], purpose: str = "") -> Path:
    """A hidden temporary name next to ``final``: ``.NAME[.PURPOSE].<pid>.<8 hex>.tmp``."""
    f = Path(final)
    tag = f".{purpose}" if purpose else ""
    return f.with_name(f".{f.name}{tag}.{os.getpid()}.{os.urandom(4).hex()}.tmp")


@contextmanager
def replacing(final: str | os.PathLike[str], purpose: str = "") -> Iterator[Path]:
    """Write ``final`` under its :func:`temp_path`: yields that path; renamed onto ``final`` when
    the block ends, removed if it raises (nothing half-written under the final name)."""
    tmp = temp_path(final, purpose)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` runs (a zombie, killed but not reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files in ``directory`` whose writer process no longer exists."""
    d = Path(directory)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    for entry in os.scandir(d):
        m = TEMP_PATTERN.match(entry.name)
        if m and entry.is_file(follow_symlinks=False) and not pid_alive(int(m["pid"])):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed
