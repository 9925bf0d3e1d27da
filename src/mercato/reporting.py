"""Shared output plumbing for commands and experiments: tables, progress bars, CSV/JSON files.

Every command prints human tables through :func:`print_table`, shows progress on stderr
through :func:`progress` (so ``--json`` output on stdout stays machine-readable), and writes
its result files through :func:`write_csv` / :func:`write_json`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

# Pipes and CI logs get 140 columns rather than rich's default 80, so wide tables stay legible.
stdout = Console(width=None if Console().is_terminal else 140)
stderr = Console(stderr=True, width=None if Console(stderr=True).is_terminal else 140)


def fmt(value: Any, digits: int = 3) -> str:
    """Compact human formatting: floats to ``digits`` significant figures, the rest as str."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e9 or abs(value) < 10 ** -(digits + 1)):
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 10 ** (digits - 1):
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def print_table(title: str, rows: Sequence[Mapping[str, Any]],
                columns: Sequence[str] | None = None, console: Console = stdout) -> None:
    """Render ``rows`` (dicts) as a rich table with the given column order."""
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    table = Table(title=title, title_justify="left")
    for col in cols:
        table.add_column(col, justify="left" if col in {"policy", "name", "size"} else "right")
    for row in rows:
        table.add_row(*(fmt(row.get(col)) for col in cols))
    console.print(table)


@contextmanager
def progress(console: Console = stderr) -> Iterator[Progress]:
    """A rich progress bar on stderr; ``progress.add_task(desc, total=n)`` then ``advance``."""
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        yield bar


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; cells are written with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return path


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]],
              columns: Sequence[str] | None = None) -> Path:
    """Write dict rows as CSV (header from ``columns`` or the first row), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
