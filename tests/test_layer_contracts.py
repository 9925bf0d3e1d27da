"""The layer contracts of pyproject.toml bite: a forbidden import in a scratch copy breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run([str(LINT), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("scratch")
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return tree


def _append(path: Path, line: str) -> str:
    original = path.read_text()
    path.write_text(original + "\n" + line + "\n")
    return original


def test_the_tree_keeps_every_contract(scratch: Path):
    result = _lint(scratch)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout.split("Contracts:")[-1].split("\n")[0]


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("gateway/core/router.py", "import fastapi  # noqa", "the Router core has no web framework"),
    ("gateway/core/market.py", "from mercato.gateway.live import config  # noqa", "the Router core has no"),
    ("mechanisms/vcg.py", "def _late() -> None:\n    from mercato.engine import chat  # noqa",
     "mechanisms is pure"),
    ("engine/core.py", "from mercato.bench import timing  # noqa", "domain packages never import"),
    ("workloads/loadgen.py", "import typer  # noqa", "only mercato.cli speaks typer"),
    ("gateway/core/types.py", "def _late() -> None:\n    from mercato.gateway.core import router  # noqa",
     "no import cycles"),
])
def test_a_forbidden_import_breaks_its_contract(scratch: Path, module: str, line: str, contract: str):
    path = scratch / "src" / "mercato" / module
    original = _append(path, line)
    try:
        result = _lint(scratch)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken) or contract in result.stdout.split("Broken contracts")[-1], \
        result.stdout[-3000:]
