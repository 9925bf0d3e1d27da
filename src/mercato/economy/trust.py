"""Agents' trust (reputation): a failure-dominant score in [0, 1] updated from SLA outcomes.

Table S3: start at 0.8, +0.03 per round in which all of an agent's executed tasks met their
deadline, -0.08 when any of them missed it; an agent with nothing executed keeps its score. The
asymmetry makes trust slow to earn and quick to lose; strict governance gates the compliant
pool on it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mercato.economy.config import Parameters


def update_trust(trust: NDArray[np.float64], agents: NDArray[np.int64], met_sla: NDArray[np.bool_],
                 params: Parameters) -> NDArray[np.float64]:
    """New trust per agent from the agents and outcomes of the round's executed tasks."""
    n = trust.size
    ran = np.bincount(agents, minlength=n) > 0
    failed = np.bincount(agents[~met_sla], minlength=n) > 0
    step = np.where(failed, -params.trust_down, np.where(ran, params.trust_up, 0.0))
    return np.clip(trust + step, 0.0, 1.0)
