"""The ledger in PostgreSQL, which every gateway replica writes: each request exactly once.

Same table, same ``INSERT ... ON CONFLICT (request_id) DO NOTHING`` as the SQLite store, so a
request that two replicas (or a replica and its spool) both try to record lands once. The store
uses psycopg's synchronous connection from the group committer's worker thread, as the
``FULL`` SQLite store is used: a commit waits on a network round trip and the server's WAL
fsync (milliseconds), so it must stay off the event loop either way, and the committer already
batches every record that arrives during one commit into the next one — one transaction and one
pipelined ``executemany`` per group. An async driver would add a second path for the same
batching and make the store unusable from ``mercato ledger summary`` and tests without a loop.

A lost connection is dropped and reopened on the next call; the error (a
:class:`psycopg.OperationalError`) goes to the caller, which spools
(:mod:`mercato.gateway.live.ledger_spool`). Opening connects lazily, so a gateway can start
while the database is down.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import conninfo

from mercato.gateway.core.types import LedgerRecord
from mercato.gateway.live.ledger import SUMMARY_SQL, insert_sql, row_of, summarize
from mercato.gateway.live.ledger_schema import apply_migrations, up_to_date

CONNECT_TIMEOUT_S = 3  # how long a commit may wait for a server that does not answer at all
# pg_advisory_lock key of ledger migrations: any fixed bigint, the same in every replica
MIGRATION_LOCK = 0x6D65726361746F  # "mercato"
_INSERT_RETURNING = insert_sql("%s") + " RETURNING 1"


def describe(url: str) -> str:
    """Where a PostgreSQL URL points, without its password: ``postgresql://user@host:port/db``."""
    parts = conninfo.conninfo_to_dict(url)
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host', '')}{port}/{parts.get('dbname', '')}"


class PostgresAccountingStore:
    """:class:`~mercato.gateway.core.types.AccountingStore` in a PostgreSQL database (psycopg 3).

    Thread-safe: one connection behind a lock. The schema is migrated on the first connection.
    """

    fsyncs_each_commit = True  # a commit is a round trip: the group committer runs it off the loop

    def __init__(self, url: str) -> None:
        self.url = url
        self.where = describe(url)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def record(self, rec: LedgerRecord) -> bool:
        """Insert ``rec`` in its own transaction; False when its id is already there."""
        return self.record_many([rec])[0]

    def record_many(self, recs: Sequence[LedgerRecord]) -> list[bool]:
        """Insert several records in one transaction; per record, False if it was already there."""
        if not recs:
            return []
        with self._lock, self._session() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(_INSERT_RETURNING, [row_of(rec) for rec in recs], returning=True)
            return [result.fetchone() is not None for result in cur.results()]

    def summary(self) -> dict[str, Any]:
        """Totals overall and per backend, and the weak budget balance check sum(payment) >= sum(cost)."""
        with self._lock, self._session() as conn, conn.transaction():
            overall = conn.execute(SUMMARY_SQL[0]).fetchone()
            per_backend = conn.execute(SUMMARY_SQL[1]).fetchall()
        assert overall is not None  # an aggregate always returns one row
        return summarize(self.where, overall, per_backend)

    def ping(self) -> None:
        """Raise :class:`psycopg.OperationalError` unless the database answers (and is migrated)."""
        with self._lock, self._session() as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextlib.contextmanager
    def _session(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection for one call (opened and migrated if needed); a connection-level
        failure drops it, so that the next call opens a fresh one."""
        if self._conn is None or self._conn.closed:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            try:
                migrate_postgres(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        try:
            yield self._conn
        except psycopg.OperationalError:
            self._conn.close()
            self._conn = None
            raise


def migrate_postgres(conn: psycopg.Connection[Any]) -> list[int]:
    """Migrate a PostgreSQL ledger (autocommit connection) under a session advisory lock, so that
    replicas starting at once apply each file once.

    The lock is taken before the migrating transaction begins, not inside it: a backend looks
    tables up through caches that are refreshed when a transaction starts, and a lookup made
    before waiting would still miss tables another replica committed meanwhile.
    """
    def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cur = conn.execute(sql, tuple(params) or None)
        return cur.fetchall() if cur.description is not None else []

    def has_table(name: str) -> bool:
        return run("SELECT to_regclass(%s)", (name,))[0][0] is not None

    if up_to_date(run, has_table):
        return []
    run("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        with conn.transaction():
            return apply_migrations(run, has_table, "%s")
    finally:
        run("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
