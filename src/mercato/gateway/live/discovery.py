"""A gateway configuration from bare backend URLs (`mercato serve --backend URL ...`), no file.

Like vllm-router's ``--static-backends``, but an auction also needs each backend's model and
prices. The model is asked of the server: the first one its ``GET /v1/models`` lists, or the one
named after ``#`` (``http://host:8001/v1#qwen3-8b``) for a server that lists several. A model
named like a mercato engine profile (``mercato engine profiles``) takes that profile's prices and
predictor profile; any other model is priced at 0 credits, so the auction weighs only quality
and latency there (a config file prices it). Each backend is named ``host:port`` of its URL.
Keys, hubs and KV events need a config file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from mercato.engine import PROFILES
from mercato.gateway.live.config import ConfigError, GatewayConfig, parse_config


def split_backend(option: str) -> tuple[str, str | None]:
    """``URL[#MODEL]`` as (base URL ending in /v1, model or None)."""
    url, _, model = option.partition("#")
    url = url.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"--backend {option}: must be an http:// or https:// URL such as "
                          "http://127.0.0.1:8001 (/v1 optional, #MODEL to pick a model)")
    return (url if url.endswith("/v1") else f"{url}/v1"), (model.strip() or None)


def backend_from_model(url: str, model: str, capacity: int | None) -> dict[str, Any]:
    """One ``backends`` entry: named ``host:port``, priced from the profile named ``model`` if any."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    entry: dict[str, Any] = {"name": f"{parts.hostname}:{port}", "url": url, "model": model}
    profile = PROFILES.get(model)
    if profile is None:
        entry["prices"] = {"input": 0.0, "cached_input": 0.0, "output": 0.0}
    else:
        entry["prices"] = {"input": profile.price_input, "cached_input": profile.price_cached_input,
                           "output": profile.price_output}
        entry["profile"] = model
    if capacity is not None:
        entry["capacity"] = capacity
    return entry


def listed_models(url: str, timeout_s: float) -> list[str]:
    """The model ids ``GET {url}/models`` lists, in its order."""
    try:
        reply = httpx.get(f"{url}/models", timeout=timeout_s)
        reply.raise_for_status()
        return [str(m["id"]) for m in reply.json()["data"]]
    except httpx.HTTPError as err:
        raise ConfigError(f"--backend {url}: cannot list its models at {url}/models: "
                          f"{err or type(err).__name__}") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"--backend {url}: {url}/models is not an OpenAI model list") from None


def discover_config(options: Sequence[str], *, capacity: int | None = None,
                    timeout_s: float = 5.0) -> GatewayConfig:
    """The gateway config for ``--backend`` options (every other section at its default)."""
    backends = []
    for option in options:
        url, model = split_backend(option)
        models = listed_models(url, timeout_s)
        if model is None and not models:
            raise ConfigError(f"--backend {option}: {url}/models lists no model")
        if model is not None and model not in models:
            raise ConfigError(f"--backend {option}: {url}/models lists {', '.join(models) or 'no model'}, "
                              f"not {model}")
        backends.append(backend_from_model(url, model or models[0], capacity))
    names = [b["name"] for b in backends]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--backend: {', '.join(repeated)} given more than once (one model per server)")
    try:
        return parse_config({"backends": backends})
    except ConfigError as err:
        raise ConfigError(f"--backend: {err}") from None
