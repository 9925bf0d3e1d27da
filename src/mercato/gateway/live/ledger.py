"""The accounting ledger: one durable row per routed request, written exactly once.

This module holds what every store shares (the columns, the insert and summary SQL, the group
committer) and the single-process store, SQLite in WAL mode; the replicas' store is
:mod:`mercato.gateway.live.ledger_postgres`, its outage spool
:mod:`mercato.gateway.live.ledger_spool`, and the schema both are kept at
:mod:`mercato.gateway.live.ledger_schema`. With ``synchronous=NORMAL`` (the default) a committed
SQLite row survives a crash of the gateway process, which is the failure a ledger must ride out,
and a commit costs no fsync (about 0.1 ms), so the live app commits on its event loop and copies
the WAL into the database file (the step that does fsync) from a worker thread once a second;
``FULL`` also survives an operating-system crash or power loss, at one fsync (several
milliseconds on ordinary disks) per commit, so those commits run in a worker thread, grouped.
Readers (``mercato ledger summary``) never block the writer, and the primary key on
``request_id`` plus ``INSERT ... ON CONFLICT DO NOTHING`` makes a second write of the same
request a no-op that reports itself. The SQL is the common subset that PostgreSQL also speaks.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from mercato.gateway.core.types import AccountingStore, LedgerRecord
from mercato.gateway.live.ledger_schema import migrate_sqlite

COLUMNS = tuple(f.name for f in fields(LedgerRecord))
POSTGRES_SCHEMES = ("postgresql://", "postgres://")  # a ledger `db` with one of these is PostgreSQL
_SUMS = ("COUNT(*), COALESCE(SUM(paid), 0), COALESCE(SUM(prompt_tokens), 0), "
         "COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
         "COALESCE(SUM(cost), 0), COALESCE(SUM(payment), 0), COALESCE(SUM(surplus), 0)")
# The summary's two queries, overall then per backend: both stores run them as they are.
SUMMARY_SQL = (f"SELECT {_SUMS} FROM ledger",
               f"SELECT backend, {_SUMS} FROM ledger GROUP BY backend ORDER BY backend")
_TOTAL_KEYS = ("requests", "paid_requests", "prompt_tokens", "cached_tokens", "completion_tokens",
               "cost", "payment", "surplus")
# Float sums of many small prices can differ in the last bits; balance is checked to this slack.
BALANCE_TOLERANCE = 1e-9
SYNCHRONOUS = ("NORMAL", "FULL")  # SQLite durability levels offered (see module doc)
CHECKPOINT_INTERVAL_S = 1.0
BUSY_TIMEOUT_S = 5.0  # how long a connection waits for another's lock before "database is locked"
log = logging.getLogger("mercato.gateway.live.ledger")


def is_postgres_url(db: str | Path) -> bool:
    """True when a ledger location names a PostgreSQL database rather than a SQLite file."""
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


def insert_sql(param: str) -> str:
    """The exactly-once insert of one record, with the driver's placeholder (``?`` or ``%s``)."""
    return (f"INSERT INTO ledger ({', '.join(COLUMNS)}) VALUES ({', '.join([param] * len(COLUMNS))}) "
            "ON CONFLICT (request_id) DO NOTHING")


_INSERT = insert_sql("?")
_OLDEST = f"SELECT {', '.join(COLUMNS)} FROM ledger ORDER BY ts, request_id LIMIT ?"


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode. On a new file that several stores open at once (workers, the
    tests), the switch can fail with "database is locked" at once, without SQLite's busy wait:
    try again until ``BUSY_TIMEOUT_S`` has passed."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SQLiteAccountingStore:
    """:class:`~mercato.gateway.core.types.AccountingStore` on one SQLite file (WAL, durable commits).

    Safe to share between threads (one writer connection behind a lock, a second one for
    checkpoints), so durable commits can run in a worker thread without blocking an event loop.
    """

    def __init__(self, path: str | Path, synchronous: str = "NORMAL") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                     timeout=BUSY_TIMEOUT_S)
        _use_wal(self._conn)
        self._conn.execute(f"PRAGMA synchronous={synchronous}")
        migrate_sqlite(self._conn)
        self.fsyncs_each_commit = synchronous == "FULL"
        if not self.fsyncs_each_commit:
            # Commits stay cheap; the fsyncing WAL copy runs when checkpoint() is called instead.
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()

    def record(self, rec: LedgerRecord) -> bool:
        """Insert ``rec`` in its own committed transaction; False when its id is already there."""
        return self.record_many([rec])[0]

    def record_many(self, recs: Sequence[LedgerRecord]) -> list[bool]:
        """Insert several records in one transaction (one fsync); per record, False if a duplicate."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                inserted = [self._conn.execute(_INSERT, row_of(rec)).rowcount == 1 for rec in recs]
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return inserted

    def summary(self) -> dict[str, Any]:
        """Totals overall and per backend, and the weak budget balance check sum(payment) >= sum(cost)."""
        with self._lock:
            overall = self._conn.execute(SUMMARY_SQL[0]).fetchone()
            per_backend = self._conn.execute(SUMMARY_SQL[1]).fetchall()
        return summarize(str(self.path), overall, per_backend)

    def oldest(self, limit: int) -> list[LedgerRecord]:
        """Up to ``limit`` records, oldest first (the spool hands them on in this order)."""
        with self._lock:
            rows = self._conn.execute(_OLDEST, (limit,)).fetchall()
        return [from_row(row) for row in rows]

    def forget(self, request_ids: Sequence[str]) -> None:
        """Delete these records in one transaction (the spool, once another store holds them)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("DELETE FROM ledger WHERE request_id = ?", [(r,) for r in request_ids])
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def count(self) -> int:
        """How many records the ledger holds."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])

    def checkpoint(self) -> None:
        """Copy committed WAL frames into the database file without blocking the writer.

        Meant for a worker thread: it uses its own connection and may fsync.
        """
        with self._checkpoint_lock:
            if self._checkpointer is None:
                self._checkpointer = sqlite3.connect(str(self.path), isolation_level=None,
                                                     check_same_thread=False)
                self._checkpointer.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close the connections (SQLite checkpoints the WAL as the last one closes)."""
        with self._checkpoint_lock:
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
        with self._lock:
            self._conn.close()


