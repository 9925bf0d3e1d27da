"""Fig. 3 and §5.3: how well the Router's online predictors track latency, cost and accuracy.

CoQA-like dialogues of 20 turns run through the auction; every request's predictions (made for
the backend that served it, before its outcome was learned) are set against what happened. Two
NMAEs are reported, because the paper does not say which it computed:

* per request, on the last 20% of requests in finishing order (the Router's own
  :class:`~mercato.gateway.quality.QualityTracker`). For accuracy this compares a probability with
  a 0/1 outcome, so even a perfect predictor scores about ``2p(1 - p) / p``; the "oracle" column
  gives that floor, using the engine's true probability for the serving model and domain;
* per turn, between the mean predicted and the mean observed value of each of the 20 turns (the
  curves of Fig. 3), which is the reading under which an accuracy NMAE of 0.069 is attainable.

Ablation (:data:`VARIANTS`): the IEMAS reference's predictors as run (per backend, river Hoeffding
trees with library defaults on raw targets, one-hot features, warmed up with TTFT labels of
250 ms), and plain trees that split as fast as mercato's with numeric or one-hot features, so that
the encoding alone is compared. One-hot makes each distinct prompt length, load or rate its own
indicator feature, so no split can express "more tokens, more time". The variants replace the
Router's :class:`~mercato.gateway.predictors.PredictorBank` through a subclass; the core is
unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray
from river import tree

from mercato.engine import get_profile
from mercato.experiments.iemas.common import (
    FLEET,
    GPU_MEMORY_UTILIZATION,
    Options,
    Section,
    Stopwatch,
    ci_bars,
    ci_cells,
    interval,
    number,
    parallel_map,
    population,
    request_metrics,
    require_known,
    save_figure,
    summarise,
    with_ci,
)
from mercato.experiments.iemas.paper import CLAIMS, NMAE
from mercato.gateway.cluster import InProcessCluster, RequestLog
from mercato.gateway.features import NAMES
from mercato.gateway.predictors import Predictions, PredictorBank, baseline_cost
from mercato.gateway.router import Router, RouterSettings
from mercato.gateway.types import BackendSpec
from mercato.reporting import markdown_table, write_csv
from mercato.workloads import synthetic_dialogues

VARIANTS: dict[str, str] = {
    "mercato": "mercato's predictors: numeric features; log-TTFT recursive least squares plus a residual "
    "tree; Eq. 6 baseline plus a residual tree; classification tree",
    "reference_onehot": "the IEMAS reference as run: river trees with library defaults (grace period 200, "
    "adaptive leaves) on raw targets, one-hot numeric features",
    "trees_numeric": "plain river trees on raw targets, mercato's split settings (grace period 20, "
    "confidence 1e-3, mean leaves), numeric features",
    "trees_onehot": "the same plain trees, one-hot numeric features",
}
TARGETS: tuple[str, ...] = ("latency", "cost", "accuracy")
WARMUP_TTFT_S = 0.25  # the reference's fixed warm-up latency label
WARMUP_OUTPUT_TOKENS = 32.0


class ReferenceTreeBank(PredictorBank):
    """Plain river trees per backend on raw targets, as the IEMAS reference predicted.

    ``onehot`` turns each numeric feature value into its own indicator (``name=value`` with three
    significant digits), the reference's encoding; otherwise the Router's numeric features are
    used as they are. ``defaults`` keeps river's defaults (the reference); otherwise the trees
    split as fast as mercato's (grace period 20, confidence 1e-3) and predict leaf means, so that
    the encoding is the only difference from ``trees_numeric``. Before a backend's first
    prediction its trees learn two warm-up rows of that batch (TTFT 250 ms, the Eq. 6 list-price
    cost, one correct and one wrong answer), as the reference's start-up warm-up did, so that
    predictions are not all zero.
    """

    def __init__(self, specs: list[BackendSpec], onehot: bool, defaults: bool) -> None:
        super().__init__(specs)
        self.onehot = onehot
        fast: dict[str, Any] = {} if defaults else {"grace_period": 20, "delta": 1e-3}
        regressor: dict[str, Any] = {} if defaults else {**fast, "leaf_prediction": "mean"}
        classifier: dict[str, Any] = {} if defaults else {**fast, "leaf_prediction": "mc"}
        self.latency_trees = [tree.HoeffdingTreeRegressor(**regressor) for _ in specs]
        self.cost_trees = [tree.HoeffdingTreeRegressor(**regressor) for _ in specs]
        self.quality_trees = [tree.HoeffdingTreeClassifier(**classifier) for _ in specs]
        self._warm = np.zeros(len(specs), dtype=bool)

    def encode(self, row: NDArray[np.float64]) -> dict[str, float]:
        """One feature row as river's dict: numeric, or one indicator per distinct value."""
        if self.onehot:
            return {f"{name}={value:.3g}": 1.0 for name, value in zip(NAMES, row, strict=True)}
        return {name: float(value) for name, value in zip(NAMES, row, strict=True)}

    def learn(
        self,
        backend: int,
        x: NDArray[np.float64],
        domain_index: int,
        latency_s: float | None,
        cost: float,
        completion_tokens: int,
        correct: bool | None,
    ) -> None:
        """Raw targets, as the reference learned them."""
        sample = self.encode(x)
        if latency_s is not None:
            self.latency_trees[backend].learn_one(sample, float(latency_s))
        self.cost_trees[backend].learn_one(sample, float(cost))
        if correct is not None:
            self.quality_trees[backend].learn_one(sample, bool(correct))

    def _warm_up(self, x: NDArray[np.float64]) -> None:
        out = np.full((1, 1), WARMUP_OUTPUT_TOKENS)
        for j in np.flatnonzero(~self._warm):
            for i, correct in ((0, True), (min(1, x.shape[0] - 1), False)):
                row = x[i, j]
                cost = float(baseline_cost(self.prices[j : j + 1], row[None, None], out)[0, 0])
                self.learn(int(j), row, 0, WARMUP_TTFT_S, cost, int(WARMUP_OUTPUT_TOKENS), correct)
            self._warm[j] = True

    def predict(self, x: NDArray[np.float64], domain_index: NDArray[np.int64]) -> Predictions:
        """Every pair scored one at a time with river (slow, but these runs are small)."""
        n, m, _ = x.shape
        if n and not self._warm.all():
            self._warm_up(x)
        latency, cost, quality = np.empty((n, m)), np.empty((n, m)), np.empty((n, m))
        for i in range(n):
            for j in range(m):
                sample = self.encode(x[i, j])
                latency[i, j] = max(float(self.latency_trees[j].predict_one(sample)), 1e-3)
                cost[i, j] = max(float(self.cost_trees[j].predict_one(sample)), 0.0)
                proba = self.quality_trees[j].predict_proba_one(sample)
                quality[i, j] = float(proba.get(True, 0.0)) if proba else 0.5
        return Predictions(latency, cost, quality)


