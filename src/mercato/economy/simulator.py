"""The round loop of the continuum service economy (paper 003, Section V and supplementary S4).

One round, all tasks at once (numpy):

1. **Arrivals.** Each agent draws Poisson(lambda) tasks; each task gets a value U[1, 2], a
   deadline class ({100, 150, 200} ms, uniform), a 30% chance of being sensitive, and a service
   DAG drawn from the run's catalogue (:mod:`mercato.economy.dags`), which fixes its per-tier
   bundle and its critical-path structure.
2. **Governance** sends each task to a capacity pool or rejects it
   (:mod:`mercato.economy.governance`).
3. **Bids.** A task's expected value is ``EV = sigma(a_c + b_c * rho^) * v * exp(-0.005 * L^)``:
   the learned success probability of its deadline class at the pool's forecast bottleneck
   utilisation (last round's), times its value, discounted by its own latency estimate
   (:mod:`mercato.economy.latency`). Strategic agents report ``inflation * v`` instead of ``v``.
4. **Allocation.** The pool's mechanism admits tasks and sets payments
   (:mod:`mercato.economy.mechanisms`); the simulator checks feasibility.
5. **Execution.** Per pool and tier, ``rho = eff * admitted load / capacity`` gives the queueing
   latency; each admitted task's latency is drawn around its critical path under those tier
   latencies and succeeds iff it meets its deadline.
6. **Feedback.** Welfare, trust (:mod:`mercato.economy.trust`) and one SGD step of the success
   model (:mod:`mercato.economy.learning`).

Randomness comes from independent streams split off the run's seed (tasks, latency noise,
mechanism, strategic roles), so two mechanisms run with one seed face exactly the same tasks and
the same noise draws: comparisons between conditions are paired by seed. The same seed gives the
same result, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mercato.economy.book import Allocation, PoolSpec, RoundBook, by_decreasing, pack
from mercato.economy.config import EconomyConfig
from mercato.economy.dags import Catalogue, catalogue
from mercato.economy.governance import pool_shares, route
from mercato.economy.integrator import slice_capacity
from mercato.economy.latency import bid_latency, realised_latency, tier_latency
from mercato.economy.learning import SuccessModel
from mercato.economy.mechanisms import MechanismFactory, make_mechanism
from mercato.economy.metrics import SERIES, summarize
from mercato.economy.trust import update_trust


@dataclass(frozen=True)
class RunResult:
    """One run: its configuration, per-round series, posted prices per pool and summary metrics."""

    config: EconomyConfig
    series: dict[str, NDArray[np.float64]]
    prices: tuple[NDArray[np.float64], ...]
    metrics: dict[str, float]


EXECUTION_EFFICIENCY = {"naive": False, "hybrid": True, "hybrid_ema_only": False,
                        "hybrid_eff_capacity_only": False, "hybrid_eff_execution_only": True}
CAPACITY_EFFICIENCY = {"naive": False, "hybrid": True, "hybrid_ema_only": False,
                       "hybrid_eff_capacity_only": True, "hybrid_eff_execution_only": False}


def build_pools(config: EconomyConfig, cat: Catalogue) -> list[PoolSpec]:
    """The run's capacity pools, with the slice capacity and efficiency its architecture implies."""
    total = np.asarray(config.params.capacities, dtype=np.float64)
    eff = config.efficiency
    pools = []
    for name, share in pool_shares(config.governance, config.params):
        capacity = total * share
        slices = None
        if config.architecture != "naive":
            slices = slice_capacity(capacity, cat.mean_bundle,
                                    eff if CAPACITY_EFFICIENCY[config.architecture] else 1.0)
        pools.append(PoolSpec(name=name, capacity=capacity, mean_bundle=cat.mean_bundle,
                              execution_efficiency=eff if EXECUTION_EFFICIENCY[config.architecture]
                              else 1.0, slice_capacity=slices, admission=config.admission))
    return pools


