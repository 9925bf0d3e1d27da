"""Proxy hubs (IEMAS §4.4, Appendix B.1): backends clustered by capability, one auction per hub.

A light front classifier sends each request to one hub by its domain and QoS preference; the
hub's own :class:`~mercato.gateway.core.router.Router` batches, predicts, auctions and learns for
its backends only. This bounds each auction's size and keeps sessions of one domain on the
same backends (cache locality), at the price of never matching a request with an idle backend
of another hub. :class:`HubRouter` has the Router's interface, so the live app and the
in-process cluster drive one hub or many the same way; a replica of a hub elsewhere (a later
Redis-backed deployment) only needs the same ``Hub`` definition.

Clustering schemes of Appendix B.1, as functions building hubs and a classifier:

- ``full_mix``: no alignment; backends dealt to hubs in turn, requests spread over hubs;
- ``ideal``: backends grouped by domain specialisation, requests sent to their domain's hub;
- ``task_mix``: backends grouped by specialisation, requests spread regardless of domain;
- ``agent_mix``: requests sent to their domain's hub, backends dealt regardless of domain.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mercato.gateway.core.kv_index import KVIndex
from mercato.gateway.core.replicas import ReplicaView
from mercato.gateway.core.router import Router, RouterSettings
from mercato.gateway.core.types import (
    AccountingStore,
    BackendSpec,
    Decision,
    LedgerRecord,
    Observation,
    RouteRequest,
)

SCHEMES: tuple[str, ...] = ("full_mix", "ideal", "task_mix", "agent_mix")


@dataclass(frozen=True)
class Hub:
    """A named group of backends and the domains it advertises (empty: any domain)."""

    name: str
    backends: tuple[str, ...]
    domains: frozenset[str] = field(default_factory=frozenset)


class FrontClassifier(Protocol):
    """Chooses the hub of a request among those that can serve it."""

    def choose(self, request: RouteRequest, candidates: Sequence[Hub]) -> Hub:
        """One of ``candidates`` (never empty)."""
        ...


class DomainClassifier:
    """Domain first (a hub advertising the request's domain), then QoS: the request's delta.

    Among hubs that match the domain (or all capable hubs when none does), a quality-minded
    request (delta >= 0.5) goes to the hub whose backends have the best mean quality tier, a
    latency-minded one to the hub with the most capacity. Ties go by a stable hash of the session,
    so one dialogue always lands in the same hub and keeps its cache.
    """

    def __init__(self, quality: dict[str, float], capacity: dict[str, int]) -> None:
        self.quality, self.capacity = quality, capacity

    def choose(self, request: RouteRequest, candidates: Sequence[Hub]) -> Hub:
        """Pick by domain, then by QoS preference, then by session hash."""
        matching = [h for h in candidates if request.domain in h.domains] or list(candidates)

        def quality(h: Hub) -> float:
            return sum(self.quality.get(b, 0.0) for b in h.backends) / len(h.backends)

        def capacity(h: Hub) -> float:
            return float(sum(self.capacity.get(b, 0) for b in h.backends))

        key = quality if request.report.delta >= 0.5 else capacity
        best = max(key(h) for h in matching)
        tied = [h for h in matching if key(h) >= best - 1e-12]
        return tied[zlib.crc32(request.session_id.encode()) % len(tied)]


class SpreadClassifier:
    """Ignores domain and QoS: a stable hash of the session picks the hub (no task alignment)."""

    def choose(self, request: RouteRequest, candidates: Sequence[Hub]) -> Hub:
        """Hash the session over the capable hubs."""
        return candidates[zlib.crc32(request.session_id.encode()) % len(candidates)]


class HubRouter:
    """Several hub Routers behind one front classifier, with the Router's interface."""

    def __init__(self, backends: list[BackendSpec], hubs: Sequence[Hub], policy: str = "auction",
                 settings: RouterSettings | None = None, classifier: FrontClassifier | None = None,
                 accounting: AccountingStore | None = None, kv_index: KVIndex | None = None) -> None:
        """``kv_index``: one index for the backends of every hub (each hub reads its own)."""
        by_name = {b.name: b for b in backends}
        seen: set[str] = set()
        for hub in hubs:
            if not hub.backends:
                raise ValueError(f"hub {hub.name!r} has no backends")
            unknown = [b for b in hub.backends if b not in by_name]
            if unknown:
                raise ValueError(f"hub {hub.name!r} names unknown backends {unknown}")
            twice = seen.intersection(hub.backends)
            if twice:
                raise ValueError(f"backends {sorted(twice)} belong to more than one hub")
            seen.update(hub.backends)
        if seen != set(by_name):
            raise ValueError(f"backends {sorted(set(by_name) - seen)} belong to no hub")
        if len({h.name for h in hubs}) != len(hubs):
            raise ValueError("hub names must be unique")
        self.hubs = list(hubs)
        self.routers = {h.name: Router([by_name[b] for b in h.backends], policy, settings, accounting,
                                       kv_index=kv_index)
                        for h in self.hubs}
        self.owner = {b: h.name for h in self.hubs for b in h.backends}
        self.classifier = classifier or SpreadClassifier()
        self.policy = next(iter(self.routers.values())).policy
        self._hub_of: dict[str, str] = {}

    def capable(self, request: RouteRequest) -> list[Hub]:
        """Hubs with at least one healthy backend that can serve the request's model."""
        return [hub for hub in self.hubs if self.routers[hub.name].can_serve(request).any()]

    def route(self, batch: list[RouteRequest], now: float) -> list[Decision]:
        """Classify each request to a hub, run each hub's micro-batch, keep the batch order."""
        groups: dict[str, list[int]] = {}
        decisions: list[Decision | None] = [None] * len(batch)
        for i, req in enumerate(batch):
            candidates = self.capable(req)
            if not candidates:
                decisions[i] = Decision(req, [], False, 0.0, 0.0, float("nan"), float("nan"), float("nan"),
                                        float("nan"))
                continue
            hub = self.classifier.choose(req, candidates).name
            groups.setdefault(hub, []).append(i)
        for hub, idx in groups.items():
            for i, d in zip(idx, self.routers[hub].route([batch[i] for i in idx], now), strict=True):
                decisions[i] = d
                self._hub_of[d.request.request_id] = hub
        return [d for d in decisions if d is not None]

    def hub_of(self, decision: Decision) -> str:
        """The name of the hub that routed a pending request."""
        return self._hub_of[decision.request.request_id]

    def _router_for(self, decision: Decision) -> Router:
        return self.routers[self.hub_of(decision)]

    def started(self, decision: Decision, backend: str, now: float) -> None:
        """Forward to the hub that routed the request."""
        self._router_for(decision).started(decision, backend, now)

    def release(self, decision: Decision, backend: str, now: float) -> None:
        """Forward to the hub that routed the request."""
        self._router_for(decision).release(decision, backend, now)

    def finish(self, decision: Decision, obs: Observation, now: float) -> LedgerRecord | None:
        """Forward to the hub that routed the request, then forget the request."""
        router = self._router_for(decision)
        del self._hub_of[decision.request.request_id]
        return router.finish(decision, obs, now)

    def learn(self) -> int:
        """Every hub learns what it has queued."""
        return sum(r.learn() for r in self.routers.values())

    def calibrate(self, backend: str, uncached_tokens: int, ttft_s: float) -> None:
        """Forward to the backend's hub."""
        self.routers[self.owner[backend]].calibrate(backend, uncached_tokens, ttft_s)

    def set_health(self, backend: str, healthy: bool) -> None:
        """Forward to the backend's hub."""
        self.routers[self.owner[backend]].set_health(backend, healthy)

    def replica_view(self) -> ReplicaView:
        """Every hub's load and prefix ledger, by backend name."""
        return ReplicaView([part for r in self.routers.values() for part in r.replica_view().parts])

    def snapshot(self) -> dict[str, Any]:
        """Each hub's snapshot and the totals summed over hubs."""
        hubs = {name: r.snapshot() for name, r in self.routers.items()}
        totals: dict[str, float] = {}
        for snap in hubs.values():
            for k, v in snap["totals"].items():
                totals[k] = totals.get(k, 0) + v
        backends = {b: v for snap in hubs.values() for b, v in snap["backends"].items()}
        return {"policy": self.policy.name, "hubs": hubs, "backends": backends, "totals": totals,
                "unlearned": sum(snap["unlearned"] for snap in hubs.values())}


def build_hubs(scheme: str, backends: Sequence[BackendSpec], k: int,
               quality: dict[str, float] | None = None) -> tuple[list[Hub], FrontClassifier]:
    """Hubs and front classifier for one Appendix B.1 scheme with ``k`` hubs.

    Specialisation is each backend's first domain tag (``BackendSpec.domains``); a backend
    without tags counts as a generalist of its own group.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown clustering scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if not 1 <= k <= len(backends):
        raise ValueError(f"k must be between 1 and the number of backends ({len(backends)}), got {k}")
    names = [b.name for b in backends]
    if scheme in ("ideal", "task_mix"):
        order = sorted(range(len(backends)), key=lambda i: (backends[i].domains[:1], names[i]))
        groups = [order[j * len(order) // k:(j + 1) * len(order) // k] for j in range(k)]
    else:
        groups = [list(range(j, len(backends), k)) for j in range(k)]
    hubs = []
    for j, members in enumerate(groups):
        domains = frozenset(d for i in members for d in backends[i].domains[:1])
        hubs.append(Hub(f"hub{j}", tuple(names[i] for i in members), domains))
    if scheme in ("ideal", "agent_mix"):
        if scheme == "agent_mix":  # requests clustered by domain onto hubs whose backends are mixed
            all_domains = sorted({d for b in backends for d in b.domains[:1]})
            hubs = [Hub(h.name, h.backends, frozenset(all_domains[j::k])) for j, h in enumerate(hubs)]
        capacity = {b.name: b.capacity for b in backends}
        return hubs, DomainClassifier(quality or {}, capacity)
    return hubs, SpreadClassifier()
