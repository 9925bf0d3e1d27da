"""`mercato bench star | economy | gateway | engine | mechanisms | auction | replicas | routing |
kv-index | routing-state`.

Each times mercato against a baseline measured in the same run; the benchmarks themselves live in
:mod:`mercato.bench` and are imported inside the commands so that `mercato --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.cli.options import FirstSeedOption, JsonFlag, SeedOption, StarSeedOption, WorkersOption
from mercato.reporting import print_table, progress, stderr

bench_app = typer.Typer(help="Benchmarks: mercato against a baseline measured in the same run.",
                        no_args_is_help=True)


@bench_app.command("star")
def bench_star(json_out: JsonFlag = False, seed: StarSeedOption = 0) -> None:
    """Time exact allocation per scenario and solver, and all winners' critical-value payments."""
    from mercato.bench import star
    from mercato.star.scenarios import SCENARIOS

    with progress() as bar:
        task = bar.add_task("bench star", total=len(SCENARIOS))
        report = star.run(seed=seed, on_scenario=lambda _: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    rows = []
    for r in report["scenarios"].values():
        for method, t in r["solvers"].items():
            rows.append({"scenario": r["scenario"], "nodes": r["nodes"], "treewidth": r["treewidth"],
                         "solver": method + (" (auto)" if method == r["auto_solver"] else ""),
                         "alloc ms": t["alloc_ms"], "re-solve ms": t["resolve_ms"]})
    print_table("Exact allocation (median ms; alloc = set-up + solve)", rows)
    pay = [{"scenario": r["scenario"], "winners": r["winners"], "payments ms": r["payments_ms"],
            "bisection (paper) ms": r["payments_ms_bisection"], "total payment $": r["total_payment_usd"],
            "bisection - crossing $": r["bisection_minus_crossing_usd"]}
           for r in report["scenarios"].values()]
    print_table("All winners' critical-value payments (median ms)", pay)
    _print_targets(report)


@bench_app.command("economy")
def bench_economy(json_out: JsonFlag = False, seed: FirstSeedOption = 0, workers: WorkersOption = 2) -> None:
    """Time one 200-round run (N=50, medium, entangled) and Experiment 1 (120 runs)."""
    from mercato.bench import economy

    if workers < 1:
        raise typer.BadParameter(f"workers must be >= 1, got {workers}")
    with progress() as bar:
        task = bar.add_task("bench economy", total=2)
        report = economy.run(seed=seed, workers=workers, show_progress=False,
                             on_step=lambda _: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    print_table("Service economy: wall time (CPU time of one run beside it)", [
        {"name": "one run (200 rounds)", "mercato s": report["one_run_s"],
         "CPU s": report["one_run_cpu_s"], "reference s": "36-50", "speedup": report["speedup_one_run"]},
        {"name": "Experiment 1 (120 runs)", "mercato s": report["experiment1_s"], "CPU s": "-",
         "reference s": report["reference_experiment1_s"], "speedup": report["speedup_experiment1"]},
    ])
    _print_targets(report)


@bench_app.command("gateway")
def bench_gateway(
    json_out: JsonFlag = False,
    seed: Annotated[int, typer.Option(help="Seed for the arrival times.")] = 0,
    duration: Annotated[float, typer.Option(help="Seconds of load per rate.")] = 3.0,
    zero_load_requests: Annotated[int, typer.Option(help="Sequential requests per router at zero load.")
                                  ] = 300,
    peers: Annotated[bool, typer.Option(
        "--peers", help="Include sglang-router (cache_aware, round_robin) when the peers group is installed.")
    ] = False,
    quick: Annotated[bool, typer.Option(
        "--quick", help="A smoke run: 20 zero-load requests, 50 and 100 req/s for 0.5 s each.")] = False,
    gateway_src: Annotated[Path | None, typer.Option(
        help="Run mercato's gateway from this source folder (for example `src` of a git worktree of an "
             "older commit) to measure a baseline.", exists=True, file_okay=False)] = None,
    out: Annotated[Path, typer.Option(help="Folder for JSON, PNG and markdown.")
                   ] = Path("results/bench/gateway"),
    profile: Annotated[bool, typer.Option(
        "--profile", help="Sample each mercato gateway with py-spy (pip install -e '.[profile]') and show "
                          "where its CPU goes, stage by stage; raw stacks are written to --out.")] = False,
) -> None:
    """Latency each router adds over a zero-delay engine called directly, at zero load and open-loop rates."""
    from mercato.bench import gateway, gateway_report
    from mercato.bench import profile as py_spy

    if profile and not py_spy.available():
        raise typer.BadParameter("--profile needs py-spy: pip install -e '.[profile]'")
    if profile:
        out.mkdir(parents=True, exist_ok=True)
    try:
        settings = gateway.Settings(seed=seed, duration_s=duration, zero_load_requests=zero_load_requests,
                                    peers=peers, gateway_src=gateway_src,
                                    profile_dir=out if profile else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if quick:
        settings = settings.quick()
    with progress() as bar:
        task = bar.add_task("bench gateway", total=settings.steps())
        report = gateway.run(settings, on_step=lambda step: bar.update(task, advance=1, description=step))
        bar.update(task, completed=settings.steps(), description="bench gateway")  # the sweeps may stop early
    _show(report, gateway_report, out, json_out)


@bench_app.command("engine")
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


@bench_app.command("mechanisms")
def bench_mechanisms(json_out: JsonFlag = False, seed: SeedOption = 0) -> None:
    """Time exact allocation + all VCG payments against N+1 re-solves and the paper's design."""
    from mercato.bench import mechanisms

    with progress() as bar:
        task = bar.add_task("bench mechanisms", total=len(mechanisms.SIZES))
        report = mechanisms.run(seed=seed, on_size=lambda _: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    rows = [
        {
            "size": label,
            "alloc ms": r["ms_allocation"],
            "payments ms": r["ms_payments"],
            "alloc+pay ms": r["ms_allocation_and_payments"],
            "naive N+1 ms": r["ms_naive_total_same_solver"],
            "x naive (payments)": r["speedup_vs_naive_same_solver"],
            "x naive (total)": r["speedup_total_vs_naive_same_solver"],
            "paper design ms": r["ms_paper_design"],
            "x paper": r["speedup_vs_paper_design"],
        }
        for label, r in report["sizes"].items()
    ]
    print_table("VCG auction: exact b-matching + all payments (median ms)", rows)
    for label, r in report["sizes"].items():
        if r["paper_design_method"] != "measured" or r["naive_same_solver_method"] != "measured":
            stderr.print(f"  {label}: paper design {r['paper_design_method']}; "
                         f"naive {r['naive_same_solver_method']}")
    _print_targets(report)


@bench_app.command("auction")
def bench_auction(json_out: JsonFlag = False, seed: SeedOption = 0,
                  requests: Annotated[int, typer.Option(help="Requests in the batch.")] = 200,
                  backends: Annotated[int, typer.Option(help="Backends in the hub.")] = 100) -> None:
    """Time one Router round (features, predictions, auction, payments) against river's per-pair scoring."""
    from mercato.bench import auction
    from mercato.heap import retain_freed_memory

    retain_freed_memory()  # as `mercato serve` does

    with progress() as bar:
        task = bar.add_task("bench auction", total=1)
        report = auction.run(n_requests=requests, n_backends=backends, seed=seed)
        bar.advance(task)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    print_table(f"one Router round at {requests} requests x {backends} backends (median ms)", [{
        "round": report["ms_round_median"],
        "round, cold prices": report["ms_round_cold_median"],
        "predict all pairs": report["ms_predict_all_pairs"],
        "auction + payments": report["ms_auction_and_payments"],
        "river per-pair scoring": report["ms_river_per_pair_scoring_baseline"],
        "x vs river scoring": report["speedup_scoring_vs_river"],
    }])
    typer.echo(f"target: round <= {report['target_ms']:g} ms: {'yes' if report['target_met'] else 'NO'}")


def _show(report: dict[str, Any], files: Any, out: Path, json_out: bool) -> None:
    """Write a benchmark's files (``files``: its report module, with write, tables and notes), then
    print the JSON, or the tables, notes, paths and targets."""
    paths = files.write(report, out)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    for title, rows in files.tables(report):
        print_table(title, rows)
    for line in files.notes(report):
        stderr.print(line)
    stderr.print("wrote " + ", ".join(str(p) for p in paths))
    _print_targets(report)


def _print_targets(report: dict[str, Any]) -> None:
    """The closing `targets: name: yes, other: NO` line of the star, economy, gateway, mechanisms benches."""
    met = report["targets_met"]
    typer.echo("targets: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in met.items()))


@bench_app.command("replicas")
def bench_replicas(
    json_out: JsonFlag = False,
    seed: SeedOption = 0,
    quick: Annotated[bool, typer.Option(
        "--quick", help="1 and 2 workers, 8 short dialogues, two rates for 0.5 s: a smoke run.")] = False,
    repeats: Annotated[int, typer.Option(min=1, help="Dialogue seeds per variant (seed, seed + 1, ...); "
                                                     "KV rows show the mean and the range.")] = 1,
    workers: Annotated[str, typer.Option(help="Worker counts to compare, comma-separated.")] = "1,2,4",
    duration: Annotated[float, typer.Option(help="Seconds of load per rate.")] = 3.0,
    out: Annotated[Path, typer.Option(help="Folder for JSON, PNG and markdown.")] = Path(
        "results/bench/replicas"),
) -> None:
    """Gateway workers behind one port (1, 2, 4): throughput, and the KV hit that shared state keeps."""
    from mercato.bench import replicas, replicas_report

    try:
        counts = tuple(sorted({int(w) for w in workers.split(",")}))
        settings = replicas.ReplicaSettings(seed=seed, repeats=repeats, workers=counts, duration_s=duration)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--workers/--duration") from None
    if quick:
        settings = settings.quick()
    with progress() as bar:
        task = bar.add_task("bench replicas", total=settings.steps())
        report = replicas.run(settings, on_step=lambda step: bar.update(task, advance=1, description=step))
        bar.update(task, completed=settings.steps(), description="bench replicas")  # ladders may stop early
    _show(report, replicas_report, out, json_out)


@bench_app.command("routing")
def bench_routing(
    json_out: JsonFlag = False,
    seed: SeedOption = 0,
    repeats: Annotated[int, typer.Option(help="Seeds per cell (seed, seed + 1, ...); cells show the spread.")
                       ] = 1,
    peers: Annotated[bool, typer.Option(
        "--peers/--no-peers", help="Include sglang-router when the peers group is installed.")] = True,
    quick: Annotated[bool, typer.Option(
        "--quick", help="One fleet, one workload, burst arrivals, fewer dialogues: a smoke run.")] = False,
    out: Annotated[Path, typer.Option(help="Folder for CSV, JSON, PNG and markdown.")] = Path(
        "results/bench/routing"),
    state: Annotated[bool, typer.Option(
        "--state/--no-state", help="Also compare exact cache state (KV events) with the prefix ledger, "
        "with and without memory pressure (what `bench routing-state` runs).")] = True,
) -> None:
    """mercato's auction against the real sglang-router (and its own rules) on the same live work."""
    from mercato.bench import routing, routing_ablation, routing_report, routing_state

    try:
        settings = (routing.RoutingSettings(fleets=("four",), workloads=("coqa",), arrivals=("burst",),
                                            dialogues=12, turns=4, concurrency=6, seed=seed,
                                            repeats=repeats, peers=peers)
                    if quick else routing.RoutingSettings(seed=seed, repeats=repeats, peers=peers))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    cells = (settings.repeats * len(settings.fleets) * len(settings.workloads) * len(settings.arrivals)
             * len(settings.routers()))
    with progress() as bar:
        task = bar.add_task("bench routing", total=cells)
        report = routing.run(settings, out, on_cell=lambda _: bar.advance(task))
        ablate = bar.add_task("ablation", total=len(settings.fleets) * len(settings.workloads)
                              * len(routing_ablation.VARIANTS))
        ablation = routing_ablation.run(settings, on_row=lambda _: bar.advance(ablate))
        cache_state = None
        if state:
            state_settings = (routing_state.StateSettings.smoke(seed, repeats) if quick
                              else routing_state.StateSettings(seed=seed, repeats=repeats))
            states = bar.add_task("cache state", total=state_settings.cells())
            cache_state = routing_state.run(state_settings, on_cell=lambda _: bar.advance(states))
    paths = routing_report.write(report, ablation, out, cache_state)
    if json_out:
        typer.echo(json.dumps({**report, "ablation": ablation, "cache_state": cache_state}, indent=2,
                              default=float))
        return
    print_table("bench routing: one fresh fleet per router, same seeded work", report["rows"],
                ["fleet", "workload", "arrival", "router", "kv_hit", "ttft_p50_ms", "ttft_p95_ms",
                 "mean_cost", "accuracy", "welfare", "errors"])
    print_table("ablation on the virtual clock (TTFT at the engine)", ablation,
                ["fleet", "workload", "variant", "kv_hit", "ttft_p50_ms", "ttft_p95_ms", "mean_cost",
                 "welfare"])
    print_table("targets: auction vs the cache-aware peer", report["targets"],
                ["fleet", "workload", "arrival", "peer", "kv_hit", "ttft_p50", "ttft_p95", "cost",
                 "cost_ratio", "floor_ratio", "cost_reachable", "all"])
    print_table("same gateway: auction vs mercato's cache_aware", report["same_gateway"],
                ["fleet", "workload", "arrival", "kv_hit", "ttft_p50", "ttft_p95", "cost", "all"])
    if cache_state is not None:
        _print_state(cache_state)
    stderr.print("wrote " + ", ".join(str(p) for p in paths))
    _print_targets({"targets_met": {**report["targets_met"], **(cache_state or {}).get("targets_met", {})}})


@bench_app.command("kv-index")
def bench_kv_index(json_out: JsonFlag = False, seed: SeedOption = 0,
                   repeats: Annotated[int, typer.Option(min=1, help="Runs per figure (median, min, max).")
                                      ] = 5) -> None:
    """Cost of following KV events: gateway time per event, and memory for a 100k-block fleet."""
    from mercato.bench import kv_index

    with progress() as bar:
        task = bar.add_task("bench kv-index", total=4)
        report = kv_index.run(seed=seed, repeats=repeats, on_step=lambda _: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    u = report["update"]

    def spread(s: dict[str, float], unit: str) -> str:
        return f"{s['median']:.1f} {unit} (min {s['min']:.1f}, max {s['max']:.1f})"

    print_table(f"KV index, median of {report['repeats']} runs", [
        {"figure": f"update, gateway path ({u['events']} events, {u['blocks_stored']} blocks stored)",
         "value": spread(u["us_per_event"], "us/event"), "target": "<= 20 us/event"},
        {"figure": "update, index alone", "value": spread(u["us_per_event_index_only"], "us/event"),
         "target": "-"},
        {"figure": f"memory, {report['fleet']['blocks']:,} blocks on {report['fleet']['backends']} backends",
         "value": spread(report["memory_mb"], "MB"), "target": "<= 50 MB"},
        *({"figure": f"prompt chain, {n}", "value": spread(s, "us/request"), "target": "-"}
          for n, s in report["prompt_chain_us"].items()),
    ])
    _print_targets(report)


@bench_app.command("routing-state")
def bench_routing_state(
    json_out: JsonFlag = False,
    seed: SeedOption = 0,
    repeats: Annotated[int, typer.Option(min=1, help="Seeds per cell; cells show the spread.")] = 1,
    quick: Annotated[bool, typer.Option("--quick", help="8 dialogues of 3 turns: a smoke run.")] = False,
    out: Annotated[Path | None, typer.Option(help="Write the JSON report here too.")] = None,
) -> None:
    """Routing on exact cache state from KV events against the prefix ledger, with and without pressure."""
    from mercato.bench import routing_state

    settings = (routing_state.StateSettings.smoke(seed, repeats) if quick
                else routing_state.StateSettings(seed=seed, repeats=repeats))
    with progress() as bar:
        task = bar.add_task("bench routing-state", total=settings.cells())
        report = routing_state.run(settings, on_cell=lambda _: bar.advance(task))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_state(report)
    _print_targets(report)


def _print_state(report: dict[str, Any]) -> None:
    """The tables of the cache-state comparison (`bench routing-state`, and `bench routing --state`)."""
    from mercato.bench.routing_report import GAIN_COLUMNS, STATE_COLUMNS

    print_table("routing on approximate (prefix ledger) vs exact (KV events) cache state", report["rows"],
                list(STATE_COLUMNS))
    print_table("exact minus approximate", report["gains"], list(GAIN_COLUMNS))
