"""
Native memory for long-running servers: hold glibc's mmap threshold fixed.

glibc serves an allocation above the *mmap threshold* (128 KiB at start) with
a mapping of its own, returned to the system on free. But the threshold is
dynamic: each time such a block is freed, the threshold rises to its size (up
to 32 MiB), so from then on blocks of that size come from the ordinary heap.
There they are carved from the top of the heap, a small long-lived block
lands above one, and the heap can no longer shrink past it: resident memory
ratchets up in steps of the large block's size, although nothing leaks.

The gateway does exactly this: each request allocates and frees buffers in
the native libraries under it (librdkafka, pydantic-core, the
``cryptography`` bindings), some above 128 KiB, while Python's own heap
(tracemalloc) stays flat. bench/gateway_soak.py saw its resident size climb
in ~2 MiB steps, all in the ``[heap]`` mapping, 0.064 of its keep-every-body
bound over 100,000 requests; with the threshold fixed, 0.009
(docs/adr/0011-malloc-tuning.md). Setting the threshold explicitly is what
turns the dynamic rise off.

It is set in-process with ``mallopt`` rather than by
``MALLOC_MMAP_THRESHOLD_`` in the environment, so it holds however the
process is started (the CLI, supervisor, a partner's own unit file); the
entry point calls it before serving. Elsewhere than glibc (musl, macOS) there
is nothing to tune and it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

from safebus.logs import get_logger

__all__ = ["SERVER_MMAP_THRESHOLD", "tune_malloc"]

SERVER_MMAP_THRESHOLD = 128 * 1024
"""glibc's own starting threshold, held fixed: what bench/gateway_soak.py measured flat."""

_M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number for the threshold (malloc.h)."""

_log = get_logger("native_memory")


def tune_malloc(mmap_threshold_bytes: int = SERVER_MMAP_THRESHOLD) -> bool:
    """
    Give every block of at least `mmap_threshold_bytes` its own mapping, from now on; return whether it took.

    False (and a debug log line) where the C library is not glibc or refuses
    the setting: the process runs as before, only untuned.
    """
    if mmap_threshold_bytes < 1:
        raise ValueError(f"the mmap threshold must be positive, not {mmap_threshold_bytes}")
    if platform.libc_ver()[0] != "glibc":
        _log.debug("native_memory.not_glibc")
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    took = bool(libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(mmap_threshold_bytes)))
    _log.debug("native_memory.tuned" if took else "native_memory.refused", mmap_threshold_bytes=mmap_threshold_bytes)
    return took
