"""Counter-based random numbers: reproducible draws keyed by what an example *is*.

A stateful generator consumed in a loop makes an example's random choices depend on every
example drawn before it, so building a subset, or building in another order, changes them.
Here draw ``j`` for the example identified by ``key`` is a hash of ``(seed, key, j)``, so an
example's candidates, shuffles and corruptions depend on the seed and on that example alone,
and a whole dataset's draws are computed in one vectorised call.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment: 2**64 / golden ratio


def random_draws(seed: int, keys: np.ndarray, start: int, count: int) -> np.ndarray:
    """Counter-based random numbers: draw ``j`` of example ``k`` is a hash of (seed, k, j).

    SplitMix64 (Steele et al., 2014) applied to the seed, then to each key column, then to the
    draw counter. Unlike one generator consumed in a loop, an example's draws do not depend on
    which other examples exist or in which order they are built, and all of them are computed
    at once (a stateful generator per example took most of the build time).

    Args:
        seed: The dataset seed (non-negative).
        keys: ``(E, K)`` non-negative integers identifying each example (e.g. user, position).
        start: Index of the first draw.
        count: Draws per example.

    Returns:
        ``(E, count)`` uint64.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    keys = np.asarray(keys, dtype=np.int64)
    if keys.size == 0:
        return np.empty((len(keys), count), dtype=np.uint64)
    keys = keys.reshape(len(keys), -1)
    if (keys < 0).any():
        raise ValueError("random_draws keys must be non-negative integers")
    state = _splitmix64(np.full(len(keys), seed, dtype=np.uint64))
    for column in keys.T:
        state = _splitmix64(state ^ column.astype(np.uint64))
    counters = np.arange(start, start + count, dtype=np.uint64)
    return _splitmix64(state[:, None] + counters[None, :] * _GOLDEN)  # (E, count)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 arrays (wrap-around arithmetic is intended)."""
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
