"""Every `mercato` command and sub-command answers --help; the mechanisms bench reports its keys."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from mercato.bench import mechanisms
from mercato.cli import app

runner = CliRunner()


def command_paths(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """All command paths below ``group``, depth first (typer vendors its own click classes)."""
    paths = [prefix]
    if hasattr(group, "commands"):
        for name, sub in group.commands.items():
            paths += command_paths(sub, (*prefix, name))
    return paths


def test_every_command_has_help():
    root = typer.main.get_command(app)
    paths = command_paths(root)
    assert ("bench", "mechanisms") in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip()


def test_bench_mechanisms_report_on_small_sizes():
    report = mechanisms.run(sizes=[(16, 8, 2), (40, 10, 2)], seed=1)
    sizes = report["sizes"]
    assert set(sizes) == {"16x8x2", "40x10x2"}
    for row in sizes.values():
        assert row["ms_allocation_and_payments"] > 0
        assert row["speedup_vs_naive_same_solver"] > 0
        assert row["paper_design_method"] == "measured"
    json.dumps(report)
