"""Change code inside every process of a run started as a subprocess (workers come from a forkserver).

Monkeypatching the test process does not reach the pipeline's workers: they are forked by a
fresh forkserver interpreter. :func:`patched_env` writes a ``sitecustomize`` module that every
Python process started with the returned environment runs first (the run, its forkserver and
so its workers), so a test can slow or block a stage deterministically.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

__all__ = ["BLOCK_ENCODER_ON_DAY", "BLOCK_SENDER_AFTER", "KILL_WORKER_ONCE", "patched_env"]

BLOCK_ENCODER_ON_DAY = """
import threading
import engine.lake.encode as _enc

_real = _enc.encode_stripe

def _encode(arrays, job, options):
    n = _real(arrays, job, options)  # the part (a temporary file) is written ...
    if job.day == {day!r}:
        threading.Event().wait()  # ... but this day never finishes: the run waits to be stopped
    return n

_enc.encode_stripe = _encode
"""
"""Encode the stripes of ``day`` and then block forever (format with ``day=``)."""


BLOCK_SENDER_AFTER = """
import threading
import engine.questdb.sink as _sink

_real = _sink.open_sender

def _open(*args, **kwargs):
    sender = _real(*args, **kwargs)
    send, calls = sender.send, [0]

    def _send(block, final=False):
        send(block, final=final)
        calls[0] += 1
        if calls[0] >= {sends}:
            threading.Event().wait()  # these blocks went to the server; the rest of the file never does

    sender.send = _send
    return sender

_sink.open_sender = _open
"""
"""A QuestDB load sends its first ``sends`` blocks, then blocks forever (format with ``sends=``):
a load that is certainly mid-file when the test kills it."""


KILL_WORKER_ONCE = """
import os
import signal
import engine.lake.sink as _sink

_real = _sink.commit_output

def _commit(out, source, replace_damaged=False):
    armed, fired = {armed!r}, {fired!r}
    if os.path.exists(armed):
        try:
            fd = os.open(fired, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # exactly one process fires
        except FileExistsError:
            return _real(out, source, replace_damaged)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)  # mid-task: the day file is written under its temporary name
    return _real(out, source, replace_damaged)

_sink.commit_output = _commit
"""
"""Once ``armed`` exists, the first process to commit a lake file kills itself (format with
``armed=``, ``fired=``; ``fired`` gets its pid): a Dask worker dying in the middle of a task."""


def patched_env(where: Path, code: str) -> dict[str, str]:
    """An environment whose Python processes run ``code`` at start-up (written under ``where``)."""
    site = where / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(textwrap.dedent(code))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}
