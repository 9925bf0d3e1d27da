"""`make mutation`: mutation testing of the modules in pyproject's ``[tool.mutmut] only_mutate``.

Why a driver around mutmut: mutmut reports one total over everything it mutated, while mercato's
targets are per group of modules (the mechanism core, the ledger stores, the valuation, the
policies), and a score only means something once the equivalent mutants (changes no test could
ever notice, such as a bound nobody can reach) are taken out. Those are listed, each with its
reason, in ``tests/mutation/equivalent.toml``; this script checks that every listed name still
names the same change (mutmut numbers the mutants of a function in order, so an edit to the
function can shift them) and only then excludes it.

It runs ``mutmut run`` (fresh, unless ``--group`` re-runs some groups on the kept ``mutants/``),
shows its progress, reads the verdicts with ``mutmut results --all true`` and writes
``results/mutation/scores.json`` and ``results/mutation/REPORT.md``. Exit status 1 when a group
misses its target, 2 when the run itself failed.

Extending: a new module goes into ``only_mutate`` (and its test file into the test selection);
it is scored with the group whose prefix its path starts with, below. A module of a new area
needs a new :data:`GROUPS` entry, with its target.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mercato.reporting import progress, write_json

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tests" / "mutation" / "equivalent.toml"
OUT_DIR = ROOT / "results" / "mutation"
MUTANTS_DIR = ROOT / "mutants"


@dataclass(frozen=True)
class Group:
    """Modules scored together against one target; a module belongs to the first group it matches."""

    name: str
    prefixes: tuple[str, ...]
    target: float

    def holds(self, path: str) -> bool:
        """Whether the module at ``path`` (relative to the repository root) belongs to this group."""
        return path.startswith(self.prefixes)


GROUPS: tuple[Group, ...] = (
    Group("mechanism core", ("src/mercato/mechanisms/",), 0.95),
    Group("ledger stores", ("src/mercato/gateway/live/ledger",), 0.90),
    Group("valuation", ("src/mercato/gateway/core/valuation.py",), 0.90),
    Group("policies", ("src/mercato/gateway/core/policies/",), 0.90),
)

# mutmut's verdicts: the tests noticed the mutant, or they did not; anything else is an unfinished run.
DETECTED = frozenset({"killed", "timeout", "segfault", "caught by type check"})
UNDETECTED = frozenset({"survived", "no tests", "suspicious", "skipped"})
_SPINNER = tuple(chr(c) for c in range(0x2800, 0x2900))  # braille frames of mutmut's spinner
_STATUS_LINE = re.compile(r"(\d+)/(\d+)\s+🎉 (\d+) 🫥 (\d+)\s+⏰ (\d+)\s+🤔 (\d+)\s+🙁 (\d+)")


@dataclass(frozen=True)
class Equivalent:
    """A listed equivalent mutant: its name, the line(s) it adds, and why no test can kill it."""

    name: str
    mutation: str
    reason: str


@dataclass
class Score:
    """Verdict counts of one module or group, after excluding verified equivalent mutants."""

    mutants: int = 0
    killed: int = 0
    equivalent: int = 0
    survived: int = 0
    timeouts: int = 0
    survivors: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Killed share of the mutants that a test could kill (1.0 when there are none)."""
        countable = self.mutants - self.equivalent
        return self.killed / countable if countable else 1.0

    @property
    def raw_score(self) -> float:
        """Killed share of all mutants, equivalent ones included (mutmut's own figure)."""
        return self.killed / self.mutants if self.mutants else 1.0

    def add(self, other: Score) -> None:
        """Fold another module's counts into this one."""
        self.mutants += other.mutants
        self.killed += other.killed
        self.equivalent += other.equivalent
        self.survived += other.survived
        self.timeouts += other.timeouts
        self.survivors += other.survivors


def mutmut_config(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, Any]:
    """The ``[tool.mutmut]`` table: the one list of modules to mutate and of tests to run."""
    return tomllib.loads(pyproject.read_text())["tool"]["mutmut"]


