"""The outage spool: records the client already got a 200 for wait here while PostgreSQL is away.

A replica must not lose a record it has acknowledged, nor refuse requests, because the shared
database is unreachable for a while. :class:`SpoolingLedger` writes to PostgreSQL; when a write
fails on the connection, that group and every record after it go to a local spool until a
background thread reaches the database again and hands the spool on, oldest first.

The spool is a SQLite ledger of the same schema with ``synchronous=FULL`` rather than a
hand-rolled append-only file: a commit is atomic and fsynced before the group's waiters (and so
the responses) are released, a torn tail after a crash is rolled back rather than parsed, rows
handed on are deleted by key without rewriting a file, and replicas can share one spool file
under SQLite's lock. The fsync per commit costs only during an outage. Hand-on is exactly once
without any coordination: rows are inserted into PostgreSQL (``ON CONFLICT DO NOTHING``) and
committed before they are deleted from the spool, so a crash between the two re-sends rows the
database then skips.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from mercato.gateway.core.types import LedgerRecord
from mercato.gateway.live.ledger import SQLiteAccountingStore
from mercato.gateway.live.ledger_postgres import PostgresAccountingStore

RETRY_INTERVAL_S = 1.0  # how often the database is tried again while it is away
HAND_ON_BATCH = 500  # spooled records written per PostgreSQL transaction when it is back
log = logging.getLogger("mercato.gateway.live.ledger")


class SpoolingLedger:
    """:class:`~mercato.gateway.core.types.AccountingStore` on PostgreSQL with a local outage spool.

    ``record_many`` is called from the group committer's worker thread; a daemon thread retries
    the database every ``retry_interval_s`` while it is away, or while the spool holds records.
    ``spooled`` counts the records this replica spooled since start, ``pending`` those the spool
    file holds (recounted after each hand-on: replicas may share one spool file).
    """

    fsyncs_each_commit = True  # both paths commit durably: the group committer runs them off the loop

    def __init__(self, url: str, spool: str | Path, retry_interval_s: float = RETRY_INTERVAL_S) -> None:
        self.primary = PostgresAccountingStore(url)
        self.spool = SQLiteAccountingStore(spool, "FULL")
        self.spooled = 0
        self.pending = self.spool.count()  # a previous run's outage may have left some
        self._up = True
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._retry_interval_s = retry_interval_s
        try:
            self.primary.ping()
        except psycopg.OperationalError as err:
            self._went_down(err)
        self._thread = threading.Thread(target=self._hand_on_loop, name="mercato-ledger-spool", daemon=True)
        self._thread.start()

    @property
    def up(self) -> bool:
        """False while records go to the spool."""
        return self._up

    def record(self, rec: LedgerRecord) -> bool:
        """Store ``rec``; False when its id was already recorded (where it was written)."""
        return self.record_many([rec])[0]

    def record_many(self, recs: Sequence[LedgerRecord]) -> list[bool]:
        """Commit the group to PostgreSQL, or to the spool when the database is away."""
        if self._up:
            try:
                return self.primary.record_many(recs)
            except psycopg.OperationalError as err:
                self._went_down(err)
        inserted = self.spool.record_many(recs)
        with self._state:
            self.spooled += sum(inserted)
            self.pending += sum(inserted)
        return inserted

    def summary(self) -> dict[str, Any]:
        """The database's summary, with how many records wait in the spool (not yet in its totals)."""
        return {**self.primary.summary(), "spool_pending": self.pending}

    def close(self) -> None:
        """Stop retrying, try a last hand-on, and close both stores."""
        self._stop.set()
        self._thread.join()
        if self.pending:
            self._try_hand_on()
        self.primary.close()
        self.spool.close()

    def _went_down(self, err: Exception) -> None:
        with self._state:
            if not self._up:
                return
            self._up = False
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        log.warning("ledger: PostgreSQL at %s is unavailable (%s); spooling records to %s",
                    self.primary.where, reason, self.spool.path.resolve())

    def _hand_on_loop(self) -> None:
        while not self._stop.wait(self._retry_interval_s):
            if not self._up or self.pending:
                self._try_hand_on()

    def _try_hand_on(self) -> None:
        """Reach the database and move the spool into it; back up once the spool is empty."""
        written = skipped = 0
        try:
            self.primary.ping()
            while batch := self.spool.oldest(HAND_ON_BATCH):
                inserted = self.primary.record_many(batch)
                self.spool.forget([rec.request_id for rec in batch])
                written += sum(inserted)
                skipped += len(batch) - sum(inserted)  # already there: written before the connection broke
        except psycopg.OperationalError:
            return  # still away: records keep going to the spool, tried again next interval
        finally:
            with self._state:
                self.pending = self.spool.count()
        with self._state:
            was_up, self._up = self._up, True
        if not was_up:
            log.warning("ledger: PostgreSQL at %s is back; %d spooled records written to it, "
                        "%d were there already", self.primary.where, written, skipped)
