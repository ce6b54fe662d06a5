"""The one backoff helper every reconnect loop uses: full-jitter exponential, capped."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff(
    base: float = 0.5,
    cap: float = 30.0,
    rng: Callable[[], float] = random.random,
    floor: bool = False,
) -> Iterator[float]:
    """Yield delays uniform in [0, min(cap, base * 2**attempt)] (AWS "full jitter"); with
    ``floor``, in [base, ...]: never sooner than ``base``."""
    low = base if floor else 0.0
    attempt = 0
    while True:
        high = max(low, min(cap, base * 2**attempt))
        yield low + rng() * (high - low)
        attempt = min(attempt + 1, 62)  # keeps 2**attempt a finite float
