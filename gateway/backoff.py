"""The one backoff helper every reconnect loop uses: full-jitter exponential, capped."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def backoff(
    base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """Yield delays uniform in [0, min(cap, base * 2**attempt)] (AWS "full jitter")."""
    attempt = 0
    while True:
        yield rng() * min(cap, base * 2**attempt)
        attempt = min(attempt + 1, 62)  # keeps 2**attempt a finite float
