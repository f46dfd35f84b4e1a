"""Numba kernels of the synthetic day generator (:mod:`engine.synth.day`).

:func:`fill_block` writes whole MBO events straight into a block of 56-byte records, viewed as
``(n, 7)`` little-endian ``uint64`` words (every field of the record sits inside one aligned
word, see the layout below; the host must be little-endian). All state that outlives a block
(the random generator, clocks, counters, each symbol's price and its live orders) sits in the
flat arrays of a :class:`DayState`, so order lifecycles span blocks and the output does not
depend on the block size: a block ends before an event that might not fit, and the next call
carries on from the same state.

Word layout of one record (DESIGN.md section 2)::

    0: length u8 | rtype u8 << 8 | publisher_id u16 << 16 | instrument_id u32 << 32
    1: ts_event        2: order_id        3: price (i64 bits)
    4: size u32 | flags u8 << 32 | channel_id u8 << 40 | action u8 << 48 | side u8 << 56
    5: ts_recv         6: ts_in_delta (i32 bits) | sequence u32 << 32
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit

__all__ = [
    "G_NEXT_ORDER_ID",
    "G_PREV_TS",
    "G_RECORDS_DONE",
    "G_RESETS_DONE",
    "G_SEQUENCE",
    "G_SIZE",
    "G_TIME_BUCKET",
    "G_TOTAL",
    "MAX_EVENT_RECORDS",
    "POOL_CAPACITY",
    "TARGET_LIVE",
    "DayState",
    "fill_block",
    "splitmix64",
]

if sys.byteorder != "little":  # records are written as native uint64 words
    msg = "engine.synth.kernels writes DBN records as native words and needs a little-endian host"
    raise ImportError(msg)

# Indices into the int64 global state vector.
G_TOTAL = 0  # records the whole day will hold
G_RECORDS_DONE = 1  # records written so far
G_PREV_TS = 2  # ts_recv of the last event
G_NEXT_ORDER_ID = 3  # next order id to hand out
G_SEQUENCE = 4  # sequence of the last record
G_RESETS_DONE = 5  # R (clear book) records written, one per symbol at session start
G_TIME_BUCKET = 6  # current bucket of the intraday activity profile
G_SIZE = 7

MAX_FILLS = 3
MAX_EVENT_RECORDS = 3 * MAX_FILLS  # a trade sweeping MAX_FILLS orders writes T + F + C per fill
POOL_CAPACITY = 1024  # live orders one side of one symbol can hold
TARGET_LIVE = 320  # live orders per symbol (both sides) the add/remove mix steers towards

_RECORD_HEAD = 14 | (0xA0 << 8) | (2 << 16)  # length 14 words, rtype MBO, publisher XNAS.ITCH
_F_LAST = np.uint64(128 << 32)
_UNDEF_PRICE = 2**63 - 1
_LOT = 100
_ACT_ADD, _ACT_CANCEL, _ACT_MODIFY = ord("A"), ord("C"), ord("M")
_ACT_CLEAR, _ACT_TRADE, _ACT_FILL = ord("R"), ord("T"), ord("F")
_SIDE_ASK, _SIDE_BID, _SIDE_NONE = ord("A"), ord("B"), ord("N")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_U53 = 1.0 / 9007199254740992.0
_EXP_TABLE = -np.log((np.arange(4096) + 0.5) / 4096.0)  # Exp(1) quantiles: no log per draw
_TICK = 10_000_000  # $0.01 in price units (1e-9)
_OID_BITS = 40
_OID_MASK = (1 << _OID_BITS) - 1
_PX_LIMIT = (1 << 23) - 1  # prices stay below $83,886 so a key fits in 63 bits


@njit(cache=True, inline="always")
def splitmix64(rng: np.ndarray) -> np.uint64:
    """Advance the SplitMix64 generator kept in ``rng[0]`` and return its next 64-bit output."""
    z = rng[0] + _GOLDEN
    rng[0] = z
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(rng: np.ndarray) -> float:
    return float(splitmix64(rng) >> np.uint64(11)) * _U53


@njit(cache=True, inline="always")
def _geometric(rng: np.ndarray, mean: float, cap: int) -> int:
    """0, 1, 2, ... with the given mean (exponential, floored), at most ``cap``."""
    k = int(_EXP_TABLE[splitmix64(rng) >> np.uint64(52)] * mean)
    return cap if k > cap else k


@njit(cache=True, inline="always")
def _write(out, n, iid, ts_recv, ts_event, delta, oid, price, size, action, side, seq):
    out[n, 0] = np.uint64(_RECORD_HEAD) | (np.uint64(iid) << np.uint64(32))
    out[n, 1] = np.uint64(ts_event)
    out[n, 2] = np.uint64(oid)
    out[n, 3] = np.uint64(price)
    out[n, 4] = (
        np.uint64(size) | (np.uint64(action) << np.uint64(48)) | (np.uint64(side) << np.uint64(56))
    )  # flags and channel_id 0; F_LAST is set on the event's last record afterwards
    out[n, 5] = np.uint64(ts_recv)
    out[n, 6] = np.uint64(delta) | (np.uint64(seq) << np.uint64(32))


@njit(cache=True, inline="always")
def _next_sequence(rng, gstate, seq_gap_p):
    gap = 1
    if _uniform(rng) < seq_gap_p:
        gap += 1 + int(_uniform(rng) * 4.0)
    gstate[G_SEQUENCE] += gap
    return gstate[G_SEQUENCE]


@njit(cache=True, inline="always")
def _order_key(side, px, oid):
    """Sort key of a live order: the best order of a side has the smallest key (price, then age)."""
    p = px if side == 1 else _PX_LIMIT - px
    return (p << _OID_BITS) | oid


@njit(cache=True, inline="always")
def _key_price(side, key):
    p = key >> _OID_BITS
    return p if side == 1 else _PX_LIMIT - p


@njit(cache=True, inline="always")
def _remove(k, last, pool_key, pool_rem):
    """Drop live order ``k`` by moving the pool's last live order (``last``) into its slot."""
    pool_key[k] = pool_key[last]
    pool_rem[k] = pool_rem[last]


