"""`mercato star plan`: allocate one STAR workflow among agents, with payments.

`mercato experiment star` and `mercato bench star` are in :mod:`mercato.cli.experiment` and
:mod:`mercato.cli.bench`; heavy imports happen inside the command to keep `mercato --help` fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.options import JsonFlag, usage_error
from mercato.reporting import print_table

star_app = typer.Typer(help="STAR: truthful, topology-aware procurement of agentic workflows.",
                       no_args_is_help=True)


@star_app.command("plan")
def star_plan(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML (nodes, edges).")],
    agents: Annotated[Path, typer.Option("--agents", help="Agents YAML (tier, bid, prior, ...).")],
    solver: Annotated[str, typer.Option(help="auto, tree, junction_tree or milp.")] = "auto",
    payments: Annotated[str, typer.Option(help="crossing (exact) or bisection (paper's Alg. 1).")
                        ] = "crossing",
    json_out: JsonFlag = False,
) -> None:
    """Allocate WORKFLOW among the agents, with each winner's payment, cost and utility."""
    from mercato.star.config import load_bidders, load_workflow
    from mercato.star.plan import plan

    try:
        report = plan(load_workflow(workflow), load_bidders(agents), solver, payments)
    except ValueError as exc:
        raise usage_error(exc) from None
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    print_table("Allocation", report["nodes"], ["node", "role", "difficulty", "agent", "tier"])
    print_table("Agents ($; bids per 1M output tokens)", report["agents"],
                ["agent", "tier", "bid", "virtual_cost", "nodes", "work_tokens", "payment", "cost",
                 "utility"])
    typer.echo(f"solver: {report['solver']} ({report['solve_ms']:.2f} ms); payments: "
               f"{report['payment_method']} ({report['payment_ms']:.2f} ms)")
    base = report["baselines"]
    typer.echo(f"total payment: STAR ${report['total_payment']:.4f} (true cost ${report['true_cost']:.4f}); "
               f"myopic ${base['myopic']['total_payment']:.4f}; "
               f"homogeneous ${base['homogeneous']['total_payment']:.4f}")
