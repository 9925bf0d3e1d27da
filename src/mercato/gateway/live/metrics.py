"""Prometheus metrics of one gateway instance, on a registry of its own.

A private registry (rather than prometheus-client's global one) lets several gateways live in
one process, as they do in tests and benchmarks, without duplicate-metric errors. Money is in
mercato credits; times in seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_AUCTION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class GatewayMetrics:
    """Counters, histograms and gauges that ``GET /metrics`` exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("mercato_requests", "Chat requests by HTTP status and streaming mode",
                                ["status", "stream"], registry=r)
        self.latency = Histogram("mercato_request_latency_seconds",
                                 "Gateway receipt to last byte of the response", buckets=_LATENCY_BUCKETS,
                                 registry=r)
        self.ttft = Histogram("mercato_ttft_seconds",
                              "Gateway receipt to the first content chunk (batching wait included)",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("mercato_batch_size", "Requests per routed micro-batch",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.auction = Histogram("mercato_auction_seconds",
                                 "Router time per micro-batch: features, prediction, allocation, payments",
                                 buckets=_AUCTION_BUCKETS, registry=r)
        self.payments = Counter("mercato_payments_credits", "VCG payments charged to buyers", registry=r)
        self.costs = Counter("mercato_cost_credits", "Observed backend cost (IEMAS Eq. 6)", registry=r)
        self.surplus = Counter("mercato_hub_surplus_credits", "Payments minus costs kept by the hub",
                               registry=r)
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
        self.kv_blocks = Gauge("mercato_kv_index_blocks", "Blocks the exact index holds for the backend",
                               ["backend"], registry=r)

    def watch_backend(self, name: str, in_flight: Callable[[], float], circuit: Callable[[], float]) -> None:
        """Gauges of one backend, read live at scrape time."""
        self.in_flight.labels(name).set_function(in_flight)
        self.circuit.labels(name).set_function(circuit)

    def watch_kv(self, name: str, exact: Callable[[], float], blocks: Callable[[], float]) -> None:
        """Gauges of one backend's exact index, read live at scrape time."""
        self.kv_exact.labels(name).set_function(exact)
        self.kv_blocks.labels(name).set_function(blocks)

    def watch_queue(self, length: Callable[[], float]) -> None:
        """The batch queue's length, read live at scrape time."""
        self.queue.set_function(length)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
