"""Retry delays with full jitter: a random wait between 0 and the capped exponential.

Without jitter, every client of a Redis that restarts (every node, every push worker)
retries at the same instants and the first seconds after recovery are a stampede; full
jitter spreads them evenly ("Exponential Backoff And Jitter", AWS architecture blog).
A leaf module: randomness is injected, nothing of ours is imported.
"""

from __future__ import annotations

import random
from collections.abc import Callable


def full_jitter(attempt: int, base_s: float, max_s: float,
                rng: Callable[[], float] = random.random) -> float:
    """A delay in [0, min(max_s, base_s * 2**attempt)); `attempt` counts from 0."""
    ceiling = min(max_s, base_s * 2 ** min(attempt, 60))
    return float(rng() * ceiling)


class Backoff:
    """The delays of one retry loop: `next()` after a failure, `reset()` after a success."""

    def __init__(self, base_s: float, max_s: float,
                 rng: Callable[[], float] = random.random) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng

    def next(self) -> float:
        delay = full_jitter(self.attempt, self.base_s, self.max_s, self._rng)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
