"""Router core: prefix ledger, compiled predictors, policies, payments and accounting invariants."""

from __future__ import annotations

import numpy as np
import pytest
from river import tree

from mercato.gateway.core.policies import POLICY_NAMES
from mercato.gateway.core.policies.auction import AuctionPolicy
from mercato.gateway.core.predictors import SMALL_DESCENT, Forest, compile_tree
from mercato.gateway.core.prefix import PrefixLedger, common_prefix_length
from mercato.gateway.core.router import Router, RouterSettings
from mercato.gateway.core.types import BackendSpec, BuyerReport, Observation, RouteRequest


def spec(name: str, price: float = 0.05, capacity: int = 4, model: str = "m") -> BackendSpec:
    return BackendSpec(name=name, model=model, capacity=capacity, price_input=price,
                       price_cached_input=price / 2, price_output=price * 4)


def request(rid: str, prompt: str, session: str = "s", turn: int = 1, bid: float = 1.0,
            model: str = "mercato") -> RouteRequest:
    return RouteRequest(request_id=rid, prompt=prompt, prompt_tokens=len(prompt) // 4, max_tokens=32,
                        session_id=session, turn=turn, domain="coqa", source="test", buyer="b",
                        report=BuyerReport(bid=bid), arrival=0.0, model=model)


def serve(router: Router, decision, backend: str | None = None, cached: int = 0, ok: bool = True,
          now: float = 0.0):
    """Serve a routed request at ``now`` (on ``backend``, not the primary: a failover); done 1 s later."""
    backend = backend or decision.backends[0]
    if backend != decision.backends[0]:
        router.release(decision, decision.backends[0], now)
    router.started(decision, backend, now)
    req = decision.request
    obs = Observation(req.request_id, backend, ok, 0.05, 0.5, req.prompt_tokens, cached, 10, "reply",
                      correct=True)
    return router.finish(decision, obs, now + 1.0)


@pytest.mark.parametrize(("a", "b"), [("", ""), ("abc", "abd"), ("abc", "abc"), ("abcdef", "abc"),
                                       ("x" * 1000 + "y", "x" * 1000 + "z"), ("q", "")])
def test_common_prefix_length(a, b):
    expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    assert common_prefix_length(a, b) == expected


def test_prefix_ledger_affinity_lru_and_resync():
    ledger = PrefixLedger(["a", "b"], max_sessions_per_backend=2)
    ledger.observe("a", "s1", "hello world", affinity=0.0, prompt_tokens=3, cached_tokens=0)
    assert ledger.affinity("a", "s1", "hello world, again") == pytest.approx(11 / 18)
    assert ledger.affinity("b", "s1", "hello world, again") == 0.0
    ledger.observe("a", "s2", "x", affinity=0.0, prompt_tokens=1, cached_tokens=0)
    ledger.observe("a", "s3", "y", affinity=0.0, prompt_tokens=1, cached_tokens=0)
    assert ledger.affinity("a", "s1", "hello") == 0.0  # LRU bound evicted s1
    # s2 is older than s3; a miss on s3 that the ledger promised proves s2 is gone too.
    forced = ledger.observe("a", "s3", "y" * 400, affinity=0.95, prompt_tokens=100, cached_tokens=0)
    assert forced and ledger.resyncs == 1
    assert ledger.affinity("a", "s2", "x") == 0.0
    assert ledger.affinity("a", "s3", "y" * 400) == 1.0


@pytest.mark.parametrize("requests", [1, 3, 40])  # pair by pair (<= SMALL_DESCENT pairs), or by level
@pytest.mark.parametrize("classifier", [False, True])
def test_compiled_tree_matches_river(classifier, requests):
    rng = np.random.default_rng(0)
    model = (tree.HoeffdingTreeClassifier(grace_period=30, leaf_prediction="mc") if classifier
             else tree.HoeffdingTreeRegressor(grace_period=30, leaf_prediction="mean"))
    for _ in range(3000):
        x = rng.random(5)
        y = bool((x[0] > 0.5) ^ (x[2] > 0.3)) if classifier else 3 * x[0] + (x[2] > 0.3)
        model.learn_one({k: float(v) for k, v in enumerate(x)}, y)
    compiled = compile_tree(model, classifier)
    assert len(compiled.feature) > 1, "the tree should have split"
    forest = Forest([compiled, compiled])
    xs = rng.random((requests, 2, 5))
    got = forest.value[forest.leaves(xs)]
    for i in range(requests):
        for j in range(2):
            sample = {k: float(v) for k, v in enumerate(xs[i, j])}
            ref = model.predict_proba_one(sample).get(True, 0.0) if classifier else model.predict_one(sample)
            assert got[i, j] == pytest.approx(ref, abs=0.05 if classifier else 1e-12)