def target_modules(only_mutate: Sequence[str], root: Path = ROOT) -> list[str]:
    """Source files matched by the ``only_mutate`` globs, as repository-relative paths."""
    files = sorted(p.relative_to(root).as_posix() for p in (root / "src").rglob("*.py"))
    return [f for f in files if any(fnmatch.fnmatch(f, pattern) for pattern in only_mutate)]


def group_of(path: str, groups: Sequence[Group] = GROUPS) -> Group:
    """The group a module is scored in; raises ValueError for a module no group covers."""
    for group in groups:
        if group.holds(path):
            return group
    raise ValueError(f"{path} is mutated but belongs to no group of tools/mutation.py: give it a target")


def module_path(mutant: str, root: Path = ROOT) -> str:
    """Repository-relative source file of a mutant named ``package.module.x_function__mutmut_N``."""
    dotted = mutant.rpartition(".")[0].replace(".", "/")
    plain = f"src/{dotted}.py"
    return plain if (root / plain).exists() else f"src/{dotted}/__init__.py"


def parse_results(text: str) -> dict[str, str]:
    """Mutant name -> verdict from the output of ``mutmut results --all true``."""
    verdicts = {}
    for line in text.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            verdicts[name] = status
    return verdicts


def load_equivalents(path: Path = EQUIVALENT_FILE) -> list[Equivalent]:
    """The committed list of equivalent mutants; every entry must say why it is equivalent."""
    entries = tomllib.loads(path.read_text()).get("mutant", []) if path.exists() else []
    out = []
    for entry in entries:
        if not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path}: {entry.get('name')} has no reason")
        out.append(Equivalent(entry["name"], entry["mutation"].strip(), entry["reason"].strip()))
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a mutant is listed twice")
    return out


def added_lines(diff: str) -> str:
    """The lines a mutant adds, from ``mutmut show``'s unified diff, stripped and joined by newlines."""
    return "\n".join(line[1:].strip() for line in diff.splitlines()
                     if line.startswith("+") and not line.startswith("+++"))


def verified_equivalents(equivalents: Iterable[Equivalent], verdicts: Mapping[str, str],
                         added: Mapping[str, str]) -> tuple[set[str], list[str]]:
    """Names to exclude, and problems: listed mutants that are gone, changed, or killed after all.

    ``added`` maps a mutant name to the lines it adds now (:func:`added_lines`). Only a listed
    mutant that survived and still makes the recorded change is excluded.
    """
    excluded, problems = set(), []
    for e in equivalents:
        if e.name not in verdicts:
            problems.append(f"{e.name}: listed as equivalent but no such mutant (remove the entry)")
        elif added.get(e.name, "") != e.mutation:
            problems.append(f"{e.name}: listed as equivalent but now makes another change (re-check it)")
        elif verdicts[e.name] in DETECTED:
            problems.append(f"{e.name}: listed as equivalent but a test kills it (remove the entry)")
        else:
            excluded.add(e.name)
    return excluded, problems


def score_modules(verdicts: Mapping[str, str], excluded: set[str],
                  root: Path = ROOT) -> dict[str, Score]:
    """Per module path, the counts of :class:`Score`; raises ValueError on an unfinished verdict."""
    scores: dict[str, Score] = {}
    for name, status in sorted(verdicts.items()):
        s = scores.setdefault(module_path(name, root), Score())
        s.mutants += 1
        if status in DETECTED:
            s.killed += 1
            s.timeouts += status == "timeout"
        elif status not in UNDETECTED:
            raise ValueError(f"{name} is {status!r}: the run did not finish, run `make mutation` again")
        elif name in excluded:
            s.equivalent += 1
        else:
            s.survived += 1
            s.survivors.append(name)
    return scores


