"""CLI commands of the simulated engine: ``mercato engine serve`` and ``mercato engine profiles``.

Registered in :mod:`mercato.cli` (the ``engine`` sub-app lives there so that other engine
commands can join it); FastAPI and uvicorn are imported inside the commands.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mercato.reporting import print_table, stderr

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def engine_serve(
    profile: Annotated[str, typer.Option(help="Model profile, see `mercato engine profiles`.")],
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    model_name: Annotated[str | None, typer.Option(help="Served model name (default: the profile).")] = None,
    max_num_seqs: Annotated[int, typer.Option(help="Concurrent sequences (vLLM --max-num-seqs).")] = 12,
    gpu_memory_utilization: Annotated[float, typer.Option(help="GPU memory share for weights + KV.")] = 0.6,
    speed: Annotated[float, typer.Option(
        help="Simulated seconds per wall second; 0 = no delays at all (for gateway overhead runs).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the answer draws.")] = 0,
) -> None:
    """Serve one simulated vLLM instance with an OpenAI-compatible API on HTTP."""
    import uvicorn

    from mercato.engine import EngineCore, get_profile
    from mercato.engine.server import create_app
    from mercato.heap import freeze_startup_objects

    try:
        model = get_profile(profile)
        core = EngineCore(model, max_num_seqs=max_num_seqs, gpu_memory_utilization=gpu_memory_utilization,
                          seed=seed)
        app = create_app(core, model_name or profile, speed=speed)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    stderr.print(f"simulated {model.hf_model} on {model.gpu.name}: {core.pool.num_blocks * 16:,} KV tokens, "
                 f"max_num_seqs {max_num_seqs}, speed {speed:g}; http://{host}:{port}/v1")
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="warning")


def engine_profiles(json_out: JsonFlag = False) -> None:
    """The model profiles with their derived speeds, memory and prices (credits = USD per 1M tokens)."""
    from mercato.engine import PROFILES

    speed = [{
        "name": p.name, "gpu": p.gpu.name, "weights GB": p.weights_bytes / 1e9,
        "KV KiB/token": p.kv_bytes_per_token / 1024, "KV tokens @0.6": p.kv_cache_tokens(0.6),
        "prefill tok/s": p.prefill_tokens_per_s, "decode tok/s": p.decode_tokens_per_s,
        "step +/seq": p.decode_batch_slowdown,
    } for p in PROFILES.values()]
    market = [{
        "name": p.name, "model": p.hf_model, "in": p.price_input, "cached in": p.price_cached_input,
        "out": p.price_output, **{f"P(ok) {domain}": value for domain, value in p.quality.items()},
    } for p in PROFILES.values()]
    if json_out:
        typer.echo(json.dumps({"speed": speed, "market": market}, indent=2))
        return
    print_table("engine profiles: one vLLM instance each (decode tok/s: one stream)", speed)
    print_table("prices (credits/token = USD per 1M tokens) and P(correct answer) per domain", market)
