"""The system Chromium that the browser tests and the chart benchmark drive with Playwright.

Never a downloaded browser: Debian's ``chromium`` (``.ci/run`` installs it when missing).
"""

from __future__ import annotations

import os
import shutil

__all__ = ["CHROMIUM_ARGS", "find_chromium"]

CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
"""Launch flags of the system Chromium that work on our machines (offline, no GPU, as root)."""


def find_chromium() -> str | None:
    """The system Chromium: ``DATAPAIR_CHROMIUM``, else ``chromium`` on the PATH or ``/usr/bin/chromium``."""
    for c in (os.environ.get("DATAPAIR_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None
