"""Where a gateway process spends its CPU: py-spy samples grouped by stage of the request path.

py-spy samples a running process from outside (no instrumentation, no restart), so the gateway
profiled is the one being measured. ``--nonblocking`` keeps it from pausing the process at every
sample, which would inflate the very latencies the benchmark reports. Samples are recorded in
py-spy's "raw" format (one collapsed stack and its count per line; speedscope and flamegraph.pl
read it too) and attributed to the first stage, in :data:`STAGES` order, whose pattern matches a
frame of the stack; a stack in none of them goes by the library of its innermost frame
(:data:`LIBRARIES`: the HTTP server, the HTTP client, the rest of mercato). py-spy leaves out
samples where the process waits; a sample with no Python frame below the event loop is uvloop's
own C code (socket reads and writes, callbacks). Worker threads (the ledger's WAL checkpoints)
run off the loop and are left out.

The stages follow one request: parse and admission, routing, the upstream call, settling,
the ledger, the deferred learning pass, the response, and what the HTTP server and client do
outside those functions.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE_HZ = 250
# (stage, pattern of a frame in py-spy's "function (file:line)" form); the first match wins.
STAGES: tuple[tuple[str, str], ...] = (
    ("learn: deferred pass", r"^Gateway\._learn "),
    ("route: market, predictions, allocation", r"^Gateway\._route "),
    ("admit: auth, body, validation", r"^admit \(mercato/"),
    ("upstream: send the request", r"^Forwarding\._open "),
    ("upstream: read and parse chunks", r"^Forwarding\.(_serve|chunks|_parse) "),
    ("settle: router bookkeeping", r"^Gateway\.settle "),
    ("ledger: commit", r"^(Gateway\.persist|GroupCommitter\.)"),
    ("respond: write to the client", r"^Response\.__call__ "),
    ("report: outcome, metrics (deferred pass)", r"^(Gateway\.observe|OutcomeReporter\.flush) "),
    ("access log: writer thread", r"^AccessLog\._run "),
)
# (stage, pattern of the innermost frame) for stacks in no stage above.
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("HTTP server: uvicorn, other", r"\((uvicorn|starlette|httptools)/"),
    ("HTTP client: aiohttp, other", r"\((aiohttp|yarl|multidict)/"),
    ("mercato: other", r"\(mercato/"),
)
OTHER = "other"
LOOP = "event loop: uvloop's own I/O (C)"
_LOOP_FRAME = re.compile(r"^Runner\.run \(asyncio/")


def executable() -> str | None:
    """The ``py-spy`` installed beside this Python (``pip install -e '.[profile]'``), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def available() -> bool:
    """True when py-spy can be run."""
    return executable() is not None


@contextlib.contextmanager
def recording(pid: int, out: Path) -> Iterator[Path]:
    """Sample process ``pid`` with py-spy until the block ends; the raw stacks land in ``out``."""
    exe = executable()
    if exe is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(SAMPLE_RATE_HZ), "--nonblocking",
           "--format", "raw", "--output", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches before the load starts
    try:
        yield out
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise RuntimeError("py-spy did not stop") from None
        if not out.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-300:]}")


@dataclass(frozen=True)
class StageShare:
    """One stage's share of the on-CPU samples, and its CPU time per request."""

    stage: str
    samples: int
    share: float
    ms_per_request: float


def breakdown(raw: str, requests: int, rate_hz: int = SAMPLE_RATE_HZ) -> list[StageShare]:
    """On-CPU samples of py-spy ``raw`` output per stage, largest first (``requests`` served meanwhile)."""
    if requests < 1:
        raise ValueError("requests must be >= 1")
    patterns = [(stage, re.compile(p)) for stage, p in STAGES]
    libraries = [(stage, re.compile(p)) for stage, p in LIBRARIES]
    counts: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if any(f.startswith("Thread.run ") for f in frames):
            continue  # a worker thread, off the loop
        if _LOOP_FRAME.search(frames[-1]):
            stage = LOOP
        else:
            stage = next((s for s, rx in patterns if any(rx.search(f) for f in frames)), None) or next(
                (s for s, rx in libraries if rx.search(frames[-1])), OTHER)
        counts[stage] = counts.get(stage, 0) + int(count)
    total = sum(counts.values())
    rows = [StageShare(stage, n, n / total, 1000.0 * n / rate_hz / requests) for stage, n in counts.items()]
    return sorted(rows, key=lambda r: -r.samples)
