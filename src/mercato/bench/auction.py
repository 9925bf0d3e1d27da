"""`mercato bench auction`: one full Router round at 200 requests x 100 backends.

A round is what the gateway does per micro-batch before dispatch: prefix-ledger affinities,
the (N, M, F) feature tensor, QoS predictions for every pair from trained per-backend trees,
valuations, the exact auction with all VCG payments, and the ranked decisions. The market is
contested (every buyer prefers the same cheap backends, 4 slots each), and the router sees a
stream of distinct batches drawn from one session population, as a gateway does; each round
is timed once and warm-starts its solve from the previous round's clearing prices. The cold
round (no previous prices) is timed on the same batches and reported beside it. The baseline,
measured in the same run, scores the same pairs the way river is meant to be called, one
``predict_one`` per pair and model (timed on a sample of requests and scaled to the batch).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mercato.bench.timing import median_ms
from mercato.gateway.core.features import DOMAINS, N_FEATURES
from mercato.gateway.core.lifecycle import Dispatch
from mercato.gateway.core.policies import AuctionPolicy
from mercato.gateway.core.router import Router, RouterSettings
from mercato.gateway.core.types import BackendSpec, BuyerReport, Decision, RouteRequest
from mercato.mechanisms import run_vcg_auction

TARGET_MS = 5.0
BASELINE_SAMPLE_REQUESTS = 10
SESSIONS = 800  # the population batches are drawn from; half hold a prefix at some backend
WARMUP_ROUNDS = 3
ROUND_INTERVAL_S = 0.4  # 200 requests every 0.4 s: the router's rate features see 500 requests/s


def contested_router(n_backends: int, seed: int) -> Router:
    """A router over ``n_backends`` heterogeneous backends whose trees have learned for a while."""
    rng = np.random.default_rng(seed)
    prices = rng.uniform(0.02, 0.3, n_backends)
    specs = [
        BackendSpec(
            name=f"b{i}",
            model="m",
            capacity=4,
            price_input=float(p),
            price_cached_input=float(p) / 2,
            price_output=float(p) * 3,
        )
        for i, p in enumerate(prices)
    ]
    # the congestion expansion re-solves once per winner, sized for micro-batches of tens, not 200
    router = Router(specs, AuctionPolicy(), RouterSettings(congestion=False))
    for j in range(n_backends):
        for _ in range(300):
            x = rng.random(N_FEATURES) * [2, 2, 1, 15, 1, 50, 50, 8, 8, 4, 1, 1, 1, 1, 2]
            latency = 0.01 + 0.2 * x[1] + 0.02 * x[7] + rng.exponential(0.01)
            cost = specs[j].price_input * x[1] * 1000 + rng.normal(0, 1)
            tokens = int(rng.integers(5, 60))
            router.predictors.learn(j, x, 0, latency, cost, tokens, bool(rng.random() < 0.7))
    for s in range(SESSIONS // 2):
        router.ledger.observe(
            f"b{s % n_backends}",
            f"s{s}",
            f"context {s} " * 80,
            affinity=0.0,
            prompt_tokens=200,
            cached_tokens=0,
        )
    return router


def request_batch(n: int, seed: int) -> list[RouteRequest]:
    """``n`` requests of distinct sessions drawn from the population, with varied demands."""
    rng = np.random.default_rng(seed + 1)
    sessions = rng.choice(SESSIONS, size=n, replace=False)
    return [
        RouteRequest(
            request_id=f"q{seed}-{i}",
            prompt=f"context {s} " * 80 + f"question {seed}",
            prompt_tokens=int(rng.integers(120, 400)),
            max_tokens=int(rng.integers(32, 256)),
            session_id=f"s{s}",
            turn=int(rng.integers(1, 10)),
            domain=str(rng.choice(DOMAINS)),
            source="bench",
            buyer="b",
            report=BuyerReport(bid=float(rng.uniform(0.5, 2.0)), delta=float(rng.uniform(0.2, 0.8))),
            arrival=0.0,
        )
        for i, s in enumerate(sessions)
    ]


def _median_round_ms(router: Router, batches: list[list[RouteRequest]],
                     before: Callable[[], None]) -> float:
    """Median time of routing each batch once; ``before`` runs untimed ahead of each round."""
    samples = []
    for k, batch in enumerate(batches):
        before()
        start = time.perf_counter()
        decisions = router.route(batch, now=k * ROUND_INTERVAL_S)
        samples.append((time.perf_counter() - start) * 1e3)
        withdraw(router, decisions)
    return statistics.median(samples)


def withdraw(router: Router, decisions: list[Decision]) -> None:
    """Close decisions that are never dispatched (a decisions-only round), so the router forgets them."""
    for decision in decisions:
        Dispatch(router, decision, lambda: 0.0).fail("benchmark round: not dispatched")


def auction_policy(router: Router) -> AuctionPolicy:
    """The router's auction policy (the bench builds its routers with one)."""
    if not isinstance(router.policy, AuctionPolicy):
        raise TypeError(f"the bench needs an auction router, got {router.policy.name!r}")
    return router.policy