def score_groups(modules: Mapping[str, Score], groups: Sequence[Group] = GROUPS) -> dict[str, Score]:
    """Module scores folded into their groups, in the order of ``groups`` (empty groups left out)."""
    out: dict[str, Score] = {}
    for path, s in modules.items():
        out.setdefault(group_of(path, groups).name, Score()).add(s)
    return {g.name: out[g.name] for g in groups if g.name in out}


def _row(label: str, s: Score, target: float) -> dict[str, Any]:
    return {"name": label, "mutants": s.mutants, "killed": s.killed, "equivalent_excluded": s.equivalent,
            "survived": s.survived, "timeouts": s.timeouts, "score": round(s.score, 4),
            "raw_score": round(s.raw_score, 4), "target": target, "met": s.score >= target}


def build_report(modules: Mapping[str, Score], wall_s: float, problems: Sequence[str],
                 groups: Sequence[Group] = GROUPS, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The content of scores.json: per group and per module rows, survivors, problems and run facts."""
    grouped = score_groups(modules, groups)
    targets = {g.name: g.target for g in groups}
    return {
        **(meta or {}),
        "wall_s": round(wall_s, 1),
        "groups": [_row(name, s, targets[name]) | {"modules": [p for p in modules
                                                             if group_of(p, groups).name == name]}
                   for name, s in grouped.items()],
        "modules": [_row(path, s, group_of(path, groups).target) | {"group": group_of(path, groups).name}
                    for path, s in modules.items()],
        "survivors": sorted(name for s in modules.values() for name in s.survivors),
        "equivalent_problems": list(problems),
    }


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_markdown(report: Mapping[str, Any]) -> str:
    """REPORT.md: the per-group and per-module tables, then what survived and what to re-check."""
    columns = ["mutants", "killed", "equivalent excluded", "survived", "score", "target", "met?",
               "raw score"]

    def table(first: str, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        lines = ["| " + " | ".join([first, *columns]) + " |", "|" + "---|" * (len(columns) + 1)]
        lines += [f"| {r['name']} | {r['mutants']} | {r['killed']} | {r['equivalent_excluded']} | "
                  f"{r['survived']} | {_pct(r['score'])} | {_pct(r['target'])} | "
                  f"{'yes' if r['met'] else '**no**'} | {_pct(r['raw_score'])} |" for r in rows]
        return lines

    out = ["# Mutation scores", "",
           f"`make mutation` (mutmut {report.get('mutmut', '?')}) at {report.get('commit', '?')}, "
           f"{report.get('date', '?')}: mutmut ran for {report['wall_s']:.0f} s "
           f"with {report.get('max_children', '?')} workers.",
           "Score = killed / (mutants - equivalent excluded), the figure held against the target; raw "
           "score = killed / mutants. Timeouts count as killed. Equivalent mutants are listed with their "
           "reasons in `tests/mutation/equivalent.toml`.", "",
           "## Per group", "", *table("group", report["groups"]), "",
           "## Per module", "", *table("module", report["modules"]), ""]
    survivors = report["survivors"]
    out += ["## Surviving mutants", ""]
    out += ([f"- `{name}`" for name in survivors] + ["", "See one with `.venv/bin/mutmut show NAME`."]
            if survivors else ["None."])
    if report["equivalent_problems"]:
        out += ["", "## Equivalent list to re-check", "", *(f"- {p}" for p in report["equivalent_problems"])]
    return "\n".join(out) + "\n"


def _mutmut(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("mutmut")), *args]


def _status_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """mutmut redraws its status line with carriage returns: yield every line it draws."""
    buffer = b""
    for chunk in stream:
        buffer += chunk
        *lines, buffer = re.split(rb"[\r\n]", buffer)
        yield from (line.decode(errors="replace") for line in lines)
    if buffer:
        yield buffer.decode(errors="replace")


def run_mutmut(max_children: int, names: Sequence[str], log_path: Path) -> float:
    """Run ``mutmut run``, show its progress, keep its output in ``log_path``; returns its wall time."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log_path.open("w") as log, progress() as bar:
        task = bar.add_task("mutmut: generating mutants, collecting test stats", total=None)
        proc = subprocess.Popen(_mutmut("run", "--max-children", str(max_children), *names), cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        redrawn = ""  # mutmut redraws its spinner line; the log keeps the last of each run of them
        for line in _status_lines(iter(lambda: proc.stdout.read1(4096), b"")):  # type: ignore[union-attr]
            if line.startswith(_SPINNER):
                redrawn = line
            else:
                log.write((redrawn + "\n" if redrawn else "") + line + "\n")
                redrawn = ""
            status = _STATUS_LINE.search(line)
            if status:
                done, total, killed, _, timeouts, _, survived = map(int, status.groups())
                bar.update(task, completed=done, total=total,
                           description=f"mutmut: {killed + timeouts} killed, {survived} survived")
        log.write(redrawn + "\n" if redrawn else "")
        code = proc.wait()
    if code != 0:
        raise RuntimeError(f"mutmut run failed (exit {code}); its output is in {log_path}")
    return time.monotonic() - start


def read_verdicts() -> dict[str, str]:
    """Every mutant's verdict, from ``mutmut results --all true``."""
    out = subprocess.run(_mutmut("results", "--all", "true"), cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    return parse_results(out)


def read_added_lines(names: Iterable[str], workers: int) -> dict[str, str]:
    """What each named mutant changes now, from ``mutmut show`` (one process per mutant, in parallel)."""

    def show(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_mutmut("show", name), cwd=ROOT, capture_output=True, text=True)

    names = list(names)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        shown = dict(zip(names, pool.map(show, names), strict=True))
    return {name: added_lines(out.stdout) for name, out in shown.items() if out.returncode == 0}


def _meta(max_children: int) -> dict[str, Any]:
    from importlib.metadata import version

    commit = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"mutmut": version("mutmut"), "commit": commit or "?", "max_children": max_children,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def main(argv: Sequence[str] | None = None) -> int:
    """Run mutmut (or only re-score with ``--report-only``) and write the score files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutmut workers (default 2)")
    parser.add_argument("--group", action="append", choices=[g.name for g in GROUPS],
                        help="re-run only this group's mutants on the kept mutants/ and report only "
                             "on it (repeatable)")
    parser.add_argument("--report-only", action="store_true", help="score the last run without running")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for scores.json and REPORT.md")
    args = parser.parse_args(argv)

    config = mutmut_config()
    modules = target_modules(config["only_mutate"])
    for path in modules:
        group_of(path)  # fail before a long run, not after it
    wall_s = 0.0
    if not args.report_only:
        names = []
        if args.group:
            chosen = [p for p in modules if group_of(p).name in args.group]
            names = [p.removeprefix("src/").removesuffix(".py").replace("/", ".") + ".*" for p in chosen]
        elif MUTANTS_DIR.exists():
            shutil.rmtree(MUTANTS_DIR)  # a fresh run: mutmut keeps old verdicts when only tests changed
        try:
            wall_s = run_mutmut(args.max_children, names, args.out / "mutmut.log")
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 2
    elif (args.out / "scores.json").exists():
        wall_s = json.loads((args.out / "scores.json").read_text()).get("wall_s", 0.0)

    verdicts = read_verdicts()
    if args.group:  # the other groups' mutants may be unchecked or stale: score only those re-run
        chosen_paths = {p for p in modules if group_of(p).name in args.group}
        verdicts = {n: v for n, v in verdicts.items() if module_path(n) in chosen_paths}
    equivalents = load_equivalents()
    excluded, problems = verified_equivalents(
        equivalents, verdicts,
        read_added_lines((e.name for e in equivalents if e.name in verdicts), args.max_children))
    report = build_report(score_modules(verdicts, excluded), wall_s, problems, meta=_meta(args.max_children))
    write_json(args.out / "scores.json", report)
    (args.out / "REPORT.md").write_text(render_markdown(report))
    print(render_markdown(report))
    missed = [g["name"] for g in report["groups"] if not g["met"]]
    if missed:
        print(f"below target: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
