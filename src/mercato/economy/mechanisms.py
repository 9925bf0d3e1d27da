"""Allocation mechanisms of the service economy, behind one pluggable interface.

Interface (stable; new mechanisms such as VCG over slices or the clinching auction plug in here)
-------------------------------------------------------------------------------------------------

Every round, for every capacity pool (one without governance; compliant and general pools under
governance), the simulator builds a :class:`RoundBook` and calls ``mechanism.allocate(book)``,
which returns an :class:`Allocation`. A mechanism object lives for one run and one pool, so it may
keep state across rounds (prices, EMA); it is built by a factory
``factory(pool: PoolSpec, params: Parameters) -> Mechanism`` registered under a name with
:func:`register_mechanism`; ``EconomyConfig.mechanism`` names it.

``RoundBook`` (all arrays have one entry per task of the pool, in the same order):

* ``bids``: reported expected values ``EV = p_success * v_reported * exp(-0.005 * L^)`` (>= 0),
  what price-based rules compare with prices. Strategic agents inflate ``v_reported``.
* ``weights``: the same without the success factor, ``v_reported * exp(-0.005 * L^)``.
* ``classes`` (deadline class index), ``success_a`` / ``success_b`` (per class, the learned
  model ``sigma(a + b * rho)``) and ``predicted_rho`` (the forecast bottleneck utilisation used
  in ``bids``).
* ``bundles`` (n, 3) integer capacity units per tier (device, edge, cloud), derived from each
  task's DAG; ``templates`` (catalogue index of the DAG); ``deadlines`` (ms); ``agents``.
* ``pool``: :class:`PoolSpec` with the pool's per-tier ``capacity``, ``slice_capacity`` (the
  integrator's max-flow slice capacity under hybrid architectures, ``None`` under naive),
  ``execution_efficiency`` (load factor applied at execution) and the catalogue's mean bundle.
* ``rng``: the run's mechanism random stream (for random orders and tie breaks); ``round``.

``Allocation``: ``admitted`` (bool per task), ``payments`` (what each admitted task pays, 0 for
the others; welfare ignores payments, agents' utilities do not) and ``prices`` (the prices the
mechanism posted this round, one per priced good: tiers for the naive market, the slice price
for an integrator; empty for priceless rules). Price volatility is measured on ``prices``.

Feasibility is the mechanism's job and the simulator checks it: under naive architectures the
admitted bundles must fit every tier (``sum bundles <= capacity``); under hybrid ones the number
of admitted tasks must not exceed ``slice_capacity`` (agents see the integrator's scalar
slice, Proposition 3; its internal tiers may then be over-committed when the mix is heavy).
:func:`pack` does this for any preference order, and :func:`admit` applies the run's admission
rule described next; both are meant for reuse by new mechanisms.

Built-in rules (paper 003, Exp. 6, reference semantics)
-------------------------------------------------------

* ``random``: random order, packed to capacity.
* ``edf``: earliest deadline first (ties random), packed to capacity.
* ``value_greedy``: decreasing ``bids`` (positive only), no prices.
* ``market``: tâtonnement on per-tier prices (15 iterations, prices kept across rounds), then
  admission by decreasing surplus ``bid - bundle . p`` (positive only); each admitted task pays
  its bundle's price. Under a hybrid architecture ``market`` means the integrator
  (:mod:`mercato.economy.integrator`).

**Admission rule** (``EconomyConfig.admission``). ``paper`` (the default) is the paper's and the
reference's: value-based rules admit every positive-surplus task that fits. ``welfare_aware``
is mercato's variant, the *congestion-aware stop*: packing to capacity drives a tier to
``rho = 1``, where the queueing term saturates (+198 ms per tier visit at medium load) and every
admitted task misses its deadline, so the rules that have a value model (``value_greedy``,
``market``, the integrator) stop where the next task would lower the expected welfare
``sum_k sigma(a_c + b_c * rho(A)) * w_k`` of the admitted set ``A`` under the agents' learned
success model (:func:`mercato.economy.book.admit`). Rules without a value model (``random``,
``edf``) pack to capacity under either rule (:data:`STOPPING_RULES` names the ones it changes).
The experiments report both, so a reader sees which findings the choice drives.
"""

