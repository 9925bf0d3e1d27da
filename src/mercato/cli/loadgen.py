"""`mercato loadgen`: replay multi-turn dialogues against an OpenAI-compatible server.

The load generator lives in :mod:`mercato.workloads.loadgen`; it and the datasets are imported
inside the command so that `mercato --help` stays fast.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.reporting import print_table, progress, stderr

DEFAULT_OUT = Path("results/workloads/loadgen.jsonl")


def loadgen(
    url: Annotated[str, typer.Option(help="Server base URL, e.g. http://127.0.0.1:8000 (/v1 optional).")],
    workload: Annotated[str, typer.Option(
        help="coqa, quac, hotpotqa (synthetic), hotpotqa-sample (bundled real) or a dataset file.")] = "coqa",
    dialogues: Annotated[int, typer.Option(min=1, help="Dialogues to replay.")] = 8,
    turns: Annotated[int | None, typer.Option(min=1, help="Turns per dialogue (synthetic: exactly; "
                                                         "files: at most).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Dialogues in flight at once.")] = 8,
    poisson_rate: Annotated[float | None, typer.Option(
        help="Dialogue arrivals per second (Poisson); default: all start at once.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (default: the server's first model).")] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="max_tokens of every request.")] = 64,
    bid: Annotated[float | None, typer.Option(help="Buyer's bid sent in the mercato extension.")] = None,
    delta: Annotated[float | None, typer.Option(help="Buyer's quality-vs-latency weight in [0, 1].")] = None,
    history: Annotated[str, typer.Option(
        help="Earlier replies in the prompt: model (its own, as IEMAS) or gold (identical prompts "
             "for every server).")] = "model",
    run_id: Annotated[str | None, typer.Option(help="X-Mercato-Run-Id (default: random).")] = None,
    out: Annotated[Path, typer.Option(help="JSONL file, one record per request.")] = DEFAULT_OUT,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic workload and the arrivals.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    max_error_rate: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Exit 1 when a larger share of the requests failed (0: any failure).")] = 0.0,
) -> None:
    """Replay multi-turn dialogues against an OpenAI-compatible server; TTFT, KV hit rate, accuracy.

    Exits 1 when more than --max-error-rate of the requests failed (by default, when any failed).
    """
    from mercato.workloads.datasets import load_workload
    from mercato.workloads.loadgen import RequestRecord, run_load, summarize, v1_url

    extension: dict[str, Any] = {}
    if bid is not None:
        if bid < 0:
            raise typer.BadParameter(f"must be >= 0, got {bid}", param_hint="--bid")
        extension["bid"] = bid
    if delta is not None:
        if not 0.0 <= delta <= 1.0:
            raise typer.BadParameter(f"must be in [0, 1], got {delta}", param_hint="--delta")
        extension["delta"] = delta
    try:
        v1_url(url)
        chosen = load_workload(workload, dialogues, seed, turns)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as sink, progress() as bar:
        task = bar.add_task(f"loadgen {workload}", total=sum(len(d.turns) for d in chosen))

        def on_record(record: RequestRecord) -> None:
            sink.write(json.dumps(record.row()) + "\n")
            sink.flush()
            bar.advance(task)

        try:
            records = asyncio.run(run_load(
                url, chosen, model=model, concurrency=concurrency, poisson_rate=poisson_rate,
                max_tokens=max_tokens, seed=seed, run_id=run_id, mercato=extension, history=history,
                on_record=on_record))
        except ValueError as err:
            raise typer.BadParameter(str(err)) from None
    summary = {"workload": workload, "url": url, "run_id": records[0].run_id if records else run_id,
               **summarize(records), "out": str(out)}
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_table(f"loadgen {workload} against {url}",
                    [{"metric": k, "value": v} for k, v in summary.items()
                     if k not in {"workload", "url", "out"}])
    errors = [r for r in records if r.error]
    if errors:
        stderr.print(f"first error: {errors[0].error}")
    stderr.print(f"records: {out} (run {summary['run_id']})")
    if errors and len(errors) > max_error_rate * len(records):
        stderr.print(f"{len(errors)} of {len(records)} requests failed (more than --max-error-rate "
                     f"{max_error_rate:g})")
        raise typer.Exit(1)
