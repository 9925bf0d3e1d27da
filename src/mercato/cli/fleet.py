"""`mercato fleet up | down`: simulated engines in the background, for trying the gateway by hand.

The processes and their record live in :mod:`mercato.gateway.live.background_fleet`, imported
inside the commands so that `mercato --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mercato.cli.options import usage_error
from mercato.reporting import print_table, stderr

fleet_app = typer.Typer(help="Simulated engines in the background, with a gateway config for them.",
                        no_args_is_help=True)

FolderOption = Annotated[Path, typer.Option(
    "--dir", help="Folder of the fleet's record (fleet.json), gateway config and engine logs.")]
DEFAULT_FOLDER = Path("mercato-fleet")


@fleet_app.command("up")
def fleet_up(
    profiles: Annotated[str, typer.Option(help="Comma-separated engine profiles, one engine each.")] = (
        "qwen3-4b,qwen3-4b,qwen3-8b,qwen3-32b"),
    folder: FolderOption = DEFAULT_FOLDER,
    speed: Annotated[float, typer.Option(help="Simulated seconds per wall second of the engines.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the first engine's answer draws (+1 each next).")] = 0,
) -> None:
    """Start one simulated engine per profile on free ports, and write a gateway config for them."""
    from mercato.gateway.live.background_fleet import CONFIG_FILE, FleetError, start_fleet

    chosen = [p.strip() for p in profiles.split(",") if p.strip()]
    if not chosen:
        raise usage_error(ValueError("--profiles names no profile"))
    try:
        engines = start_fleet(folder, chosen, speed=speed, seed=seed)
    except (FleetError, ValueError) as err:
        raise usage_error(err) from None
    print_table(f"fleet up: {len(engines)} simulated engines", [
        {"name": e.name, "profile": e.profile, "url": e.url, "pid": e.pid} for e in engines])
    config = folder / CONFIG_FILE
    typer.echo(f"gateway config: {config}")
    typer.echo(f"start the gateway: mercato serve --config {config}")
    where = "" if folder == DEFAULT_FOLDER else f" --dir {folder}"
    stderr.print(f"stop the engines: mercato fleet down{where}")


@fleet_app.command("down")
def fleet_down(folder: FolderOption = DEFAULT_FOLDER) -> None:
    """Stop the engines `mercato fleet up` started and remove its files."""
    from mercato.gateway.live.background_fleet import FleetError, stop_fleet

    try:
        stopped = stop_fleet(folder)
    except FleetError as err:
        raise usage_error(err) from None
    names = ", ".join(e.name for e in stopped)
    typer.echo(f"stopped {len(stopped)} engine(s)" + (f": {names}" if stopped else ""))
