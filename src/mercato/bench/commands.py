"""CLI commands of the benchmarks: `mercato bench mechanisms | auction | engine`.

Each times mercato against a baseline measured in the same run; the other areas' benchmarks
(star, economy, gateway) sit with their own commands. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mercato.reporting import print_table, progress, stderr

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
SeedOption = Annotated[int, typer.Option(help="Seed for the generated instances.")]


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
    met = report["targets_met"]
    line = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in met.items())
    typer.echo(f"targets: {line}")


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
