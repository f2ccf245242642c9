"""Derived random seeds: one run seed and an index (step, epoch, batch, sample) give one integer.

`seed_for(seed, k) = seed * 1_000_003 + k`: the large prime multiplier keeps the streams of two run seeds
apart for any index below 1_000_003. Used for the training batch order and dropout, and the per-batch and
per-sample seeds of generation, so the same config reproduces the same numbers.
"""

from __future__ import annotations


def seed_for(seed: int, k: int) -> int:
    """The seed for index `k` (a step, epoch, batch or sample number) of a run seeded `seed`."""
    return seed * 1_000_003 + k
