"""Where the service reads rows: the Parquet lake (default) or QuestDB, behind one interface."""

from __future__ import annotations

from service.stores.base import Cursor, RangeQuery, Store, SymbolRange
from service.stores.lake import LakeStore
from service.stores.questdb import QuestDBStore

__all__ = ["Cursor", "LakeStore", "QuestDBStore", "RangeQuery", "Store", "SymbolRange"]
