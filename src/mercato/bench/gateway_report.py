"""Tables and files of `mercato bench gateway`: the same rows for the terminal and the markdown report,
a JSON of the whole run and one PNG (zero-load added p50 per router; added p99 against offered rate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mercato.bench.gateway import FLOOR, HEADLINE, PEER, TARGET_ZERO_LOAD_P50_MS
from mercato.bench.gateway_load import HELD_P99_MS
from mercato.gateway.live.config import quiet_rule
from mercato.reporting import bench_markdown, fmt, save_figure, write_bench_files

LOG_FLOOR_MS = 0.01  # added latencies at or below this are drawn at it on the log axis


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def zero_load_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per router: sequential requests, router and direct in alternating blocks."""
    return [{"router": r["name"], "direct p50": z["direct_p50_ms"], "router p50": z["router_p50_ms"],
             "added p50": z["added_p50_ms"], "added p99": z["added_p99_ms"],
             "beyond wait p50": z["added_beyond_wait_p50_ms"],
             "beyond wait p99": z["added_beyond_wait_p99_ms"], "errors": z["errors"]}
            for r in report["routers"] for z in [r["zero_load"]]]


def rate_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per router and offered rate: open-loop Poisson arrivals, the engine direct just before."""
    return [{"router": r["name"], "rate": x["rate"], "achieved": x["achieved_rps"],
             "direct p50": x["direct_p50_ms"], "direct p99": x["direct_p99_ms"],
             "added p50": x["added_p50_ms"], "added p99": x["added_p99_ms"],
             "beyond wait p99": x["added_beyond_wait_p99_ms"], "errors": x["errors"] + x["direct_errors"],
             "held": _yes(x["held"]), "client ok": _yes(x["meaningful"])}
            for r in report["routers"] for x in r["rates"]]


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per router: highest rate held, against the baseline commit, memory and CPU per 1,000 requests."""
    rows = []
    for r in report["routers"]:
        held = r["held_rps"]
        rows.append({"router": r["name"],
                     "held rps": "none" if held is None else f"{'>= ' * r['held_rps_is_lower_bound']}{held}",
                     f"x {report['baseline']['commit']}": "-" if r["x_baseline"] is None else r["x_baseline"],
                     "RSS MiB": r["rss_mib"], "CPU s / 1000 req": r["cpu_s_per_1000"],
                     "requests": r["requests"]})
    return rows


def target_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its value, bound and, where missed, by how much."""
    rows = []
    for t in report["targets"]:
        value, bound = t["value"], t["bound"]
        if t["met"] is None or t["met"]:
            missed_by = ""
        elif t["unit"] == "ms":
            missed_by = f"{value - bound:+.2f} ms"
        elif t["at_least"]:
            missed_by = f"x{bound / value:.2f} short" if value else "nothing held"
        else:
            missed_by = f"x{value / bound:.2f} over"
        rows.append({"target": t["target"], "value": value, "bound": f"{fmt(bound)} {t['unit']}",
                     "met": "not measured" if t["met"] is None else _yes(t["met"]), "missed by": missed_by,
                     "note": t["note"]})
    return rows


def profile_rows(router: dict[str, Any]) -> list[dict[str, Any]]:
    """Where one mercato gateway's CPU went over the whole run, stage by stage (``--profile``)."""
    return [{"stage": s["stage"], "share": f"{100.0 * s['share']:.1f}%", "ms / request": s["ms_per_request"],
             "samples": s["samples"]} for s in router["profile"]["stages"]]


