"""Buyer valuations from predicted QoS (IEMAS Eq. 1 with mercato's normalisation).

Units: everything is in **credits**, the currency backends price tokens in. A buyer with bid
``b`` (its value scale) and preference ``delta`` values being served by backend i at

    v_ij = b * (delta * Q * P_ij - (1 - delta) * K * L_ij)

where ``P_ij`` is the predicted probability of a correct answer, ``L_ij`` the predicted TTFT in
seconds, ``Q`` = 200 credits (the value of a surely correct answer at b = 1, delta = 1) and
``K`` = 1000 credits per second of waiting. The IEMAS reference used Q = 100 and K = 5 against
a cost of 0.02 per token with all prices equal. mercato's engine prices are real list prices
(1 credit = 1e-6 USD, 0.03-0.29 credits per input token) that differ across backends: Q is
doubled so that a typical 1k-token request to a small or medium model keeps positive welfare at
bid 1. K is a value of time: at delta = 0.5 one second of waiting weighs 500 credits, i.e.
$0.0005, or $1.80 per hour of a person waiting, far below what a person's time is worth, so
the default buyer is a patient one. Put the other way, 100 ms of TTFT weighs as much as the
price of a 1k-token uncached prompt to an 8B model. The default was 100 until issue 13; at
that value 1 s of waiting weighed less than the price gap between two engines for one long
prompt, and the auction queued whole bursts of cold prompts on the cheapest engines (see
docs/routing.md for the measured trade-off at 100, 300 and 1000). The service cost is the
predicted IEMAS Eq. 6 cost ``c_ij`` in credits, and the auction maximises
``w_ij = v_ij - c_ij``. A deadline is hard: pairs predicted to miss it are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ValuationSettings:
    """Scales of IEMAS Eq. 1 in credits."""

    quality_value: float = 200.0
    latency_penalty_per_s: float = 1000.0


def buyer_values(bids: NDArray[np.float64], deltas: NDArray[np.float64], quality: NDArray[np.float64],
                 latency_s: NDArray[np.float64], settings: ValuationSettings) -> NDArray[np.float64]:
    """(N, M) values from per-request bids and deltas (N,) and per-pair predictions (N, M)."""
    b, d = bids[:, None], deltas[:, None]
    return b * (d * settings.quality_value * quality
                - (1.0 - d) * settings.latency_penalty_per_s * latency_s)


def realised_value(bid: float, delta: float, correct: bool | None, ttft_s: float,
                   settings: ValuationSettings, expected_quality: float) -> float:
    """What a served request was worth to its buyer, using correctness when it is known."""
    quality = expected_quality if correct is None else float(correct)
    return bid * (delta * settings.quality_value * quality
                  - (1.0 - delta) * settings.latency_penalty_per_s * ttft_s)
