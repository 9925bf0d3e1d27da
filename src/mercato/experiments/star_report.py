"""The STAR report: the claims table and its tally first, then Table 1, the sweep, the trap.

Everything is generated from the report dict :func:`mercato.experiments.star.run` returns, so a
rerun rewrites every number and verdict together (:mod:`mercato.experiments.star_claims`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mercato.experiments import star_claims
from mercato.experiments.claims import Claim, Verdict, claims_table, tally, tally_line
from mercato.experiments.star import MECHANISMS, SWEEP_DISCOUNTS, SWEEP_RATIOS
from mercato.reporting import markdown_table, write_csv


def write(report: dict[str, Any]) -> list[Claim]:
    """Claims CSV, plots and ``summary.md`` into the run's folder; the claims, judged."""
    out = Path(report["out"])
    claims = star_claims.claims(report)
    write_csv(out / "claims.csv", [asdict(c) for c in claims])
    _plot(out, report)
    (out / "summary.md").write_text(markdown(report, claims))
    return claims


def sweep_fit(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per point of the sweep: Table 1's verdicts there and the mean relative error of its means."""
    rows = []
    for rho in SWEEP_RATIOS:
        for kappa in SWEEP_DISCOUNTS:
            point = [r for r in report["sweep"] if r["input_ratio"] == rho and r["cached_discount"] == kappa]
            counts = tally(star_claims.table1_claims(point, []))
            errors = [abs(r[f"{m}_mean"] / r[f"paper_{m}_mean"] - 1) for r in point for m in MECHANISMS]
            rows.append({"input_ratio": rho, "cached_discount": kappa,
                         "reproduced": counts[Verdict.REPRODUCED],
                         "direction_only": counts[Verdict.DIRECTION],
                         "not_reproduced": counts[Verdict.NOT_REPRODUCED],
                         "mean_error_pct": 100 * float(np.mean(errors))})
    return rows


def _plot(out: Path, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["summary"]
    names = [r["scenario"] for r in rows]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, m in enumerate(MECHANISMS):
        ax.bar(x + (k - 1) * 0.27, [r[f"{m}_mean"] for r in rows], 0.25,
               yerr=[r[f"{m}_std"] for r in rows], capsize=3, label=f"{m} (ours)")
        ax.scatter(x + (k - 1) * 0.27, [r[f"paper_{m}_mean"] for r in rows], marker="D",
                   facecolors="none", edgecolors="black", zorder=3, label="paper" if k == 0 else None)
    ax.set_xticks(x, names)
    ax.set_ylabel("total payment per workflow ($)")
    ax.set_title(f"STAR vs baselines, {report['trials']} trials (mean ± std)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "payments.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    series = [("vs_myopic_pct", "vs myopic (ours)"), ("paper_vs_myopic_pct", "vs myopic (paper)"),
              ("vs_homogeneous_pct", "vs homogeneous (ours)"),
              ("paper_vs_homogeneous_pct", "vs homogeneous (paper)")]
    for k, (key, label) in enumerate(series):
        ax.bar(x + (k - 1.5) * 0.2, [r[key] for r in rows], 0.19, label=label)
    ax.set_xticks(x, names)
    ax.set_ylabel("STAR payment reduction (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reductions.png", dpi=100)
    plt.close(fig)

    trap = sorted(report["broadcaster_trap"], key=lambda r: r["net_saving_per_trial_usd"])[-12:]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh([f"{r['scenario']} {r['role']}" for r in trap], [r["net_saving_per_trial_usd"] for r in trap])
    ax.set_xlabel("true cost saved per trial by STAR's dearer choice ($)")
    ax.set_title("Broadcaster trap: nodes STAR moves to a dearer agent")
    fig.tight_layout()
    fig.savefig(out / "trap.png", dpi=100)
    plt.close(fig)


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def markdown(report: dict[str, Any], claims: list[Claim]) -> str:
    """The report: claims and tally, Table 1 beside the paper's, the sweep, the trap, DSIC and IR."""
    rows = report["summary"]
    cheapest = sum(star_claims.rank(r, "star") == 0 for r in rows)
    cells = tally(star_claims.table1_claims(rows, []))
    fit = sweep_fit(report) if report["sweep"] else []
    best = min(fit, key=lambda r: r["mean_error_pct"]) if fit else None
    command = (f"mercato experiment star --trials {report['trials']} --seed {report['seed']} "
               f"--input-ratio {report['input_ratio']:g} --cached-discount {report['cached_discount']:g}")
    lines = [
        "# STAR workflow procurement (paper Table 1)",
        "",
        f"{tally_line(claims)} STAR pays the least of the three mechanisms in {cheapest} of "
        f"{len(rows)} settings{' as the paper reports' if cheapest == len(rows) else ''}, and "
        f"{cells[Verdict.REPRODUCED]} of Table 1's {sum(cells.values())} cells are reproduced within "
        f"tolerance ({cells[Verdict.DIRECTION]} direction only). The paper leaves the input-price "
        "ratio, the cached-input price and the edges' sizes open"
        + (f"; over the sweep below, the point whose means come closest (rho {best['input_ratio']:g}, "
           f"kappa {best['cached_discount']:g}) is still off by {best['mean_error_pct']:.0f}% on average and "
           f"reproduces {best['reproduced']} of 32 cells; no point reproduces more than "
           f"{max(r['reproduced'] for r in fit)}" if best else "") + ".",
        "",
        f"`{command}`: total payment per workflow in $ over {report['trials']} trials, truthful bids. "
        f"Tolerances: a mean within {100 * star_claims.MEAN_TOLERANCE:.0f}% of the paper's (direction: "
        f"the same rank among the three mechanisms), a std within {100 * star_claims.STD_TOLERANCE:.0f}%, "
        f"a reduction within {star_claims.REDUCTION_TOLERANCE:g} points (direction: the same sign). "
        "The *why* column names the choice of ours that moves each number, and the closest value any "
        "point of the sweep reached.",
        "",
        "## Claims",
        "",
        claims_table(claims).rstrip("\n"),
        "",
        "## Table 1",
        "",
    ]
    lines.append(markdown_table(
        ["Setting", "STAR (ours)", "Myopic (ours)", "Homog. (ours)", "vs Myopic", "vs Homog.",
         "STAR (paper)", "Myopic (paper)", "Homog. (paper)", "vs Myopic (paper)", "vs Homog. (paper)"],
        [[r["setting"], _pm(r["star_mean"], r["star_std"]), _pm(r["myopic_mean"], r["myopic_std"]),
          _pm(r["homogeneous_mean"], r["homogeneous_std"]), f"{r['vs_myopic_pct']:.1f}%",
          f"{r['vs_homogeneous_pct']:.1f}%", _pm(r["paper_star_mean"], r["paper_star_std"]),
          _pm(r["paper_myopic_mean"], r["paper_myopic_std"]),
          _pm(r["paper_homogeneous_mean"], r["paper_homogeneous_std"]),
          f"{r['paper_vs_myopic_pct']:.1f}%", f"{r['paper_vs_homogeneous_pct']:.1f}%"]
         for r in report["summary"]]).rstrip("\n"))
    lines += [
        "",
        "![payments](payments.png) ![reductions](reductions.png)",
        "",
        "## Sweep over the paper's free choices",
        "",
        "Table 1 re-run (same seed and trials) at every input-price ratio rho (input as a share of "
        "output price; the paper cites input 2x-8x cheaper) and cached-input price kappa (a share "
        "of the fresh input price; the paper cites 'often < 10%'). Homogeneous keeps its whole "
        "context cached, so rho moves it only through kappa.",
        "",
    ]
    lines.append(markdown_table(
        ["rho", "kappa", "reproduced", "direction only", "not reproduced", "mean error of the means"],
        [[f"{r['input_ratio']:g}", f"{r['cached_discount']:g}", r["reproduced"], r["direction_only"],
          r["not_reproduced"], f"{r['mean_error_pct']:.0f}%"] for r in fit]).rstrip("\n"))
    lines += [
        "",
        "## Broadcaster trap",
        "",
        "Nodes STAR gives to a dearer agent than the cheapest capable one. *moved* is the share of "
        "(trial, node of that role) pairs moved; *net saving* is the true cost that handing the node "
        "alone back to its cheapest agent would add (negative: the move is paid for by lower "
        "information rents, not by lower resource cost).",
        "",
    ]
    lines.append(markdown_table(
        ["Scenario", "Role", "moved", "tier: cheapest -> STAR", "extra generation ($)",
         "transfer tokens avoided", "net saving per move ($)", "net saving per trial ($)"],
        [[r["scenario"], r["role"], f"{100 * r['moved_share']:.0f}%",
          f"{r['from_tier']:.1f} -> {r['to_tier']:.1f}", f"{r['extra_generation_usd']:.3f}",
          f"{r['transfer_tokens_avoided']:,.0f}", f"{r['net_saving_usd']:.3f}",
          f"{r['net_saving_per_trial_usd']:.3f}"] for r in report["broadcaster_trap"]]).rstrip("\n"))
    dsic = report["dsic"]
    ir = report["individual_rationality_worst_shortfall_usd"]
    lines += [
        "",
        "![trap](trap.png)",
        "",
        "## Truthfulness and participation",
        "",
        f"- DSIC sweep: {dsic['misreports']} misreports (every agent, bids x0 to x3 of its cost) on "
        f"{dsic['trials_checked']} trials; largest utility gain over truthful bidding: "
        f"${dsic['max_gain_usd']:.3g}.",
        "- Individual rationality, worst shortfall of payment below true cost over all trials: "
        + ", ".join(f"{m} ${v:.3g}" for m, v in ir.items()) + ".",
        "",
        "## Assumptions where the paper is silent",
        "",
        f"- Input-price ratio rho = {report['input_ratio']:g} for every agent (paper: input 2x-8x "
        f"cheaper); cached input priced at kappa = {report['cached_discount']:g} of fresh input "
        "(Eq. 2; the paper: 'often < 10%'). Both are swept above.",
        "- Edges follow the scenario descriptions; each carries its share of the target's input.",
        "- STAR's payments are critical values on the work its objective charges (cached context "
        "excluded); each agent's reserve is the top of its prior, so a critical value never "
        "exceeds it. Myopic sends every node as an independent request (its input always fresh); "
        "homogeneous runs the whole workflow in one cached session.",
    ]
    return "\n".join(lines) + "\n"
