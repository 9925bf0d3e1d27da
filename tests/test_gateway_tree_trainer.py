"""The trees learn in a child process exactly as they would in the gateway, and survive its loss."""

from __future__ import annotations

import logging
import os
import signal
import time

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway_live_support import config_for, engines, gateway
from mercato.gateway.core.features import N_FEATURES
from mercato.gateway.core.predictors import PredictorBank, PredictorSettings
from mercato.gateway.core.types import BackendSpec
from mercato.gateway.live.assemble import tree_trainer
from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.tree_trainer import TreeTrainerProcess

SPECS = [BackendSpec("a", "m1", 8, 0.03, 0.015, 0.1), BackendSpec("b", "m1", 8, 0.05, 0.025, 0.2),
         BackendSpec("c", "m2", 8, 0.05, 0.025, 0.08)]
SETTINGS = PredictorSettings(grace_period=20)  # splits within a few hundred lessons


def _teach(banks: list[PredictorBank], rng: np.random.Generator, count: int) -> None:
    """The same ``count`` observations to every bank, each followed by a learning pass."""
    for _ in range(count):
        j = int(rng.integers(len(SPECS)))
        x = rng.random(N_FEATURES)
        cost = 10.0 + 30.0 * float(x[0] > 0.5) + float(rng.random())
        correct = bool(x[2] > 0.4)
        for bank in banks:
            bank.learn(j, x, 0, 0.05 + 0.1 * float(x[1]), cost, 20, correct)
            bank.refresh()


def _predict(bank: PredictorBank, rng: np.random.Generator) -> np.ndarray:
    x = rng.random((5, len(SPECS), N_FEATURES))
    p = bank.predict(x, np.zeros(5, dtype=np.int64))
    return np.stack([p.latency_s, p.cost, p.quality])


def _same(bank: PredictorBank, other: PredictorBank) -> bool:
    """Both banks predict exactly alike on the same pairs."""
    return np.array_equal(_predict(bank, np.random.default_rng(9)), _predict(other, np.random.default_rng(9)))


def _caught_up(bank: PredictorBank, reference: PredictorBank, timeout_s: float = 60.0) -> bool:
    """Poll until the background bank predicts what the inline one does (its last batch is back)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        bank.refresh()
        if _same(bank, reference):
            return True
        time.sleep(0.05)
    return False


def test_trees_trained_in_the_child_predict_exactly_as_trees_trained_inline():
    trainer = TreeTrainerProcess(SPECS, SETTINGS)
    trainer.start()
    try:
        background = PredictorBank(SPECS, SETTINGS, trainer)
        inline = PredictorBank(SPECS, SETTINGS)
        untrained = _predict(background, np.random.default_rng(9))
        _teach([background, inline], np.random.default_rng(0), 600)
        assert trainer.running
        assert _caught_up(background, inline)
        assert not np.array_equal(untrained, _predict(inline, np.random.default_rng(9)))  # they did learn
    finally:
        trainer.close()
    assert not trainer.running


def test_a_lost_child_is_logged_once_and_the_trees_learn_here_from_then_on(caplog):
    trainer = TreeTrainerProcess(SPECS, SETTINGS)
    trainer.start()
    bank, before = PredictorBank(SPECS, SETTINGS, trainer), PredictorBank(SPECS, SETTINGS)
    _teach([bank, before], np.random.default_rng(0), 50)
    assert _caught_up(bank, before)  # nothing queued or in flight when the child dies
    assert trainer.pid is not None
    os.kill(trainer.pid, signal.SIGKILL)
    time.sleep(0.5)
    with caplog.at_level(logging.ERROR, logger="mercato.gateway"):
        fresh = PredictorBank(SPECS, SETTINGS)  # the fallback starts over, as a new bank does
        _teach([bank, fresh], np.random.default_rng(1), 400)
    assert not trainer.running
    assert sum("tree trainer process is gone" in r.message for r in caplog.records) == 1
    # the quality trees see only the lessons since the loss (latency and cost also rest on the
    # queueing model and output lengths, which never left the gateway and kept every lesson)
    got, want = _predict(bank, np.random.default_rng(9)), _predict(fresh, np.random.default_rng(9))
    assert np.array_equal(got[2], want[2]) and np.isfinite(got).all()
    trainer.close()


def test_before_start_the_trainer_trains_at_once():
    trainer = TreeTrainerProcess(SPECS, SETTINGS)
    bank, inline = PredictorBank(SPECS, SETTINGS, trainer), PredictorBank(SPECS, SETTINGS)
    _teach([bank, inline], np.random.default_rng(3), 200)
    assert not trainer.running
    assert _same(bank, inline)


@pytest.mark.parametrize("hubs", [False, True])
def test_the_gateway_trains_in_a_child_unless_it_runs_hubs(hubs):
    backends = [{"name": n, "url": f"http://127.0.0.1:{9000 + i}/v1", "model": "m",
                 "prices": {"input": 0.03, "cached_input": 0.015, "output": 0.1},
                 **({"hub": "h", "domains": ["coqa"]} if hubs else {})} for i, n in enumerate("ab")]
    trainer = tree_trainer(GatewayConfig.model_validate({"backends": backends}))
    assert (trainer is None) == hubs


def test_a_live_gateway_trains_in_its_child_shows_it_in_metrics_and_survives_its_loss(tmp_path):
    def trainer_up(url: str) -> float:
        text = httpx.get(f"{url}/metrics").text
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "mercato_tree_trainer_up")

    ask = {"model": "qwen3-4b", "messages": [{"role": "user", "content": "Where did the boat go?"}],
           "max_tokens": 8}
    with engines(speed=20.0) as urls, gateway(config_for(urls, tmp_path / "l.sqlite")) as (url, gw):
        trainer = gw.trainer
        assert trainer is not None and trainer.pid is not None
        chat = f"{url}/v1/chat/completions"
        assert all(httpx.post(chat, json=ask, timeout=30).status_code == 200 for _ in range(4))
        assert trainer_up(url) == 1.0
        os.kill(trainer.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while trainer.running and time.monotonic() < deadline:  # the next learning pass notices
            assert httpx.post(chat, json=ask, timeout=30).status_code == 200
            time.sleep(0.05)
        assert trainer_up(url) == 0.0
        assert httpx.post(chat, json=ask, timeout=30).status_code == 200
    assert not trainer.running
