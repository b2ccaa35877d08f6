"""Jitter from the kernel's random bytes: in range, and spread over the whole range."""

from __future__ import annotations

from edgesite_agent.jitter import between, uniform


def test_uniform_is_in_zero_one_and_spread() -> None:
    values = [uniform() for _ in range(4000)]
    assert all(0.0 <= v < 1.0 for v in values)
    # Each tenth of the range gets 400 +- a few dozen; below 250 has a chance far under 1e-12.
    for tenth in range(10):
        assert sum(1 for v in values if tenth / 10 <= v < (tenth + 1) / 10) > 250, tenth


def test_between_covers_both_ends_and_never_leaves_the_range() -> None:
    values = [between(300, 600) for _ in range(6000)]
    assert min(values) >= 300 and max(values) <= 600
    assert min(values) <= 305 and max(values) >= 595  # missing both: ~1e-40
    # An injected source at its extremes stays inside too (tests inject 0.0 and 1.0).
    assert between(300, 600, 0.0) == 300
    assert between(300, 600, 1.0) == 600
    assert between(300, 600, 0.999999) == 600
