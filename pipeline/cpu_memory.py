"""Keep freed memory in the process on Linux, so CPU training and inference stop page-faulting.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh `mmap` and unmaps it on free.
A convolutional network's activations at 224 px are above it (efficientnet_lite0, batch 32: 154 MB in its
expanded blocks), so every batch the kernel zero-fills them page by page, single-threaded, while torch's threads
wait: 23,000 minor page faults per image in a forward pass (BENCHMARKS.md, "Freed memory kept"). With mmap off
and a high trim threshold, glibc reuses the freed blocks from its heap instead; peak memory is what it was, it is
just not given back between batches. The same effect PyTorch's CPU tuning guide gets from jemalloc or tcmalloc,
with nothing to install.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # give memory back to the system only above 1 GiB free at the heap's top

_done = False


def keep_freed_memory() -> bool:
    """Switch glibc's allocator to reuse freed large blocks (once per process); False where that is not glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs without mallopt
        return False
    _done = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
