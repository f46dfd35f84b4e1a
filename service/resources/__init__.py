"""HTTP resources: plain classes with ``on_get``/``on_post`` that talk to a :class:`~service.stores.base.Store`."""

from __future__ import annotations

from service.resources.book import BookResource
from service.resources.chart import BarsResource, RangeResource, SymbolsResource, TicksResource
from service.resources.data import DataResource
from service.resources.meta import HealthResource, OpenAPIResource
from service.resources.page import PageResource, StaticResource
from service.resources.timeconv import ToDatetimeResource, ToTimestampResource

__all__ = [
    "BarsResource",
    "BookResource",
    "DataResource",
    "HealthResource",
    "OpenAPIResource",
    "PageResource",
    "RangeResource",
    "StaticResource",
    "SymbolsResource",
    "TicksResource",
    "ToDatetimeResource",
    "ToTimestampResource",
]
