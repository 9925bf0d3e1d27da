"""Fig. 7 (Appendix B.1): welfare, IR violations and congestion under four clustering schemes.

Twelve specialised agents, one of each engine profile (qwen3-4b, qwen3-8b, llama3-8b,
qwen3-32b) per workload domain: a specialist answers its own domain ``SPECIALIST_GAIN`` better
than its profile does and the other domains that much worse (a fine-tuned model; the simulated
engines get these qualities). Three hubs, each running the auction on its own micro-batches, built
by :func:`~mercato.gateway.core.hubs.build_hubs`:

* ``full_mix``: agents dealt to hubs regardless of specialisation, requests spread by session;
* ``ideal``: hubs by specialisation, requests to their domain's hub;
* ``task_mix``: hubs by specialisation, requests spread regardless of domain;
* ``agent_mix``: requests to their domain's hub, agents dealt regardless of specialisation.

A mixed workload (CoQA-, QuAC- and HotpotQA-like dialogues interleaved) runs through each.
Metrics per run: social welfare (realised value minus cost); among the requests the auction
matched and priced, the share whose buyer ended with negative utility (realised value minus VCG
payment < 0: an ex-post IR violation), both with the realised correctness and with the expected
one (the engine's true probability for that agent and domain, the interim view that separates
mispricing from bad luck); and congestion: the share of requests that queued at their engine
for a slot or KV blocks, the mean queueing time and TTFT p95.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from mercato.engine import ModelProfile, get_profile
from mercato.experiments.iemas.common import (
    BUYER,
    MAX_NUM_SEQS,
    VALUATION,
    Options,
    Section,
    Stopwatch,
    ci_bars,
    ci_cells,
    max_tokens_for,
    parallel_map,
    realised_welfare,
    request_metrics,
    require_known,
    save_figure,
    summarise,
    with_ci,
)
from mercato.experiments.iemas.paper import CLAIMS
from mercato.gateway.core.hubs import SCHEMES, HubRouter, build_hubs
from mercato.gateway.core.router import RouterSettings
from mercato.gateway.core.types import BackendSpec
from mercato.gateway.core.valuation import realised_value
from mercato.gateway.sim.cluster import InProcessCluster, RequestLog
from mercato.reporting import markdown_table, write_csv
from mercato.workloads import Dialogue, synthetic_dialogues

DOMAINS: tuple[str, ...] = ("coqa", "quac", "hotpotqa")
PROFILES: tuple[str, ...] = ("qwen3-4b", "qwen3-8b", "llama3-8b", "qwen3-32b")
SPECIALIST_GAIN = 0.15
QUEUED_S = 1e-3  # waited longer than this for a slot or KV blocks: counted as queued
METRICS: tuple[str, ...] = (
    "welfare",
    "ir_violations",
    "ir_violations_expected",
    "queued_share",
    "queue_wait_ms",
    "ttft_p95_ms",
    "ttft_p50_ms",
    "accuracy",
    "specialist_share",
    "paid_share",
    "mean_cost",
)


def specialised(profile: ModelProfile, domain: str, gain: float = SPECIALIST_GAIN) -> ModelProfile:
    """``profile`` fine-tuned for ``domain``: ``gain`` better there, ``gain`` worse elsewhere."""
    quality = {
        d: min(0.98, max(0.02, q + (gain if d == domain else -gain))) for d, q in profile.quality.items()
    }
    quality.setdefault(domain, min(0.98, profile.quality_for(domain) + gain))
    return replace(profile, name=f"{profile.name}-{domain}", quality=MappingProxyType(quality))


def specialists() -> list[BackendSpec]:
    """One agent per (domain, profile), tagged with its specialisation, domain-major order."""
    out = []
    for d in DOMAINS:
        for name in PROFILES:
            p = get_profile(name)
            out.append(
                BackendSpec(
                    name=f"{name}-{d}",
                    model=p.name,
                    capacity=MAX_NUM_SEQS,
                    price_input=p.price_input,
                    price_cached_input=p.price_cached_input,
                    price_output=p.price_output,
                    profile=p.name,
                    domains=(d,),
                )
            )
    return out


@dataclass(frozen=True)
class SchemesConfig:
    """Hubs, workload mix and load."""

    schemes: tuple[str, ...] = SCHEMES
    hubs: int = 3
    dialogues_per_domain: int = 40
    max_turns: int = 6
    concurrency: int = 96

    def __post_init__(self) -> None:
        require_known("schemes", self.schemes, SCHEMES)
        if not 1 <= self.hubs <= len(DOMAINS) * len(PROFILES):
            raise ValueError(f"hubs must be between 1 and {len(DOMAINS) * len(PROFILES)}, got {self.hubs}")
        if min(self.dialogues_per_domain, self.max_turns, self.concurrency) < 1:
            raise ValueError("dialogues_per_domain, max_turns and concurrency must be >= 1")


QUICK = SchemesConfig(dialogues_per_domain=4, max_turns=3, concurrency=12)


def mixed_workload(config: SchemesConfig, seed: int) -> list[Dialogue]:
    """Dialogues of the three domains interleaved, so every domain arrives throughout the run."""
    per = [
        [
            d.truncated(config.max_turns)
            for d in synthetic_dialogues(
                domain, config.dialogues_per_domain, seed, 5 if domain == "hotpotqa" else None
            )
        ]
        for domain in DOMAINS
    ]
    return [d for group in zip(*per, strict=True) for d in group]


def run_scheme(job: tuple[str, int, SchemesConfig]) -> dict[str, Any]:
    """One scheme, one seed."""
    scheme, seed, config = job
    specs = specialists()
    hubs, classifier = build_hubs(scheme, specs, config.hubs)
    router = HubRouter(specs, hubs, "auction", RouterSettings(seed=seed), classifier)
    profiles = {b.name: specialised(get_profile(b.profile or b.model), b.domains[0]) for b in specs}
    cluster = InProcessCluster(specs, router=router, seed=seed, profiles=profiles)
    # One budget for the mixed stream: HotpotQA's 128 tokens (replies are drawn per domain, so the
    # shorter CoQA and QuAC answers rarely reach the cap of 64 they would otherwise have).
    logs = cluster.run(
        mixed_workload(config, seed), concurrency=config.concurrency, max_tokens=max_tokens_for("hotpotqa")
    )
    return {"scheme": scheme, "seed": seed, **_metrics(logs, profiles, specs)}


def _metrics(
    logs: Sequence[RequestLog],
    profiles: dict[str, ModelProfile],
    specs: list[BackendSpec],
) -> dict[str, float]:
    domain_of = {b.name: b.domains[0] for b in specs}
    paid = [x for x in logs if x.paid]
    realised = [realised_welfare(x) + x.cost - x.payment for x in paid]
    expected = [
        realised_value(
            BUYER.bid, BUYER.delta, None, x.ttft_s, VALUATION, profiles[x.backend].quality_for(x.domain)
        )
        - x.payment
        for x in paid
    ]
    waits = np.array([x.queue_wait_s for x in logs])
    base = request_metrics(logs)
    return {
        **base,
        "ir_violations": float(np.mean(np.array(realised) < 0)) if paid else 0.0,
        "ir_violations_expected": float(np.mean(np.array(expected) < 0)) if paid else 0.0,
        "queued_share": float(np.mean(waits > QUEUED_S)),
        "queue_wait_ms": float(1e3 * waits.mean()),
        "specialist_share": float(np.mean([domain_of[x.backend] == x.domain for x in logs])),
    }


def run(options: Options, config: SchemesConfig | None = None) -> Section:
    """Every scheme on every seed; Fig. 7's three panels with intervals."""
    config = config or (QUICK if options.quick else SchemesConfig())
    clock = Stopwatch()
    jobs = [(s, seed, config) for s in config.schemes for seed in options.seed_list]
    runs = parallel_map(run_scheme, jobs, options, "schemes")
    summary = summarise(runs, ("scheme",), METRICS, options.seed)
    out = options.out
    files = [
        write_csv(out / "schemes_runs.csv", runs),
        write_csv(out / "schemes_summary.csv", summary),
        _plot(summary, out / "schemes_fig7.png"),
    ]
    console = [
        {
            "scheme": r["scheme"],
            "welfare": r["welfare"],
            "IR violations": r["ir_violations"],
            "IR (expected)": r["ir_violations_expected"],
            "queued": r["queued_share"],
            "queue wait ms": r["queue_wait_ms"],
            "TTFT p95 ms": r["ttft_p95_ms"],
            "accuracy": r["accuracy"],
            "on specialist": r["specialist_share"],
        }
        for r in summary
    ]
    return Section(
        "schemes",
        "Fig. 7: clustering schemes (Appendix B.1)",
        _markdown(summary, config, options),
        {"config": vars(config), "summary": summary},
        files=[str(f) for f in files],
        tables=[("Clustering schemes (mean over seeds)", console, list(console[0]))],
    ).save(out, clock.seconds)


