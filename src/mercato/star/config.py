"""Reading a workflow and its bidders from YAML, with errors that name the file, entry and field.

Units: token counts are plain numbers of tokens; bids, costs, reserves and prior parameters
are prices in $ per 1M output tokens. See ``examples/star/`` for both files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from numpy.typing import NDArray

from mercato.mechanisms.myerson import (
    EmpiricalPrior,
    LogNormalPrior,
    Prior,
    TruncatedNormalPrior,
    UniformPrior,
    VirtualCost,
)
from mercato.mechanisms.workflow import Agent, Node, Workflow
from mercato.star.market import DEFAULT_INPUT_RATIO

_NODE_FIELDS = {"name", "role", "difficulty", "input_tokens", "output_tokens", "agents"}
_EDGE_FIELDS = {"from", "to", "tokens"}
_AGENT_FIELDS = {"name", "tier", "bid", "cost", "input_ratio", "cached_discount", "prior", "reserve"}
_PRIORS: dict[str, tuple[set[str], set[str]]] = {  # type -> (required, optional) parameters
    "uniform": ({"low", "high"}, set()),
    "truncated_normal": ({"mean", "std", "low", "high"}, set()),
    "lognormal": ({"median", "sigma"}, set()),
    "empirical": ({"samples"}, {"bandwidth"}),
}


@dataclass(frozen=True)
class Bidders:
    """The agents with their bids, true costs (for utilities) and the buyer's virtual costs."""

    agents: list[Agent]
    bids: NDArray[np.float64]
    costs: NDArray[np.float64]
    virtual_costs: list[VirtualCost]

    @property
    def reserves(self) -> NDArray[np.float64]:
        """Each agent's highest acceptable bid."""
        return np.array([vc.reserve for vc in self.virtual_costs])


def _read(path: Path) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def _entries(path: Path, data: Mapping[str, Any], key: str, required: bool) -> list[Mapping[str, Any]]:
    items = data.get(key, None if required else [])
    if not isinstance(items, list) or (required and not items):
        raise ValueError(f"{path}: '{key}' must be a non-empty list" if required
                         else f"{path}: '{key}' must be a list")
    for k, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"{path}: {key}[{k}] must be a mapping, got {item!r}")
    return items


def _check_fields(where: str, entry: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(entry))
    if missing:
        raise ValueError(f"{where}: missing field '{missing[0]}'")


def _number(where: str, entry: Mapping[str, Any], field: str) -> float:
    value = entry[field]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {field} must be a number, got {value!r}")
    return float(value)


def _located(where: str, build: Any, *args: Any) -> Any:
    """Call ``build``; prefix any ValueError with the entry it came from."""
    try:
        return build(*args)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def load_workflow(path: Path) -> Workflow:
    """Parse a workflow file (``nodes`` and ``edges``)."""
    data = _read(path)
    nodes = []
    for k, entry in enumerate(_entries(path, data, "nodes", required=True)):
        where = f"{path}: nodes[{k}]" + (f" ('{entry['name']}')" if "name" in entry else "")
        _check_fields(where, entry, _NODE_FIELDS, {"name", "difficulty", "input_tokens", "output_tokens"})
        agents = entry.get("agents")
        if agents is not None and not (isinstance(agents, list) and all(isinstance(a, str) for a in agents)):
            raise ValueError(f"{where}: agents must be a list of agent names")
        for field in ("input_tokens", "output_tokens"):
            _number(where, entry, field)
        nodes.append(_located(str(path), Node, str(entry["name"]), entry["difficulty"],
                              entry["input_tokens"], entry["output_tokens"], str(entry.get("role", "")),
                              None if agents is None else frozenset(agents)))
    links: list[tuple[str, str, float | None]] = []
    for k, entry in enumerate(_entries(path, data, "edges", required=False)):
        where = f"{path}: edges[{k}]"
        _check_fields(where, entry, _EDGE_FIELDS, {"from", "to"})
        tokens = _number(where, entry, "tokens") if "tokens" in entry else None
        links.append((str(entry["from"]), str(entry["to"]), tokens))
    return _located(str(path), Workflow.from_links, nodes, links)


def _prior(where: str, spec: Any) -> Prior:
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"{where}: prior must be a mapping with a 'type' ({', '.join(_PRIORS)})")
    kind = spec["type"]
    if kind not in _PRIORS:
        raise ValueError(f"{where}: unknown prior type '{kind}' (choose {', '.join(_PRIORS)})")
    required, optional = _PRIORS[kind]
    _check_fields(f"{where}: prior", spec, required | optional | {"type"}, required)
    if kind == "empirical":
        samples = spec["samples"]
        if not isinstance(samples, list) or not all(isinstance(s, int | float) for s in samples):
            raise ValueError(f"{where}: prior samples must be a list of numbers")
        bandwidth = _number(f"{where}: prior", spec, "bandwidth") if "bandwidth" in spec else None
        return _located(where, EmpiricalPrior, samples, bandwidth)
    params = {p: _number(f"{where}: prior", spec, p) for p in required}
    builder = {"uniform": UniformPrior, "truncated_normal": TruncatedNormalPrior,
               "lognormal": LogNormalPrior}[kind]
    return _located(where, lambda: builder(**params))


def load_bidders(path: Path) -> Bidders:
    """Parse an agents file (``agents``: name, tier, bid, prior, optional cost/input_ratio/...)."""
    data = _read(path)
    agents, bids, costs, vcs = [], [], [], []
    for k, entry in enumerate(_entries(path, data, "agents", required=True)):
        where = f"{path}: agents[{k}]" + (f" ('{entry['name']}')" if "name" in entry else "")
        _check_fields(where, entry, _AGENT_FIELDS, {"name", "tier", "bid", "prior"})
        bid = _number(where, entry, "bid")
        cost = _number(where, entry, "cost") if "cost" in entry else bid
        for field, value in (("bid", bid), ("cost", cost)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{where}: {field} must be a finite number >= 0, got {value}")
        ratio = _number(where, entry, "input_ratio") if "input_ratio" in entry else DEFAULT_INPUT_RATIO
        discount = _number(where, entry, "cached_discount") if "cached_discount" in entry else 0.0
        agents.append(_located(str(path), Agent, str(entry["name"]), entry["tier"], ratio, discount))
        reserve = _number(where, entry, "reserve") if "reserve" in entry else None
        vcs.append(_located(where, VirtualCost, _prior(where, entry["prior"]), reserve))
        bids.append(bid)
        costs.append(cost)
    return Bidders(agents, np.array(bids), np.array(costs), vcs)
