"""Input checks shared by the mechanisms: every bad input becomes a ValueError naming the problem.

Mechanisms are called by the gateway on live traffic and by experiments on generated
instances; a silent broadcast or a NaN slipping through would corrupt payments, so the
checks are strict and the messages say which argument and which entry is wrong.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def as_matrix(name: str, data: ArrayLike, *, allow_nan: bool, allow_neg_inf: bool,
              allow_pos_inf: bool = False) -> NDArray[np.float64]:
    """Return ``data`` as a 2-D float64 array or raise ValueError explaining why it is not one."""
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N requests, M agents) array, got shape {arr.shape}")
    if np.isfinite(arr).all():  # the usual case: one pass, nothing to name
        return arr
    if not allow_nan and np.isnan(arr).any():
        i, j = np.argwhere(np.isnan(arr))[0]
        raise ValueError(f"{name} contains NaN at ({i}, {j})")
    if not allow_neg_inf and np.isneginf(arr).any():
        i, j = np.argwhere(np.isneginf(arr))[0]
        raise ValueError(f"{name} contains -inf at ({i}, {j})")
    if not allow_pos_inf and np.isposinf(arr).any():
        i, j = np.argwhere(np.isposinf(arr))[0]
        raise ValueError(f"{name} contains +inf at ({i}, {j})")
    return arr


def as_capacity(data: ArrayLike, n_agents: int) -> NDArray[np.int64]:
    """Return per-agent capacities as non-negative int64, one per column of the welfare matrix."""
    if isinstance(data, np.ndarray) and data.dtype.kind in "iu" and data.shape == (n_agents,):
        if (data < 0).any():  # integers are whole and finite: only the sign is left to check
            i = int(np.argmax(data < 0))
            raise ValueError(f"capacity must be non-negative, agent {i} has {data[i]}")
        return data.astype(np.int64, copy=False)
    try:
        raw = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"capacity must be numeric: {exc}") from None
    if raw.ndim == 0:
        raw = np.full(n_agents, float(raw))
    if raw.ndim != 1:
        raise ValueError(f"capacity must be 1-D with one entry per agent, got shape {raw.shape}")
    if raw.shape[0] != n_agents:
        raise ValueError(f"capacity has {raw.shape[0]} entries but there are {n_agents} agents")
    if not np.isfinite(raw).all():
        raise ValueError(f"capacity must be finite, got {raw[~np.isfinite(raw)][0]}")
    if (raw < 0).any():
        i = int(np.argmax(raw < 0))
        raise ValueError(f"capacity must be non-negative, agent {i} has {raw[i]:g}")
    if (raw != np.round(raw)).any():
        i = int(np.argmax(raw != np.round(raw)))
        raise ValueError(f"capacity must be whole numbers, agent {i} has {raw[i]:g}")
    return raw.astype(np.int64)


def same_shape(name_a: str, a: NDArray[np.float64], name_b: str, b: NDArray[np.float64]) -> None:
    """Raise ValueError when two per-pair matrices disagree in shape."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {name_a} is {a.shape} but {name_b} is {b.shape}")


def as_prices(data: ArrayLike, n_agents: int) -> NDArray[np.float64]:
    """Return per-agent prices as a finite 1-D float64 array with one entry per agent."""
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"prices must be numeric: {exc}") from None
    if arr.shape != (n_agents,):
        raise ValueError(f"prices must have one entry per agent ({n_agents}), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"prices must be finite, agent {int(np.argmax(~np.isfinite(arr)))} is not")
    return arr