@dataclass(frozen=True)
class PredictorsConfig:
    """Workload and load of the Fig. 3 runs, and which predictor variants to compare."""

    dialogues: int = 96
    concurrency: int = 96
    turns: int = 20
    fleet: tuple[str, ...] = FLEET
    variants: tuple[str, ...] = tuple(VARIANTS)
    tail: float = 0.2

    def __post_init__(self) -> None:
        require_known("predictor variants", self.variants, VARIANTS)
        if "mercato" not in self.variants:
            raise ValueError("the variants must include 'mercato' (the figure shows its predictions)")
        if min(self.dialogues, self.concurrency, self.turns) < 1:
            raise ValueError("dialogues, concurrency and turns must be >= 1")
        if not 0.0 < self.tail <= 1.0:
            raise ValueError(f"tail must be in (0, 1], got {self.tail}")


QUICK = PredictorsConfig(dialogues=8, concurrency=8, turns=6)


def _nmae(pred: NDArray[np.float64], obs: NDArray[np.float64]) -> float:
    denom = float(np.abs(obs).sum())
    return float(np.abs(pred - obs).sum() / denom) if denom > 0 else math.nan


def _tail(a: NDArray[np.float64], tail: float) -> NDArray[np.float64]:
    return a[int(len(a) * (1.0 - tail)) :] if len(a) >= 5 else a


