"""Giving freed memory back to the system after a burst.

glibc's allocator keeps what a burst freed (a thousand TLS connections' buffers, say) for the
next allocation instead of returning it: relay's resident size stayed 30% higher after a
handshake flood ended, although nothing held those objects any more. ``malloc_trim(0)``
returns the free pages; it is called rarely (when a burst has ended), never per request.
Elsewhere than glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Callable[[int], int] = function
    return trim


def release() -> bool:
    """Return free heap pages to the system; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
