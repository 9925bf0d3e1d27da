"""The start-up summary ``mercato serve`` prints once: what this gateway will do, before it does it.

An operator reading a log should not need the YAML file to know where the gateway listens, how
it routes, which backends it offers at which prices, how it batches, where its ledger is and
which backends it follows KV events from, which buyers are limited and where. It never shows a
secret: URLs have their credentials masked, API keys are only counted. In the access log's format:
readable text, or one JSON object (``"event": "startup"``) for log pipelines.
"""

from __future__ import annotations

from typing import Any

import orjson

from mercato.gateway.live.config import AccountingConfig, GatewayConfig, quiet_rule, redacted
from mercato.gateway.live.ledger_postgres import describe


def startup_summary(config: GatewayConfig, policy: str, host: str, port: int,
                    workers: int = 1) -> dict[str, Any]:
    """The summary's facts (``policy``: the name the router reports; ``workers``: replicas)."""
    b, log, state, limits = config.batching, config.logging, config.state, config.limits
    return {
        "event": "startup", "listen": f"http://{host}:{port}",
        "replicas": {"workers": workers, "share_routing": state.share_routing,
                     "shared_state": redacted(state.redis_url) if state.redis_url else None},
        "policy": {"name": policy, "seed": config.policy.seed, "congestion": config.policy.congestion},
        "backends": [{"name": bc.name, "url": redacted(bc.url), "model": bc.model, "capacity": bc.capacity,
                      "prices": bc.prices.model_dump(), "hub": bc.hub,
                      "kv_events": bc.kv_events.endpoint if bc.kv_events else None}
                     for bc in config.backends],
        "batching": b.model_dump(),
        "ledger": ledger_location(config.accounting),
        "kv_events": sum(bc.kv_events is not None for bc in config.backends),
        "buyers_with_keys": len(set(config.api_keys.values())),
        "limits": {"buyers": len(limits.buyers), "default": limits.default.model_dump(),
                   "window_s": limits.window_s, "runtime_keys": limits.runtime_keys,
                   "shared": state.redis_url is not None},
        "access_log": {"format": log.format, "file": str(log.file) if log.file else "stderr"}
        if log.access_log else None,
        "health_interval_s": config.circuit_breaker.health_interval_s,
        "prefill_probe": config.prefill_probe.model_dump(),
    }


def ledger_location(accounting: AccountingConfig) -> dict[str, str]:
    """Where the ledger is: a SQLite file's absolute path, or the database (no password) and its spool."""
    if isinstance(accounting.db, str):
        return {"db": describe(accounting.db), "spool": str(accounting.spool.resolve())}
    return {"db": str(accounting.db.resolve()), "synchronous": accounting.synchronous}


def render_summary(summary: dict[str, Any], fmt: str) -> str:
    """The summary as lines of text, or as one JSON line when ``fmt`` is ``json``."""
    if fmt == "json":
        return orjson.dumps(summary).decode()
    p, b, ledger, access = summary["policy"], summary["batching"], summary["ledger"], summary["access_log"]
    lines = [f"mercato gateway on {summary['listen']}: policy {p['name']} (seed {p['seed']}, "
             f"congestion pricing {'on' if p['congestion'] else 'off'})",
             f"  backends ({len(summary['backends'])}), prices in credits per token "
             "(input / cached / output):"]
    for bc in summary["backends"]:
        pr = bc["prices"]
        where = f", hub {bc['hub']}" if bc["hub"] else ""
        kv = f", kv events {bc['kv_events']}" if bc["kv_events"] else ""
        lines.append(f"    {bc['name']}: model {bc['model']} at {bc['url']}, capacity {bc['capacity']}, "
                     f"{pr['input']:g} / {pr['cached_input']:g} / {pr['output']:g}{where}{kv}")
    replicas = summary["replicas"]
    if replicas["workers"] > 1 or replicas["shared_state"]:
        shared = "load and prefix state" if replicas["share_routing"] else "budgets and limits only"
        lines.append(f"  replicas: {replicas['workers']} worker(s) here, sharing {shared} at "
                     f"{replicas['shared_state']}")
    lines += [
        f"  batching: up to {b['max_batch_size']} per batch, {b['max_wait_ms']:g} ms after the first "
        f"(or {quiet_rule(b['quiet_ms'])}), queue {b['queue_limit']}, "
        f"{b['max_inflight_per_slot']:g} in flight per slot, held at most {b['max_hold_ms']:g} ms",
        f"  ledger: {ledger['db']} (spool {ledger['spool']})" if "spool" in ledger
        else f"  ledger: {ledger['db']} (synchronous {ledger['synchronous']})",
        f"  kv events: followed for {summary['kv_events']} of {len(summary['backends'])} backends",
        f"  api keys: {summary['buyers_with_keys']} buyer(s), each its own metrics label"
        if summary["buyers_with_keys"]
        else "  api keys: none (buyers named by the body's user field, else anonymous; label other)",
        _limits_line(summary["limits"]),
        f"  access log: {access['format']} to {access['file']}" if access else "  access log: off",
        _probe_line(summary["prefill_probe"]),
        "  ready (GET /ready) once a backend answers its health check, checked every "
        f"{summary['health_interval_s']:g} s",
    ]
    return "\n".join(lines)


def _probe_line(probe: dict[str, Any]) -> str:
    """Whether each backend's prefill rate is measured at start-up, and how."""
    if not probe["enabled"]:
        return "  prefill probes: off (every backend starts from the latency model's prior)"
    words = " and ".join(f"{w:g}" for w in probe["prompt_words"])
    return (f"  prefill probes: {probe['repeats']} cold prompt(s) of {words} words at each backend "
            f"before serving (at most {probe['timeout_s']:g} s)")


def _limits_line(limits: dict[str, Any]) -> str:
    """Who is limited, by what, and where the counters are kept."""
    default = limits["default"]
    where = ("kept in the shared Redis" + (", runtime keys on" if limits["runtime_keys"] else "")
             if limits["shared"] else "kept in this process")
    if not limits["buyers"] and all(v is None for v in default.values()) and not limits["runtime_keys"]:
        return f"  limits: none (no budget or rate limit configured); {where}"
    shown = ", ".join(f"{name} {'none' if v is None else f'{v:g}'}" for name, v in default.items())
    return (f"  limits: {limits['buyers']} buyer(s) with their own, others {shown} "
            f"(rates per {limits['window_s']:g} s window); {where}")
