"""Run configuration of the service-economy simulator: Table S3's parameters and one run's factors.

:class:`Parameters` holds the paper's constants (Table S3) plus the few numbers the paper leaves
open, each named and documented where it is defined. :class:`EconomyConfig` is one run: the
factors the experiments vary (topology, load, agents, governance, architecture, mechanism,
admission rule, strategic bidders) and the seed. Both validate on construction, so a bad value
fails at once with a ValueError naming the field, never half-way through a 1,620-run suite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

TOPOLOGIES: tuple[str, ...] = ("linear", "tree", "sp", "entangled")
GOVERNANCE: tuple[str, ...] = ("none", "moderate", "strict")
# naive: per-tier markets. hybrid: integrators with EMA slice prices and the efficiency factor in
# both slice capacity and execution load. hybrid_ema_only: efficiency 1 (paper's ablation). The
# last two split the efficiency factor, which the reference applies in two places at once.
ARCHITECTURES: tuple[str, ...] = ("naive", "hybrid", "hybrid_ema_only",
                                  "hybrid_eff_capacity_only", "hybrid_eff_execution_only")
BUILTIN_MECHANISMS: tuple[str, ...] = ("random", "edf", "value_greedy", "market")
# paper: the reference's admission (value-based rules fill capacity with every positive-surplus
# task). welfare_aware: mercato's variant, where value-based rules stop where the next task would
# lower expected welfare (the congestion-aware stop of mercato.economy.book.admit).
ADMISSIONS: tuple[str, ...] = ("paper", "welfare_aware")
LOAD_LEVELS: dict[str, float] = {"low": 0.5, "medium": 1.0, "high": 1.5}
TIERS: tuple[str, ...] = ("device", "edge", "cloud")


@dataclass(frozen=True)
class Parameters:
    """Table S3 (paper 003, supplementary S4-A) plus the simulator's documented extra choices."""

    capacities: tuple[float, float, float] = (200.0, 300.0, 500.0)
    base_delays_ms: tuple[float, float, float] = (5.0, 15.0, 50.0)
    value_low: float = 1.0
    value_high: float = 2.0
    latency_decay_per_ms: float = 0.005
    deadlines_ms: tuple[float, ...] = (100.0, 150.0, 200.0)
    # Bidding estimate L^ = L_base + alpha * rho^power; execution L = L_base + min(q * rho/(1-rho) * 2, cap).
    bid_alpha_ms: float = 200.0
    bid_power: float = 1.2
    queue_factor: float = 2.0
    queue_cap_ms: float = 500.0
    rho_cap: float = 0.99
    latency_cv: float = 0.10
    trust_init: float = 0.8
    trust_up: float = 0.03
    trust_down: float = 0.08
    tatonnement_iterations: int = 15
    tatonnement_step: float = 0.25
    price_floor: float = 0.0
    price_cap: float = 1000.0
    # Reference semantics: tier prices start at 0.1 and are kept across rounds.
    price_init: float = 0.1
    success_a: float = 2.0
    success_b: float = -2.0
    success_learning_rate: float = 0.3
    congestion_penalty: float = 0.05
    ema: float = 0.8
    markup: float = 0.10
    slice_step: float = 0.15
    # Efficiency factors: SP 0.75 and entangled 0.85 from Table S3; tree 0.75 from the reference;
    # linear (never run under hybrid in the paper) takes the tree value.
    efficiency: tuple[tuple[str, float], ...] = (("linear", 0.75), ("tree", 0.75), ("sp", 0.75),
                                                 ("entangled", 0.85))
    sensitive_share: float = 0.30
    moderate_split: float = 0.50
    strict_split: float = 0.70
    trust_gate: float = 0.75
    # Not in the paper: how many service-DAG templates a run's catalogue holds, the price tick
    # that makes log-returns finite at the zero floor, and the rounds left out of volatility
    # while prices and the success model leave their priors.
    catalogue_size: int = 256
    price_tick: float = 0.01
    burn_in_rounds: int = 20

    def __post_init__(self) -> None:
        for name in ("capacities", "base_delays_ms"):
            values = getattr(self, name)
            if len(values) != len(TIERS) or any(not math.isfinite(v) or v <= 0 for v in values):
                raise ValueError(f"{name} must be {len(TIERS)} positive numbers (device, edge, cloud), "
                                 f"got {values}")
        if not self.deadlines_ms or any(d <= 0 for d in self.deadlines_ms):
            raise ValueError(f"deadlines_ms must be positive, got {self.deadlines_ms}")
        if not 0 < self.value_low <= self.value_high:
            raise ValueError(f"need 0 < value_low <= value_high, got {self.value_low}, {self.value_high}")
        if self.tatonnement_iterations < 0:
            raise ValueError(f"tatonnement_iterations must be >= 0, got {self.tatonnement_iterations}")
        if not 0 <= self.price_floor < self.price_cap:
            raise ValueError(f"need 0 <= price_floor < price_cap, got {self.price_floor}, {self.price_cap}")
        if not 0 < self.rho_cap < 1:
            raise ValueError(f"rho_cap must be in (0, 1), got {self.rho_cap}")
        for name in ("ema", "sensitive_share", "moderate_split", "strict_split", "trust_gate",
                     "trust_init"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name, eff in self.efficiency:
            if name not in TOPOLOGIES or not 0 < eff <= 1:
                raise ValueError(f"efficiency needs (topology, factor in (0, 1]) pairs, got ({name}, {eff})")
        if self.catalogue_size < 1:
            raise ValueError(f"catalogue_size must be >= 1, got {self.catalogue_size}")
        if self.price_tick <= 0:
            raise ValueError(f"price_tick must be > 0, got {self.price_tick}")
        if self.burn_in_rounds < 0:
            raise ValueError(f"burn_in_rounds must be >= 0, got {self.burn_in_rounds}")

    def efficiency_for(self, topology: str) -> float:
        """The integrator's efficiency factor for ``topology``."""
        return dict(self.efficiency)[topology]


@dataclass(frozen=True)
class EconomyConfig:
    """One simulation run. Defaults are the paper's baseline (N = 50, medium load, 200 rounds)."""

    topology: str = "tree"
    arrival_rate: float = 1.0
    n_agents: int = 50
    rounds: int = 200
    seed: int = 0
    governance: str = "none"
    architecture: str = "naive"
    mechanism: str = "market"
    # Share of agents that misreport, and the factor by which they inflate reported values.
    strategic_share: float = 0.0
    inflation: float = 1.0
    # How value-based rules (value_greedy, market, the integrator) admit: see ADMISSIONS.
    admission: str = "paper"
    params: Parameters = field(default_factory=Parameters)

    def __post_init__(self) -> None:
        _choice("topology", self.topology, TOPOLOGIES)
        _choice("governance", self.governance, GOVERNANCE)
        _choice("architecture", self.architecture, ARCHITECTURES)
        _choice("admission", self.admission, ADMISSIONS)
        if not isinstance(self.mechanism, str) or not self.mechanism:
            raise ValueError(f"mechanism must be a non-empty name, got {self.mechanism!r}")
        if not math.isfinite(self.arrival_rate) or self.arrival_rate <= 0:
            raise ValueError(f"arrival_rate must be > 0 tasks per agent per round, got {self.arrival_rate}")
        if not isinstance(self.n_agents, int) or self.n_agents < 1:
            raise ValueError(f"n_agents must be a positive integer, got {self.n_agents!r}")
        if not isinstance(self.rounds, int) or self.rounds < 2:
            raise ValueError(f"rounds must be an integer >= 2, got {self.rounds!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not 0 <= self.strategic_share <= 1:
            raise ValueError(f"strategic_share must be in [0, 1], got {self.strategic_share}")
        if not math.isfinite(self.inflation) or self.inflation <= 0:
            raise ValueError(f"inflation must be > 0, got {self.inflation}")

    @property
    def efficiency(self) -> float:
        """Efficiency factor of this run's topology (used only by hybrid architectures)."""
        return self.params.efficiency_for(self.topology)

    def with_(self, **changes: Any) -> EconomyConfig:
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown EconomyConfig field(s): {sorted(unknown)}")
        return replace(self, **changes)


def load_rate(level: str) -> float:
    """Per-agent arrival rate of a named load level (low / medium / high)."""
    _choice("load", level, tuple(LOAD_LEVELS))
    return LOAD_LEVELS[level]


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
