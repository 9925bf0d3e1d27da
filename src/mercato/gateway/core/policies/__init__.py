"""Routing policies behind one interface; every policy sees the same batch market."""

from mercato.gateway.core.policies.auction import AuctionPolicy
from mercato.gateway.core.policies.balancers import LeastLoadedPolicy, RandomPolicy, RoundRobinPolicy
from mercato.gateway.core.policies.base import Allocation, Policy, Stateless, assign_sequentially, greedy_fill
from mercato.gateway.core.policies.cache_aware import CacheAwarePolicy
from mercato.gateway.core.policies.knn import KnnQualityPolicy
from mercato.gateway.core.policies.mf import MatrixFactorisationPolicy
from mercato.gateway.core.policies.registry import POLICY_NAMES, make_policy

__all__ = [
    "POLICY_NAMES",
    "Allocation",
    "AuctionPolicy",
    "CacheAwarePolicy",
    "KnnQualityPolicy",
    "LeastLoadedPolicy",
    "MatrixFactorisationPolicy",
    "Policy",
    "RandomPolicy",
    "RoundRobinPolicy",
    "Stateless",
    "assign_sequentially",
    "greedy_fill",
    "make_policy",
]
