"""Files of `mercato bench routing`: CSV and JSON of every cell, a PNG per metric, a markdown report.

The report opens with the verdict of the target per cell and says first where the peer wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mercato.bench.routing import COST_RATIO
from mercato.reporting import fmt, markdown_table, write_csv, write_json

COLUMNS = ("fleet", "workload", "arrival", "router", "seeds", "requests", "errors", "kv_hit", "ttft_p50_ms",
           "ttft_p95_ms", "first_p95_ms", "later_p95_ms", "mean_cost", "cheapest_cost", "accuracy", "welfare")
_CHECKS = ("kv_hit", "ttft_p50", "ttft_p95", "cost")
SPREAD = ("kv_hit", "ttft_p95_ms", "mean_cost")  # shown as lo-hi when a cell ran several seeds
ABLATION_COLUMNS = ("fleet", "workload", "variant", "kv_hit", "ttft_p50_ms", "ttft_p95_ms", "mean_cost",
                    "accuracy", "welfare")
STATE_COLUMNS = ("scenario", "router", "state", "seeds", "requests", "errors", "kv_hit", "ttft_p50_ms",
                 "ttft_p95_ms", "mean_cost")
GAIN_COLUMNS = ("scenario", "router", "kv_hit", "ttft_p50_ms", "ttft_p95_ms", "mean_cost")
_PLOTTED = (("kv_hit", "KV hit rate"), ("ttft_p95_ms", "TTFT p95 (ms)"), ("mean_cost", "mean cost (credits)"))


def _cell(row: dict[str, Any]) -> str:
    return f"{row['fleet']}/{row['workload']}/{row['arrival']}"


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Grouped bars: one group per cell, one bar per router, for KV hit, TTFT p95 and cost."""
    cells = list(dict.fromkeys(_cell(r) for r in rows))
    routers = list(dict.fromkeys(r["router"] for r in rows))
    fig, axes = plt.subplots(len(_PLOTTED), 1, figsize=(max(8.0, 1.3 * len(cells)), 9), sharex=True)
    width = 0.8 / max(1, len(routers))
    for ax, (key, label) in zip(axes, _PLOTTED, strict=True):
        for k, router in enumerate(routers):
            values = [next((r[key] or 0.0 for r in rows if _cell(r) == c and r["router"] == router), 0.0)
                      for c in cells]
            ax.bar([i + k * width for i in range(len(cells))], values, width, label=router)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        if key == "ttft_p95_ms":
            ax.set_yscale("log")  # round robin's tails would flatten every other bar
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.955), fontsize=8,
               ncols=min(5, len(routers)), frameon=False)
    axes[-1].set_xticks([i + 0.4 - width / 2 for i in range(len(cells))], cells, rotation=30, ha="right",
                        fontsize=8)
    fig.suptitle("mercato bench routing: same fleet, workload and seed per cell; fresh fleet per router")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(report: dict[str, Any], ablation: list[dict[str, Any]]) -> str:
    checked = report["targets"]
    lost = [t for t in checked if not t["all"]]
    lines = ["# mercato bench routing", ""]
    if lost:
        lines += [f"**The peer wins {len(lost)} of {len(checked)} cells** (a cell is won only when the "
                  "auction meets every target against it). Missed targets per cell:", ""]
        lines.append(_missed_table(lost))
    unreachable = [t for t in checked if not t.get("cost_reachable", True)]
    lines += ["", "`cost ratio` is the auction's mean cost over the peer's; `floor` is the peer's own "
              "tokens, each request priced at the engine that would charge it least, over the peer's "
              "cost: a cost ratio below it is out of reach for any router that caches as well as the "
              "peer."]
    if unreachable:
        lines += ["", f"**The cost target is out of reach in {len(unreachable)} of {len(checked)} cells** "
                  f"(floor above {COST_RATIO:g}): {', '.join(_cell(t) for t in unreachable)}. There, "
                  "even every request at its cheapest engine costs more than the target allows."]
    lines.append("")
    same = report.get("same_gateway") or []
    if same:
        won = sum(t["all"] for t in same)
        lines += ["## Against the same rule behind the same gateway", "",
                  f"The auction against mercato's own `cache_aware` (one request path, so only the "
                  f"routing differs): {won} of {len(same)} cells won on every target.", "",
                  markdown_table(("cell", *_CHECKS), [
                      (_cell(t), *("yes" if t[k] else "no" for k in _CHECKS)) for t in same]), ""]
    missing = "" if report["peers_installed"] else " (sglang-router not installed: install the peers group)"
    rows = report["rows"]
    spread = any(r.get("seeds", 1) > 1 for r in rows)
    header = [*COLUMNS, *(f"{c} range" for c in SPREAD)] if spread else list(COLUMNS)
    table = [[fmt(r.get(c)) for c in COLUMNS]
             + ([f"{fmt(r[c + '_lo'])}-{fmt(r[c + '_hi'])}" for c in SPREAD] if spread else [])
             for r in rows]
    lines += ["", f"Cells won by the auction: {len(checked) - len(lost)} of {len(checked)}. "
              f"Routers: {', '.join(report['routers'])}{missing}.", "", "## Every cell", "",
              markdown_table(header, table), "", "![routing](routing.png)", ""]
    if ablation:
        rows = [[fmt(r[c]) for c in ABLATION_COLUMNS] for r in ablation]
        lines += ["## Ablation on the virtual clock", "",
                  "Each variant of the auction alone (TTFT at the engine, without the batching wait):", "",
                  markdown_table(ABLATION_COLUMNS, rows), ""]
    return "\n".join(lines)