def simulate(config: EconomyConfig, factory: MechanismFactory | None = None) -> RunResult:
    """Run one simulation; ``factory`` overrides the mechanism named in ``config``."""
    p = config.params
    cat = catalogue(config.topology, config.seed, p.catalogue_size, p.capacities, p.base_delays_ms)
    task_rng, noise_rng, mech_rng, role_rng = (np.random.default_rng(s) for s in
                                               np.random.SeedSequence(config.seed).spawn(4))
    pools = build_pools(config, cat)
    mechanisms = [factory(pool, p) if factory is not None else make_mechanism(config.mechanism, pool, p)
                  for pool in pools]
    n_agents, rounds = config.n_agents, config.rounds
    deadlines = np.asarray(p.deadlines_ms, dtype=np.float64)
    total_capacity = np.asarray(p.capacities, dtype=np.float64)
    strategic = np.zeros(n_agents, dtype=bool)
    strategic[role_rng.permutation(n_agents)[: round(config.strategic_share * n_agents)]] = True
    report_factor = np.where(strategic, config.inflation, 1.0)
    trust = np.full(n_agents, p.trust_init)
    model = SuccessModel(deadlines.size, p.success_a, p.success_b, p.success_learning_rate)
    offered_prev = np.zeros((len(pools), 3))
    rho_prev = np.zeros(len(pools))
    series = {name: np.full(rounds, np.nan) for name in SERIES}
    price_log: list[list[NDArray[np.float64]]] = [[] for _ in pools]

    for t in range(rounds):
        counts = task_rng.poisson(config.arrival_rate, n_agents)
        n = int(counts.sum())
        agents = np.repeat(np.arange(n_agents), counts)
        templates = task_rng.integers(cat.size, size=n)
        values = task_rng.uniform(p.value_low, p.value_high, n)
        classes = task_rng.integers(deadlines.size, size=n)
        sensitive = task_rng.random(n) < p.sensitive_share
        noise = noise_rng.standard_normal(n)
        bundles = cat.bundles[templates]
        pool_of = route(config.governance, sensitive, trust[agents], p)

        ran: list[NDArray[np.int64]] = []
        ran_rho: list[NDArray[np.float64]] = []
        latencies: list[NDArray[np.float64]] = []
        paid: list[NDArray[np.float64]] = []
        benchmark = penalty = 0.0
        executed_load = np.zeros(3)
        for j, (pool, mechanism) in enumerate(zip(pools, mechanisms, strict=True)):
            idx = np.flatnonzero(pool_of == j)
            b = bundles[idx]
            discount = np.exp(-p.latency_decay_per_ms
                              * bid_latency(cat.base_cp[templates[idx]], b, offered_prev[j], p))
            offered_prev[j] = b.sum(axis=0) / pool.capacity
            success = model.prob(classes[idx], rho_prev[j])
            weights = report_factor[agents[idx]] * values[idx] * discount
            book = RoundBook(round=t, bids=success * weights, weights=weights, classes=classes[idx],
                             success_a=model.a.copy(), success_b=model.b.copy(),
                             predicted_rho=float(rho_prev[j]), bundles=b, templates=templates[idx],
                             deadlines=deadlines[classes[idx]], agents=agents[idx], pool=pool,
                             rng=mech_rng)
            allocation = mechanism.allocate(book)
            _check(allocation, book, mechanism.name)
            price_log[j].append(np.asarray(allocation.prices, dtype=np.float64))
            chosen = idx[allocation.admitted]
            load = pool.execution_efficiency * bundles[chosen].sum(axis=0)
            rho = load / pool.capacity
            penalty += p.congestion_penalty * float((np.maximum(rho - 1.0, 0.0) ** 2).sum())
            rho_prev[j] = float(rho.max())
            executed_load += load
            lat = tier_latency(load, pool.capacity, config.arrival_rate, p)
            latencies.append(realised_latency(cat.critical_path(templates[chosen], lat), noise[chosen], p))
            ran.append(chosen)
            ran_rho.append(np.full(chosen.size, rho_prev[j]))
            paid.append(allocation.payments[allocation.admitted])
            true_ev = success * values[idx] * discount
            benchmark += float(true_ev[pack(book, by_decreasing(true_ev))].sum())

        done = np.concatenate(ran)
        latency = np.concatenate(latencies)
        met = latency <= deadlines[classes[done]]
        realised = np.where(met, values[done] * np.exp(-p.latency_decay_per_ms * latency), 0.0)
        utility = realised - np.concatenate(paid)
        trust = update_trust(trust, agents[done], met, p)
        model.update(classes[done], np.concatenate(ran_rho), met)
        liar = strategic[agents[done]]
        series["generated"][t] = n
        series["admitted"][t] = done.size
        series["successes"][t] = met.sum()
        series["rejected_by_governance"][t] = int((pool_of < 0).sum())
        if done.size:
            series["median_latency"][t] = np.median(latency)
            series["p95_latency"][t] = np.percentile(latency, 95)
        series["welfare"][t] = realised.sum() - penalty
        series["benchmark"][t] = benchmark
        series["offered_utilisation"][t] = (bundles.sum(axis=0) / total_capacity).mean()
        series["realised_utilisation"][t] = (executed_load / total_capacity).mean()
        series["bottleneck_rho"][t] = rho_prev.max()
        series["revenue"][t] = np.concatenate(paid).sum()
        series["utility_truthful"][t] = utility[~liar].sum()
        series["utility_strategic"][t] = utility[liar].sum()
        series["tasks_strategic"][t] = strategic[agents].sum()
        series["tasks_truthful"][t] = n - series["tasks_strategic"][t]

    prices = tuple(np.vstack(log) for log in price_log)
    return RunResult(config, series, prices, summarize(series, prices, trust, p))


def _check(allocation: Allocation, book: RoundBook, name: str) -> None:
    """Reject an allocation of the wrong shape or one that breaks the pool's capacity."""
    if allocation.admitted.shape != (book.size,) or allocation.payments.shape != (book.size,):
        raise ValueError(f"mechanism {name!r} returned arrays of shape {allocation.admitted.shape} / "
                         f"{allocation.payments.shape} for {book.size} tasks")
    pool = book.pool
    if pool.slice_capacity is not None:
        if int(allocation.admitted.sum()) > pool.slice_capacity:
            raise ValueError(f"mechanism {name!r} admitted {int(allocation.admitted.sum())} tasks "
                             f"into a slice of capacity {pool.slice_capacity}")
    else:
        load = book.bundles[allocation.admitted].sum(axis=0)
        if (load > pool.capacity + 1e-9).any():
            raise ValueError(f"mechanism {name!r} over-allocated pool {pool.name!r}: load {load} "
                             f"exceeds capacity {pool.capacity}")
