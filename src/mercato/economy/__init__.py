"""The continuum service-economy simulator of paper 003 (Section V, supplementary S4-S6).

``simulate(EconomyConfig(...))`` runs one configuration (Table S3 defaults: N = 50, lambda = 1,
200 rounds) and returns per-round series, posted prices and summary metrics;
:mod:`mercato.economy.runner` runs many in parallel; :mod:`mercato.economy.stats` holds the
statistics the experiments report; mechanisms plug in through :mod:`mercato.economy.mechanisms`.

Where the paper is silent, the authors' simulator (``economy-reference.md``) decides, except for
its listed defects. Each choice is documented in the module that makes it:

* **Per-task DAGs** (:mod:`~mercato.economy.dags`): every task draws its own service DAG from a
  per-run catalogue; its bundle and critical path come from that DAG. Mean bundles equal the
  reference's fixed profiles (linear 2/1/2, tree 2/2/2, SP 2/4/5, entangled 5/4/3), so offered
  utilisation matches Table S5; entangled DAGs are never series-parallel and revisit tiers.
* **Latency** (:mod:`~mercato.economy.latency`): bids use the task's own base critical path plus
  ``200 * rho^1.2`` with rho its bundle-weighted offered utilisation (not the reference's
  constant 50 ms, a bug); execution queueing uses the per-agent arrival rate as ``lambda_load``.
* **Success model** (:mod:`~mercato.economy.learning`): one logistic model per deadline class,
  on the pool's bottleneck utilisation.
* **Admission** (:mod:`~mercato.economy.mechanisms`, ``EconomyConfig.admission``): ``paper``
  (the default) packs every positive-surplus task that fits, as the paper and the reference do,
  up to ``rho = 1`` where the queueing term saturates; ``welfare_aware``, mercato's variant, makes
  rules with a value model stop where the next task would lower expected welfare under the
  learned model. Random and EDF pack to capacity under either. Tâtonnement prices start at 0.1
  and persist across rounds; market winners pay their bundle's price.
* **Integrator** (:mod:`~mercato.economy.integrator`): slice capacity is the max-flow of the
  tier chain; the posted price is an EMA of max(resource price with 10% markup, scarcity
  price); the efficiency factor can be applied to capacity and execution separately.
* **Governance** (:mod:`~mercato.economy.governance`): partitioned pools with their own
  prices and queues; strict governance rejects sensitive tasks of agents with trust < 0.75.
* **Metrics** (:mod:`~mercato.economy.metrics`): volatility is the std of log-returns of
  ``price + 0.01`` after a 20-round burn-in (prices sit at the floor 0); the coefficient of
  variation is reported too.
* **Randomness** (:mod:`~mercato.economy.simulator`): separate streams per purpose, so every
  condition run with one seed sees the same tasks and noise (paired comparisons).
"""

from mercato.economy import exp7_mechanisms  # noqa: F401  (registers the vcg and clinching mechanisms)
from mercato.economy.config import EconomyConfig, Parameters
from mercato.economy.simulator import RunResult, simulate

__all__ = ["EconomyConfig", "Parameters", "RunResult", "simulate"]
