"""The market Fig. 6 auctions, and the auction instance of each of its hubs for a given K.

A market snapshot per seed: M agents of the four engine profiles, each specialised in one of the
three workload domains (a specialist answers its domain 0.1 better and others 0.1 worse than its
profile does), with 1-3 free slots; N concurrent tasks with a domain, a prompt of 300-1,500 tokens
and a bid in [0.8, 1.6]. 60% of the tasks continue a session whose KV prefix (85% of the prompt)
sits at one agent. For each K, :func:`~mercato.gateway.core.hubs.build_hubs` groups the agents into K
hubs by specialisation ("ideal" scheme) and its front classifier sends each task to a hub by
domain (ties by session hash). A session keeps to its hub, so its prefix sits at a specialist of
its domain inside that hub.

Pair values follow the Router: ``v = bid x (0.5 x 200 x P - 0.5 x 100 x TTFT)`` with TTFT the
uncached prefill plus one decode step at the agent's profile speed, and ``c`` the Eq. 6 cost of
the prompt and 32 output tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mercato.engine import PROFILES, get_profile
from mercato.experiments.iemas.clustering_config import ClusteringConfig
from mercato.gateway.core.hubs import build_hubs
from mercato.gateway.core.types import BackendSpec, BuyerReport, RouteRequest
from mercato.gateway.core.valuation import ValuationSettings

DOMAINS: tuple[str, ...] = ("coqa", "quac", "hotpotqa")
SPECIALIST_BONUS = 0.1
PREFIX_SHARE = 0.6
PREFIX_COVER = 0.85
OUTPUT_TOKENS = 32


@dataclass
class Market:
    """One seed's agents and tasks, before any clustering."""

    agents: list[BackendSpec]
    requests: list[RouteRequest]
    prompt: NDArray[np.float64]  # (N,) prompt tokens
    bid: NDArray[np.float64]
    has_prefix: NDArray[np.bool_]
    holder_draw: NDArray[np.float64]  # (N,) uniform draw that picks the prefix holder within a hub


def make_market(config: ClusteringConfig, seed: int) -> Market:
    """Agents (profiles and specialisations in rotation, random free slots) and tasks of one seed."""
    rng = np.random.default_rng(seed)
    names = list(PROFILES)
    agents = []
    for i in range(config.agents):
        p = PROFILES[names[i % len(names)]]
        agents.append(
            BackendSpec(
                name=f"a{i:03d}",
                model=p.name,
                capacity=int(rng.integers(1, config.max_free_slots + 1)),
                price_input=p.price_input,
                price_cached_input=p.price_cached_input,
                price_output=p.price_output,
                profile=p.name,
                domains=(DOMAINS[i % len(DOMAINS)],),
            )
        )
    domain = rng.integers(0, len(DOMAINS), config.tasks)
    prompt = rng.integers(300, 1501, config.tasks).astype(np.float64)
    bid = rng.uniform(0.8, 1.6, config.tasks)
    requests = [
        RouteRequest(
            request_id=f"t{j}",
            prompt="",
            prompt_tokens=int(prompt[j]),
            max_tokens=OUTPUT_TOKENS,
            session_id=f"s{seed}-{j}",
            turn=1,
            domain=DOMAINS[domain[j]],
            source="synthetic",
            buyer=f"b{j}",
            report=BuyerReport(bid=float(bid[j])),
            arrival=0.0,
        )
        for j in range(config.tasks)
    ]
    return Market(
        agents, requests, prompt, bid, rng.random(config.tasks) < PREFIX_SHARE, rng.random(config.tasks)
    )


def hub_instances(
    market: Market, k: int
) -> list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]]:
    """(values, costs, capacities) of every non-empty hub when the agents form ``k`` ideal hubs."""
    hubs, classifier = build_hubs("ideal", market.agents, k)
    by_name = {a.name: a for a in market.agents}
    members: dict[str, list[int]] = {h.name: [] for h in hubs}
    for j, req in enumerate(market.requests):
        members[classifier.choose(req, hubs).name].append(j)
    valuation = ValuationSettings()
    out = []
    for hub in hubs:
        tasks = members[hub.name]
        if not tasks:
            continue
        agents = [by_name[b] for b in hub.backends]
        values, costs = np.empty((len(tasks), len(agents))), np.empty((len(tasks), len(agents)))
        for row, j in enumerate(tasks):
            req = market.requests[j]
            specialists = [i for i, a in enumerate(agents) if req.domain in a.domains] or list(
                range(len(agents))
            )
            holder = (
                specialists[int(market.holder_draw[j] * len(specialists))] if market.has_prefix[j] else -1
            )
            for col, a in enumerate(agents):
                p = get_profile(a.profile or a.model)
                quality = p.quality_for(req.domain or "default")
                quality += SPECIALIST_BONUS if req.domain in a.domains else -SPECIALIST_BONUS
                cached = PREFIX_COVER * market.prompt[j] if col == holder else 0.0
                uncached = market.prompt[j] - cached
                ttft = uncached / p.prefill_tokens_per_s + p.decode_step_seconds(1)
                values[row, col] = market.bid[j] * (
                    0.5 * valuation.quality_value * min(max(quality, 0.0), 1.0)
                    - 0.5 * valuation.latency_penalty_per_s * ttft
                )
                costs[row, col] = a.cost(int(market.prompt[j]), int(cached), OUTPUT_TOKENS)
        out.append((values, costs, np.array([a.capacity for a in agents], dtype=np.int64)))
    return out
