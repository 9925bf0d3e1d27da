"""The live gateway's commands: `mercato serve` and `mercato ledger summary`.

Heavy imports (FastAPI, uvicorn, httpx) happen inside the commands so that `mercato --help`
stays fast; `mercato bench gateway` is in :mod:`mercato.cli.bench`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.options import JsonFlag, usage_error
from mercato.reporting import print_table, stderr

ledger_app = typer.Typer(help="The accounting ledger: one record per routed request.", no_args_is_help=True)

def gateway_serve(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Gateway YAML file (see examples/gateway.yaml).")] = None,
    backend: Annotated[list[str] | None, typer.Option(
        help="Instead of --config: an OpenAI-compatible server's URL (repeat for each), "
             "URL#MODEL to pick one of its models; every other setting at its default.")] = None,
    capacity: Annotated[int | None, typer.Option(
        min=1, help="With --backend: requests each backend may run at once (default 4).")] = None,
    host: Annotated[str | None, typer.Option(help="Override server.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Override server.port (default 8000).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Gateway processes behind the one port, sharing load, prefix state, budgets and "
                    "limits through state.redis_url (an embedded Redis when unset).")] = 1,
) -> None:
    """Run the OpenAI-compatible gateway (auction routing, failover, ledger) from a config file or URLs."""
    from mercato.gateway.live.config import ConfigError, load_config
    from mercato.gateway.live.discovery import discover_config
    from mercato.gateway.live.serve import serve

    if (config is None) == (not backend):
        raise usage_error(ValueError("give --config FILE or at least one --backend URL (not both)"))
    if capacity is not None and config is not None:
        raise usage_error(ValueError("--capacity applies to --backend; set capacity per backend in the file"))
    try:
        if config is not None:
            loaded = load_config(config)
        else:
            loaded = discover_config(backend or [], capacity=capacity)
            stderr.print("backends: " + ", ".join(f"{b.name} ({b.model})" for b in loaded.backends))
    except ConfigError as err:
        raise usage_error(err) from None
    try:
        # builds the gateway first: a missing api_key_env fails here
        serve(loaded, host=host, port=port, workers=workers)
    except ConfigError as err:
        raise usage_error(ConfigError(f"{config}: {err}")) from None


@ledger_app.command("summary")
def ledger_summary(
    db: Annotated[str, typer.Option(help="accounting.db of the gateway config: a SQLite file or a "
                                         "postgresql:// URL; or the .pgdata folder of the embedded "
                                         "PostgreSQL of `mercato serve --workers N`.")
                  ] = "mercato-ledger.sqlite",
    json_out: JsonFlag = False,
) -> None:
    """Totals per backend and overall, and the weak budget balance check sum(payment) >= sum(cost)."""
    import psycopg

    from mercato.gateway.live.ledger_store import open_ledger_summary

    try:
        summary = open_ledger_summary(db)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint="--db") from None
    except psycopg.OperationalError as err:  # libpq's message runs over lines: its first says why
        raise typer.BadParameter(str(err).strip().splitlines()[0], param_hint="--db") from None
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
