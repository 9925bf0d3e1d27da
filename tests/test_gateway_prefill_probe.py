"""Start-up prefill probes: each backend's overhead and prefill rate are known before traffic."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from gateway_live_support import config_for, engines, gateway, ledger_rows
from mercato.engine import get_profile
from mercato.engine.tokenizer import count_tokens
from mercato.gateway.core.latency import LATENCY_PRIOR
from mercato.gateway.core.router import Router
from mercato.gateway.core.types import BackendSpec
from mercato.gateway.live.config import ConfigError, parse_config
from mercato.gateway.live.prefill_probe import probe_prompt
from mercato.ports import free_port

SPEED = 5.0
PAIR = {"small": "qwen3-4b", "large": "qwen3-32b"}  # prefill 10.3k and 1.9k tokens/s


def _truth(profile: str) -> float:
    """Seconds per k-token of prefill of a simulated engine at SPEED."""
    return 1000.0 / (get_profile(profile).prefill_tokens_per_s * SPEED)


def test_two_idle_measurements_pin_overhead_and_rate_and_leave_other_backends_at_the_prior():
    router = Router([BackendSpec(name, "m", 4, 0.01, 0.005, 0.02) for name in "ab"])
    for tokens, ttft in ((50, 0.011), (1500, 0.040), (60, 0.0112), (1480, 0.0396)):
        router.calibrate("a", tokens, ttft)
    t0, rate = router.predictors.prefill_clock(0)
    assert t0 == pytest.approx(0.010, abs=5e-4)
    assert rate == pytest.approx(0.020, rel=0.03)
    assert router.predictors.prefill_clock(1) == pytest.approx(tuple(LATENCY_PRIOR[:2]))


def test_probe_prompts_are_the_asked_length_and_never_share_a_first_block():
    rng = np.random.default_rng(0)
    a, b = probe_prompt(1024, rng), probe_prompt(1024, rng)
    assert len(a.split()) == len(b.split()) == 1024
    assert count_tokens(a) > 1000
    assert a[:16] != b[:16]  # the nonce: no engine block of one is a block of the other


def test_the_gateway_learns_each_engines_prefill_rate_before_serving(tmp_path, caplog):
    db = tmp_path / "ledger.sqlite"
    with (engines(speed=SPEED, cluster=PAIR) as urls, caplog.at_level(logging.INFO, "mercato.gateway"),
          gateway(config_for(urls, db, PAIR)) as (_, gw)):
        clocks = {name: gw.router.predictors.prefill_clock(j) for j, name in enumerate(gw.router.names)}
    for name, profile in PAIR.items():
        t0, rate = clocks[name]
        assert rate == pytest.approx(_truth(profile), rel=0.25), name
        assert t0 < 0.015, name
    assert clocks["large"][1] > 3 * clocks["small"][1]
    assert "prefill probes: 2 of 2 backends measured" in caplog.text
    assert ledger_rows(db) == []  # a probe is nobody's request


def test_a_backend_that_cannot_be_probed_keeps_the_prior_and_does_not_stop_the_gateway(tmp_path, caplog):
    db = tmp_path / "ledger.sqlite"
    with engines(speed=SPEED, cluster={"small": "qwen3-4b"}) as urls, caplog.at_level(logging.INFO):
        urls = urls | {"gone": f"http://127.0.0.1:{free_port()}"}  # nothing listens there
        config = config_for(urls, db, {"small": "qwen3-4b", "gone": "qwen3-8b"},
                            retries={"max_retries": 0})
        with gateway(config) as (_, gw):
            gone = gw.router.predictors.prefill_clock(gw.router.names.index("gone"))
            small = gw.router.predictors.prefill_clock(gw.router.names.index("small"))
    assert gone == pytest.approx(tuple(LATENCY_PRIOR[:2]))
    assert small[1] == pytest.approx(_truth("qwen3-4b"), rel=0.25)
    assert "prefill probe of gone failed" in caplog.text
    assert "prefill probes: 1 of 2 backends measured" in caplog.text


def test_probes_can_be_turned_off_and_need_at_least_one_prompt_length(tmp_path):
    with engines(speed=SPEED, cluster={"small": "qwen3-4b"}) as urls:
        config = config_for(urls, tmp_path / "l.sqlite", {"small": "qwen3-4b"},
                            prefill_probe={"enabled": False})
        with gateway(config) as (_, gw):
            assert gw.router.predictors.prefill_clock(0) == pytest.approx(tuple(LATENCY_PRIOR[:2]))
        with pytest.raises(ConfigError, match="prompt_words"):
            parse_config(config.model_dump(mode="json") | {"prefill_probe": {"prompt_words": []}})
