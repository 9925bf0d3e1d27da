"""Simulated engines that outlive the command that started them (`mercato fleet up` / `down`).

:class:`~mercato.gateway.live.fleet.EngineFleet` ties its engines to one process's lifetime; an
operator trying the gateway from a shell wants them in the background instead. ``start_fleet``
spawns each engine in its own session (a shell's Ctrl-C or exit does not reach it), logs to a file,
and records the processes in ``fleet.json`` beside a ready gateway config, ``gateway.yaml``;
``stop_fleet`` reads that record, stops the processes it names and removes what ``start_fleet`` wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from mercato.gateway.live.config import GatewayConfig
from mercato.gateway.live.fleet import EngineFleet, wait_ready

STATE_FILE = "fleet.json"
CONFIG_FILE = "gateway.yaml"


class FleetError(RuntimeError):
    """A fleet cannot start (one is already up, or an engine failed) or its record is unreadable."""


@dataclass(frozen=True)
class BackgroundEngine:
    """One engine process of a background fleet, as ``fleet.json`` records it."""

    name: str
    profile: str
    url: str
    pid: int

    def log(self, folder: Path) -> Path:
        """Where the engine writes its output."""
        return folder / f"{self.name}.log"


def start_fleet(folder: Path, profiles: Sequence[str], *, speed: float = 1.0, seed: int = 0,
                timeout_s: float = 60.0) -> list[BackgroundEngine]:
    """Start one engine per profile on free ports, wait until each is healthy, and write
    ``folder/fleet.json`` and ``folder/gateway.yaml`` (for ``mercato serve --config``)."""
    if running_engines(folder):
        raise FleetError(f"a fleet is already up in {folder}; `mercato fleet down` stops it")
    fleet = EngineFleet(profiles, speed=speed, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    engines, procs = [], []
    for k, spec in enumerate(fleet.engines):
        with (folder / f"{spec.name}.log").open("wb") as sink:
            proc = subprocess.Popen(fleet.command(k), stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        engines.append(BackgroundEngine(spec.name, spec.profile, spec.url, proc.pid))
    _write_state(folder, engines)  # before waiting: `fleet down` can clean up a half-started fleet
    deadline = time.monotonic() + timeout_s
    for engine, proc in zip(engines, procs, strict=True):
        try:
            wait_ready(proc, f"{engine.url.removesuffix('/v1')}/health", deadline - time.monotonic(),
                       f"engine {engine.name}")
        except RuntimeError as err:
            output = engine.log(folder).read_text(errors="replace").splitlines()
            lines = (line.strip(" │╭╮╰╯─") for line in output)
            last = [line for line in lines if line][-1:]  # its last words, without a rich error box
            stop_fleet(folder)  # removes the logs too: the reason goes into the message
            raise FleetError(f"{err}" + (f": {last[0]}" if last else "")) from None
    config = GatewayConfig(backends=fleet.backend_configs())
    (folder / CONFIG_FILE).write_text(
        f"# written by `mercato fleet up`: `mercato serve --config {folder / CONFIG_FILE}`\n"
        + yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
    return engines


def stop_fleet(folder: Path, timeout_s: float = 10.0) -> list[BackgroundEngine]:
    """Stop the engines ``folder/fleet.json`` names (SIGTERM, then SIGKILL after ``timeout_s``)
    and remove the files ``start_fleet`` wrote; returns the engines that were still running."""
    engines = read_state(folder)
    alive = [e for e in engines if _is_running(e)]
    for engine in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(engine.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for engine in alive:
        while _exists(engine.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _exists(engine.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(engine.pid, signal.SIGKILL)
    for path in [*(e.log(folder) for e in engines), folder / CONFIG_FILE, folder / STATE_FILE]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when nothing else lives there
    return alive


def read_state(folder: Path) -> list[BackgroundEngine]:
    """The engines recorded in ``folder/fleet.json`` (none when there is no record)."""
    path = folder / STATE_FILE
    if not path.exists():
        return []
    try:
        return [BackgroundEngine(**e) for e in json.loads(path.read_text())["engines"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FleetError(f"{path}: not a fleet record ({err})") from None


def running_engines(folder: Path) -> list[BackgroundEngine]:
    """The recorded engines whose process still runs."""
    return [e for e in read_state(folder) if _is_running(e)]


def _write_state(folder: Path, engines: Sequence[BackgroundEngine]) -> None:
    (folder / STATE_FILE).write_text(json.dumps({"engines": [asdict(e) for e in engines]}, indent=2) + "\n")


def _is_running(engine: BackgroundEngine) -> bool:
    """Whether the recorded process runs and is still that engine (a reused pid is not)."""
    if not _exists(engine.pid):
        return False
    if not Path("/proc/self").exists():
        return True  # no /proc (macOS): trust the pid
    try:
        args = Path(f"/proc/{engine.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False  # it exited meanwhile
    return b"--instance" in args and engine.name.encode() in args


def _exists(pid: int) -> bool:
    """Whether process ``pid`` has not exited yet (a zombie has)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process holds the pid
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: the signal test is all there is
    return state not in {"Z", "X"}
