"""Model profiles: what one simulated vLLM instance (a model on a GPU) costs, how fast it is,
how much KV cache it has and how often it answers correctly.

Every number is derived in :func:`_profile` from a GPU datasheet, a model architecture and two
efficiency factors, so the derivation can be read (and changed) in one place; docs/engine.md
lists the resulting numbers with their sources.

* KV bytes per token = layers x KV heads x head dim x 2 (K and V) x dtype bytes (2 for BF16),
  from each model's Hugging Face ``config.json``.
* KV pool = (GPU memory x gpu_memory_utilization - weight bytes) / KV bytes per token, the
  budget vLLM gives its block pool (vLLM also reserves activation memory; we do not).
* Decode is memory-bound: one step at batch 1 reads all weights, so single-stream tokens/s =
  bandwidth efficiency x memory bandwidth / weight bytes. Each extra sequence in the batch adds
  the read of its KV cache (taken at a typical 1,024-token context) plus ~1% of per-sequence
  work (sampling, attention launch), which gives the per-sequence slowdown.
* Prefill is compute-bound: tokens/s = compute efficiency x dense BF16 tensor FLOP/s / (2 x
  parameters).
* Efficiencies: 0.8 of bandwidth and 0.5 of dense FLOP/s for BF16 weights, anchored on a public
  vLLM measurement of Mistral-7B (BF16) on an RTX 4090 (about 52 tokens/s per stream at
  concurrency 4 against a 69 tokens/s roofline; median TTFT 53 ms for 256-token prompts;
  mushfiqrahman.dev, "Mistral-7B on RTX 4090 with vLLM", Poisson sweep). 4-bit AWQ weights run
  through dequantising kernels and get 0.6 and 0.35 (assumption).
* Prices: US dollars per million tokens of comparable hosted endpoints (Groq's list prices for
  llama-3.1-8b-instant and qwen3-32b; assumptions for the two Qwen3 models it does not host),
  written in mercato credits per token with 1 credit = 1e-6 USD, so the number reads the same in
  both units. Cached input is half the input price, the discount Groq lists for prompt-cache hits.
* Answer quality (probability of a correct answer per workload domain): modelling assumptions,
  ordered as the models rank on the general benchmarks of the Qwen3 technical report and the
  Llama 3 model card; not measured on CoQA/QuAC/HotpotQA.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MIB = 1024 * 1024
TYPICAL_CONTEXT_TOKENS = 1024  # context at which the per-sequence decode slowdown is taken
PER_SEQUENCE_OVERHEAD = 0.01  # fraction of a batch-1 step each extra sequence adds besides KV
MAX_MODEL_LEN = 4096  # IEMAS deployment flag --max-model-len 4096 (paper, Appendix C.3.3)


@dataclass(frozen=True)
class Gpu:
    """A GPU as the time and memory model sees it (datasheet numbers)."""

    name: str
    memory_bytes: int
    bandwidth_bytes_per_s: float
    bf16_dense_flops: float  # tensor-core BF16 with FP32 accumulate, without sparsity


RTX_4090 = Gpu("RTX 4090 24GB", 24564 * MIB, 1008e9, 165.2e12)
RTX_6000_ADA = Gpu("RTX 6000 Ada 48GB", 49140 * MIB, 960e9, 364.2e12)


@dataclass(frozen=True)
class ModelProfile:
    """Speed, memory, quality and prices of one model served by vLLM on one GPU."""

    name: str
    hf_model: str
    gpu: Gpu
    parameters: float
    weights_bytes: int
    kv_bytes_per_token: int
    max_model_len: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float  # single stream (batch of one)
    decode_batch_slowdown: float  # fractional growth of a decode step per extra sequence
    quality: Mapping[str, float]  # P(correct answer) per domain; key "default" is the fallback
    price_input: float  # mercato credits per uncached prompt token (1 credit = 1e-6 USD)
    price_cached_input: float  # credits per cached prompt token
    price_output: float  # credits per completion token
    notes: str = field(default="", compare=False)

    def quality_for(self, domain: str) -> float:
        """Probability of a correct answer in ``domain`` (the default for unknown domains)."""
        return self.quality.get(domain, self.quality["default"])

    def decode_step_seconds(self, batch: int) -> float:
        """Duration of one decode step (one token for each of ``batch`` running sequences)."""
        return (1.0 + self.decode_batch_slowdown * (max(batch, 1) - 1)) / self.decode_tokens_per_s

    def kv_cache_tokens(self, gpu_memory_utilization: float) -> int:
        """Tokens of KV cache that fit in the memory budget left after the weights."""
        if not 0.0 < gpu_memory_utilization <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        budget = self.gpu.memory_bytes * gpu_memory_utilization - self.weights_bytes
        if budget <= 0:
            raise ValueError(
                f"{self.name}: weights ({self.weights_bytes / 1e9:.1f} GB) do not fit in "
                f"{gpu_memory_utilization:.2f} x {self.gpu.name}")
        return int(budget // self.kv_bytes_per_token)


def _profile(name: str, hf_model: str, gpu: Gpu, *, parameters: float, weight_bits: int,
             weights_bytes: float, layers: int, kv_heads: int, head_dim: int,
             quality: dict[str, float], usd_per_mtok: tuple[float, float], notes: str) -> ModelProfile:
    """Derive a profile from the GPU datasheet and the model architecture (see module doc)."""
    bandwidth_eff, compute_eff = (0.8, 0.5) if weight_bits == 16 else (0.6, 0.35)
    kv_bytes = layers * kv_heads * head_dim * 2 * 2
    price_in, price_out = usd_per_mtok
    return ModelProfile(
        name=name,
        hf_model=hf_model,
        gpu=gpu,
        parameters=parameters,
        weights_bytes=int(weights_bytes),
        kv_bytes_per_token=kv_bytes,
        max_model_len=MAX_MODEL_LEN,
        prefill_tokens_per_s=compute_eff * gpu.bf16_dense_flops / (2.0 * parameters),
        decode_tokens_per_s=bandwidth_eff * gpu.bandwidth_bytes_per_s / weights_bytes,
        decode_batch_slowdown=TYPICAL_CONTEXT_TOKENS * kv_bytes / weights_bytes + PER_SEQUENCE_OVERHEAD,
        quality=MappingProxyType(quality),
        price_input=price_in,
        price_cached_input=price_in / 2.0,
        price_output=price_out,
        notes=notes,
    )


_REGISTRY: dict[str, ModelProfile] = {
    p.name: p for p in (
        _profile(
            "qwen3-4b", "Qwen/Qwen3-4B", RTX_4090,
            parameters=4.02e9, weight_bits=16, weights_bytes=2 * 4.02e9,
            layers=36, kv_heads=8, head_dim=128,
            quality={"coqa": 0.68, "quac": 0.48, "hotpotqa": 0.42, "default": 0.58},
            usd_per_mtok=(0.03, 0.10),
            notes="small; BF16 on a 24 GB card; price: assumption, below the 8B models"),
        _profile(
            "qwen3-8b", "Qwen/Qwen3-8B", RTX_6000_ADA,
            parameters=8.19e9, weight_bits=16, weights_bytes=2 * 8.19e9,
            layers=36, kv_heads=8, head_dim=128,
            quality={"coqa": 0.75, "quac": 0.55, "hotpotqa": 0.50, "default": 0.65},
            usd_per_mtok=(0.05, 0.20),
            notes="medium; BF16 needs more than 0.6 x 24 GB, so a 48 GB card; "
                  "price: assumption between the 4B and 32B prices, near third-party listings"),
        _profile(
            "llama3-8b", "meta-llama/Meta-Llama-3-8B-Instruct", RTX_6000_ADA,
            parameters=8.03e9, weight_bits=16, weights_bytes=2 * 8.03e9,
            layers=32, kv_heads=8, head_dim=128,
            quality={"coqa": 0.72, "quac": 0.54, "hotpotqa": 0.40, "default": 0.60},
            usd_per_mtok=(0.05, 0.08),
            notes="medium; the paper's 'LLaMA-3-7B'; price: Groq list price of llama-3.1-8b-instant"),
        _profile(
            "qwen3-32b", "Qwen/Qwen3-32B-AWQ", RTX_6000_ADA,
            parameters=32.8e9, weight_bits=4, weights_bytes=19.3e9,
            layers=64, kv_heads=8, head_dim=128,
            quality={"coqa": 0.83, "quac": 0.63, "hotpotqa": 0.62, "default": 0.74},
            usd_per_mtok=(0.29, 0.59),
            notes="large; 4-bit AWQ (BF16 embeddings) to fit 0.6 x 48 GB; "
                  "price: Groq list price of qwen/qwen3-32b"),
    )
}
# The datasheet-derived GPU profiles above; calibrated ones (e.g. a CPU llama.cpp) register later.
GPU_PROFILES: tuple[str, ...] = tuple(_REGISTRY)
# Read-only view of every known profile; other modules add theirs with register_profile.
PROFILES: Mapping[str, ModelProfile] = MappingProxyType(_REGISTRY)


def register_profile(profile: ModelProfile) -> None:
    """Make ``profile`` known to :func:`get_profile` (a name can be registered once)."""
    if profile.name in _REGISTRY:
        raise ValueError(f"a model profile named {profile.name!r} is already registered")
    _REGISTRY[profile.name] = profile


def get_profile(name: str) -> ModelProfile:
    """The profile called ``name``; ValueError lists the known names otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile {name!r}; known: {', '.join(PROFILES)}") from None
