"""`mercato demo`: gateway + heterogeneous engine fleet + multi-turn workload, once per policy.

The run itself is :mod:`mercato.experiments.demo`, imported inside the command so that
`mercato --help` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mercato.cli.options import SeedOption
from mercato.reporting import print_table, progress, stderr


def demo(
    dialogues: Annotated[int, typer.Option(help="CoQA-like dialogues per policy.")] = 24,
    turns: Annotated[int, typer.Option(help="Turns per dialogue.")] = 6,
    concurrency: Annotated[int, typer.Option(help="Dialogues in flight at once.")] = 12,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second of the engines.")] = 1.0,
    capacity: Annotated[int, typer.Option(help="Gateway slots per backend (the auction's q_i).")] = 12,
    policies: Annotated[str, typer.Option(help="Comma-separated policies to compare.")] = (
        "auction,random,round_robin,least_loaded,cache_aware,mf"),
    out: Annotated[str, typer.Option(help="Folder for CSV/JSON/PNG/markdown.")] = "results/demo",
    seed: SeedOption = 0,
) -> None:
    """The main job: gateway + heterogeneous engine fleet + multi-turn workload, once per policy."""
    from pathlib import Path

    from mercato.experiments.demo import COLUMNS, DemoSettings, run_policy, write_outputs

    chosen = tuple(p.strip() for p in policies.split(",") if p.strip())
    try:
        settings = DemoSettings(dialogues=dialogues, turns=turns, concurrency=concurrency, speed=speed,
                                capacity=capacity, seed=seed, policies=chosen, out=Path(out))
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    rows, records = [], {}
    with progress() as bar:
        total = settings.dialogues * settings.turns
        for policy in settings.policies:
            task = bar.add_task(f"demo {policy}", total=total)
            row, recs = run_policy(policy, settings, on_record=lambda _r, t=task: bar.advance(t))
            bar.update(task, completed=total)
            rows.append(row)
            records[policy] = recs
    paths = write_outputs(rows, records, settings)
    shown = [c for c in COLUMNS if c not in {"ledger_records", "errors"}]
    print_table("mercato demo: policies compared on one workload (fresh fleet each)", rows, shown)
    stderr.print("wrote " + ", ".join(str(p) for p in paths))
