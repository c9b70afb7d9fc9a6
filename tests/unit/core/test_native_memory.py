"""The servers' malloc tuning: a large block keeps its own mapping, so it cannot pin the heap."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from safebus.native_memory import tune_malloc

on_glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the tuning is a glibc setting")

_LIBC = """
import ctypes, sys
from safebus import logs
from safebus.native_memory import tune_malloc
logs.configure(level="ERROR")
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    assert tune_malloc()
"""

# Freeing a mapped 4 MiB block makes glibc raise its mmap threshold to 4 MiB, so by default a
# 512 KiB block then comes from the heap, where it can pin the heap's top; tuned, it is mapped.
_MAPPED_AFTER_A_BIG_FREE = _LIBC + """
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
held = libc.malloc(512 << 10)
print(libc.mallinfo2().hblks - before)
"""

def _run(probe: str, mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True)


@on_glibc
def test_a_large_block_is_mapped_even_after_a_larger_one_was_freed() -> None:
    """The fixed threshold: the block gets its own mapping (returned on free) where glibc would use the heap."""
    assert _run(_MAPPED_AFTER_A_BIG_FREE, "default").stdout.strip() == "0", "the probe shows glibc's own rule"
    assert _run(_MAPPED_AFTER_A_BIG_FREE, "tuned").stdout.strip() == "1"


def test_elsewhere_than_glibc_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """musl or macOS: no tuning and no error, the server runs as before."""
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    assert tune_malloc() is False


def test_a_threshold_that_is_not_positive_is_refused() -> None:
    """Zero would map every block: never what a caller means, so it is an error, not a setting."""
    with pytest.raises(ValueError, match="must be positive"):
        tune_malloc(0)
