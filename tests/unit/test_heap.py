"""A mesh process serves big blocks from their own mappings for its whole life (tickmesh.runtime.steady_heap)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Frees a 4 MB block, then takes a 1 MB one: does the 1 MB block get a mapping of its own (given back
# when freed), or does it come from the heap because glibc raised its threshold past 1 MB?
PROBE = """
import sys
from tickmesh.runtime import _LIBC, steady_heap
if _LIBC is None:
    print("no glibc"); sys.exit()
if sys.argv[1] == "steady":
    steady_heap()
def mappings():
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)
big = bytearray(4 << 20)
del big
before = mappings()
block = bytearray(1 << 20)
print("mapped" if mappings() > before else "heap")
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
