"""Model profiles: architecture-derived KV sizes, the memory budget, speeds, prices, lookups."""

from __future__ import annotations

import pytest

from mercato.engine import PROFILES, EngineCore, get_profile
from mercato.engine.kv_cache import BLOCK_TOKENS
from mercato.engine.profiles import GPU_PROFILES, register_profile


@pytest.mark.parametrize(("name", "layers", "kv_heads"), [
    ("qwen3-4b", 36, 8), ("qwen3-8b", 36, 8), ("llama3-8b", 32, 8), ("qwen3-32b", 64, 8)])
def test_kv_bytes_per_token_follow_the_architecture(name, layers, kv_heads):
    assert get_profile(name).kv_bytes_per_token == layers * kv_heads * 128 * 2 * 2


def test_the_iemas_models_and_a_large_one_are_there():
    assert {"qwen3-4b", "qwen3-8b", "llama3-8b", "qwen3-32b"} <= set(GPU_PROFILES)
    sizes = sorted((PROFILES[n] for n in GPU_PROFILES), key=lambda p: p.parameters)
    assert sizes[0].name == "qwen3-4b" and sizes[-1].name == "qwen3-32b"


def test_block_pool_is_sized_from_the_memory_budget():
    profile = get_profile("qwen3-8b")
    budget = profile.gpu.memory_bytes * 0.6 - profile.weights_bytes
    core = EngineCore(profile, gpu_memory_utilization=0.6)
    assert core.pool.num_blocks == int(budget // profile.kv_bytes_per_token) // BLOCK_TOKENS
    assert EngineCore(profile, gpu_memory_utilization=0.9).pool.num_blocks > core.pool.num_blocks
    with pytest.raises(ValueError, match="do not fit"):
        EngineCore(profile, gpu_memory_utilization=0.2)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        profile.kv_cache_tokens(1.5)


def test_speeds_prices_and_quality_are_consistent():
    for p in (PROFILES[n] for n in GPU_PROFILES):
        assert p.decode_step_seconds(1) == pytest.approx(1 / p.decode_tokens_per_s)
        assert p.decode_step_seconds(12) > p.decode_step_seconds(1)
        assert p.prefill_tokens_per_s > 20 * p.decode_tokens_per_s  # prefill is compute-bound, decode is not
        assert p.price_cached_input == p.price_input / 2 and p.price_output > 0
        assert 0 < p.quality_for("coqa") < 1 and p.quality_for("unknown-domain") == p.quality["default"]
        assert p.max_model_len == 4096
    large, small = get_profile("qwen3-32b"), get_profile("qwen3-4b")
    assert large.price_output > small.price_output
    assert all(large.quality[d] > small.quality[d] for d in small.quality)


def test_calibrated_cpu_profile_is_registered_once():
    smol = get_profile("smollm2-135m-cpu")
    assert smol.name not in GPU_PROFILES and smol.prefill_tokens_per_s > 0
    with pytest.raises(ValueError, match="already registered"):
        register_profile(smol)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ValueError, match="qwen3-8b"):
        get_profile("gpt-5")
