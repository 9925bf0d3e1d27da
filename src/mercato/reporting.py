"""Shared output plumbing for commands and experiments: tables, progress bars, CSV/JSON files.

Every command prints human tables through :func:`print_table`, shows progress on stderr
through :func:`progress` (so ``--json`` output on stdout stays machine-readable), and writes
its result files through :func:`write_csv` / :func:`write_json`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
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

if TYPE_CHECKING:  # matplotlib is imported by the reports that draw, not by every command
    from matplotlib.figure import Figure

# Pipes and CI logs get 140 columns rather than rich's default 80, so wide tables stay legible;
# a terminal, or COLUMNS when set, decides otherwise.
_PIPE_WIDTH = None if os.environ.get("COLUMNS", "").isdigit() else 140
stdout = Console(width=None if Console().is_terminal else _PIPE_WIDTH)
stderr = Console(stderr=True, width=None if Console(stderr=True).is_terminal else _PIPE_WIDTH)


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
                columns: Sequence[str] | None = None, console: Console = stdout, keys: int = 1) -> None:
    """Render ``rows`` (dicts) as rich tables that fit the console's width, cutting no value.

    The first ``keys`` columns name each row. Headers wrap at spaces and underscores to make room;
    when even that is too wide, the other columns go to further tables that repeat the key columns.
    """
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    cells = [[fmt(row.get(col)) for col in cols] for row in rows]
    width = _table_width(console)
    layouts = _fit_columns(cols, cells, keys, width)
    for part, (picked, widths) in enumerate(layouts):
        caption = title if part == 0 else f"{title} (continued)"
        # as wide as the title, when the terminal allows: a narrow table would wrap it
        table = Table(title=caption, title_justify="left", min_width=min(cell_len(caption), width))
        for i, col_width in zip(picked, widths, strict=True):
            left = i < keys or all(isinstance(row.get(cols[i]), str) for row in rows)
            table.add_column(_wrap_header(cols[i], col_width), justify="left" if left else "right",
                             width=col_width, no_wrap=True)
        for line in cells:
            table.add_row(*(line[i] for i in picked))
        console.print(table, width=width)


_TABLE_EDGES = 1  # a rich table's left border; each column then adds its padding and right border
_COLUMN_EDGES = 3


def _table_width(console: Console) -> int:
    """COLUMNS as it is now, when set (a test may set it late); else the console's width."""
    columns = os.environ.get("COLUMNS", "")
    return min(int(columns), console.width) if columns.isdigit() else console.width


def _header_pieces(header: str) -> list[str]:
    """Where a header may break: after each space or underscore (``ttft_p95_ms``: ttft_, p95_, ms)."""
    return re.findall(r"[^ _]+[ _]*|[ _]+", header) or [header]


def _wrap_header(header: str, width: int) -> str:
    """The header on as many lines of at most ``width`` cells as it needs (pieces stay whole)."""
    lines: list[str] = []
    line = ""
    for piece in _header_pieces(header):
        if line and cell_len((line + piece).rstrip()) > width:
            lines.append(line.rstrip())
            line = piece
        else:
            line += piece
    return "\n".join([*lines, line.rstrip()])


def _fit_columns(cols: Sequence[str], cells: Sequence[Sequence[str]], keys: int,
                 width: int) -> list[tuple[list[int], list[int]]]:
    """Split the columns into tables of at most ``width`` cells: (column indices, their widths) each.

    A column is never narrower than its widest value or its longest header piece; the space left
    over goes to headers that would otherwise wrap, narrowest need first.
    """
    keys = min(keys, len(cols))
    widest = [max((cell_len(line[i]) for line in cells), default=0) for i in range(len(cols))]
    least = [max(w, *(cell_len(p.rstrip()) for p in _header_pieces(c)))
             for w, c in zip(widest, cols, strict=True)]
    full = [max(w, cell_len(c)) for w, c in zip(widest, cols, strict=True)]

    def cost(picked: list[int]) -> int:
        return _TABLE_EDGES + sum(least[i] + _COLUMN_EDGES for i in picked)

    groups: list[list[int]] = []
    for i in range(keys, len(cols)):
        if not groups or cost([*range(keys), *groups[-1], i]) > width:
            groups.append([])
        groups[-1].append(i)
    layouts = []
    for group in groups or [[]]:
        picked = [*range(keys), *group]
        widths = {i: least[i] for i in picked}
        spare = width - cost(picked)
        for i in sorted(picked, key=lambda i: full[i] - least[i]):
            grow = min(spare, full[i] - least[i])
            widths[i] += grow
            spare -= grow
        layouts.append((picked, [widths[i] for i in picked]))
    return layouts


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


def markdown_sections(tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> list[str]:
    """Markdown lines of titled tables (a ``## title`` and its rows each); empty tables are left out."""
    lines: list[str] = []
    for title, rows in tables:
        if rows:
            header = list(rows[0])
            table = markdown_table(header, [[fmt(r[c]) for c in header] for r in rows])
            lines += ["", f"## {title}", "", table.rstrip()]
    return lines


def bench_markdown(stem: str, summary: str, notes: Sequence[str],
                   tables: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], image_alt: str) -> str:
    """A benchmark's report.md: its title, a summary line, the notes as bullets, the titled
    tables and the ``stem``.png figure."""
    lines = [f"# mercato bench {stem}", "", summary, ""]
    lines += [f"- {line}" for line in notes]
    lines += markdown_sections(tables)
    lines += ["", f"![{image_alt}]({stem}.png)", ""]
    return "\n".join(lines)


def save_figure(fig: Figure, path: Path, title: str) -> Path:
    """Title, lay out and write ``fig`` as a PNG, then free it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_bench_files(out: Path, stem: str, report: dict[str, Any],
                      plot: Callable[[dict[str, Any], Path], Path],
                      markdown: Callable[[dict[str, Any]], str]) -> list[Path]:
    """A benchmark's files under ``out``: ``stem``.json (the whole report), ``stem``.png and report.md."""
    paths = [write_json(out / f"{stem}.json", report), plot(report, out / f"{stem}.png"), out / "report.md"]
    paths[-1].write_text(markdown(report))
    return paths


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