def tables(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, rows) of every table, in the order the terminal and the markdown show them."""
    out = [
        ("zero load: ms added over the engine direct (sequential requests)", zero_load_rows(report)),
        ("open loop: ms added at each offered rate in req/s (Poisson arrivals)", rate_rows(report)),
        ("per router: highest rate held, memory, CPU", summary_rows(report)),
        ("targets (mercato auction, no batching wait)", target_rows(report)),
    ]
    out += [(f"{r['name']}: CPU by stage of the request path (py-spy, {r['profile']['stacks']})",
             profile_rows(r)) for r in report["routers"] if r.get("profile")]
    return out


def notes(report: dict[str, Any]) -> list[str]:
    """The lines a reader needs beside the tables: the client's ceiling, skipped peers, the held rule."""
    client = report["client"]
    reach = ("every rate tried" if client["holds_every_rate_tried"]
             else f"not {client['ladder'][-1]['rate']}")
    lines = [f"load generator alone (null server): holds {client['ceiling_rps']} req/s ({reach}); "
             "rates above are marked client ok: NO and do not count",
             f"held: {report['held_rule']}"]
    split = report.get("floor")
    if split is not None:
        line = (f"zero-load added p50 of {HEADLINE}: {split['added_p50_ms']:.2f} ms = "
                f"{split['stack_p50_ms']:.2f} ms the stack's ({FLOOR}: the same server, client and "
                f"parsing, none of mercato's work) + {split['own_p50_ms']:.2f} ms mercato's own")
        if "stack_x_peer" in split:
            line += f"; the stack alone adds x{split['stack_x_peer']:.2f} of {PEER}'s"
        lines.append(line)
    peers = report["peers"]
    if not peers["run"]:
        why = ("not installed: pip install -e '.[peers]'" if peers["requested"]
               else "not requested: pass --peers")
        lines.append(f"sglang-router skipped ({why})")
    return lines


def plot(report: dict[str, Any], path: Path) -> Path:
    """Zero-load added p50 bars per router; added p99 against offered rate, log scale, 50 ms line."""
    fig, (bars, lines) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.6]})
    names = [r["name"] for r in report["routers"]]
    bars.bar(range(len(names)), [r["zero_load"]["added_p50_ms"] for r in report["routers"]])
    bars.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    bars.set_ylabel("added p50 at zero load (ms)")
    bars.axhline(0.0, color="black", linewidth=0.8)
    bars.axhline(TARGET_ZERO_LOAD_P50_MS, color="red", linestyle="--", linewidth=1,
                 label=f"target {TARGET_ZERO_LOAD_P50_MS:g} ms (auction, wait 0)")
    bars.legend(fontsize=8)
    bars.grid(axis="y", alpha=0.3)
    for r in report["routers"]:
        lines.plot([row["rate"] for row in r["rates"]],
                   [max(row["added_p99_ms"], LOG_FLOOR_MS) for row in r["rates"]], marker="o",
                   label=r["name"])
    lines.axhline(HELD_P99_MS, color="red", linestyle="--", linewidth=1, label=f"{HELD_P99_MS:g} ms")
    lines.axvline(report["client"]["ceiling_rps"], color="grey", linestyle=":", label="client ceiling")
    lines.set_yscale("log")
    lines.set_xlabel("offered rate (requests/s)")
    lines.set_ylabel(f"added p99 (ms, log; <= {LOG_FLOOR_MS:g} drawn at {LOG_FLOOR_MS:g})")
    lines.grid(alpha=0.3)
    lines.legend(fontsize=8)
    return save_figure(fig, path, "mercato bench gateway: latency added over a zero-delay engine called "
                                  "directly")


def _markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    summary = (f"{report['engine']}; {report['cpus']} CPUs, load average {report['load_average_1m']:.2f} "
               f"at the end; seed {s['seed']}, {s['duration_s']:g} s per rate, "
               f"{s['zero_load_requests']} zero-load requests; default batching wait "
               f"{report['default_max_wait_ms']:g} ms, cut short {quiet_rule(report['default_quiet_ms'])}.")
    return bench_markdown("gateway", summary, notes(report), tables(report), "added latency")


def write(report: dict[str, Any], out: Path) -> list[Path]:
    """Under ``out``: gateway.json, gateway.png and report.md."""
    return write_bench_files(out, "gateway", report, plot, _markdown)

