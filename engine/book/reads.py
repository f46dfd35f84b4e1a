"""Read kernels over the state arrays: the best levels of a side, the orders of a level, one order."""

from __future__ import annotations

from numba import njit

from engine.book.codes import SIDE_BID
from engine.book.pointers import data_ptr
from engine.book.state import (
    L_COUNT,
    L_KEY,
    L_SIZE,
    M_ORDER_CAP,
    O_OID,
    O_PRICE,
    O_PRIO,
    O_SIZE,
    O_TAG,
    S_N,
    S_OFF,
)
from engine.book.table import locate_order, slot_live, tag_book, tag_side

__all__ = ["level_orders", "order_info", "top_levels"]


@njit(cache=True)
def top_levels(sides, levels, bs, depth, out_price, out_size, out_count):  # pragma: no cover - compiled
    """Best ``depth`` levels of book side ``bs`` (best first) into the outputs; returns how many."""
    n = sides[bs, S_N]
    off = sides[bs, S_OFF]
    k = min(depth, n)
    for j in range(k):
        i = off + n - 1 - j
        key = levels[i, L_KEY]
        out_price[j] = key if (bs & 1) == SIDE_BID else -key
        out_size[j] = levels[i, L_SIZE]
        out_count[j] = levels[i, L_COUNT]
    return k


@njit(cache=True)
def level_orders(orders, sides, bs, price, out_oid, out_size, out_prio):  # pragma: no cover - compiled
    """The live orders of one level, in table order (a scan); returns how many were found."""
    o = data_ptr(orders)
    s = data_ptr(sides)
    b = bs >> 1
    n = 0
    for j in range(len(orders)):
        tag = orders[j, O_TAG]
        if tag < 0 or tag_book(tag) != b or tag_side(tag) != (bs & 1) or orders[j, O_PRICE] != price:
            continue
        if slot_live(o, s, j):
            if n < len(out_oid):
                out_oid[n] = orders[j, O_OID]
                out_size[n] = orders[j, O_SIZE]
                out_prio[n] = orders[j, O_PRIO]
            n += 1
    return n


@njit(cache=True)
def order_info(orders, sides, meta, b, oid, out):  # pragma: no cover - compiled
    """``out[:4]`` = side, price, size, priority of a live order; False if it is not in book ``b``."""
    meta[M_ORDER_CAP] = len(orders)
    j, _ = locate_order(data_ptr(orders), data_ptr(sides), data_ptr(meta), b, oid)
    if j < 0:
        return False
    out[0] = tag_side(orders[j, O_TAG])
    out[1] = orders[j, O_PRICE]
    out[2] = orders[j, O_SIZE]
    out[3] = orders[j, O_PRIO]
    return True