def run_variant(job: tuple[str, int, PredictorsConfig]) -> dict[str, Any]:
    """One predictor variant on one seed: NMAEs, per-turn curves and routing outcomes."""
    variant, seed, config = job
    specs = population(config.fleet)
    router = Router(specs, "auction", RouterSettings(seed=seed))
    if variant != "mercato":
        router.predictors = ReferenceTreeBank(
            specs, onehot=variant.endswith("onehot"), defaults=variant.startswith("reference")
        )
    cluster = InProcessCluster(specs, router=router, gpu_memory_utilization=GPU_MEMORY_UTILIZATION, seed=seed)
    logs = cluster.run(
        synthetic_dialogues("coqa", config.dialogues, seed, turns=config.turns),
        concurrency=config.concurrency,
        max_tokens=64,
    )
    return {"variant": variant, "seed": seed, **_errors(logs, specs, config), **request_metrics(logs)}


def _errors(logs: list[RequestLog], specs: list[BackendSpec], config: PredictorsConfig) -> dict[str, Any]:
    """Per-request tail NMAE, per-turn NMAE and the per-turn mean curves, for each target."""
    profile = {s.name: get_profile(s.profile or s.model) for s in specs}
    judged = [x for x in logs if x.correct is not None]
    pairs = {
        "latency": (
            np.array([x.predicted_latency_s for x in logs]),
            np.array([x.ttft_s for x in logs]),
            np.array([x.turn for x in logs]),
        ),
        "cost": (
            np.array([x.predicted_cost for x in logs]),
            np.array([x.cost for x in logs]),
            np.array([x.turn for x in logs]),
        ),
        "accuracy": (
            np.array([x.predicted_quality for x in judged]),
            np.array([float(x.correct) for x in judged]),
            np.array([x.turn for x in judged]),
        ),
    }
    out: dict[str, Any] = {}
    for target, (pred, obs, turn) in pairs.items():
        out[f"nmae_{target}"] = _nmae(_tail(pred, config.tail), _tail(obs, config.tail))
        turns = np.arange(1, config.turns + 1)
        mean_pred = np.array([pred[turn == t].mean() if (turn == t).any() else np.nan for t in turns])
        mean_obs = np.array([obs[turn == t].mean() if (turn == t).any() else np.nan for t in turns])
        keep = np.isfinite(mean_pred) & np.isfinite(mean_obs)
        out[f"turn_nmae_{target}"] = _nmae(mean_pred[keep], mean_obs[keep])
        out[f"curve_pred_{target}"] = mean_pred.tolist()
        out[f"curve_obs_{target}"] = mean_obs.tolist()
    oracle = np.array([profile[x.backend].quality_for(x.domain) for x in judged])
    out["nmae_accuracy_oracle"] = _nmae(_tail(oracle, config.tail), _tail(pairs["accuracy"][1], config.tail))
    return out


NMAE_METRICS: tuple[str, ...] = (
    "nmae_latency",
    "nmae_cost",
    "nmae_accuracy",
    "nmae_accuracy_oracle",
    "turn_nmae_latency",
    "turn_nmae_cost",
    "turn_nmae_accuracy",
)
OUTCOMES: tuple[str, ...] = (
    "kv_hit_rate",
    "mean_cost",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "accuracy",
    "welfare",
    "paid_share",
)


