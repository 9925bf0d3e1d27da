"""CLI commands of the simulated engine: ``mercato engine serve``, ``mercato engine profiles`` and
``mercato bench engine``.

Registered in :mod:`mercato.cli` (the ``engine`` sub-app lives there so that other engine
commands can join it); FastAPI and uvicorn are imported inside the commands.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mercato.reporting import print_table, progress, stderr

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

    try:
        model = get_profile(profile)
        core = EngineCore(model, max_num_seqs=max_num_seqs, gpu_memory_utilization=gpu_memory_utilization,
                          seed=seed)
        app = create_app(core, model_name or profile, speed=speed)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    stderr.print(f"simulated {model.hf_model} on {model.gpu.name}: {core.pool.num_blocks * 16:,} KV tokens, "
                 f"max_num_seqs {max_num_seqs}, speed {speed:g}; http://{host}:{port}/v1")
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


def bench_engine(json_out: JsonFlag = False,
                 seed: Annotated[int, typer.Option(help="Seed of the workload and the engine.")] = 0) -> None:
    """Simulated requests per wall-second of the in-process engine against two baselines."""
    from mercato.bench import engine

    with progress() as bar:
        task = bar.add_task("bench engine", total=engine.REPEATS * len(engine.VARIANTS))
        report = engine.run(seed=seed, on_run=lambda _: bar.advance(task))
    # calibration against the real llama.cpp engine (skipped when it is not built); see engine/calibration.py
    from mercato.engine.calibration import print_calibration
    from mercato.workloads.engine_calibration import calibration_section

    report["calibration"] = calibration_section(seed)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    labels = {"mercato": "mercato (analytic decode, chain cache)",
              "stepped": "baseline: per-token stepping",
              "no_chain_cache": "baseline: no chain cache"}
    rows = [{"name": labels[v], "requests/s (median)": r["requests_per_s_median"],
             "requests/s (best)": r["requests_per_s_best"],
             "requests/CPU-s (median)": r["requests_per_cpu_s_median"]}
            for v, r in report["variants"].items()]
    w = report["workload"]
    print_table(f"in-process engine, {report['requests']} requests ({w['dialogues']} CoQA-like dialogues x "
                f"{w['turns']} turns, {w['profile']}, {report['repeats']} runs each)", rows)
    sim = report["simulated"]
    typer.echo(f"speed-up: x{report['speedup_vs_stepped']:.2f} vs stepping, "
               f"x{report['speedup_vs_no_chain_cache']:.2f} vs no chain cache; identical results: "
               f"{'yes' if report['identical_results'] else 'NO'}")
    typer.echo(f"simulated: {sim['virtual_seconds']:.1f} s virtual, prefix-cache hit rate "
               f"{sim['prefix_cache_hit_rate']:.3f}, mean TTFT {sim['mean_ttft_ms']:.0f} ms, "
               f"accuracy {sim['accuracy']:.3f}")
    typer.echo(f"target >= {report['target_requests_per_s']:,.0f} requests/s: "
               f"{'yes' if report['target_met'] else 'NO'} (wall-clock; noisy on a shared machine)")
    print_calibration(report["calibration"])
