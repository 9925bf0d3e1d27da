"""From a validated configuration to the Router core: the only place the two meet.

The schema (:mod:`mercato.gateway.live.config`) stays a plain description, so that anything
needing a ``BackendConfig`` does not drag in the core and its learners.
"""

from __future__ import annotations

from mercato.gateway.core.batching import BatchingRule
from mercato.gateway.core.hubs import DomainClassifier, Hub, HubRouter
from mercato.gateway.core.kv_index import KVIndex
from mercato.gateway.core.predictors import PredictorBank, PredictorSettings, TreeTrainer
from mercato.gateway.core.router import Router, RouterSettings
from mercato.gateway.core.types import BackendSpec, RoutingCore
from mercato.gateway.core.valuation import ValuationSettings
from mercato.gateway.live.config import ConfigError, GatewayConfig
from mercato.gateway.live.tree_trainer import TreeTrainerProcess


def backend_specs(config: GatewayConfig) -> list[BackendSpec]:
    """The backends as the Router sees them."""
    return [
        BackendSpec(name=b.name, model=b.model, capacity=b.capacity, price_input=b.prices.input,
                    price_cached_input=b.prices.cached_input, price_output=b.prices.output,
                    url=b.url, api_key=b.resolved_api_key(), profile=b.profile,
                    domains=tuple(b.domains), hub=b.hub)
        for b in config.backends
    ]


def router_settings(config: GatewayConfig) -> RouterSettings:
    """The Router core's settings from the valuation, predictor, prefix and policy sections."""
    return RouterSettings(
        valuation=ValuationSettings(**config.valuation.model_dump()),
        predictor=PredictorSettings(**config.predictor.model_dump()),
        max_sessions_per_backend=config.prefix.max_sessions_per_backend,
        seed=config.policy.seed,
        congestion=config.policy.congestion,
        defer_learning=True,  # the gateway learns between requests (Gateway.learn_soon)
    )


def batching_rule(config: GatewayConfig) -> BatchingRule:
    """The micro-batcher's flush rule from the ``batching`` section."""
    batching = config.batching
    return BatchingRule(batching.max_batch_size, batching.max_wait_ms / 1000.0, batching.quiet_ms / 1000.0)


def runs_hubs(config: GatewayConfig) -> bool:
    """True when the backends name hubs (a HubRouter), False for a single Router."""
    return any(b.hub is not None for b in config.backends)


def tree_trainer(config: GatewayConfig) -> TreeTrainerProcess | None:
    """A child process for a single Router's trees; None for hub routers, which train in process."""
    if runs_hubs(config):
        return None
    return TreeTrainerProcess(backend_specs(config), router_settings(config).predictor)


def build_router(config: GatewayConfig, kv_index: KVIndex | None = None,
                 trainer: TreeTrainer | None = None) -> RoutingCore:
    """One Router, or a HubRouter when backends name their ``hub`` (every backend then must).

    Each hub advertises the domain tags of its backends; the front classifier sends a request
    to a hub by domain, then by its quality-vs-latency preference (see
    :mod:`mercato.gateway.core.hubs`). ``kv_index``: the exact cache state of the backends that
    publish KV events. ``trainer``: where a single Router's trees learn (hub routers train
    theirs in process).
    """
    specs = backend_specs(config)
    if not runs_hubs(config):
        settings = router_settings(config)
        return Router(specs, config.policy.name, settings, kv_index=kv_index,
                      predictors=PredictorBank(specs, settings.predictor, trainer))
    missing = [b.name for b in config.backends if b.hub is None]
    if missing:
        raise ConfigError(f"backends {missing}: hub is required once any backend names a hub")
    hubs = [Hub(name, tuple(b.name for b in config.backends if b.hub == name),
                frozenset(d for b in config.backends if b.hub == name for d in b.domains))
            for name in dict.fromkeys(b.hub for b in config.backends if b.hub is not None)]
    classifier = DomainClassifier({}, {b.name: b.capacity for b in config.backends})
    return HubRouter(specs, hubs, config.policy.name, router_settings(config), classifier, kv_index=kv_index)
