"""The paper's 9-agent market (Appendix D, Table 2) and its per-trial dynamic costs (Eq. 5).

Base output prices in $ per 1M tokens follow a 1 : 5 : 25 tier progression with 3x spread
inside each tier. In a trial at hour t ~ U(0, 24), agent i's private cost is
``c_i = base_i * S_i * (1 + beta * E(t))`` with spot multiplier S_i ~ U(0.1, 1.0), beta = 1.5
and ``E(t) = 0.5 * (1 + sin(2 pi (t - 8) / 24))``. Because t is common knowledge, the buyer's
prior on c_i is uniform on ``[0.1, 1.0] * base_i * (1 + beta * E(t))``, so phi_i(b) = 2b - low_i.

The paper does not give the input-price ratio rho; ``DEFAULT_INPUT_RATIO = 0.25`` is the
geometric middle of the 2x-8x input discount it cites (rho in [1/8, 1/2]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mercato.mechanisms.myerson import UniformPrior, VirtualCost
from mercato.mechanisms.workflow import Agent

BASE_PRICES: dict[int, tuple[float, ...]] = {
    1: (0.10, 0.20, 0.30),
    2: (0.50, 1.00, 1.50),
    3: (2.50, 5.00, 7.50),
}
SPOT_RANGE = (0.1, 1.0)
BETA = 1.5
DEFAULT_INPUT_RATIO = 0.25


def electricity(t: float) -> float:
    """Diurnal electricity factor E(t) in [0, 1], lowest at 02:00 and highest at 14:00."""
    return 0.5 * (1.0 + math.sin(2.0 * math.pi * (t - 8.0) / 24.0))


def market_agents(input_ratio: float = DEFAULT_INPUT_RATIO, cached_discount: float = 0.0) -> list[Agent]:
    """The nine agents of Table 2, named ``t<tier><a|b|c>`` from cheapest to dearest."""
    return [Agent(f"t{tier}{'abc'[k]}", tier, input_ratio, cached_discount)
            for tier, prices in BASE_PRICES.items() for k in range(len(prices))]


def base_prices() -> NDArray[np.float64]:
    """Base output prices ($/1M tokens) in :func:`market_agents` order."""
    return np.array([p for prices in BASE_PRICES.values() for p in prices])


@dataclass(frozen=True)
class TrialCosts:
    """One trial's hour, true costs ($/1M output tokens) and the buyer's uniform priors."""

    hour: float
    costs: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]

    def virtual_costs(self) -> list[VirtualCost]:
        """phi_i for every agent, reserve at the top of its prior."""
        return [VirtualCost(UniformPrior(lo, hi)) for lo, hi in zip(self.low, self.high, strict=True)]


def draw_costs(rng: np.random.Generator) -> TrialCosts:
    """Sample t, the spot multipliers and so every agent's private cost for one trial."""
    hour = float(rng.uniform(0.0, 24.0))
    scale = base_prices() * (1.0 + BETA * electricity(hour))
    spot = rng.uniform(*SPOT_RANGE, scale.size)
    return TrialCosts(hour, scale * spot, scale * SPOT_RANGE[0], scale * SPOT_RANGE[1])
