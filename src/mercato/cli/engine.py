"""`mercato engine serve | profiles` (the simulated engine) and `mercato engine real build | serve`.

The real engine's tooling (llama.cpp + SmolLM2) lives in :mod:`mercato.engine.real`; it, FastAPI
and uvicorn are imported inside the commands so that `mercato --help` stays fast.
"""

from __future__ import annotations

import json
import signal
from typing import Annotated

import typer

from mercato.cli.options import JsonFlag
from mercato.reporting import print_table, progress, stderr

DEFAULT_PROFILE = "qwen3-4b"  # the smallest GPU profile: `mercato engine serve` with no flags
DEFAULT_PORT = 8001  # vLLM's 8000 is the gateway's; 8001 is examples/gateway.yaml's first backend

engine_app = typer.Typer(help="The simulated vLLM-like inference engine.", no_args_is_help=True)
real_app = typer.Typer(help="The real engine: llama.cpp's llama-server with SmolLM2-135M on the CPU.",
                       no_args_is_help=True)
engine_app.add_typer(real_app, name="real")


@engine_app.command("serve")
def engine_serve(
    profile: Annotated[str, typer.Option(help="Model profile, see `mercato engine profiles`.")] = (
        DEFAULT_PROFILE),
    port: Annotated[int, typer.Option(
        envvar="MERCATO_ENGINE_PORT",
        help="TCP port; the default is examples/gateway.yaml's first backend, not the gateway's 8000.")] = (
        DEFAULT_PORT),
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    model_name: Annotated[str | None, typer.Option(help="Served model name (default: the profile).")] = None,
    max_num_seqs: Annotated[int, typer.Option(help="Concurrent sequences (vLLM --max-num-seqs).")] = 12,
    gpu_memory_utilization: Annotated[float, typer.Option(help="GPU memory share for weights + KV.")] = 0.6,
    speed: Annotated[float, typer.Option(
        help="Simulated seconds per wall second; 0 = no delays at all (for gateway overhead runs).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the answer draws.")] = 0,
    instance: Annotated[str | None, typer.Option(
        help="Name sent as every response's system_fingerprint (tells clients which engine served).")] = None,
    max_model_len: Annotated[int | None, typer.Option(
        min=1, help="Context length (default: the profile's), as vLLM's --max-model-len.")] = None,
    num_gpu_blocks_override: Annotated[int | None, typer.Option(
        min=1, help="KV blocks of 16 tokens, instead of what the memory share leaves (as vLLM's).")] = None,
    kv_events: Annotated[str | None, typer.Option(
        help="Publish KV-cache events (vLLM's format) on a ZeroMQ PUB socket bound here, "
             "e.g. tcp://127.0.0.1:5557.")] = None,
    kv_events_replay: Annotated[str | None, typer.Option(
        help="ZeroMQ ROUTER endpoint that replays missed event batches (needs --kv-events).")] = None,
    kv_events_topic: Annotated[str, typer.Option(help="Topic of the published event messages.")] = "",
) -> None:
    """Serve one simulated vLLM instance with an OpenAI-compatible API on HTTP."""
    import uvicorn
    import zmq

    from mercato.engine import EngineCore, get_profile
    from mercato.engine.kv_cache import BLOCK_TOKENS
    from mercato.engine.kv_events import KVEventLog
    from mercato.engine.kv_publisher import KVEventPublisher
    from mercato.engine.server import create_app
    from mercato.heap import freeze_startup_objects

    if kv_events_replay is not None and kv_events is None:
        raise typer.BadParameter("--kv-events-replay needs --kv-events")
    try:
        model = get_profile(profile)
        log = KVEventLog(BLOCK_TOKENS) if kv_events is not None else None
        core = EngineCore(model, max_num_seqs=max_num_seqs, gpu_memory_utilization=gpu_memory_utilization,
                          seed=seed, num_gpu_blocks=num_gpu_blocks_override, max_model_len=max_model_len,
                          kv_events=log)
        publisher = (KVEventPublisher(log, kv_events, kv_events_replay, kv_events_topic)
                     if log is not None and kv_events is not None else None)
        app = create_app(core, model_name or profile, speed=speed, instance=instance, kv_publisher=publisher)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    except zmq.ZMQError as err:
        raise typer.BadParameter(f"cannot bind --kv-events or --kv-events-replay: {err}") from None
    stderr.print(f"simulated {model.hf_model} on {model.gpu.name}: {core.pool.num_blocks * 16:,} KV tokens, "
                 f"max_num_seqs {max_num_seqs}, speed {speed:g}; http://{host}:{port}/v1"
                 + (f"; KV events on {kv_events}" if kv_events else ""))
    freeze_startup_objects()
    uvicorn.run(app, host=host, port=port, log_level="warning")


@engine_app.command("profiles")
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


@real_app.command("build")
def real_build(
    jobs: Annotated[int | None, typer.Option(min=1, help="Parallel compile jobs (default: all cores).")] = (
        None),
    if_possible: Annotated[bool, typer.Option(
        "--if-possible", help="Exit 0 with a message when the tools to build are missing.")] = False,
) -> None:
    """Install the SmolLM2 weights and build llama-server into the cache folder, if missing."""
    from mercato.engine.real import BuildError, build, build_problems, ensure_model, server_binary

    problems = build_problems()
    if server_binary() is None and problems:
        message = "cannot build llama.cpp: " + "; ".join(problems)
        if if_possible:
            stderr.print(f"{message}; the real_engine tests will be skipped")
            return
        raise typer.BadParameter(message)
    try:
        weights = ensure_model(stderr.print)
        with progress() as bar:
            task = bar.add_task("llama-server", total=None)

            def on_progress(done: int, total: int, stage: str) -> None:
                bar.update(task, completed=done, total=total, description=f"llama-server: {stage}")

            binary = build(jobs, on_progress, stderr.print)
    except BuildError as err:
        stderr.print(str(err))
        raise typer.Exit(1) from None
    typer.echo(f"llama-server: {binary}")
    typer.echo(f"weights: {weights}")


@real_app.command("serve")
def real_serve(
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    slots: Annotated[int, typer.Option(min=1, help="Parallel slots (llama-server -np).")] = 1,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    threads: Annotated[int, typer.Option(min=1, help="CPU threads (-t and -tb).")] = 1,
) -> None:
    """Run llama-server with SmolLM2-135M (one thread, prompt cache on) until interrupted."""
    from mercato.engine.real import MODEL_NAME, RealEngine

    try:
        engine = RealEngine.start(port=port, slots=slots, host=host, threads=threads, keep_log=True)
    except (FileNotFoundError, RuntimeError, TimeoutError, ValueError) as err:
        raise typer.BadParameter(str(err)) from None
    stderr.print(f"llama-server ready: {engine.url}/v1 (model {MODEL_NAME}, {slots} slot(s), "
                 f"{threads} thread(s)); log: {engine.log_path}; Ctrl-C stops it")

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM, and SIGINT even where a background shell ignores it, must stop the server too
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    try:
        engine.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        engine.stop()
