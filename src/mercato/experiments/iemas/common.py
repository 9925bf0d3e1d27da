"""What every IEMAS experiment shares: options, the agent population, metrics, intervals, output.

Metric definitions follow the IEMAS reference (``shared/iemas-reference.md``) so that our tables
compare with the paper's:

* KV hit rate: per request ``cached_tokens / prompt_tokens`` from the engine's own usage report,
  averaged unweighted over requests;
* cost: the observed IEMAS Eq. 6 cost in mercato credits (miss, hit and output tokens at the
  backend's prices; 1 credit = 1e-6 USD). The paper's cost is in price-weighted tokens with every
  price 1, so only orderings and ratios compare, never the raw numbers;
* TTFT: from the request's arrival at its backend (backend queueing included, micro-batch wait
  excluded) to its first token; the paper's "Lat" column is its median;
* accuracy: the simulated engine's ``correct`` flag, i.e. the request was answered correctly with
  the probability its model profile gives for the domain (a modelling assumption, not a measured
  CoQA/QuAC/HotpotQA score);
* social welfare: per served request, the buyer's realised value (IEMAS Eq. 1 with mercato's
  scales, correctness and TTFT as observed) minus its Eq. 6 cost, as the Router's totals count it.

Every reported number is a mean over seeds with a 95% BCa bootstrap interval
(:func:`mercato.economy.stats.bca_interval`, i.e. ``scipy.stats.bootstrap``).
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from mercato.economy.stats import Estimate, bca_interval
from mercato.gateway.core.types import BackendSpec, BuyerReport
from mercato.gateway.core.valuation import ValuationSettings, realised_value
from mercato.gateway.sim.cluster import RequestLog, profile_backends
from mercato.reporting import progress, write_json

# The paper's population: LLaMA-3-7B- (our llama3-8b), Qwen-4B- and Qwen-8B-like agents, two of each.
FLEET: tuple[str, ...] = ("llama3-8b", "llama3-8b", "qwen3-4b", "qwen3-4b", "qwen3-8b", "qwen3-8b")
MAX_NUM_SEQS = 12  # paper §5.1: concurrent query batch buffer of 12
GPU_MEMORY_UTILIZATION = 0.6  # paper §5.1
BUYER = BuyerReport()  # IEMAS: every buyer the same, one global delta = 0.5 (bid 1)
VALUATION = ValuationSettings()  # the Router's default scales of Eq. 1

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Options:
    """How to run: seeds ``seed .. seed + seeds - 1``, worker processes, output folder, size."""

    seed: int = 0
    seeds: int = 5
    workers: int = 2
    out: Path = Path("results/iemas")
    quick: bool = False  # reduced sizes (smoke runs and tests); the report says so
    show_progress: bool = True

    def __post_init__(self) -> None:
        for name, least in (("seed", 0), ("seeds", 1), ("workers", 1)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")

    @property
    def seed_list(self) -> list[int]:
        """The seeds every condition runs with."""
        return list(range(self.seed, self.seed + self.seeds))


@dataclass
class Section:
    """One experiment's outcome: its markdown section, JSON data and the files it wrote."""

    name: str
    title: str
    markdown: str
    data: dict[str, Any]
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    ok: bool = True  # False: it could not run here (the markdown says why)
    tables: list[tuple[str, list[dict[str, Any]], list[str]]] = field(default_factory=list)  # for the console

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary (per-run rows are in the CSV files)."""
        return {
            "experiment": self.name,
            "title": self.title,
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "files": self.files,
            **self.data,
        }

    def save(self, out: Path, seconds: float) -> Section:
        """Record the run time, write ``<name>.md`` and ``<name>.json`` (listed in ``files``); self."""
        self.seconds = seconds
        out.mkdir(parents=True, exist_ok=True)
        md, js = out / f"{self.name}.md", out / f"{self.name}.json"
        self.files += [str(md), str(js)]
        md.write_text(self.markdown)
        write_json(js, self.to_json())
        return self


def population(profiles: Sequence[str] = FLEET, max_num_seqs: int = MAX_NUM_SEQS) -> list[BackendSpec]:
    """Backends of the given profiles, priced from each profile, ``max_num_seqs`` slots each."""
    return profile_backends(list(profiles), max_num_seqs=max_num_seqs)


def max_tokens_for(domain: str) -> int:
    """Completion budget of the IEMAS client: 64 tokens, 128 for HotpotQA."""
    return 128 if domain.startswith("hotpotqa") else 64


def realised_welfare(
    log: RequestLog, report: BuyerReport = BUYER, valuation: ValuationSettings = VALUATION
) -> float:
    """What one served request added to social welfare: realised value minus observed cost."""
    value = realised_value(
        report.bid, report.delta, log.correct, log.ttft_s, valuation, log.predicted_quality
    )
    return value - log.cost


def request_metrics(
    logs: Sequence[RequestLog], report: BuyerReport = BUYER, valuation: ValuationSettings = VALUATION
) -> dict[str, float]:
    """Table 1 metrics of one run, plus welfare and the share of requests the auction priced."""
    if not logs:
        raise ValueError("no requests were served")
    ttft = np.array([x.ttft_s for x in logs]) * 1e3
    judged = [x.correct for x in logs if x.correct is not None]
    return {
        "requests": float(len(logs)),
        "kv_hit_rate": float(np.mean([x.cached_tokens / max(1, x.prompt_tokens) for x in logs])),
        "mean_cost": float(np.mean([x.cost for x in logs])),
        "ttft_p50_ms": float(np.percentile(ttft, 50)),
        "ttft_p95_ms": float(np.percentile(ttft, 95)),
        "accuracy": float(np.mean(judged)) if judged else math.nan,
        "welfare": float(sum(realised_welfare(x, report, valuation) for x in logs)),
        "paid_share": float(np.mean([x.paid for x in logs])),
    }


def interval(values: Iterable[float], seed: int = 0) -> Estimate:
    """Mean over seeds with its 95% BCa bootstrap interval."""
    return bca_interval(np.fromiter(values, dtype=np.float64), seed=seed)


def summarise(
    rows: Sequence[Mapping[str, Any]], keys: Sequence[str], metrics: Sequence[str], seed: int = 0
) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` combination (first-seen order): mean, ``_lo``, ``_hi`` per metric."""
    groups: dict[tuple[Hashable, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n"] = len(members)
        for m in metrics:
            est = interval((float(r[m]) for r in members), seed)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = est.mean, est.low, est.high
        out.append(row)
    return out


def with_ci(row: Mapping[str, Any], metric: str, digits: int = 3, scale: float = 1.0) -> str:
    """``mean [lo, hi]`` of a summarised metric, for markdown tables."""
    mean, lo, hi = (row[metric] * scale, row[f"{metric}_lo"] * scale, row[f"{metric}_hi"] * scale)
    if not math.isfinite(mean):
        return "n/a"
    return f"{number(mean, digits)} [{number(lo, digits)}, {number(hi, digits)}]"


def ci_cells(row: Mapping[str, Any], metrics: Sequence[str], digits: int = 3) -> list[str]:
    """:func:`with_ci` of several metrics of one summarised row (a markdown table row's cells)."""
    return [with_ci(row, m, digits) for m in metrics]


def number(value: float | None, digits: int = 3) -> str:
    """A number with ``digits`` significant figures (thousands unseparated, so tables stay narrow)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if value != 0 and abs(value) >= 10**digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def ci_bars(
    rows: Sequence[Mapping[str, Any]], metric: str, scale: float = 1.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Means and the (2, n) error-bar extents of a summarised metric, as matplotlib wants them."""
    mean = np.array([r[metric] for r in rows], dtype=np.float64)
    low = np.array([r[f"{metric}_lo"] for r in rows], dtype=np.float64)
    high = np.array([r[f"{metric}_hi"] for r in rows], dtype=np.float64)
    return mean * scale, np.nan_to_num(np.stack([mean - low, high - mean]) * scale)


def require_known(kind: str, given: Iterable[str], known: Iterable[str]) -> None:
    """ValueError naming the unknown entries of ``given`` and the known ones."""
    known = list(known)
    unknown = [g for g in given if g not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; choose from {', '.join(known)}")


def all_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows`` in first-seen order (CSV columns when rows differ)."""
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return list(keys)


def save_figure(fig: Figure, path: Path) -> str:
    """Save a small PNG (dpi 80) and release the figure."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def parallel_map(fn: Callable[[T], R], jobs: Sequence[T], options: Options, label: str) -> list[R]:
    """``fn`` over ``jobs`` in ``options.workers`` forked processes, results in job order, with a bar."""
    results: list[R | None] = [None] * len(jobs)
    with progress() as bar:
        task = bar.add_task(label, total=len(jobs), visible=options.show_progress)
        if options.workers == 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = fn(job)
                bar.advance(task)
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=options.workers, mp_context=context) as pool:
                futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.advance(task)
    return [r for r in results if r is not None]


class Stopwatch:
    """Seconds since construction (sections report how long they took)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Elapsed wall seconds."""
        return time.perf_counter() - self.start
