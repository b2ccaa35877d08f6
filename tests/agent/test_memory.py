"""The agent's glibc allocator controls, in a fresh interpreter (a clean heap)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# 40 MiB of 1 KiB blocks (malloc'd by glibc, not pymalloc) under one block that stays:
# freed, they are a hole glibc keeps unless malloc_trim hands it back.
SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from edgesite_agent.memory import Allocator

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

allocator = Allocator()
print("arenas", allocator.limit_arenas(1))
blocks = [bytearray(1024) for _ in range(40 * 1024)]
pin = bytearray(1024)
del blocks
before = rss_mib()
allocator.trim()
print("released_mib", round(before - rss_mib(), 1))
print("ctypes_loaded", "ctypes" in sys.modules)
"""


@pytest.mark.skipif(not Path("/usr/lib/x86_64-linux-gnu/libc.so.6").exists()
                    and not Path("/lib/x86_64-linux-gnu/libc.so.6").exists(),
                    reason="glibc only")  # fmt: skip
def test_trim_gives_freed_heap_back_without_the_ctypes_package() -> None:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT, str(REPO)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    figures = dict(zip(out[::2], out[1::2], strict=True))
    assert figures["arenas"] == "True"
    assert float(figures["released_mib"]) > 20, figures
    # `_ctypes` directly: the ctypes package would cost the agent ~0.25 MiB more.
    assert figures["ctypes_loaded"] == "False"
