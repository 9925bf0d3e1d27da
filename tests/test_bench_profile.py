"""The profile breakdown attributes py-spy's raw stacks to request-path stages."""

from __future__ import annotations

import pytest

from mercato.bench.profile import LOOP, OTHER, SAMPLE_RATE_HZ, breakdown

LOOP_FRAMES = "asyncio_run (uvicorn/_compat.py:30);Runner.run (asyncio/runners.py:118)"
LIVE = "mercato/gateway/live"
RAW = "\n".join([
    f"{LOOP_FRAMES};MicroBatcher._flush ({LIVE}/batcher.py:141);"
    f"Gateway._route ({LIVE}/service.py:126);Router.route (mercato/gateway/core/router.py:159) 30",
    f"{LOOP_FRAMES};GatewayApp._chat ({LIVE}/app.py:70);complete ({LIVE}/service.py:336);"
    f"Gateway.persist ({LIVE}/service.py:267);GroupCommitter.record ({LIVE}/ledger.py:180) 10",
    f"{LOOP_FRAMES};HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py:173) 15",
    f"{LOOP_FRAMES} 20",
    f"{LOOP_FRAMES};Gateway._learn ({LIVE}/service.py:149);"
    "HoeffdingTreeRegressor.learn_one (river/tree/hoeffding_tree_regressor.py:264) 5",
    f"{LOOP_FRAMES};gc_collect (mercato/x.py:1) 5",
    f"{LOOP_FRAMES};ClientRequest.write_bytes (aiohttp/client_reqrep.py:1594);"
    "StreamWriter._writelines (aiohttp/http_writer.py:116) 7",
    f"{LOOP_FRAMES};deepcopy (copy.py:128) 3",
    "Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982);"
    "_worker (concurrent/futures/thread.py:81) 99",
    "not a stack line",
])


def test_stacks_go_to_the_first_matching_stage_else_to_their_innermost_library():
    rows = {r.stage: r for r in breakdown(RAW, requests=10)}
    assert {s: r.samples for s, r in rows.items()} == {
        "route: market, predictions, allocation": 30, LOOP: 20, "HTTP server: uvicorn, other": 15,
        "ledger: commit": 10, "HTTP client: aiohttp, other": 7, "learn: deferred pass": 5,
        "mercato: other": 5, OTHER: 3}  # the worker thread's 99 samples are off the loop: left out
    assert sum(r.share for r in rows.values()) == pytest.approx(1.0)
    route = rows["route: market, predictions, allocation"]
    assert route.share == pytest.approx(30 / 95)
    assert route.ms_per_request == pytest.approx(1000.0 * 30 / SAMPLE_RATE_HZ / 10)
    assert next(iter(rows)) == "route: market, predictions, allocation"  # largest first


def test_no_requests_is_refused():
    with pytest.raises(ValueError, match="requests"):
        breakdown(RAW, requests=0)
