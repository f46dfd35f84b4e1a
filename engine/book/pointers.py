"""Typed data pointers of NumPy arrays, for the per-record helpers of the book kernels.

Numba increfs and decrefs every array a compiled function is passed, on every call (an atomic
operation each): with a dozen helper calls per MBO record that was most of the replay time.
The top-level kernels therefore take arrays (checked, owned by the caller for the whole call)
and hand the helpers :func:`data_ptr` pointers, which Numba passes as plain integers.
Capacities travel in ``meta`` (``M_*_CAP``, written by the top-level kernels on entry).
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

__all__ = ["data_ptr"]


@intrinsic
def data_ptr(typingctx, arr):  # pragma: no cover - compiled
    """``CPointer(dtype)`` to the first element of a C-contiguous array (no refcount, no copy)."""
    if not isinstance(arr, types.Array) or arr.layout != "C":
        return None
    ptrty = types.CPointer(arr.dtype)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        return ary.data

    return ptrty(arr), codegen