@njit(cache=True, inline="always")
def _best(base, live, pool_key):
    """Slot (relative to ``base``) of the best of ``live`` orders in a side pool, or -1 if empty."""
    if live == 0:
        return -1
    m = pool_key[base]
    for j in range(1, live):  # a plain min reduction: vectorizes
        m = min(m, pool_key[base + j])
    for j in range(live):
        if pool_key[base + j] == m:
            return j
    return -1


@njit(cache=True, inline="always")
def _touch(s, side, pool_live, pool_key):
    """Best resting price (ticks) of ``side`` (0 bid, 1 ask) of symbol ``s``, or -1 if that side is empty."""
    p = 2 * s + side
    base = p * POOL_CAPACITY
    j = _best(base, pool_live[p], pool_key)
    return -1 if j < 0 else _key_price(side, pool_key[base + j])


@njit(cache=True, inline="always")
def _uncross(s, side, px, pool_live, pool_key):
    """``px`` moved, if needed, so an order on ``side`` does not cross the other side's best."""
    other = _touch(s, 1 - side, pool_live, pool_key)
    if other < 0:
        return px
    if side == 0:
        return min(px, other - 1) if other > 1 else px
    return max(px, other + 1)


@njit(cache=True, inline="always")
def _order_size(rng) -> int:
    if _uniform(rng) < 0.7:
        return _LOT * (1 + _geometric(rng, 1.5, 49))  # round lots
    return 1 + int(_uniform(rng) * 99.0)  # odd lots


