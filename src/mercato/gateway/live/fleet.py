"""A local fleet of simulated engine servers, one child process each, for demos and live checks.

Each engine runs as its own `mercato engine serve` process so that the engines' real-time
scheduling never competes with the gateway for one interpreter's lock; the fleet picks free
loopback ports, waits until every `/health` answers, and stops the children on exit.
:func:`wait_ready` is that wait for any child server (benchmarks start routers with it too).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import httpx

from mercato.engine import get_profile
from mercato.gateway.live.config import KNOWN_TOKENIZER, BackendConfig, KVEventsSource, Prices
from mercato.ports import free_ports


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Terminate a child, kill it if it outlives ``timeout_s``, reap it and close its stderr pipe."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float, name: str) -> None:
    """Poll ``url`` until it answers 200; RuntimeError when ``proc`` exits first or time runs out.

    The error ends with the child's last stderr when it was piped.
    """
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
                raise RuntimeError(f"{name} exited with {proc.returncode}" + (f": {err}" if err else ""))
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready in {timeout_s:.0f} s")
            time.sleep(0.05)


@dataclass(frozen=True)
class EngineSpec:
    """One engine server of the fleet."""

    name: str
    profile: str
    port: int
    kv_ports: tuple[int, int] | None = None  # KV events: PUB and replay ROUTER ports

    @property
    def url(self) -> str:
        """OpenAI base URL of the server."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def kv_events(self) -> KVEventsSource | None:
        """Where the engine publishes its KV events (None when it does not)."""
        if self.kv_ports is None:
            return None
        pub, replay = self.kv_ports
        return KVEventsSource(endpoint=f"tcp://127.0.0.1:{pub}", replay_endpoint=f"tcp://127.0.0.1:{replay}",
                              tokenizer=KNOWN_TOKENIZER)


class EngineFleet:
    """Start simulated engine servers for ``profiles`` (one per entry); use as a context manager."""

    def __init__(self, profiles: Sequence[str], *, speed: float = 1.0, seed: int = 0,
                 max_num_seqs: int = 12, gpu_memory_utilization: float = 0.6,
                 served_name: str | None = None, num_gpu_blocks: int | None = None,
                 max_model_len: int | None = None, kv_events: bool = False) -> None:
        """``served_name``: one model name served by every engine (routers that balance one model
        across workers need it); by default each engine serves its profile's name. Every engine
        names itself (``<profile>-<k>``) in its responses' ``system_fingerprint``.
        ``num_gpu_blocks``: each engine's KV blocks instead of what its memory share leaves (a small
        pool needs a ``max_model_len`` it can hold); ``kv_events``: every engine publishes its KV
        events, and its backend config subscribes."""
        for p in profiles:
            get_profile(p)  # fail early, naming the unknown profile
        per_engine = 3 if kv_events else 1  # HTTP, and the KV events' PUB and replay sockets
        ports = iter(free_ports(per_engine * len(profiles)))
        self.engines = [EngineSpec(f"{p}-{k}", p, next(ports),
                                   (next(ports), next(ports)) if kv_events else None)
                        for k, p in enumerate(profiles)]
        self.speed, self.seed = speed, seed
        self.max_num_seqs, self.gpu_memory_utilization = max_num_seqs, gpu_memory_utilization
        self.served_name = served_name
        self.num_gpu_blocks, self.max_model_len = num_gpu_blocks, max_model_len
        self._procs: list[subprocess.Popen[bytes]] = []

    def command(self, k: int) -> list[str]:
        """The `mercato engine serve` command line of the ``k``-th engine."""
        e = self.engines[k]
        cmd = [sys.executable, "-m", "mercato", "engine", "serve", "--profile", e.profile,
               "--port", str(e.port), "--model-name", self.served_name or e.profile,
               "--instance", e.name, "--speed", str(self.speed),
               "--seed", str(self.seed + k), "--max-num-seqs", str(self.max_num_seqs),
               "--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.num_gpu_blocks is not None:
            cmd += ["--num-gpu-blocks-override", str(self.num_gpu_blocks)]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if e.kv_events is not None:
            cmd += ["--kv-events", e.kv_events.endpoint,
                    "--kv-events-replay", str(e.kv_events.replay_endpoint)]
        return cmd

    def start(self, timeout_s: float = 60.0) -> EngineFleet:
        """Spawn every server and wait until all report healthy."""
        for k in range(len(self.engines)):
            self._procs.append(subprocess.Popen(self.command(k), stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE))
        deadline = time.monotonic() + timeout_s
        try:
            for e, proc in zip(self.engines, self._procs, strict=True):
                wait_ready(proc, f"http://127.0.0.1:{e.port}/health", deadline - time.monotonic(),
                           f"engine {e.name}")
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Terminate every child and reap it."""
        for proc in self._procs:  # all at once, then reap each
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            stop_process(proc)
        self._procs.clear()

    def kill(self, name: str) -> None:
        """Kill one engine abruptly (failover experiments)."""
        for e, proc in zip(self.engines, self._procs, strict=True):
            if e.name == name:
                proc.kill()
                proc.wait()
                return
        raise KeyError(name)

    def backend_configs(self, capacity: int | None = None, *, kv_events: bool = True) -> list[BackendConfig]:
        """The fleet as gateway backends, priced from each profile.

        ``capacity`` is the gateway's slots per backend (the auction's q_i); default: the
        engines' ``max_num_seqs``. Fewer slots than the engine runs make buyers compete.
        ``kv_events`` False leaves the engines' KV events unfollowed (the prefix ledger's guess).
        """
        out = []
        for e in self.engines:
            p = get_profile(e.profile)
            out.append(BackendConfig(name=e.name, url=e.url, model=self.served_name or e.profile,
                                     capacity=capacity or self.max_num_seqs,
                                     prices=Prices(input=p.price_input, cached_input=p.price_cached_input,
                                                   output=p.price_output), profile=e.profile,
                                     kv_events=e.kv_events if kv_events else None))
        return out

    def price_list(self) -> dict[str, tuple[float, float, float]]:
        """Per engine name: (input, cached input, output) credits per token, to price any router's traffic."""
        out = {}
        for e in self.engines:
            p = get_profile(e.profile)
            out[e.name] = (p.price_input, p.price_cached_input, p.price_output)
        return out

    def __enter__(self) -> EngineFleet:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