def test_forest_descends_alike_pair_by_pair_and_by_level():
    rng = np.random.default_rng(1)
    models = [tree.HoeffdingTreeRegressor(grace_period=20, leaf_prediction="mean") for _ in range(3)]
    for m, model in enumerate(models):
        for _ in range(2000):
            x = rng.random(4)
            model.learn_one({k: float(v) for k, v in enumerate(x)}, float(x[m] > 0.4) + x[3])
    forest = Forest([compile_tree(m, False) for m in models])
    n = SMALL_DESCENT // 3
    xs = rng.random((n, 3, 4))
    xs[0, :, 0] = np.nan  # a missing feature goes right on both paths
    xs[1] = forest.threshold[forest.feature >= 0][0]  # exactly on a split's threshold: left
    by_pair = forest.leaves(xs)  # n x 3 pairs, within the bound
    by_level = forest.leaves(np.concatenate([xs, xs]))[:n]  # twice as many: above it
    assert np.array_equal(by_pair, by_level)
    assert len(set(by_pair.ravel().tolist())) > 3  # the pairs reached different leaves


@pytest.mark.parametrize("policy", POLICY_NAMES)
def test_every_policy_routes_and_accounts(policy):
    router = Router([spec("a"), spec("b", price=0.03), spec("c", price=0.2)], policy)
    batch = [request(f"r{i}", "passage " * 50 + f"question {i}", session=f"s{i}") for i in range(10)]
    decisions = router.route(batch, now=0.0)
    assert [d.request.request_id for d in decisions] == [r.request_id for r in batch]
    for d in decisions:
        assert sorted(d.backends) == ["a", "b", "c"]  # primary, then the failover order
        record = serve(router, d)
        assert record is not None and record.payment >= record.cost - 1e-9
        assert record.surplus >= -1e-9
    assert router.load.inflight.sum() == 0
    totals = router.totals
    assert totals.requests == 10 and totals.payments >= totals.cost - 1e-9


def test_auction_prefers_cache_and_charges_vcg():
    router = Router([spec("a"), spec("b")], "auction")
    first = router.route([request("r1", "ctx " * 300 + "q1")], 0.0)[0]
    serve(router, first, backend="a")
    second = router.route([request("r2", "ctx " * 300 + "q1" + "<|assistant|>\nreply<|end|>\nq2",
                                   turn=2)], 1.0)[0]
    assert second.backends[0] == "a"  # the ledger's prefix makes "a" cheaper
    # Scarce capacity: 3 buyers, 2 slots; the loser's welfare becomes the winners' externality.
    scarce = Router([spec("a", capacity=1), spec("b", capacity=1)], "auction")
    buyers = [request(f"x{i}", "p " * 100, session=f"x{i}", bid=1.0 + i) for i in range(3)]
    decisions = scarce.route(buyers, 0.0)
    paid = [d for d in decisions if d.paid]
    assert len(paid) == 2 and all(d.externality > 0 for d in paid)
    assert not decisions[0].paid  # lowest bid lost the auction, falls back unpaid
    assert decisions[0].externality == 0.0


def test_model_restriction_health_and_deadline():
    router = Router([spec("a", model="m1"), spec("b", model="m2")], "auction")
    d = router.route([request("r", "hi", model="m2")], 0.0)[0]
    assert d.backends == ["b"]
    router.set_health("b", False)
    assert router.route([request("r2", "hi", model="m2")], 0.0)[0].backends == []
    router.set_health("b", True)
    tight = RouteRequest(**{**vars(request("r3", "hi")), "report": BuyerReport(deadline_ms=0.001)})
    assert router.route([tight], 0.0)[0].backends == []


def test_failed_request_writes_no_record_and_finishing_twice_is_an_error():
    router = Router([spec("a")], "round_robin")
    d = router.route([request("r", "hi")], 0.0)[0]
    assert serve(router, d, ok=False) is None
    assert router.totals.failed == 1 and router.load.inflight.sum() == 0
    with pytest.raises(ValueError, match="not pending"):
        serve(router, d)


def test_bad_router_config():
    with pytest.raises(ValueError, match="unique"):
        Router([spec("a"), spec("a")])
    with pytest.raises(ValueError, match="unknown policy"):
        Router([spec("a")], "greedy")
    with pytest.raises(ValueError, match="bid"):
        BuyerReport(bid=-1)
    with pytest.raises(ValueError, match="delta"):
        BuyerReport(delta=1.5)


