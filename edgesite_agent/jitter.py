"""Random numbers for jitter, from the kernel, without the `random` module.

The agent only spreads retries and watch timeouts across many nodes; `random` would cost it
~0.3 MiB resident for that (it loads `_sha512`, `_bisect` and a Mersenne Twister state;
docs/agent.md). Tests inject their own source where they need exact values.
"""

from __future__ import annotations

import os


def uniform() -> float:
    """A float in [0, 1) with 53 random bits, like random.random()."""
    return (int.from_bytes(os.urandom(7), "big") >> 3) / 2**53


def between(low: int, high: int, rand: float | None = None) -> int:
    """An integer in [low, high], both included, like random.randint()."""
    return min(high, low + int((uniform() if rand is None else rand) * (high - low + 1)))
