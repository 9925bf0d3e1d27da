"""The two truthful baselines of the paper, both with second-price payments.

Myopic: every node is its own auction, sent as an independent request, so nothing stays in a
KV cache between nodes and each node is read fresh (work ``omega[v, i] = L_out + rho_i L_in``).
The cheapest capable node price ``b_i * omega[v, i]`` wins and is paid the second cheapest.
Per-node costs are then additive, which is what makes per-node second price truthful.

Homogeneous: the whole workflow is one bundle served in one session by one agent of tier >=
the hardest node, so every edge's context stays cached; the lowest bundle price
``b_i * W_i(all nodes on i)`` wins and is paid the second lowest.

A lone capable bidder has no second price; it is paid its reserve (its highest acceptable bid)
times the work, the same cap STAR's payments have.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mercato.mechanisms.workflow.market import WorkflowMarket
from mercato.mechanisms.workflow.outcome import ProcurementOutcome


def _second_price(prices: NDArray[np.float64], cap: NDArray[np.float64]) -> tuple[int, float]:
    """Winner (lowest price, lowest index on ties) and its price: second lowest, or ``cap``."""
    order = np.argsort(prices, kind="stable")
    win = int(order[0])
    if not np.isfinite(prices[win]):
        raise ValueError("no agent may serve this item")
    second = prices[order[1]] if prices.size > 1 else np.inf
    return win, float(second if np.isfinite(second) else cap[win])


def _refuse_above(bids: NDArray[np.float64], reserves: ArrayLike) -> tuple[NDArray[np.float64],
                                                                           NDArray[np.float64]]:
    r = np.asarray(reserves, dtype=np.float64)
    if r.shape != bids.shape:
        raise ValueError(f"need one reserve per agent ({bids.size}), got shape {r.shape}")
    return np.where(bids <= r, bids, np.inf), r


def run_myopic(market: WorkflowMarket, bids: ArrayLike, reserves: ArrayLike) -> ProcurementOutcome:
    """Per-node second-price auctions on fresh-input node prices."""
    b, r = _refuse_above(market.check_bids(bids), reserves)
    prices, caps = market.node_cost(b), market.node_cost(r)
    assignment = np.empty(market.n_nodes, dtype=np.int64)
    work = np.zeros(market.n_agents)
    payments = np.zeros(market.n_agents)
    for v in range(market.n_nodes):
        try:
            win, price = _second_price(prices[v], caps[v])
        except ValueError:
            raise ValueError(f"node '{market.workflow.nodes[v].name}': no agent with an acceptable bid "
                             "can serve it") from None
        assignment[v] = win
        work[win] += market.omega[v, win]
        payments[win] += price
    return ProcurementOutcome("myopic", assignment, work, payments, "per-node")


def run_homogeneous(market: WorkflowMarket, bids: ArrayLike, reserves: ArrayLike) -> ProcurementOutcome:
    """One second-price auction for the whole workflow as a bundle."""
    b, r = _refuse_above(market.check_bids(bids), reserves)
    able = market.capable.all(axis=0)
    bundle = np.array([market.work(np.full(market.n_nodes, i))[i] if able[i] else np.inf
                       for i in range(market.n_agents)])
    with np.errstate(invalid="ignore"):
        prices = np.where(able, bundle * b, np.inf)
    try:
        win, price = _second_price(prices, np.where(able, bundle * r, np.inf))
    except ValueError:
        raise ValueError(f"no single agent with an acceptable bid can serve every node "
                         f"(needs tier >= {market.workflow.max_difficulty})") from None
    work = np.zeros(market.n_agents)
    work[win] = bundle[win]
    payments = np.zeros(market.n_agents)
    payments[win] = price
    return ProcurementOutcome("homogeneous", np.full(market.n_nodes, win, dtype=np.int64), work,
                              payments, "bundle")