def remove_ledger(path: Path) -> None:
    """Delete a SQLite ledger with its WAL and shared-memory files (a fresh run starts empty)."""
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        part.unlink(missing_ok=True)


def row_of(rec: LedgerRecord) -> tuple[Any, ...]:
    """The record's column values in :data:`COLUMNS` order (``paid`` as 0/1, as both databases store it)."""
    # Field by field: dataclasses.astuple deep-copies, which cost more than the insert itself.
    return tuple(int(v) if isinstance(v, bool) else v for v in (getattr(rec, c) for c in COLUMNS))


def from_row(row: Sequence[Any]) -> LedgerRecord:
    """The record a row of :data:`COLUMNS` holds."""
    values = dict(zip(COLUMNS, row, strict=True))
    values["paid"] = bool(values["paid"])
    return LedgerRecord(**values)


class GroupCommitter:
    """Writes records from the event loop in groups, each caller waiting until its own is committed.

    A store whose commits need no fsync (``fsyncs_each_commit`` False: SQLite ``NORMAL`` in WAL
    mode) is written on the loop, with no thread hand-off, once per loop turn: every record
    settled in one turn shares one transaction (about 0.1 ms, plus a few microseconds a row),
    written after the turn's other callbacks; its ``checkpoint()`` runs in a worker thread at
    most once per ``checkpoint_interval_s``. Any other store is written from a worker thread: a
    durable commit costs one fsync (milliseconds on ordinary disks), so every record that arrives
    while a commit is running joins the next one, one transaction and one fsync per group.
    """

    def __init__(self, store: AccountingStore, checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self._write_many: Callable[[Sequence[LedgerRecord]], list[bool]] = getattr(
            store, "record_many", lambda recs: [store.record(r) for r in recs])
        self._inline = not getattr(store, "fsyncs_each_commit", True)
        checkpoint = getattr(store, "checkpoint", None)
        self._checkpoint: Callable[[], None] | None = checkpoint if self._inline else None
        self._checkpoint_interval_s = checkpoint_interval_s
        self._last_checkpoint = time.monotonic()
        self._checkpointing: asyncio.Task[None] | None = None
        self._pending: list[tuple[LedgerRecord, asyncio.Future[bool]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._turn_scheduled = False

    async def record(self, rec: LedgerRecord) -> bool:
        """Wait until ``rec`` is committed; False when its request id was already recorded."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((rec, future))
        if self._inline:
            if not self._turn_scheduled:
                self._turn_scheduled = True
                loop.call_soon(self._commit_turn)
        elif self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await asyncio.shield(future)  # a caller that goes away does not cancel the commit

    def _commit_turn(self) -> None:
        """Commit what this loop turn settled, in one transaction (fast stores)."""
        self._turn_scheduled = False
        group, self._pending = self._pending, []
        try:
            outcome: list[bool] | Exception = self._write_many([rec for rec, _ in group])
        except Exception as err:
            outcome = err
        _resolve(group, outcome)
        self._checkpoint_when_due()

    def _checkpoint_when_due(self) -> None:
        busy = self._checkpointing is not None and not self._checkpointing.done()
        due = time.monotonic() - self._last_checkpoint >= self._checkpoint_interval_s
        if self._checkpoint is None or busy or not due:
            return
        self._last_checkpoint = time.monotonic()
        self._checkpointing = asyncio.get_running_loop().create_task(self._run_checkpoint(self._checkpoint))

    @staticmethod
    async def _run_checkpoint(checkpoint: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(checkpoint)
        except Exception:  # the rows are committed; a failed copy is retried at the next interval
            log.exception("ledger checkpoint failed")

    async def aclose(self) -> None:
        """Wait for a running checkpoint and for queued group commits (before closing the store)."""
        for task in (self._checkpointing, self._drainer):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)

    async def _drain(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                outcome: list[bool] | Exception = await asyncio.to_thread(
                    self._write_many, [rec for rec, _ in group])
            except Exception as err:
                outcome = err
            _resolve(group, outcome)


def _resolve(group: list[tuple[LedgerRecord, asyncio.Future[bool]]], outcome: list[bool] | Exception) -> None:
    """Tell every waiter of a group its own result, or the error that failed the group's commit."""
    for i, (_, future) in enumerate(group):
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome[i])


def summarize(db: str, overall: Sequence[Any], per_backend: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """A store's summary from the rows of :data:`SUMMARY_SQL`: totals overall and per backend, and
    the weak budget balance check sum(payment) >= sum(cost)."""
    totals = _totals(overall)
    return {
        "db": db,
        "overall": totals,
        "backends": {row[0]: _totals(row[1:]) for row in per_backend},
        "weak_budget_balance": totals["payment"] >= totals["cost"] - BALANCE_TOLERANCE,
        "hub_balance": totals["payment"] - totals["cost"],
    }


def _totals(row: Sequence[Any]) -> dict[str, float | int]:
    totals: dict[str, float | int] = dict(zip(_TOTAL_KEYS, row, strict=True))
    prompt = totals["prompt_tokens"]
    totals["kv_hit_rate"] = totals["cached_tokens"] / prompt if prompt else 0.0
    return totals
