"""datapair service: the seed's HTTP contract and a chart API over the Parquet lake or QuestDB.

Falcon on waitress; ``python -m service`` (``datapair-serve``) serves it, :func:`create_app`
builds the WSGI app from a store, :func:`get_app` from the environment.
"""

from __future__ import annotations

from service.app import Settings, create_app, get_app

__all__ = ["Settings", "create_app", "get_app"]
