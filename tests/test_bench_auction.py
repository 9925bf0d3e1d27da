"""`mercato bench auction`: the report, and warm-started rounds deciding exactly as cold ones."""

from __future__ import annotations

import numpy as np

from mercato.bench import auction
from mercato.gateway.policies import AuctionPolicy


def test_warm_rounds_decide_exactly_as_cold_rounds():
    # Same router state, same batches: the policy that carries clearing prices from round to round
    # must assign and price every request exactly as a fresh policy would.
    warm_router = auction._market(20, seed=3)
    cold_router = auction._market(20, seed=3)
    for k in range(6):
        batch = auction._batch(60, seed=10 + k)
        cold_router.policy = AuctionPolicy()
        warm = warm_router.route(batch, now=0.4 * k)
        cold = cold_router.route(batch, now=0.4 * k)
        assert [d.backends[:1] for d in warm] == [d.backends[:1] for d in cold]
        np.testing.assert_allclose([d.payment for d in warm], [d.payment for d in cold], atol=1e-9)
        assert [d.paid for d in warm] == [d.paid for d in cold]
        for r in (warm_router, cold_router):
            r._pending.clear()
    assert warm_router.policy._prices is not None


def test_report_has_warm_and_cold_rounds():
    report = auction.run(n_requests=60, n_backends=20, repeats=3)
    for key in ("ms_round_median", "ms_round_cold_median", "ms_auction_and_payments",
                "ms_auction_and_payments_cold", "ms_predict_all_pairs", "ms_river_per_pair_scoring_baseline"):
        assert report[key] > 0, key
    assert report["target_met"] == (report["ms_round_median"] <= report["target_ms"])
