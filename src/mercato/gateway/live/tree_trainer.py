"""The predictors' trees learn in a child process, off the gateway's event loop.

river's Hoeffding trees learn in pure Python, and every ``grace_period`` samples a leaf tries a
split that weighs every feature's statistics: 5-12 ms measured in the gateway at 300-500
requests/s, during which its event loop would serve nobody. That is most of what a learning
pass costs at the tail, so the trees are trained by a child process instead. Everything the
next request needs at once (the queueing model behind the prefill clocks, the output lengths,
the prefix ledger) is still learned in the gateway; only the trees' lessons cross over, once
per learning pass, and the compiled forests come back.

At most one batch of lessons is in flight: while the child trains, new lessons wait here and go
together when its forests arrive, so neither side ever blocks on a full pipe and the child
batches by itself under load. Predictions therefore use forests one training round old, a few
tens of milliseconds. If the child dies, the gateway logs it once and trains the trees itself
from then on (from scratch), as it did before this module.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from mercato.gateway.core.predictors import Forests, PredictorBank, PredictorSettings, TreeLesson
from mercato.gateway.core.types import BackendSpec

log = logging.getLogger("mercato.gateway")
STOP_TIMEOUT_S = 5.0


def _train_forever(conn: Connection, specs: list[BackendSpec], settings: PredictorSettings) -> None:
    """The child: train a bank of its own on each batch of lessons and answer with its forests."""
    bank = PredictorBank(specs, settings)
    while True:
        try:
            lessons = conn.recv()
        except EOFError:  # the gateway is gone
            return
        if lessons is None:
            return
        bank.train(lessons)
        conn.send(bank.forests())


class TreeTrainerProcess:
    """A :class:`~mercato.gateway.core.predictors.TreeTrainer` that trains in a child process.

    Until :meth:`start` (and after the child is lost) the lessons are trained here, at once.
    """

    def __init__(self, specs: list[BackendSpec], settings: PredictorSettings) -> None:
        self._specs = specs
        self._settings = settings
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._queued: list[TreeLesson] = []
        self._in_flight = False
        self._newest: Forests | None = None
        self._here: PredictorBank | None = None  # the fallback: trees trained in this process

    @property
    def running(self) -> bool:
        """True while a child process does the training."""
        return self._conn is not None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self._process is not None and self._conn is not None else None

    def start(self) -> None:
        """Start the child: a fresh interpreter (multiprocessing's spawn), so that no event-loop
        state is inherited. Like any spawned child it imports the parent's main script again, so
        a script that builds and serves the gateway itself needs ``if __name__ == "__main__":``
        (the ``mercato`` command and ``python -m mercato`` need nothing)."""
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_train_forever, args=(theirs, self._specs, self._settings),
                                  name="mercato-tree-trainer", daemon=True)
        process.start()
        theirs.close()
        self._process, self._conn = process, ours

    def submit(self, lessons: list[TreeLesson]) -> None:
        """Queue ``lessons``; they go to the child as soon as it has answered the previous batch."""
        if self._conn is None:
            self._train_here(lessons)
            return
        self._queued.extend(lessons)
        self._pump()

    def latest(self) -> Forests | None:
        """The forests trained since the last call, if any have arrived."""
        if self._conn is not None:
            self._pump()
        newest, self._newest = self._newest, None
        return newest

    def _pump(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            if self._in_flight and conn.poll():
                self._newest = conn.recv()
                self._in_flight = False
            if not self._in_flight and self._queued:
                conn.send(self._queued)
                self._queued = []
                self._in_flight = True
        except (EOFError, OSError) as err:
            log.error("the tree trainer process is gone (%s); the gateway trains its trees itself "
                      "from now on, starting over", err)
            self._conn = None
            self._in_flight = False
            queued, self._queued = self._queued, []
            self._train_here(queued)

    def _train_here(self, lessons: list[TreeLesson]) -> None:
        if self._here is None:
            self._here = PredictorBank(self._specs, self._settings)
        self._here.train(lessons)
        self._newest = self._here.forests()

    def close(self) -> None:
        """Stop the child; what it was training is dropped (the gateway is stopping)."""
        conn, process = self._conn, self._process
        self._conn = self._process = None
        if conn is not None:
            with contextlib.suppress(OSError):  # the child may be gone already
                conn.send(None)
            conn.close()
        if process is not None:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT_S)