def _markdown(summary: list[dict[str, Any]], config: SchemesConfig, options: Options) -> str:
    lines = [
        "## Fig. 7: clustering schemes (Appendix B.1)",
        "",
        "**What it tests.** Whether the way agents and tasks are grouped into hubs matters: aligned "
        "hubs should keep welfare high, while one-sided grouping should crowd the few fitting agents, "
        "lower welfare and leave more buyers paying more than the service was worth to them.",
        "",
        f"**Paper.** {CLAIMS['schemes']}",
        "",
        f"**Setup.** 12 agents: one of each of qwen3-4b, qwen3-8b, llama3-8b, qwen3-32b per domain, "
        f"specialised (+{SPECIALIST_GAIN} probability of a correct answer in its domain, -{SPECIALIST_GAIN} "
        f"elsewhere), {MAX_NUM_SEQS} sequences each; {config.hubs} hubs, each auctioning its own "
        f"micro-batches. Workload: {config.dialogues_per_domain} CoQA-, QuAC- and HotpotQA-like dialogues "
        "each "
        f"(turns capped at {config.max_turns}), interleaved, {config.concurrency} in flight. IR violations: "
        "share of priced (matched) requests whose buyer's realised value minus VCG payment was negative, "
        "with the realised correctness, and with the expected one (the agent's true probability). "
        "Queued: share of requests that waited for an engine slot or KV blocks. Mean over seeds "
        "[95% BCa interval].",
        "",
    ]
    if options.quick:
        lines += ["*Reduced size (--quick): not the full experiment.*", ""]
    lines.append(
        markdown_table(
            [
                "scheme",
                "welfare",
                "IR violations (realised)",
                "IR violations (expected)",
                "queued share",
                "mean queue wait ms",
                "TTFT p95 ms",
                "accuracy",
                "served by a specialist",
                "priced share",
            ],
            [
                [
                    f"`{r['scheme']}`",
                    *ci_cells(
                        r,
                        (
                            "welfare",
                            "ir_violations",
                            "ir_violations_expected",
                            "queued_share",
                            "queue_wait_ms",
                            "ttft_p95_ms",
                            "accuracy",
                            "specialist_share",
                        ),
                    ),
                    with_ci(r, "paid_share", 2),
                ]
                for r in summary
            ],
        )
    )
    lines += ["![Fig. 7: clustering schemes](schemes_fig7.png)", ""]
    return "\n".join(lines) + "\n"


def _plot(summary: list[dict[str, Any]], path: Path) -> str:
    panels = (
        ("welfare", "social welfare (credits)", 1.0),
        ("ir_violations", "IR violations (% of priced)", 100.0),
        ("queued_share", "queued requests (%)", 100.0),
        ("ttft_p95_ms", "TTFT p95 (ms)", 1.0),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.2))
    names = [r["scheme"] for r in summary]
    for ax, (m, label, scale) in zip(axes, panels, strict=True):
        mean, err = ci_bars(summary, m, scale)
        colors = ["tab:green" if n == "ideal" else "tab:gray" for n in names]
        ax.bar(names, mean, yerr=err, capsize=3, color=colors)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    return save_figure(fig, path)
