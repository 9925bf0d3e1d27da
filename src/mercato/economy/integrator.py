"""Hybrid architecture: an integrator that sells one slice type with a smoothed posted price.

Paper 003, Section IV-G and Table S3: the integrator encapsulates the tasks' multi-tier service
DAGs and exposes a single slice whose capacity is the max-flow of its sub-DAG (Proposition 3);
agents face one good at one posted price, and the price is smoothed by an EMA (0.8) over a target
that covers the resources bought (10% markup) and reacts to slice scarcity (step 0.15).

Choices where the paper is silent (reference semantics unless said):

* **Slice capacity.** The integrator's sub-DAG at tier level is the chain device -> edge ->
  cloud (every task template uses all three tiers, in that order of data flow), each tier a node
  able to serve ``floor(C_r / (mean_bundle_r * eff))`` tasks per round. Its max-flow, computed with
  :func:`mercato.mechanisms.encapsulation.max_flow_capacity`, is the bottleneck tier's figure,
  the reference's ``min_r floor(C_r / (d_r * eff))``.
* **Round.** (1) The integrator buys the resources for the slices it expects to sell -- the
  bundles, scaled by the efficiency factor, of the tasks bidding above its current posted price,
  up to its slice capacity -- on a local per-tier tâtonnement market, where that demand does not
  depend on tier prices (a first version let every task's bundle respond to tier prices, and the
  tier prices then flipped between zero and prohibitive, which the integrator passed on).
  (2) Resource price of an average slice: ``(1 + markup) * eff * mean_bundle . p``.
  (3) Scarcity price: tâtonnement on the single slice good (step 0.15, capacity = slice
  capacity). (4) Target = the larger of the two; posted price ``P <- 0.8 P + 0.2 target``.
  (5) Tasks whose bid exceeds ``P`` are admitted by decreasing bid up to the slice capacity,
  under the run's admission rule (:mod:`mercato.economy.mechanisms`); each pays ``P``.
* **Efficiency factor** (0.75 SP / tree, 0.85 entangled) enlarges slice capacity and shrinks the
  execution load; the architectures ``hybrid_eff_capacity_only`` / ``hybrid_eff_execution_only``
  apply it to one side only, which the reference could not separate.
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
from numpy.typing import NDArray

from mercato.economy.book import (
    Allocation,
    PoolSpec,
    RoundBook,
    admit,
    by_decreasing,
    mask,
    pack,
)
from mercato.economy.config import TIERS, Parameters
from mercato.mechanisms.encapsulation import max_flow_capacity
from mercato.mechanisms.tatonnement import bundle_demand, tatonnement


def slice_capacity(capacity: NDArray[np.float64], mean_bundle: NDArray[np.float64],
                   efficiency: float) -> int:
    """Tasks per round the integrator can promise: max-flow of its tier chain (see module doc)."""
    if efficiency <= 0:
        raise ValueError(f"efficiency must be > 0, got {efficiency}")
    chain = nx.DiGraph()
    for tier, cap, need in zip(TIERS, capacity, mean_bundle, strict=True):
        chain.add_node(tier, capacity=float(math.floor(cap / (need * efficiency))))
    nx.add_path(chain, TIERS)
    return int(max_flow_capacity(chain, TIERS))


class Integrator:
    """The slice market of one pool under a hybrid architecture (state kept across rounds)."""

    name = "market"

    def __init__(self, pool: PoolSpec, params: Parameters) -> None:
        if pool.slice_capacity is None:
            raise ValueError("an integrator needs a pool with a slice capacity (hybrid architecture)")
        self.params = params
        self.tier_prices = np.full(pool.capacity.size, params.price_init)
        self.scarcity_price = np.array([params.price_init])
        self.posted = params.price_init

    def allocate(self, book: RoundBook) -> Allocation:
        """Re-price the slice, then admit the highest bids above the posted price."""
        p = self.params
        pool = book.pool
        eff = pool.execution_efficiency
        wanted = pack(book, by_decreasing(book.bids - self.posted))
        committed = eff * book.bundles[wanted].sum(axis=0).astype(np.float64)
        local = tatonnement(lambda _: committed, pool.capacity, self.tier_prices,
                            iterations=p.tatonnement_iterations, step=p.tatonnement_step,
                            floor=p.price_floor, cap=p.price_cap)
        self.tier_prices = local.prices
        resource_price = (1.0 + p.markup) * eff * float(pool.mean_bundle @ self.tier_prices)
        scarcity = tatonnement(bundle_demand(book.bids, np.ones((book.size, 1))),
                               [float(pool.slice_capacity)], self.scarcity_price,
                               iterations=p.tatonnement_iterations, step=p.slice_step,
                               floor=p.price_floor, cap=p.price_cap)
        self.scarcity_price = scarcity.prices
        target = max(resource_price, float(self.scarcity_price[0]))
        self.posted = p.ema * self.posted + (1.0 - p.ema) * target
        chosen = admit(book, pack(book, by_decreasing(book.bids - self.posted)))
        admitted = mask(book, chosen)
        return Allocation(admitted, np.where(admitted, self.posted, 0.0), np.array([self.posted]))
