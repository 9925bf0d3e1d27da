"""Prometheus metrics of one gateway instance, on a registry of its own.

A private registry (rather than prometheus-client's global one) lets several gateways live in
one process, as they do in tests and benchmarks, without duplicate-metric errors. Money is in
mercato credits; times in seconds.

Per-request series are labelled by ``backend`` and ``model`` (the configured backend that
served the request and its model; ``none`` for a request no backend served) and per-buyer ones
by ``buyer``: a buyer named by an API key of the config, ``anonymous``, ``other`` (any name a
client chose itself in the body's ``user``) or ``none`` (refused before it was known). Every
label's values are therefore fixed by the config, whatever clients send. They are updated from
finished requests' outcomes in passes off the response path (:mod:`mercato.gateway.live.reporter`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from mercato.gateway.live.outcomes import Outcome

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_AUCTION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0)
NONE = "none"  # the label value of a backend, model or buyer that is not known
OTHER_BUYER = "other"
_Metric = TypeVar("_Metric", Counter, Histogram)


class GatewayMetrics:
    """Counters, histograms and gauges that ``GET /metrics`` exports."""

    def __init__(self, backend_models: Mapping[str, str] | None = None, buyers: Collection[str] = ()) -> None:
        """``backend_models``: each backend's model (the ``model`` label); ``buyers``: the buyer
        names that get a label of their own (the config's API-key buyers and ``anonymous``)."""
        self._models = dict(backend_models or {})
        self._buyers = frozenset(buyers)
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        by_backend = ["backend", "model"]
        self.requests = Counter("mercato_requests",
                                "API requests by backend, model, HTTP status and streaming",
                                [*by_backend, "status", "stream"], registry=r)
        self.latency = Histogram("mercato_request_latency_seconds",
                                 "Gateway receipt to the end of the response", by_backend,
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("mercato_ttft_seconds",
                              "Gateway receipt to the first content token (batching wait included)",
                              by_backend, buckets=_LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("mercato_tpot_seconds",
                              "Time per output token after the first: (end - first token) / (tokens - 1)",
                              by_backend, buckets=_TPOT_BUCKETS, registry=r)
        self.prompt_tokens = Counter("mercato_prompt_tokens", "Prompt tokens of served requests",
                                     by_backend, registry=r)
        self.cached_tokens = Counter("mercato_cached_prompt_tokens",
                                     "Prompt tokens the backend served from its KV cache", by_backend,
                                     registry=r)
        self.completion_tokens = Counter("mercato_completion_tokens", "Tokens generated for served requests",
                                         by_backend, registry=r)
        self.batch_size = Histogram("mercato_batch_size", "Requests per routed micro-batch",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.auction = Histogram("mercato_auction_seconds",
                                 "Router time per micro-batch: features, prediction, allocation, payments",
                                 buckets=_AUCTION_BUCKETS, registry=r)
        self.payments = Counter("mercato_payments_credits",
                                "Payments charged to buyers (cost + VCG externality)", by_backend, registry=r)
        self.costs = Counter("mercato_cost_credits", "Observed backend cost (IEMAS Eq. 6)", by_backend,
                             registry=r)
        self.surplus = Counter("mercato_hub_surplus_credits", "Payments minus costs kept by the hub",
                               by_backend, registry=r)
        self.buyer_requests = Counter("mercato_buyer_requests", "API requests by buyer and HTTP status",
                                      ["buyer", "status"], registry=r)
        self.buyer_spend = Counter("mercato_buyer_spend_credits", "What each buyer paid (its payments)",
                                   ["buyer"], registry=r)
        self.limit_rejections = Counter("mercato_buyer_rejections",
                                        "Requests refused by the buyer's budget or rate limits, by reason "
                                        "(budget, rpm, tpm)", ["buyer", "reason"], registry=r)
        self.budget_remaining = Gauge("mercato_buyer_budget_remaining_credits",
                                      "Budget left to each buyer with a budget of its own in the config "
                                      "(as this replica last saw it)", ["buyer"], registry=r)
        self.limits_shared = Gauge("mercato_limits_shared",
                                   "1 while budgets and rate limits are enforced in Redis, 0 while this "
                                   "replica enforces them alone", registry=r)
        self.failovers = Counter("mercato_failovers", "Requests moved to another backend, by target",
                                 ["backend"], registry=r)
        self.queue = Gauge("mercato_batch_queue_length", "Requests waiting for a micro-batch", registry=r)
        self.in_flight = Gauge("mercato_backend_in_flight", "Requests streaming from each backend",
                               ["backend"], registry=r)
        self.circuit = Gauge("mercato_backend_circuit_state",
                             "Circuit breaker per backend: 0 closed, 1 half-open, 2 open",
                             ["backend"], registry=r)
        self.kv_events = Counter("mercato_kv_events", "KV-cache events applied to the exact index, by type",
                                 ["backend", "type"], registry=r)
        self.kv_skipped = Counter("mercato_kv_events_skipped",
                                  "KV-cache event messages or events skipped: malformed, unknown type, "
                                  "a medium other than the GPU",
                                  ["backend", "reason"], registry=r)
        self.kv_lost = Counter("mercato_kv_sync_lost",
                               "Times a backend's exact index fell back to the prefix ledger, by cause",
                               ["backend", "cause"], registry=r)
        self.kv_exact = Gauge("mercato_kv_exact",
                              "1 while the backend's affinity comes from its KV events, 0 on the ledger",
                              ["backend"], registry=r)
        self.ledger_up = Gauge("mercato_ledger_database_up",
                               "1 while the PostgreSQL ledger takes records, 0 while they are spooled",
                               registry=r)
        self.ledger_spooled = Gauge("mercato_ledger_spooled_records",
                                    "Records written to the local spool since start (PostgreSQL away)",
                                    registry=r)
        self.ledger_pending = Gauge("mercato_ledger_spool_pending",
                                    "Records in the local spool, not yet in PostgreSQL", registry=r)
        self.kv_blocks = Gauge("mercato_kv_index_blocks", "Blocks the exact index holds for the backend",
                               ["backend"], registry=r)

        self.tree_trainer = Gauge("mercato_tree_trainer_up",
                                  "1 while the predictors' trees learn in the trainer process, 0 while "
                                  "the gateway trains them itself", registry=r)
        self.replica_peers = Gauge("mercato_replica_peers",
                                   "Other gateway replicas alive in the shared state", registry=r)
        self.shared_state = Gauge("mercato_shared_state_reachable",
                                  "1 while the shared state (Redis) answers, 0 while replicas route alone",
                                  registry=r)

    def record(self, o: Outcome) -> None:
        """Count one finished request (called in the reporting pass, not on the response path)."""
        backend = o.backend or NONE
        labels = (backend, self._models.get(backend, NONE))
        series = self._series
        status = str(o.status)
        series(self.requests, *labels, status, "true" if o.stream else "false").inc()
        series(self.latency, *labels).observe(o.latency_s)
        if (ttft := o.ttft_s) is not None:
            series(self.ttft, *labels).observe(ttft)
        if (tpot := o.tpot_s) is not None:
            series(self.tpot, *labels).observe(tpot)
        if o.backend is not None:
            series(self.prompt_tokens, *labels).inc(o.prompt_tokens)
            series(self.cached_tokens, *labels).inc(o.cached_tokens)
            series(self.completion_tokens, *labels).inc(o.completion_tokens)
        buyer = self.buyer_label(o.buyer)
        series(self.buyer_requests, buyer, status).inc()
        if o.cost is not None and o.payment is not None:
            series(self.costs, *labels).inc(o.cost)
            series(self.payments, *labels).inc(o.payment)
            series(self.surplus, *labels).inc(o.payment - o.cost)
            series(self.buyer_spend, buyer).inc(o.payment)

    def _series(self, metric: _Metric, *labels: str) -> _Metric:
        """``metric.labels(*labels)``, remembered: prometheus-client's lookup costs ~1 us a call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return cast(_Metric, child)

    def buyer_label(self, buyer: str | None) -> str:
        """The buyer's own name when the config knows it, else ``other`` (``none``: not known yet)."""
        if buyer is None:
            return NONE
        return buyer if buyer in self._buyers else OTHER_BUYER

    def watch_backend(self, name: str, in_flight: Callable[[], float], circuit: Callable[[], float]) -> None:
        """Gauges of one backend, read live at scrape time."""
        self.in_flight.labels(name).set_function(in_flight)
        self.circuit.labels(name).set_function(circuit)

    def watch_kv(self, name: str, exact: Callable[[], float], blocks: Callable[[], float]) -> None:
        """Gauges of one backend's exact index, read live at scrape time."""
        self.kv_exact.labels(name).set_function(exact)
        self.kv_blocks.labels(name).set_function(blocks)

    def watch_ledger(self, up: Callable[[], float], spooled: Callable[[], float],
                     pending: Callable[[], float]) -> None:
        """Gauges of a PostgreSQL ledger's outage spool, read live at scrape time."""
        self.ledger_up.set_function(up)
        self.ledger_spooled.set_function(spooled)
        self.ledger_pending.set_function(pending)

    def watch_budget(self, buyer: str, remaining: Callable[[], float]) -> None:
        """A buyer's remaining budget, read live at scrape time."""
        self.budget_remaining.labels(self.buyer_label(buyer)).set_function(remaining)

    def watch_shared_limits(self, shared: Callable[[], float]) -> None:
        """Whether limits are shared through Redis now, read live at scrape time."""
        self.limits_shared.set_function(shared)

    def watch_queue(self, length: Callable[[], float]) -> None:
        """The batch queue's length, read live at scrape time."""
        self.queue.set_function(length)

    def watch_tree_trainer(self, up: Callable[[], float]) -> None:
        """Whether the trees learn off the event loop, read live at scrape time."""
        self.tree_trainer.set_function(up)

    def watch_replicas(self, peers: Callable[[], float], reachable: Callable[[], float]) -> None:
        """Gauges of the replicas' shared state, read live at scrape time."""
        self.replica_peers.set_function(peers)
        self.shared_state.set_function(reachable)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _Families:
    """A collector that hands out metric families built elsewhere (the replicas' merged ones)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def federate(replicas: Mapping[str, bytes]) -> bytes:
    """Several gateway replicas' expositions as one, each sample labelled with its ``replica``.

    Whichever worker of ``mercato serve --workers N`` answers a scrape returns every live
    replica's series, so a scrape through the shared port sees the whole gateway; sum them
    with ``sum without (replica) (...)``.
    """
    families: dict[str, Metric] = {}
    for replica, text in replicas.items():
        for family in text_string_to_metric_families(text.decode()):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type,
                                                        family.unit)
            merged.samples += [s._replace(labels={**s.labels, "replica": replica}) for s in family.samples]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families.values()))  # type: ignore[arg-type]
    return generate_latest(registry)
