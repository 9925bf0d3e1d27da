"""Tables fit the terminal (COLUMNS) and never cut a value: headers wrap, then columns move on."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from rich.console import Console

from mercato.reporting import print_table

ROWS = [{"backend": f"small-engine-{k}", "ttft_p50_ms": 123.4 * k, "ttft_p95_ms": 456.7 * k,
         "kv_hit_rate": 0.79, "mean_cost": 12.1, "welfare": -6009.0 * k, "completion_tokens": 12345 * k,
         "prompt_tokens": 99999, "errors": 0, "requests": 144, "kv hit after warmup": 0.9}
        for k in (1, 2)]


def rendered(width: int) -> str:
    out = io.StringIO()
    print_table("routing", ROWS, console=Console(file=out, width=width))
    return out.getvalue()


def test_a_wide_table_fits_80_columns_and_keeps_every_value_whole():
    text = rendered(80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    cells = {cell.strip() for line in lines for cell in line.split("│")}
    for row in ROWS:
        assert row["backend"] in cells  # the key column, whole, on every part of the table
    assert {"123", "247", "457", "913", "-6,009", "-12,018", "12345", "24690", "0.9"} <= cells
    assert text.count("small-engine-1") == text.count("routing")  # each part repeats the key


def test_headers_wrap_at_underscores_before_columns_move_to_another_table():
    text = rendered(110)
    assert "(continued)" not in text or "ttft_p50_ms" not in text.split("(continued)")[1]
    assert "ttft_" in text and "…" not in text
    assert rendered(400).count("routing") == 1  # room enough: one table, headers on one line
    assert "ttft_p50_ms" in rendered(400)


def test_commands_honour_columns():
    out = subprocess.run([sys.executable, "-m", "mercato", "engine", "profiles"], capture_output=True,
                         text=True, env=os.environ | {"COLUMNS": "80"}, check=True).stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    for name in ("qwen3-4b", "qwen3-32b", "smollm2-135m-cpu"):
        assert f"│ {name} " in out
    assert "…" not in out