@njit(cache=True, nogil=True)
def fill_block(
    out, gstate, rng, prof_frac, prof_ns, session_start, session_end, seq_gap_p,
    sym_iid, sym_cumw, sym_bid, sym_spread, sym_step_p, sym_step, sym_last_ev, pool_live, pool_key, pool_rem,
):  # fmt: skip
    """Write whole MBO events into ``out`` and return how many records it wrote.

    The day is causal, as a venue publishes it: within a symbol ts_event never goes backwards in
    feed order (``sym_last_ev``); every Cancel, Modify and Fill follows its order's Add; an
    execution is a Trade (aggressor side), a Fill and a Cancel of the resting order (Databento's
    normalization: the Cancel takes the filled size off the book); adds and modifies never cross
    the other side's best resting price, so the book is never crossed after an event; trades
    print at the touch.

    Parameters
    ----------
    out : ndarray of uint64, shape (cap, 7)
        The block, one row of 7 words per 56-byte record; ``cap >= MAX_EVENT_RECORDS``.
    gstate : ndarray of int64, shape (G_SIZE,)
        Global counters (``G_*`` indices), updated in place.
    rng : ndarray of uint64, shape (1,)
        SplitMix64 state, updated in place.
    prof_frac, prof_ns : ndarray of float64 / int64
        Intraday profile: the day's first ``prof_frac[b]`` fraction of records falls before
        ``session_start + prof_ns[b]``; both increase from 0 to 1 / the session length.
    session_start, session_end : int
        UTC ns of the first event and the bound every ts_recv stays below.
    seq_gap_p : float
        Probability that the sequence skips a few numbers (messages of other instruments).
    sym_iid, sym_cumw, sym_bid, sym_spread, sym_step_p, sym_step : ndarray
        Per symbol: instrument id, cumulative activity weight, best bid (in $0.01 ticks, updated),
        quoted spread (ticks), probability and size (ticks) of a random-walk step per event.
    sym_last_ev : ndarray of int64
        Per symbol: the ts_event of its last record (updated).
    pool_live : ndarray of int64, shape (2 * n_symbols,)
        Live orders of pool ``2 * symbol + side`` (side 0 bid, 1 ask), updated.
    pool_key, pool_rem : ndarray of int64, shape (2 * n_symbols * POOL_CAPACITY,)
        Live orders: pool ``p`` owns slots ``[p * POOL_CAPACITY, p * POOL_CAPACITY + pool_live[p])``;
        sort key (price and order id, see ``_order_key``) and remaining size.

    Returns
    -------
    int
        Records written; fewer than ``cap`` when the next event might not fit or the day is done.
    """
    cap = out.shape[0]
    nsym = sym_iid.shape[0]
    total = gstate[G_TOTAL]
    nbuckets = prof_ns.shape[0] - 1
    n = 0
    while True:
        done = gstate[G_RECORDS_DONE]
        left = total - done
        if left <= 0 or cap - n < min(MAX_EVENT_RECORDS, left):
            break
        delta = 9_000 + _geometric(rng, 2_500.0, 200_000)  # ns from matching engine to capture
        start = n

        if gstate[G_RESETS_DONE] < nsym:  # session start: clear every book, one event each
            s = gstate[G_RESETS_DONE]
            ts = session_start + s * 1_000
            ev = max(ts - delta, sym_last_ev[s])
            sym_last_ev[s] = ev
            seq = _next_sequence(rng, gstate, seq_gap_p)
            _write(out, n, sym_iid[s], ts, ev, delta, 0, _UNDEF_PRICE, 0, _ACT_CLEAR, _SIDE_NONE, seq)
            n += 1
            gstate[G_RESETS_DONE] = s + 1
        else:
            # ts_recv: follow the intraday profile, with bursts of closely spaced events
            x = done / total
            b = gstate[G_TIME_BUCKET]
            while b < nbuckets - 1 and prof_frac[b + 1] <= x:
                b += 1
            gstate[G_TIME_BUCKET] = b
            f0 = prof_frac[b]
            w = (x - f0) / (prof_frac[b + 1] - f0)
            target = session_start + prof_ns[b] + int(w * (prof_ns[b + 1] - prof_ns[b]))
            prev = gstate[G_PREV_TS]
            ts = target
            if _uniform(rng) < 0.3:
                ts = prev + 1 + int(_uniform(rng) * 2_000.0)
            ts = max(ts, prev + 1)
            ts = max(min(ts, session_end - 1), prev)

            # which symbol, and its price random walk
            s = min(np.searchsorted(sym_cumw, _uniform(rng) * sym_cumw[nsym - 1], side="right"), nsym - 1)
            iid = sym_iid[s]
            if _uniform(rng) < sym_step_p[s]:
                step = sym_step[s] if _uniform(rng) < 0.5 else -sym_step[s]
                sym_bid[s] = min(max(sym_bid[s] + step, 100), _PX_LIMIT // 2)
            bid = sym_bid[s]
            ask = bid + sym_spread[s]
            ev = max(ts - delta, sym_last_ev[s])  # the matching engine's clock, per symbol, never back
            sym_last_ev[s] = ev
            live_b = pool_live[2 * s]
            live_a = pool_live[2 * s + 1]
            live = live_b + live_a

            # which kind of event: steer the live order count towards TARGET_LIVE
            p_add = min(max(0.47 - 0.25 * (live / TARGET_LIVE - 1.0), 0.2), 0.95)
            if live == 0:
                p_add = 1.0
            u = _uniform(rng)
            v = (u - p_add) / (1.0 - p_add) if u >= p_add else -1.0
            kind = 0 if v < 0.0 else (1 if v < 0.64 else (2 if v < 0.78 else (3 if v < 0.95 else 4)))
            agg_bid = False
            rest = 0
            if kind == 0:
                side = 0 if _uniform(rng) < 0.5 else 1
                if pool_live[2 * s + side] >= POOL_CAPACITY:  # pool full: cancel instead
                    kind = 1
            elif kind == 3:  # trade against the book: needs a resting order on the other side
                agg_bid = _uniform(rng) < 0.5
                rest = 1 if agg_bid else 0
                if pool_live[2 * s + rest] == 0 or left < 3:
                    kind = 4

            if kind == 0:  # add
                k = _geometric(rng, 2.0, 60)
                px = max(bid - k, 1) if side == 0 else ask + k
                px = _uncross(s, side, px, pool_live, pool_key)
                size = _order_size(rng)
                oid = gstate[G_NEXT_ORDER_ID]
                gstate[G_NEXT_ORDER_ID] = oid + 1 + _geometric(rng, 0.5, 8)
                p = 2 * s + side
                slot = p * POOL_CAPACITY + pool_live[p]
                pool_key[slot] = _order_key(side, px, oid)
                pool_rem[slot] = size
                pool_live[p] += 1
                seq = _next_sequence(rng, gstate, seq_gap_p)
                sd = _SIDE_BID if side == 0 else _SIDE_ASK
                _write(out, n, iid, ts, ev, delta, oid, px * _TICK, size, _ACT_ADD, sd, seq)
                n += 1
            elif kind == 1 or kind == 2:  # cancel (full or partial) or modify a live order
                j = min(int(_uniform(rng) * live), live - 1)
                side = 0 if j < live_b else 1
                if side == 1:
                    j -= live_b
                p = 2 * s + side
                base = p * POOL_CAPACITY
                k = base + j
                rem = pool_rem[k]
                oid = pool_key[k] & _OID_MASK
                px = _key_price(side, pool_key[k])
                sd = _SIDE_BID if side == 0 else _SIDE_ASK
                seq = _next_sequence(rng, gstate, seq_gap_p)
                if kind == 1:
                    size = rem if (rem == 1 or _uniform(rng) < 0.85) else 1 + int(_uniform(rng) * (rem - 1))
                    _write(out, n, iid, ts, ev, delta, oid, px * _TICK, size, _ACT_CANCEL, sd, seq)
                    if size == rem:
                        _remove(k, base + pool_live[p] - 1, pool_key, pool_rem)
                        pool_live[p] -= 1
                    else:
                        pool_rem[k] = rem - size
                else:
                    if _uniform(rng) < 0.5:  # re-peg near the touch
                        g = _geometric(rng, 1.0, 20)
                        px = max(bid - g, 1) if side == 0 else ask + g
                    else:
                        px = max(px + (1 if _uniform(rng) < 0.5 else -1), 1)
                    px = _uncross(s, side, px, pool_live, pool_key)
                    if _uniform(rng) < 0.3:
                        pool_rem[k] = 1 + min(int(_uniform(rng) * rem), rem - 1)
                    pool_key[k] = _order_key(side, px, oid)
                    _write(out, n, iid, ts, ev, delta, oid, px * _TICK, pool_rem[k], _ACT_MODIFY, sd, seq)
                n += 1
            elif kind == 3:  # aggressor sweeps up to MAX_FILLS resting orders: T + F + C per fill
                qty = _order_size(rng)
                max_fills = min(MAX_FILLS, left // 3)
                agg_sd = _SIDE_BID if agg_bid else _SIDE_ASK
                rest_sd = _SIDE_ASK if agg_bid else _SIDE_BID
                p = 2 * s + rest
                base = p * POOL_CAPACITY
                fills = 0
                j = _best(base, pool_live[p], pool_key)
                while j >= 0:
                    k = base + j
                    fill = min(qty, pool_rem[k])
                    px = _key_price(rest, pool_key[k]) * _TICK
                    oid = pool_key[k] & _OID_MASK
                    seq = _next_sequence(rng, gstate, seq_gap_p)
                    _write(out, n, iid, ts, ev, delta, 0, px, fill, _ACT_TRADE, agg_sd, seq)
                    seq = _next_sequence(rng, gstate, seq_gap_p)
                    _write(out, n + 1, iid, ts, ev, delta, oid, px, fill, _ACT_FILL, rest_sd, seq)
                    seq = _next_sequence(rng, gstate, seq_gap_p)
                    _write(out, n + 2, iid, ts, ev, delta, oid, px, fill, _ACT_CANCEL, rest_sd, seq)
                    n += 3
                    fills += 1
                    qty -= fill
                    if fill == pool_rem[k]:
                        _remove(k, base + pool_live[p] - 1, pool_key, pool_rem)
                        pool_live[p] -= 1
                    else:
                        pool_rem[k] -= fill
                    if qty <= 0 or fills >= max_fills:
                        break
                    j = _best(base, pool_live[p], pool_key)
            else:  # trade with no displayed resting order (hidden liquidity, side N), at the touch
                best_bid = _touch(s, 0, pool_live, pool_key)
                best_ask = _touch(s, 1, pool_live, pool_key)
                if best_bid < 0 and best_ask < 0:
                    px = bid
                elif best_bid < 0 or (best_ask >= 0 and _uniform(rng) < 0.5):
                    px = best_ask
                else:
                    px = best_bid
                size = _order_size(rng)
                seq = _next_sequence(rng, gstate, seq_gap_p)
                _write(out, n, iid, ts, ev, delta, 0, px * _TICK, size, _ACT_TRADE, _SIDE_NONE, seq)
                n += 1

        out[n - 1, 4] |= _F_LAST
        gstate[G_PREV_TS] = ts
        gstate[G_RECORDS_DONE] = done + (n - start)
    return n


class DayState:
    """Everything :func:`fill_block` carries from one block to the next, as flat arrays.

    Parameters
    ----------
    records : int
        Records the whole day holds.
    sym_iid, sym_weight, sym_bid, sym_spread, sym_step_p, sym_step : ndarray
        Per symbol: instrument id, activity weight, opening best bid ($0.01 ticks), spread
        (ticks), probability and size (ticks) of a random-walk step per event.
    prof_frac, prof_ns : ndarray
        Intraday activity profile (see :func:`fill_block`).
    session : tuple of int
        UTC ns of the session start and of the bound ts_recv stays below.
    rng_state, first_order_id, first_sequence : int
        Initial random state and counters.
    seq_gap_p : float
        Probability that the sequence skips a few numbers.
    """

    def __init__(
        self, *, records: int, sym_iid: np.ndarray, sym_weight: np.ndarray, sym_bid: np.ndarray,
        sym_spread: np.ndarray, sym_step_p: np.ndarray, sym_step: np.ndarray, prof_frac: np.ndarray,
        prof_ns: np.ndarray, session: tuple[int, int], rng_state: int, first_order_id: int,
        first_sequence: int, seq_gap_p: float,
    ) -> None:  # fmt: skip
        nsym = len(sym_iid)
        self.start_ns, self.end_ns = session
        self.prof_frac = np.ascontiguousarray(prof_frac, dtype=np.float64)
        self.prof_ns = np.ascontiguousarray(prof_ns, dtype=np.int64)
        self.seq_gap_p = float(seq_gap_p)
        self.sym_iid = np.ascontiguousarray(sym_iid, dtype=np.int64)
        self.sym_cumw = np.cumsum(np.asarray(sym_weight, dtype=np.float64))
        self.sym_bid = np.array(sym_bid, dtype=np.int64)  # a copy: the kernel walks it
        self.sym_spread = np.ascontiguousarray(sym_spread, dtype=np.int64)
        self.sym_step_p = np.ascontiguousarray(sym_step_p, dtype=np.float64)
        self.sym_step = np.ascontiguousarray(sym_step, dtype=np.int64)
        self.sym_last_ev = np.zeros(nsym, dtype=np.int64)
        self.pool_live = np.zeros(2 * nsym, dtype=np.int64)  # pool 2 * symbol + side (0 bid, 1 ask)
        self.pool_key = np.zeros(2 * nsym * POOL_CAPACITY, dtype=np.int64)
        self.pool_rem = np.zeros(2 * nsym * POOL_CAPACITY, dtype=np.int64)
        self.rng = np.array([rng_state], dtype=np.uint64)
        self.gstate = np.zeros(G_SIZE, dtype=np.int64)
        self.gstate[G_TOTAL] = records
        self.gstate[G_PREV_TS] = self.start_ns
        self.gstate[G_NEXT_ORDER_ID] = first_order_id
        self.gstate[G_SEQUENCE] = first_sequence

    @property
    def done(self) -> bool:
        """Whether the day's last record has been written."""
        return int(self.gstate[G_RECORDS_DONE]) >= int(self.gstate[G_TOTAL])

    def fill(self, words: np.ndarray) -> int:
        """Write the next records into ``words`` (shape ``(cap, 7)`` uint64); return how many."""
        return int(
            fill_block(
                words, self.gstate, self.rng, self.prof_frac, self.prof_ns, self.start_ns, self.end_ns,
                self.seq_gap_p, self.sym_iid, self.sym_cumw, self.sym_bid, self.sym_spread,
                self.sym_step_p, self.sym_step, self.sym_last_ev, self.pool_live, self.pool_key, self.pool_rem,
            )
        )  # fmt: skip