def run(options: Options, config: PredictorsConfig | None = None) -> Section:
    """Every variant on every seed; Fig. 3 curves, NMAE table and the ablation's routing outcomes."""
    config = config or (QUICK if options.quick else PredictorsConfig())
    clock = Stopwatch()
    jobs = [(v, s, config) for v in config.variants for s in options.seed_list]
    runs = parallel_map(run_variant, jobs, options, "predictors")
    flat = [{k: v for k, v in r.items() if not k.startswith("curve_")} for r in runs]
    summary = summarise(flat, ("variant",), NMAE_METRICS + OUTCOMES, options.seed)
    curves = _curves(runs, config, options.seed)
    out = options.out
    files = [
        write_csv(out / "predictors_runs.csv", flat),
        write_csv(out / "predictors_summary.csv", summary),
        write_csv(out / "predictors_curves.csv", curves),
    ]
    files += [
        _plot_curves(curves, config, out / "predictors_fig3.png"),
        _plot_ablation(summary, out / "predictors_ablation.png"),
    ]
    return Section(
        "predictors",
        "Fig. 3: predicted against observed latency, cost and accuracy",
        _markdown(summary, config, options),
        {"config": vars(config), "summary": summary, "curves": curves, "paper_nmae": NMAE},
        files=[str(f) for f in files],
        tables=_console(summary),
    ).save(out, clock.seconds)


def _curves(runs: list[dict[str, Any]], config: PredictorsConfig, seed: int) -> list[dict[str, Any]]:
    """Per variant, target and turn: mean over seeds of the predicted and observed per-turn means."""
    rows = []
    for variant in config.variants:
        mine = [r for r in runs if r["variant"] == variant]
        for target in TARGETS:
            for t in range(config.turns):
                row: dict[str, Any] = {"variant": variant, "target": target, "turn": t + 1}
                for kind in ("pred", "obs"):
                    est = interval(
                        (
                            r[f"curve_{kind}_{target}"][t]
                            for r in mine
                            if math.isfinite(r[f"curve_{kind}_{target}"][t])
                        ),
                        seed,
                    )
                    row[kind], row[f"{kind}_lo"], row[f"{kind}_hi"] = est.mean, est.low, est.high
                rows.append(row)
    return rows


def _console(summary: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]], list[str]]]:
    rows = [
        {
            "variant": r["variant"],
            "NMAE latency": r["nmae_latency"],
            "NMAE cost": r["nmae_cost"],
            "NMAE accuracy": r["nmae_accuracy"],
            "oracle accuracy": r["nmae_accuracy_oracle"],
            "per-turn lat": r["turn_nmae_latency"],
            "per-turn cost": r["turn_nmae_cost"],
            "per-turn acc": r["turn_nmae_accuracy"],
            "cost": r["mean_cost"],
            "TTFT p50": r["ttft_p50_ms"],
            "KV hit": r["kv_hit_rate"],
            "welfare": r["welfare"],
        }
        for r in summary
    ]
    paper = {
        **dict.fromkeys(rows[0], ""),
        "variant": "paper",
        "NMAE latency": NMAE["latency"],
        "NMAE cost": NMAE["cost"],
        "NMAE accuracy": NMAE["accuracy"],
    }
    return [
        (
            "Predictors: NMAE (means over seeds) and routing outcomes of the auction",
            [*rows, paper],
            list(rows[0]),
        )
    ]


