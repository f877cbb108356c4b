"""glibc malloc settings for batched training on CPU: keep freed memory for the next step.

PyTorch's CPU tensors come from ``malloc``. glibc serves a request above its mmap threshold
(128 KiB at first) with a fresh ``mmap`` and unmaps it when it is freed; it raises the threshold
as mapped chunks are freed, but how far depends on the order of earlier frees. A batched
engine's per-step tensors (members · batch · width floats: 1.3 MB at 32 members of the
benchmark's 100-wide MLP) sit right around it, so in some processes most steps mapped fresh
pages and faulted every one in: 20-56k minor page faults in 10 epochs at 32 members, against
4-8k with the settings below, and the epochs 4-8% slower (``benchmarks/ensemble.py``'s problem,
four alternating pairs of processes: training 159-165 ms an epoch against 163-178 ms, the
minimum of 10 epochs). A lone run of a small model allocates far below the threshold and never
paid this.

``keep_freed_memory()`` fixes the mmap threshold at 32 MiB (glibc's largest default) and trims
the heap only when 64 MiB are free at its top, so a process that trains batched reuses freed
memory instead of faulting it in again. Its peak memory is unchanged (the same tensors are
alive at once); up to 64 MiB freed stays mapped. Set once per process; nothing where the C
library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Set both thresholds once; True when the C library took them."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc's
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
