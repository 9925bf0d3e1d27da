"""Work and virtual cost of an allocation: the objective every solver and payment rule shares.

Agent i's *work* under allocation A, in output-token equivalents, is

    W_i(A) = sum_{v: A(v)=i} omega[v, i]  -  sum_{(u,v): A(u)=A(v)=i} credit[(u,v), i]

with ``omega[v, i] = L_out(v) + rho_i * L_in(v)`` (node v read entirely as fresh input) and
``credit[(u,v), i] = rho_i * (1 - kappa_i) * L_uv`` (context i already holds from u is cached).
Its true cost is ``c_i * W_i`` and the virtual objective is ``J(A) = sum_i phi_i * W_i(A)``.
With kappa = 0 this is the paper's Eq. 2-3: generation ``phi * L_out`` plus ``phi * rho * L_uv``
on every edge whose two ends sit on different agents (plus fresh reading of external input).

Because J is linear in each phi_i with slope W_i, an exact minimiser gives every agent a work
W_i that cannot rise when its bid rises: the monotonicity that critical-value payments need.
That is why payments are computed on W, not on the paper's per-node omega, which counts
cached context the objective never charges.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.workflow.model import Agent, Workflow, capability


class WorkflowMarket:
    """One workflow offered to one set of agents: capability, workloads and cache credits."""

    def __init__(self, workflow: Workflow, agents: Sequence[Agent]) -> None:
        self.workflow = workflow
        self.agents: tuple[Agent, ...] = tuple(agents)
        self.capable = capability(workflow, self.agents)
        rho = np.array([a.input_ratio for a in self.agents])
        kappa = np.array([a.cached_discount for a in self.agents])
        l_in = np.array([n.input_tokens for n in workflow.nodes])
        l_out = np.array([n.output_tokens for n in workflow.nodes])
        self.omega: NDArray[np.float64] = np.where(self.capable, l_out[:, None] + rho * l_in[:, None],
                                                   np.inf)
        both = self.capable[workflow.sources] & self.capable[workflow.targets]
        self.credit: NDArray[np.float64] = np.where(
            both, workflow.tokens[:, None] * (rho * (1.0 - kappa))[None, :], 0.0)

    @property
    def n_nodes(self) -> int:
        """Number of workflow nodes."""
        return len(self.workflow.nodes)

    @property
    def n_agents(self) -> int:
        """Number of agents."""
        return len(self.agents)

    @cached_property
    def agent_index(self) -> dict[str, int]:
        """Agent name -> column."""
        return {a.name: k for k, a in enumerate(self.agents)}

    def check_bids(self, bids: ArrayLike) -> NDArray[np.float64]:
        """Bids as a float array, one finite non-negative entry per agent, or a ValueError."""
        b = np.asarray(bids, dtype=np.float64)
        if b.shape != (self.n_agents,):
            raise ValueError(f"need one bid per agent ({self.n_agents}), got shape {b.shape}")
        bad = ~np.isfinite(b) | (b < 0)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(f"agent '{self.agents[k].name}': bid must be a finite number >= 0, got {b[k]}")
        return b

    def node_cost(self, phi: NDArray[np.float64]) -> NDArray[np.float64]:
        """Cost of each node read fresh on each agent at per-unit prices ``phi`` (virtual costs, or
        bids for a node's standalone price); ``inf`` where not allowed or the price is ``inf``."""
        with np.errstate(invalid="ignore"):
            cost = self.omega * phi[None, :]
        return np.where(self.capable & np.isfinite(phi)[None, :], cost, np.inf)

    def bonus(self, phi: NDArray[np.float64]) -> NDArray[np.float64]:
        """Virtual cost saved on each edge when both ends stay on one agent (0 where impossible)."""
        finite = np.isfinite(phi)
        return np.where(finite[None, :], self.credit * np.where(finite, phi, 0.0)[None, :], 0.0)

    def work(self, assignment: ArrayLike) -> NDArray[np.float64]:
        """W_i(A) for every agent (0 for agents with no node)."""
        a = np.asarray(assignment, dtype=np.int64)
        nodes = np.arange(self.n_nodes)
        w = np.zeros(self.n_agents)
        np.add.at(w, a, self.omega[nodes, a])
        stay = a[self.workflow.sources] == a[self.workflow.targets]
        edges = np.flatnonzero(stay)
        np.add.at(w, a[self.workflow.targets[edges]], -self.credit[edges, a[self.workflow.targets[edges]]])
        return w

    def objective(self, assignment: ArrayLike, phi: NDArray[np.float64]) -> float:
        """J(A) = sum_i phi_i W_i(A) (``inf`` when A uses a refused or incapable agent)."""
        a = np.asarray(assignment, dtype=np.int64)
        if not self.capable[np.arange(self.n_nodes), a].all():
            return float("inf")
        w = self.work(a)
        used = w > 0
        return float(np.dot(phi[used], w[used])) if used.any() else 0.0

    def fresh_transfer_tokens(self, assignment: ArrayLike) -> float:
        """Context tokens re-read as fresh input because an edge crosses agents."""
        a = np.asarray(assignment, dtype=np.int64)
        cross = a[self.workflow.sources] != a[self.workflow.targets]
        return float(self.workflow.tokens[cross].sum())
