"""The gateway's one YAML file, validated by pydantic so that every mistake names its field.

``load_config(path)`` raises :class:`ConfigError` with messages such as
``backends.2.capacity: Input should be greater than or equal to 1``; unknown keys are errors
too (a typo must not silently fall back to a default).

Units: prices are mercato credits per token (IEMAS Eq. 6); bids are credits; times are in the
unit their name says (``_ms``, ``_s``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mercato.gateway.core.policies import POLICY_NAMES
from mercato.gateway.core.predictors import PredictorSettings
from mercato.gateway.core.router import RouterSettings
from mercato.gateway.core.valuation import ValuationSettings
from mercato.gateway.live.ledger import is_postgres_url
from mercato.gateway.live.openai_api import MAX_BID
from mercato.gateway.live.secrets import UnsetVariable, expand_secrets

NonNegative = Annotated[float, Field(ge=0.0)]
Positive = Annotated[float, Field(gt=0.0)]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")


def redacted(url: str) -> str:
    """A URL without its credentials, fit for logs and the start-up summary."""
    scheme, sep, rest = url.partition("://")
    _, at, host = rest.rpartition("@")
    return f"{scheme}{sep}***@{host}" if at else url


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message names the field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Section):
    """Credits per token: uncached prompt token, cached prompt token, output token."""

    input: NonNegative
    cached_input: NonNegative
    output: NonNegative


KNOWN_TOKENIZER = "mercato"  # the simulated engine's token scheme (engine.tokenizer)
HF_TOKENIZER = "hf:"  # prefix of a local Hugging Face model directory (gateway.core.hf_tokenizer)


class KVEventsSource(_Section):
    """Where a backend publishes vLLM's KV-cache events (``--kv-events-config`` / ``--kv-events``).

    ``endpoint``: the ZeroMQ PUB address to subscribe to; ``replay_endpoint``: its ROUTER replay
    socket, if any (missed batches are fetched there); ``topic``: the publisher's topic;
    ``max_blocks``: the most blocks the gateway's index holds for it (at least the engine's KV blocks);
    ``tokenizer``: how the engine turns a request into the token ids its events carry, which the
    gateway must repeat to find a request's blocks: ``mercato`` for mercato's simulated engine, or
    ``hf:DIR`` for a vLLM serving a Hugging Face model whose ``tokenizer.json`` and
    ``tokenizer_config.json`` (with its chat template) lie in the local directory ``DIR``. There is
    no default: a wrong guess would never match an event and silently zero the backend's affinity.
    """

    endpoint: str
    replay_endpoint: str | None = None
    topic: str = ""
    max_blocks: Annotated[int, Field(ge=1)] = 262_144
    tokenizer: Annotated[str | None, Field(validate_default=True)] = None

    @field_validator("tokenizer", mode="after")
    @classmethod
    def _known_tokenizer(cls, value: str | None) -> str | None:
        if value is not None and value.startswith(HF_TOKENIZER):
            from mercato.gateway.core.hf_tokenizer import TokenizerError, load_tokenizer

            try:
                load_tokenizer(value.removeprefix(HF_TOKENIZER))
            except TokenizerError as err:
                raise ValueError(str(err)) from None
            return value
        if value != KNOWN_TOKENIZER:
            raise ValueError(f"must be {KNOWN_TOKENIZER!r} (mercato's simulated engine) or "
                             f"'{HF_TOKENIZER}DIR' (a directory with the served model's tokenizer.json and "
                             "tokenizer_config.json): the gateway finds a request's blocks only with the "
                             "engine's own tokenizer")
        return value

    @field_validator("endpoint", "replay_endpoint")
    @classmethod
    def _zmq_address(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(tcp|ipc)://\S+$", value):
            raise ValueError("must be a ZeroMQ address such as tcp://127.0.0.1:5557")
        return value


class BackendConfig(_Section):
    """One OpenAI-compatible backend; ``url`` is its base URL including ``/v1``.

    ``kv_events``: follow the backend's KV events for exact cache state (the prefix ledger's guess
    is used while they are out of sync, and for backends without them).
    """

    name: str
    url: str
    model: Annotated[str, Field(min_length=1)]
    api_key: str | None = None
    api_key_env: str | None = None
    capacity: Annotated[int, Field(ge=1)] = 4
    prices: Prices
    profile: str | None = None
    domains: list[str] = Field(default_factory=list)
    hub: str | None = None
    forward_extension: bool = True
    max_connections: Annotated[int, Field(ge=1)] = 512
    kv_events: KVEventsSource | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must start with a letter or digit and hold only letters, digits and _.:-")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// base URL such as http://127.0.0.1:8001/v1")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_key_source(self) -> BackendConfig:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        return self

    def resolved_api_key(self) -> str | None:
        """The key itself, read from the environment when ``api_key_env`` names a variable."""
        if self.api_key_env is None:
            return self.api_key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(f"backends.{self.name}.api_key_env: environment variable "
                              f"{self.api_key_env} is not set")
        return key


class BatchingConfig(_Section):
    """Micro-batcher: flush at ``max_batch_size``, ``max_wait_ms`` after the first queued request, or
    ``quiet_ms`` after the latest when no other has arrived since (``quiet_ms`` >= ``max_wait_ms``:
    off). The default ``quiet_ms`` of 0 allocates together what arrived in one event-loop turn and
    holds a lone request no longer than that turn.

    Admission: at most ``max_inflight_per_slot`` requests per engine slot (healthy backends'
    ``capacity``) are routed and unfinished at once; the rest wait here, first in first out, for
    at most ``max_hold_ms``, then get 429 with Retry-After.
    """

    max_batch_size: Annotated[int, Field(ge=1)] = 16
    max_wait_ms: NonNegative = 10.0
    quiet_ms: NonNegative = 0.0
    queue_limit: Annotated[int, Field(ge=1)] = 4096
    max_inflight_per_slot: Positive = 2.0
    max_hold_ms: Positive = 5000.0


def quiet_rule(quiet_ms: float) -> str:
    """In words, when a batch closes before its wait is out (start-up summary, bench reports)."""
    return "when its event-loop turn ends" if quiet_ms == 0 else f"{quiet_ms:g} ms after its latest request"


class PolicyConfig(_Section):
    """Which allocation policy the router runs, and its seed."""

    name: str = "auction"
    seed: int = 0
    congestion: bool = RouterSettings.congestion  # the auction prices each round's own queueing

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in POLICY_NAMES:
            raise ValueError(f"unknown policy {value!r}; choose one of {', '.join(POLICY_NAMES)}")
        return value


class BuyerDefaults(_Section):
    """What a request that reports nothing is taken to report (IEMAS used one global delta = 0.5)."""

    bid: Annotated[float, Field(ge=0.0, le=MAX_BID)] = 1.0  # the bound a reported bid has
    delta: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    deadline_ms: Positive | None = None
    max_tokens: Annotated[int, Field(ge=1)] = 256


class ValuationConfig(_Section):
    """Scales of IEMAS Eq. 1 in credits (see :mod:`mercato.gateway.core.valuation`)."""

    quality_value: NonNegative = ValuationSettings.quality_value
    latency_penalty_per_s: NonNegative = ValuationSettings.latency_penalty_per_s


class PredictorConfig(_Section):
    """Online Hoeffding-tree predictors (river's hyper-parameter names)."""

    grace_period: Annotated[int, Field(ge=1)] = PredictorSettings.grace_period
    max_depth: Annotated[int, Field(ge=1)] = PredictorSettings.max_depth
    split_confidence: Annotated[float, Field(gt=0.0, lt=1.0)] = PredictorSettings.split_confidence
    default_output_tokens: Positive = PredictorSettings.default_output_tokens
    latency_model: Literal["queueing", "log_linear_tree"] = "queueing"
    quality_prior_weight: Positive = PredictorSettings.quality_prior_weight


class PrefixConfig(_Section):
    """Bound of the prefix ledger (LRU per backend)."""

    max_sessions_per_backend: Annotated[int, Field(ge=1)] = 50_000


class AccountingConfig(_Section):
    """Where the ledger lives and how durable each commit is.

    ``db``: a SQLite file (the single-process default) or a ``postgresql://`` URL, which every
    replica may share; ``${VAR}`` keeps its password out of the file. ``synchronous`` (SQLite):
    ``NORMAL``: a committed record survives a crash of the gateway (no fsync per commit); ``FULL``:
    it also survives an operating-system crash or power loss (one fsync per commit group).
    ``spool`` (PostgreSQL): the local SQLite file that holds records while the database is away.
    """

    db: Path | str = Path("mercato-ledger.sqlite")
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    spool: Path = Path("mercato-ledger-spool.sqlite")

    @field_validator("db", mode="before")
    @classmethod
    def _file_or_url(cls, value: Any) -> Any:
        """A ``postgresql://`` URL stays a string; anything else is a SQLite file's path."""
        if not isinstance(value, str) or is_postgres_url(value):
            return value
        if "://" in value:
            raise ValueError("must be a SQLite file or a postgresql:// URL")
        return Path(value)


class StateConfig(_Section):
    """Where gateway replicas share state (per-backend load, per-buyer spend and limits).

    ``redis_url``: a Redis server every replica reaches; unset with one worker means in-process
    state, unset with several means an embedded Redis started by ``mercato serve --workers N``.
    ``share_routing``: replicas add each other's in-flight load and prefix entries to their own
    routing view (:mod:`mercato.gateway.live.replica_sync`); off, each routes on what it saw itself
    (only to measure what sharing is worth: ``mercato bench replicas``).
    """

    redis_url: str | None = None
    share_routing: bool = True

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class BuyerLimits(_Section):
    """One buyer's budget and rate limits; an unset one does not limit.

    ``budget``: credits the buyer may be charged in all (the ledger's ``payment``), counted where
    the limits are kept (the process, or Redis); ``rpm``: requests per rate window; ``tpm``:
    tokens (prompt + completion) per rate window.
    """

    budget: NonNegative | None = None
    rpm: Annotated[int, Field(ge=1)] | None = None
    tpm: Annotated[int, Field(ge=1)] | None = None

    @property
    def limited(self) -> bool:
        """True when any of the three limits is set."""
        return self.budget is not None or self.rpm is not None or self.tpm is not None


class RuntimeKey(BuyerLimits):
    """An API key an operator added at runtime (a value of the Redis hash ``mercato:keys``).

    Its limits, where given, replace the config's for the buyer.
    """

    buyer: Annotated[str, Field(min_length=1)]


class LimitsConfig(_Section):
    """Per-buyer budgets and rate limits (see :mod:`mercato.gateway.live.limits`).

    ``default``: the limits of every buyer not in ``buyers``; ``window_s``: the length of a rate
    window (rpm and tpm count per window: keep 60 but to test); ``replicas``: how many gateway
    replicas share the limits, each enforcing its 1/replicas share while Redis is unreachable
    (``mercato serve --workers N`` sets it); ``runtime_keys``: also accept the API keys in the Redis
    hash ``mercato:keys`` (needs ``state.redis_url``), re-read every ``keys_refresh_s``;
    ``reservation_ttl_s``: how long a buyer's reservations outlive its last request in Redis (what a
    replica killed mid-request holds back is freed then).
    """

    default: BuyerLimits = BuyerLimits()
    buyers: dict[str, BuyerLimits] = Field(default_factory=dict)
    window_s: Positive = 60.0
    replicas: Annotated[int, Field(ge=1)] = 1
    runtime_keys: bool = False
    keys_refresh_s: Positive = 2.0
    reservation_ttl_s: Positive = 600.0

    def of(self, buyer: str) -> BuyerLimits:
        """The configured limits of ``buyer``."""
        return self.buyers.get(buyer, self.default)


class ServerConfig(_Section):
    """Listening address and request size limit."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    max_body_bytes: Annotated[int, Field(ge=1024)] = 4 * 1024 * 1024


class ProbeConfig(_Section):
    """Start-up prefill probes (:mod:`mercato.gateway.live.prefill_probe`): cold prompts of
    ``prompt_words`` words (about as many tokens or more), ``repeats`` times each, at every
    backend before the gateway serves; unfinished probes are given up after ``timeout_s``."""

    enabled: bool = True
    prompt_words: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [32, 1024]
    repeats: Annotated[int, Field(ge=1)] = 2
    timeout_s: Positive = 10.0  # the gateway serves only after it: a hung backend delays start this long


class TimeoutConfig(_Section):
    """Timeouts towards backends; ``read_s`` bounds any silence (first byte included), not the reply."""

    connect_s: Positive = 2.0
    read_s: Positive = 120.0
    pool_s: Positive = 10.0


class RetryConfig(_Section):
    """Retries on the same backend, only before its first byte: connect errors, 429 and 5xx.

    The wait is a full-jitter draw in ``[0, min(backoff_max_s, backoff_base_s * 2^(k-1))]``, or
    at least the backend's ``Retry-After``; a backend asking for more than ``retry_after_max_s``
    is failed over at once (see :mod:`mercato.gateway.live.backoff`).
    """

    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    backoff_base_s: NonNegative = 0.05
    backoff_max_s: NonNegative = 1.0
    retry_after_max_s: NonNegative = 2.0


class CircuitConfig(_Section):
    """Circuit breaker per backend, and the health-check loop that probes it back."""

    failure_threshold: Annotated[int, Field(ge=1)] = 3
    cooldown_s: Positive = 5.0
    health_interval_s: Positive = 2.0


class LoggingConfig(_Section):
    """The access log: one line per API request, as ``key=value`` text or one JSON object.

    ``file``: where the lines go (appended); default the standard error, beside uvicorn's log.
    """

    access_log: bool = True
    format: Literal["text", "json"] = "text"
    file: Path | None = None


class GatewayConfig(_Section):
    """The whole gateway configuration file."""

    server: ServerConfig = ServerConfig()
    backends: Annotated[list[BackendConfig], Field(min_length=1)]
    batching: BatchingConfig = BatchingConfig()
    policy: PolicyConfig = PolicyConfig()
    buyer_defaults: BuyerDefaults = BuyerDefaults()
    valuation: ValuationConfig = ValuationConfig()
    predictor: PredictorConfig = PredictorConfig()
    prefix: PrefixConfig = PrefixConfig()
    accounting: AccountingConfig = AccountingConfig()
    state: StateConfig = StateConfig()
    limits: LimitsConfig = LimitsConfig()
    api_keys: dict[str, str] = Field(default_factory=dict)
    prefill_probe: ProbeConfig = ProbeConfig()
    timeouts: TimeoutConfig = TimeoutConfig()
    retries: RetryConfig = RetryConfig()
    circuit_breaker: CircuitConfig = CircuitConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("backends")
    @classmethod
    def _unique_names(cls, backends: list[BackendConfig]) -> list[BackendConfig]:
        seen: set[str] = set()
        for backend in backends:
            if backend.name in seen:
                raise ValueError(f"backend names must be unique; {backend.name!r} repeats")
            seen.add(backend.name)
        if any(b.name == "mercato" for b in backends) or any(b.model == "mercato" for b in backends):
            raise ValueError("'mercato' is reserved for the gateway's automatic model")
        return backends

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, keys: dict[str, str]) -> dict[str, str]:
        for key, buyer in keys.items():
            if len(key) < 8:
                raise ValueError("every API key must be at least 8 characters long")
            if not buyer:
                raise ValueError(f"API key ...{key[-4:]} maps to an empty buyer name")
        return keys

    @model_validator(mode="after")
    def _runtime_keys_need_redis(self) -> GatewayConfig:
        if self.limits.runtime_keys and self.state.redis_url is None:
            raise ValueError("limits.runtime_keys: needs state.redis_url (the keys are read from Redis)")
        return self

    def backend(self, name: str) -> BackendConfig:
        """The configuration of one backend by name."""
        for b in self.backends:
            if b.name == name:
                return b
        raise KeyError(name)


def _format_errors(err: ValidationError) -> str:
    """Every problem on one line, each as ``field.path: what is wrong``."""
    parts = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            msg = "unknown field (misspelt, or in the wrong section?)"
        else:
            msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {' '.join(msg.split())}")
    return "; ".join(parts)


def parse_config(data: Any) -> GatewayConfig:
    """Validate an already-loaded mapping (from YAML, JSON or code), taken as it is: environment
    references are expanded by :func:`load_config` only, so a resolved secret is never expanded twice."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a mapping with at least a 'backends' list")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read one YAML file, expand its ``${VAR}`` and ``os.environ/VAR`` references
    (:mod:`mercato.gateway.live.secrets`) and validate it; raises :class:`ConfigError` naming the
    bad field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    try:
        return parse_config(expand_secrets(data))
    except (ConfigError, UnsetVariable) as err:
        raise ConfigError(f"{path}: {err}") from None
