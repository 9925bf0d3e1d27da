"""Random auction instances for the mechanism tests: mixed capacities, forbidden and negative pairs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def markets(draw: st.DrawFn, max_n: int = 7, max_m: int = 4, sparse: float | None = None,
            scarce: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, costs, capacity); NaN/-inf in values mark forbidden pairs, costs may exceed values."""
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, max_m))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 10.0, (n, m)).round(3)
    costs = rng.uniform(0.0, 8.0, (n, m)).round(3)
    prune = sparse if sparse is not None else draw(st.sampled_from([0.0, 0.2, 0.5]))
    mask = rng.random((n, m)) < prune
    values[mask] = np.where(rng.random(mask.sum()) < 0.5, np.nan, -np.inf)
    if scarce:
        capacity = rng.integers(0, 2, m)
        while capacity.sum() >= n and capacity.sum() > 0:
            capacity[np.argmax(capacity)] -= 1
    else:
        capacity = rng.integers(0, 4, m)
    return values, costs, capacity
