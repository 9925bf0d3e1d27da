"""Tables and files of `mercato bench replicas`: the same rows for the terminal and the markdown report,
a JSON of the whole run and one PNG (KV hit per variant; held throughput per worker count).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mercato.reporting import bench_markdown, save_figure, write_bench_files


def kv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant: the dialogues' KV hit (mean over seeds, and its range), TTFT and cost."""
    return [{"variant": v["name"], "workers": v["workers"], "shared": "yes" if v["shared"] else "no",
             "KV hit": v["kv"]["kv_hit"], "KV hit range": f"{kv['kv_hit_lo']:.3f}-{kv['kv_hit_hi']:.3f}",
             "seeds": kv["seeds"], "TTFT p50 ms": v["kv"]["ttft_p50_ms"],
             "TTFT p95 ms": v["kv"]["ttft_p95_ms"], "mean cost": v["kv"]["mean_cost"],
             "requests": v["kv"]["requests"], "errors": v["kv"]["errors"]}
            for v in report["variants"] for kv in [v["kv"]]]


def throughput_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per ladder: the highest rate held, and per core of this machine."""
    return [{"workers, state": t["label"],
             "held rps": "none" if t["held_rps"] is None
             else f"{'>= ' * t['held_rps_is_lower_bound']}{t['held_rps']}",
             "per core": t["held_rps_per_core"], "cores used": t["cores"], "rates tried": len(t["rates"])}
            for t in report["throughput"]]


def rate_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per ladder and rate: added latency against the engine direct."""
    return [{"workers, state": t["label"], "rate": r["rate"], "achieved": r["achieved_rps"],
             "added p50": r["added_p50_ms"], "added p99": r["added_p99_ms"],
             "errors": r["errors"] + r["direct_errors"], "held": "yes" if r["held"] else "NO",
             "client ok": "yes" if r["meaningful"] else "NO"}
            for t in report["throughput"] for r in t["rates"]]


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: met, missed or not measured, and the numbers behind it."""
    met = {None: "not measured", True: "yes", False: "NO"}
    return [{"target": t["target"], "met": met[t["met"]], "note": t["note"]} for t in report["targets"]]


def tables(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, rows) of every table, in the order the terminal and the markdown show them."""
    return [("dialogues through each variant (auction; fresh fleet each)", kv_rows(report)),
            ("throughput: highest open-loop rate held (zero-delay engines)", throughput_rows(report)),
            ("open loop: ms added over the engines called direct", rate_rows(report)),
            ("targets", target_rows(report))]


def notes(report: dict[str, Any]) -> list[str]:
    """The client's ceiling, the held rule, and what more cores would give."""
    client = report["client"]
    lines = [f"load generator alone (null server): holds {client['ceiling_rps']} req/s; rates above are "
             "marked client ok: NO and do not count", f"held: {report['held_rule']}"]
    per_core = [t["held_rps_per_core"] for t in report["throughput"] if t["shared_servers"]]
    if per_core:
        best = max(per_core)
        lines.append(f"{report['cpus']} cores here, shared with the engine and the load generator; at "
                     f"{best:.0f} req/s per core, N cores given to the gateway alone would hold about "
                     f"N x {best:.0f} req/s (a linear estimate: Redis and the engines must keep up)")
    return lines


def plot(report: dict[str, Any], path: Path) -> Path:
    """KV hit per variant (bars); held req/s against worker count."""
    fig, (bars, line) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [v["name"] for v in report["variants"]]
    colours = ["tab:blue" if v["shared"] else "tab:orange" for v in report["variants"]]
    bars.bar(range(len(names)), [v["kv"]["kv_hit"] for v in report["variants"]], color=colours)
    bars.set_xticks(range(len(names)), names, rotation=20, ha="right")
    bars.set_ylabel("KV hit (cached / prompt tokens)")
    bars.set_title("shared state (blue) against independent replicas (orange)", fontsize=9)
    bars.grid(axis="y", alpha=0.3)
    held = [(t["workers"], t["held_rps"] or 0) for t in report["throughput"] if t["shared_servers"]]
    line.plot([w for w, _ in held], [h for _, h in held], marker="o", label="on Redis + PostgreSQL")
    for t in report["throughput"]:
        if not t["shared_servers"]:
            line.scatter([t["workers"]], [t["held_rps"] or 0], marker="s", color="tab:green",
                         label=t["label"])
    line.axvline(report["cpus"], color="grey", linestyle=":", label=f"{report['cpus']} cores")
    line.set_xlabel("workers")
    line.set_ylabel("highest rate held (req/s)")
    line.grid(alpha=0.3)
    line.legend(fontsize=8)
    return save_figure(fig, path, "mercato bench replicas: gateway workers behind one port")


def _markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    summary = (f"KV runs: {report['fleet']['kv']}; {s['dialogues']} {s['workload']} dialogues of "
               f"{s['turns']} turns, {s['concurrency']} at once, seed {s['seed']}. Throughput: "
               f"{report['fleet']['throughput']}, {s['duration_s']:g} s per rate. {report['cpus']} CPUs, "
               f"load average {report['load_average_1m']:.2f} at the end.")
    return bench_markdown("replicas", summary, notes(report), tables(report), "replicas")


def write(report: dict[str, Any], out: Path) -> list[Path]:
    """Under ``out``: replicas.json, replicas.png and report.md."""
    return write_bench_files(out, "replicas", report, plot, _markdown)
