"""CLI commands of the live gateway: ``mercato serve``, ``mercato ledger summary``, ``mercato bench gateway``.

Registered in :mod:`mercato.cli`; heavy imports (FastAPI, uvicorn, httpx) happen inside the
commands so that ``mercato --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.reporting import print_table, progress, stderr

ledger_app = typer.Typer(help="The accounting ledger: one record per routed request.", no_args_is_help=True)

ConfigOption = Annotated[Path, typer.Option("--config", "-c",
                                            help="Gateway YAML file (see examples/gateway.yaml).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def serve_command(
    config: ConfigOption,
    host: Annotated[str | None, typer.Option(help="Override server.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override server.port.")] = None,
) -> None:
    """Run the OpenAI-compatible gateway (auction routing, failover, ledger) from a config file."""
    from mercato.gateway.config import ConfigError, load_config
    from mercato.gateway.serve import serve

    try:
        loaded = load_config(config)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from None
    serve(loaded, host=host, port=port)


@ledger_app.command("summary")
def ledger_summary(
    db: Annotated[Path, typer.Option(help="Ledger file (accounting.db of the gateway config).")] = Path(
        "mercato-ledger.sqlite"),
    json_out: JsonFlag = False,
) -> None:
    """Totals per backend and overall, and the weak budget balance check sum(payment) >= sum(cost)."""
    from mercato.gateway.accounting import open_ledger_summary

    try:
        summary = open_ledger_summary(db)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint="--db") from None
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    rows = [{"backend": name, **totals} for name, totals in summary["backends"].items()]
    rows.append({"backend": "all", **summary["overall"]})
    print_table(f"ledger {summary['db']} (credits)", rows,
                ["backend", "requests", "paid_requests", "prompt_tokens", "cached_tokens", "kv_hit_rate",
                 "completion_tokens", "cost", "payment", "surplus"])
    verdict = "yes" if summary["weak_budget_balance"] else "NO"
    typer.echo(f"weak budget balance (payments >= costs): {verdict}; "
               f"payments - costs = {summary['hub_balance']:.6g} credits")


def bench_gateway(
    json_out: JsonFlag = False,
    seed: Annotated[int, typer.Option(help="Seed for the arrival times.")] = 0,
    duration: Annotated[float, typer.Option(help="Seconds of load per rate.")] = 2.0,
) -> None:
    """Latency the gateway adds over a zero-delay engine called directly, at 100 and 500 req/s and up."""
    from mercato.bench import gateway
    from mercato.heap import freeze_startup_objects

    freeze_startup_objects()  # the load generator is a Python process too: no full-GC pauses in its clock

    with progress() as bar:
        task = bar.add_task("bench gateway", total=len(gateway.RATES) * 2)
        report = gateway.run(seed=seed, duration_s=duration, on_step=lambda _: bar.advance(task))
        steps = 2 * len(report["rates"])  # the sweep may stop early
        bar.update(task, completed=steps, total=steps)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_gateway_report(report)


def _print_gateway_report(report: dict[str, Any]) -> None:
    rows = [{"rate": r["rate"], "achieved rps": r["achieved_rps"], "direct p50 ms": r["direct_p50_ms"],
             "gateway p50 ms": r["gateway_p50_ms"], "batch wait p50 ms": r["batch_wait_p50_ms"],
             "added p50 ms": r["added_p50_ms"], "added p99 ms": r["added_p99_ms"], "errors": r["errors"]}
            for r in report["rates"]]
    print_table("gateway overhead beyond the batching wait (zero-delay engine, one process)", rows)
    held = report["max_rate_p99_added_le_50ms"]
    stderr.print(f"highest rate held with p99 added <= 50 ms: {held if held else 'none of the rates tried'}")
    met = report["targets_met"]
    typer.echo("targets: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in met.items()))
