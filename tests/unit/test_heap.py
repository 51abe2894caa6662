"""A mesh process serves big blocks from their own mappings for its whole life (tickmesh.runtime.steady_heap)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Frees a 4 MB block, then takes a 1 MB one: does the 1 MB block get a mapping of its own (given back
# when freed), or does it come from the heap because glibc raised its threshold past 1 MB?
PROBE = """
import ctypes, sys
from tickmesh.runtime import _LIBC, steady_heap
if _LIBC is None:
    print("no glibc"); sys.exit()
if sys.argv[1] == "steady":
    steady_heap()
def heap():
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith("[heap]"):
                start, end = line.split()[0].split("-")
                return int(start, 16), int(end, 16)
    return 0, 0
big = bytearray(4 << 20)
del big
block = bytearray(1 << 20)
at = ctypes.addressof((ctypes.c_char * len(block)).from_buffer(block))
start, end = heap()
print("heap" if start <= at < end else "mapped")
"""


def probe(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_a_big_block_freed_does_not_send_later_big_blocks_to_the_heap() -> None:
    default = probe("default")
    if default == "no glibc":
        pytest.skip("not glibc: its allocator has no such threshold")
    assert default == "heap"  # glibc's own behaviour, which the process must not keep
    assert probe("steady") == "mapped"