def test_unmatched_requests_fill_leftover_slots_instead_of_piling_up():
    # IEMAS's auction: values below cost leave every request unmatched (no positive welfare); the
    # fallback must still respect slots: 4 requests over 2 backends of 2 slots each, 2 per backend.
    backends = [spec("a", price=1.0, capacity=2), spec("b", price=1.1, capacity=2)]
    router = Router(backends, AuctionPolicy(serve_all=False))
    batch = [request(f"u{i}", "x " * 200, session=f"u{i}", bid=0.0) for i in range(4)]
    decisions = router.route(batch, 0.0)
    assert not any(d.paid for d in decisions)
    primaries = [d.backends[0] for d in decisions]
    assert sorted(primaries) == ["a", "a", "b", "b"]


def test_requests_that_lose_money_everywhere_stay_in_the_auction_and_pay():
    backends = [spec("a", price=1.0, capacity=2), spec("b", price=1.1, capacity=2)]
    router = Router(backends, "auction")
    batch = [request(f"u{i}", "x " * 200, session=f"u{i}", bid=0.0) for i in range(4)]
    decisions = router.route(batch, 0.0)
    assert all(d.paid and d.payment >= d.predicted_cost - 1e-9 for d in decisions)
    assert sorted(d.backends[0] for d in decisions) == ["a", "a", "b", "b"]


def test_deferred_learning_waits_for_learn_then_matches_learning_at_once():
    """The live gateway learns between requests: nothing is learned until ``learn()``, and then the
    trees are exactly those of a router that learned inside ``finish``. TTFT comes close, not equal:
    each prefill clock ran on the rates known at dispatch, which were older for the deferred one."""
    specs = [spec("a", 0.05), spec("b", 0.08)]
    at_once = Router(specs, "auction")
    deferred = Router(specs, "auction", RouterSettings(defer_learning=True))
    for i in range(12):
        batch = [request(f"r{i}", f"turn {i} of a dialogue " * (i + 1), session=f"s{i % 3}")]
        for router in (at_once, deferred):  # the same backends for both: the same features
            (decision,) = router.route(list(batch), float(i))
            record = serve(router, decision, backend="ab"[i % 2], now=float(i))
            assert record is not None and record.request_id == f"r{i}"  # accounting is never deferred
    assert deferred.snapshot()["unlearned"] == 12
    assert all(b.observations == 0 for b in deferred.predictors.backends)
    assert deferred.totals.requests == at_once.totals.requests == 12
    assert deferred.learn() == 12 and deferred.learn() == 0
    assert [b.observations for b in deferred.predictors.backends] == \
        [b.observations for b in at_once.predictors.backends]
    probe = [request("p", "a new prompt " * 9, session="s1")]
    late = deferred.market(probe, 20.0).context.predictions
    early = at_once.market(probe, 20.0).context.predictions
    np.testing.assert_array_equal(late.cost, early.cost)
    np.testing.assert_array_equal(late.quality, early.quality)
    np.testing.assert_allclose(late.latency_s, early.latency_s, rtol=0.05)


@pytest.mark.parametrize("policy", ["auction", "least_loaded", "cache_aware"])
def test_lone_requests_decided_before_any_is_sent_spread_instead_of_herding(policy):
    """The live batcher may route the next batch before the last one's requests are on the wire:
    a decided request already counts at its primary, so cold lone requests do not all pick the
    backend that looked idle to the first."""
    router = Router([spec(n) for n in "abcd"], policy)
    decisions = [router.route([request(f"r{i}", "a cold prompt " * 40, session=f"s{i}")], 0.001 * i)[0]
                 for i in range(8)]
    assert sorted(d.backends[0] for d in decisions) == sorted("abcd" * 2)
    assert router.load.inflight.tolist() == [2, 2, 2, 2]
    first = decisions[0]
    router.release(first, first.backends[0], 0.01)  # a failover moves the count to the next backend
    router.started(first, first.backends[1], 0.01)
    router.started(first, first.backends[1], 0.01)  # said twice: counted once
    assert router.load.inflight.sum() == 8 and router.load.inflight[router.index[first.backends[1]]] == 3
    for d in decisions:
        serve(router, d, backend=d.backends[1] if d is first else None, now=0.02)
    assert router.load.inflight.tolist() == [0, 0, 0, 0]
