"""``keep_freed_memory``: glibc then serves a 3 MiB request from its heap, where a freed block
is reused, instead of a fresh mapping that is unmapped when freed and faulted in again next
time (docs/engine.md, "Page faults"). Each case runs in a fresh process: the settings are the
process's, and glibc's default threshold moves with what was freed before."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's"
)

#: prints how far one 3 MiB malloc moved the heap's end (sbrk(0)), in bytes
PROBE = """
import ctypes, sys
from regcore.training.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL(None)
libc.sbrk.restype = libc.malloc.restype = ctypes.c_void_p
libc.sbrk.argtypes, libc.malloc.argtypes = [ctypes.c_long], [ctypes.c_size_t]
before = libc.sbrk(0)
p = libc.malloc(3 << 20)
print(libc.sbrk(0) - before)
"""


def heap_growth(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_a_3_mib_block_comes_from_the_heap_only_with_the_settings():
    assert heap_growth("default") < 1 << 20  # mapped on its own, the heap barely moves
    assert heap_growth("keep") >= 3 << 20  # the heap grew to hold it