def _markdown(summary: list[dict[str, Any]], config: PredictorsConfig, options: Options) -> str:
    lines = [
        "## Fig. 3: predicted against observed latency, cost and accuracy",
        "",
        "**What it tests.** The auction is only as good as the QoS predictions it prices: whether the "
        "per-backend online predictors track TTFT, Eq. 6 cost and correctness as dialogues grow, and "
        "what the IEMAS reference's one-hot encoding of numeric features would cost.",
        "",
        f"**Paper.** {CLAIMS['predictors']}",
        "",
        f"**Setup.** {config.dialogues} CoQA-like dialogues of {config.turns} turns, {config.concurrency} "
        "in flight, on the Table 1 fleet under the auction; predictions are those made for the serving "
        "backend before its outcome was learned. Per-request NMAE = sum |predicted - observed| / "
        f"sum |observed| over the last {config.tail:.0%} of requests (finishing order); per-turn NMAE: the "
        "same over the per-turn means (the curves below). Oracle: the per-request accuracy NMAE of the "
        "engine's true probability of a correct answer, the floor for any probability forecast. "
        "Mean over seeds [95% BCa interval].",
        "",
    ]
    if options.quick:
        lines += ["*Reduced size (--quick): not the full experiment.*", ""]
    header = [
        "variant",
        "NMAE latency",
        "NMAE cost",
        "NMAE accuracy (oracle)",
        "per-turn latency",
        "per-turn cost",
        "per-turn accuracy",
    ]
    rows = [
        [
            r["variant"],
            with_ci(r, "nmae_latency"),
            with_ci(r, "nmae_cost"),
            f"{with_ci(r, 'nmae_accuracy')} ({number(r['nmae_accuracy_oracle'])})",
            *ci_cells(r, ("turn_nmae_latency", "turn_nmae_cost", "turn_nmae_accuracy")),
        ]
        for r in summary
    ]
    rows.append(
        ["paper (IEMAS)", number(NMAE["latency"]), number(NMAE["cost"]), number(NMAE["accuracy"]), "", "", ""]
    )
    lines += [markdown_table(header, rows)]
    lines += [
        "Variants: " + "; ".join(f"`{v}`: {VARIANTS[v]}" for v in config.variants) + ".",
        "",
        "### What the predictors change in routing (auction policy, same workload)",
        "",
    ]
    rows = [
        [
            r["variant"],
            *ci_cells(r, ("kv_hit_rate", "mean_cost", "ttft_p50_ms", "ttft_p95_ms", "accuracy", "welfare")),
            with_ci(r, "paid_share", 2),
        ]
        for r in summary
    ]
    lines += [
        markdown_table(
            [
                "variant",
                "KV hit",
                "cost (credits)",
                "TTFT p50 ms",
                "TTFT p95 ms",
                "accuracy",
                "welfare",
                "paid",
            ],
            rows,
        ),
        "![Fig. 3: predicted vs observed](predictors_fig3.png)",
        "",
        "![Predictor ablation](predictors_ablation.png)",
        "",
    ]
    return "\n".join(lines) + "\n"


def _plot_curves(curves: list[dict[str, Any]], config: PredictorsConfig, path: Path) -> str:
    labels = {"latency": "TTFT (s)", "cost": "cost (credits)", "accuracy": "P(correct)"}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    styles = {"mercato": "-", "reference_onehot": "-.", "trees_numeric": ":", "trees_onehot": "--"}
    for ax, target in zip(axes, TARGETS, strict=True):
        obs = [c for c in curves if c["variant"] == "mercato" and c["target"] == target]
        turns = [c["turn"] for c in obs]
        ax.plot(turns, [c["obs"] for c in obs], color="black", marker="o", markersize=3, label="observed")
        ax.fill_between(
            turns, [c["obs_lo"] for c in obs], [c["obs_hi"] for c in obs], color="black", alpha=0.1
        )
        for variant in config.variants:
            pred = [c for c in curves if c["variant"] == variant and c["target"] == target]
            ax.plot(
                turns, [c["pred"] for c in pred], linestyle=styles[variant], label=f"predicted ({variant})"
            )
            if variant == "mercato":
                ax.fill_between(turns, [c["pred_lo"] for c in pred], [c["pred_hi"] for c in pred], alpha=0.15)
        ax.set_xlabel("turn")
        ax.set_title(labels[target], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return save_figure(fig, path)


def _plot_ablation(summary: list[dict[str, Any]], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [r["variant"] for r in summary]
    width = 0.27
    for k, target in enumerate(TARGETS):
        mean, err = ci_bars(summary, f"nmae_{target}")
        ax.bar(np.arange(len(names)) + (k - 1) * width, mean, width, yerr=err, capsize=2, label=target)
        ax.axhline(NMAE[target], color=f"C{k}", linestyle=":", linewidth=1)
    ax.set_xticks(np.arange(len(names)), names, fontsize=8)
    ax.set_ylabel("per-request NMAE (dotted: paper)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)