def run(n_requests: int = 200, n_backends: int = 100, seed: int = 0, repeats: int = 31) -> dict[str, Any]:
    """Time a full round and its parts; returns the JSON-ready report."""
    router = contested_router(n_backends, seed)
    batches = [request_batch(n_requests, seed + k) for k in range(WARMUP_ROUNDS + repeats)]
    _median_round_ms(router, batches[:WARMUP_ROUNDS], lambda: None)
    ms_round = _median_round_ms(router, batches[WARMUP_ROUNDS:], lambda: None)
    ms_round_cold = _median_round_ms(router, batches[WARMUP_ROUNDS:], auction_policy(router).reset)
    batch = batches[-1]
    market = router.market(batch)
    ctx, features = market.context, market.features
    domain_index = np.zeros(n_requests, dtype=np.int64)
    ms_predict = median_ms(lambda: router.predictors.predict(features, domain_index), repeats=repeats)
    values = np.where(ctx.allowed, ctx.values, np.nan)
    previous = router.market(batches[-2]).context
    warm = run_vcg_auction(np.where(previous.allowed, previous.values, np.nan), previous.costs,
                           previous.capacity).slot_prices
    ms_auction = median_ms(lambda: run_vcg_auction(values, ctx.costs, ctx.capacity, warm_prices=warm),
                           repeats=repeats)
    ms_auction_cold = median_ms(lambda: run_vcg_auction(values, ctx.costs, ctx.capacity), repeats=repeats)

    samples = []
    for i in range(BASELINE_SAMPLE_REQUESTS):
        start = time.perf_counter()
        for j, b in enumerate(router.predictors.backends):
            x = {k: float(v) for k, v in enumerate(features[i, j])}
            b.latency_tree.predict_one(x)
            b.cost_tree.predict_one(x)
            b.quality_tree.predict_proba_one(x)
        samples.append((time.perf_counter() - start) * 1e3)
    ms_river_scoring = statistics.mean(samples) * n_requests
    return {
        "benchmark": "auction",
        "n_requests": n_requests,
        "n_backends": n_backends,
        "ms_round_median": ms_round,
        "ms_round_cold_median": ms_round_cold,
        "ms_predict_all_pairs": ms_predict,
        "ms_auction_and_payments": ms_auction,
        "ms_auction_and_payments_cold": ms_auction_cold,
        "ms_river_per_pair_scoring_baseline": ms_river_scoring,
        "baseline_method": f"river predict_one per pair on {BASELINE_SAMPLE_REQUESTS} requests, scaled",
        "speedup_scoring_vs_river": ms_river_scoring / ms_predict,
        "target_ms": TARGET_MS,
        "target_met": ms_round <= TARGET_MS,
    }
