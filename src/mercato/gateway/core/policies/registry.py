"""Every policy by name: the one list the config, the CLI and the experiments choose from.

- ``auction``: IEMAS. Exact welfare-maximising b-matching on ``w = value - predicted cost`` over
  free slots, Clarke-pivot (VCG) payments; requests left unmatched go unpaid to the slots left.
- ``random``, ``round_robin``, ``least_loaded``: the usual load balancers.
- ``cache_aware``: SGLang's router rule.
- ``mf``: a RouteLLM-style matrix-factorisation quality router.
- ``knn``: a k-nearest-neighbour quality router, a stand-in for IEMAS's learned baselines.
"""

from __future__ import annotations

from collections.abc import Callable

from mercato.gateway.core.policies.auction import AuctionPolicy
from mercato.gateway.core.policies.balancers import LeastLoadedPolicy, RandomPolicy, RoundRobinPolicy
from mercato.gateway.core.policies.base import Policy
from mercato.gateway.core.policies.cache_aware import CacheAwarePolicy
from mercato.gateway.core.policies.knn import KnnQualityPolicy
from mercato.gateway.core.policies.mf import MatrixFactorisationPolicy

POLICY_NAMES: tuple[str, ...] = ("auction", "random", "round_robin", "least_loaded", "cache_aware", "mf",
                                  "knn")


def make_policy(name: str, n_backends: int, seed: int = 0) -> Policy:
    """Build a policy by name; raises ValueError listing the known names."""
    factories: dict[str, Callable[[], Policy]] = {
        "auction": AuctionPolicy,
        "random": RandomPolicy,
        "round_robin": RoundRobinPolicy,
        "least_loaded": LeastLoadedPolicy,
        "cache_aware": CacheAwarePolicy,
        "mf": lambda: MatrixFactorisationPolicy(n_backends, seed=seed),
        "knn": lambda: KnnQualityPolicy(n_backends),
    }
    if name not in factories:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}")
    return factories[name]()