from __future__ import annotations

import numpy as np

from mercato.economy.book import (
    NO_PRICES,
    Allocation,
    Mechanism,
    MechanismFactory,
    PoolSpec,
    RoundBook,
    admit,
    by_decreasing,
    mask,
    pack,
)
from mercato.economy.config import Parameters
from mercato.economy.integrator import Integrator
from mercato.mechanisms.tatonnement import bundle_demand, tatonnement

_REGISTRY: dict[str, MechanismFactory] = {}
# Built-in rules whose admissions depend on EconomyConfig.admission.
STOPPING_RULES: tuple[str, ...] = ("value_greedy", "market")


def register_mechanism(name: str, factory: MechanismFactory) -> None:
    """Make ``name`` usable as ``EconomyConfig.mechanism`` (re-registering replaces it)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"mechanism name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory


def mechanism_names() -> tuple[str, ...]:
    """Registered mechanism names, built-ins first."""
    return tuple(_REGISTRY)


def make_mechanism(name: str, pool: PoolSpec, params: Parameters) -> Mechanism:
    """Build the named mechanism for one pool; ValueError naming the choices when unknown."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown mechanism {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name](pool, params)


# --- built-in rules ------------------------------------------------------------------------


class RandomPacking:
    """Random feasible packing: no value model, no prices."""

    name = "random"

    def allocate(self, book: RoundBook) -> Allocation:
        """Pack a uniformly random order to capacity."""
        chosen = pack(book, book.rng.permutation(book.size))
        return Allocation(mask(book, chosen), np.zeros(book.size), NO_PRICES)


class EarliestDeadlineFirst:
    """Earliest deadline first: scheduling awareness without a value model."""

    name = "edf"

    def allocate(self, book: RoundBook) -> Allocation:
        """Pack by increasing deadline (random tie break) to capacity."""
        order = np.lexsort((book.rng.random(book.size), book.deadlines))
        return Allocation(mask(book, pack(book, order)), np.zeros(book.size), NO_PRICES)


class ValueGreedy:
    """Value-greedy: the centralised value-optimal baseline (needs every agent's report)."""

    name = "value_greedy"

    def allocate(self, book: RoundBook) -> Allocation:
        """Pack by decreasing reported expected value (positive only), then the admission rule."""
        chosen = admit(book, pack(book, by_decreasing(book.bids)))
        return Allocation(mask(book, chosen), np.zeros(book.size), NO_PRICES)


class TierMarket:
    """Per-tier tâtonnement market (the naive architecture's price mechanism)."""

    name = "market"

    def __init__(self, pool: PoolSpec, params: Parameters) -> None:
        self.params = params
        self.prices = np.full(pool.capacity.size, params.price_init)

    def allocate(self, book: RoundBook) -> Allocation:
        """Update tier prices, then admit by decreasing positive surplus; tasks pay bundle prices."""
        p = self.params
        result = tatonnement(bundle_demand(book.bids, book.bundles), book.pool.capacity, self.prices,
                             iterations=p.tatonnement_iterations, step=p.tatonnement_step,
                             floor=p.price_floor, cap=p.price_cap)
        self.prices = result.prices
        cost = book.bundles @ self.prices
        chosen = admit(book, pack(book, by_decreasing(book.bids - cost)))
        admitted = mask(book, chosen)
        return Allocation(admitted, np.where(admitted, cost, 0.0), self.prices.copy())


def _market(pool: PoolSpec, params: Parameters) -> Mechanism:
    """Per-tier tâtonnement under naive architectures, the integrator's slice market under hybrid."""
    return Integrator(pool, params) if pool.hybrid else TierMarket(pool, params)


register_mechanism("random", lambda pool, params: RandomPacking())
register_mechanism("edf", lambda pool, params: EarliestDeadlineFirst())
register_mechanism("value_greedy", lambda pool, params: ValueGreedy())
register_mechanism("market", _market)
