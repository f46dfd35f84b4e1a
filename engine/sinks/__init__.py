"""Sinks take the column blocks of one source file and make them durable (Parquet lake, QuestDB)."""

from __future__ import annotations

from engine.sinks.base import FileSink, SinkResult

__all__ = ["FileSink", "SinkResult"]