def _missed_table(lost: list[dict[str, Any]]) -> str:
    return markdown_table(("cell", "peer", "missed", "cost ratio", "floor"), [
        (_cell(t), t["peer"], ", ".join(k for k in _CHECKS if not t[k]), fmt(t.get("cost_ratio")),
         fmt(t.get("floor_ratio"))) for t in lost])


def _state_section(state: dict[str, Any]) -> list[str]:
    """Exact cache state (KV events) against the prefix ledger, from :mod:`mercato.bench.routing_state`."""
    s = state["settings"]
    met = ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in state["targets_met"].items())
    rows = [[fmt(r.get(c)) for c in STATE_COLUMNS] for r in state["rows"]]
    gains = [[fmt(g.get(c)) for c in GAIN_COLUMNS] for g in state["gains"]]
    return ["## Cache state: exact (KV events) against approximate (prefix ledger)", "",
            f"The {s['fleet']} fleet on {s['workload']}/{s['arrival']}, engines that publish KV events, "
            f"{s['repeats']} seed(s). `default`: the engines' own KV pools, {s['turns']}-turn dialogues; "
            f"`pressure`: {s['pressure_blocks']} blocks of 16 tokens per engine and "
            f"{s['pressure_turns']}-turn dialogues, so evictions decide where a turn still hits. "
            f"Target: {met}.", "",
            markdown_table(STATE_COLUMNS, rows), "",
            "Exact minus approximate:", "",
            markdown_table(GAIN_COLUMNS, gains), ""]


def write(report: dict[str, Any], ablation: list[dict[str, Any]], out: Path,
          state: dict[str, Any] | None = None) -> list[Path]:
    """Under ``out``: routing.csv (per-cell means), runs.csv (per seed), routing.json, ablation.csv,
    state.csv (when the cache-state comparison ran), routing.png and report.md."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(out / "routing.csv", report["rows"]),
             write_csv(out / "runs.csv", report.get("runs", report["rows"])),
             write_json(out / "routing.json", {**report, "ablation": ablation, "cache_state": state})]
    if ablation:
        paths.append(write_csv(out / "ablation.csv", ablation, ABLATION_COLUMNS))
    if state is not None:
        paths.append(write_csv(out / "state.csv", state["rows"], STATE_COLUMNS))
    if report["rows"]:
        paths.append(plot(report["rows"], out / "routing.png"))
    text = _markdown(report, ablation)
    if state is not None:
        text += "\n".join(["", *_state_section(state)])
    (out / "report.md").write_text(text)
    return [*paths, out / "report.md"]
