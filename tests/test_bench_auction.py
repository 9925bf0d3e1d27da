"""`mercato bench auction`: the report, and warm-started rounds deciding exactly as cold ones."""

from __future__ import annotations

import numpy as np

from mercato.bench import auction


def test_warm_rounds_decide_exactly_as_cold_rounds():
    # Same router state, same batches: the policy that carries clearing prices from round to round
    # must assign and price every request exactly as a fresh policy would.
    warm_router = auction.contested_router(20, seed=3)
    cold_router = auction.contested_router(20, seed=3)
    for k in range(6):
        batch = auction.request_batch(60, seed=10 + k)
        auction.auction_policy(cold_router).reset()
        warm = warm_router.route(batch, now=0.4 * k)
        cold = cold_router.route(batch, now=0.4 * k)
        assert [d.backends[:1] for d in warm] == [d.backends[:1] for d in cold]
        np.testing.assert_allclose([d.payment for d in warm], [d.payment for d in cold], atol=1e-9)
        assert [d.paid for d in warm] == [d.paid for d in cold]
        auction.withdraw(warm_router, warm)
        auction.withdraw(cold_router, cold)
        assert warm_router.pending == cold_router.pending == 0
    assert auction.auction_policy(warm_router).warm_prices is not None
    assert auction.auction_policy(cold_router).warm_prices is not None  # learned again after each reset


def test_report_has_warm_and_cold_rounds():
    report = auction.run(n_requests=60, n_backends=20, repeats=3)
    for key in ("ms_round_median", "ms_round_cold_median", "ms_auction_and_payments",
                "ms_auction_and_payments_cold", "ms_predict_all_pairs", "ms_river_per_pair_scoring_baseline"):
        assert report[key] > 0, key
    assert report["target_met"] == (report["ms_round_median"] <= report["target_ms"])
