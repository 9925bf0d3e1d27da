"""Option types and error exits shared by several command modules (each used by at least two)."""

from __future__ import annotations

from typing import Annotated

import typer

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
SeedOption = Annotated[int, typer.Option(help="Seed for the generated instances.")]
StarSeedOption = Annotated[int, typer.Option(help="Seed for token noise and market costs.")]
FirstSeedOption = Annotated[int, typer.Option(help="First seed; runs use seed .. seed + seeds - 1.")]
WorkersOption = Annotated[int, typer.Option(help="Worker processes for the runs.")]


def usage_error(exc: Exception) -> typer.Exit:
    """Print ``error: ...`` to stderr; raise the returned exit (status 2, as for bad options)."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)
