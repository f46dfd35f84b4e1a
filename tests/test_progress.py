"""Progress bars and the summary line."""

from __future__ import annotations

import io

from engine.progress import ProgressBoard, format_count, show_progress, summary_line


def test_summary_line_and_counts() -> None:
    line = summary_line(20_000_000, 4.0, nbytes=400_000_000, files=3, skipped=1, failed=0, label="ingest")
    assert (
        line == "ingest: 3 files, 20,000,000 rows in 4.00 s (5.00M rows/s, 100.0 MB/s), 1 skipped, 0 failed"
    )
    assert summary_line(1, 1.0) == "1 rows in 1.00 s (1 rows/s)"
    assert format_count(1234) == "1.23k" and format_count(12) == "12"


def test_progress_board_quiet_without_tty() -> None:
    stream = io.StringIO()
    assert not show_progress(False, stream) and not show_progress(True, stream)
    board = ProgressBoard(False, stream=stream)
    board.start(1, "f", 100)
    board.update(1, 50, 10)
    board.finish(1)
    assert stream.getvalue() == ""
    live = ProgressBoard(True, stream=stream)
    live.start(1, "day.dbn.zst", 1000)
    live.update(1, 500, 1_000_000)
    live.finish(1)
    assert "day.dbn.zst" in stream.getvalue()
