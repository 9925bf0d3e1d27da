"""Fig. 3 and §5.3: how well the Router's online predictors track latency, cost and accuracy.

CoQA-like dialogues of 20 turns run through the auction, once per predictor variant
(:mod:`~mercato.experiments.iemas.predictors_variants`), and every request's predictions are set
against what happened (:mod:`~mercato.experiments.iemas.predictors_errors`); the section is written
by :mod:`~mercato.experiments.iemas.predictors_report`.
"""

from __future__ import annotations

from typing import Any

from mercato.experiments.iemas.common import (
    GPU_MEMORY_UTILIZATION,
    Options,
    Section,
    Stopwatch,
    parallel_map,
    population,
    request_metrics,
    summarise,
)
from mercato.experiments.iemas.paper import NMAE
from mercato.experiments.iemas.predictors_config import PredictorsConfig
from mercato.experiments.iemas.predictors_errors import curves_over_seeds, prediction_errors
from mercato.experiments.iemas.predictors_report import (
    plot_ablation,
    plot_predicted_curves,
    predictors_console,
    predictors_markdown,
)
from mercato.experiments.iemas.predictors_variants import ReferenceTreeBank
from mercato.gateway.core.router import Router, RouterSettings
from mercato.gateway.sim.cluster import InProcessCluster
from mercato.reporting import write_csv
from mercato.workloads import synthetic_dialogues

QUICK = PredictorsConfig(dialogues=8, concurrency=8, turns=6)


def run_variant(job: tuple[str, int, PredictorsConfig]) -> dict[str, Any]:
    """One predictor variant on one seed: NMAEs, per-turn curves and routing outcomes."""
    variant, seed, config = job
    specs = population(config.fleet)
    predictors = None if variant == "mercato" else ReferenceTreeBank(
        specs, onehot=variant.endswith("onehot"), defaults=variant.startswith("reference"))
    router = Router(specs, "auction", RouterSettings(seed=seed), predictors=predictors)
    cluster = InProcessCluster(specs, router=router, gpu_memory_utilization=GPU_MEMORY_UTILIZATION, seed=seed)
    logs = cluster.run(
        synthetic_dialogues("coqa", config.dialogues, seed, turns=config.turns),
        concurrency=config.concurrency,
        max_tokens=64,
    )
    errors = prediction_errors(logs, specs, config)
    return {"variant": variant, "seed": seed, **errors, **request_metrics(logs)}


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
    curves = curves_over_seeds(runs, config, options.seed)
    out = options.out
    files = [
        write_csv(out / "predictors_runs.csv", flat),
        write_csv(out / "predictors_summary.csv", summary),
        write_csv(out / "predictors_curves.csv", curves),
    ]
    files += [
        plot_predicted_curves(curves, config, out / "predictors_fig3.png"),
        plot_ablation(summary, out / "predictors_ablation.png"),
    ]
    return Section(
        "predictors",
        "Fig. 3: predicted against observed latency, cost and accuracy",
        predictors_markdown(summary, config, options),
        {"config": vars(config), "summary": summary, "curves": curves, "paper_nmae": NMAE},
        files=[str(f) for f in files],
        tables=predictors_console(summary),
    ).save(out, clock.seconds)
