"""Which ledger store ``accounting.db`` selects: a SQLite file, or PostgreSQL behind an outage spool.

One place decides, so that the gateway, ``mercato ledger summary`` and the tests agree on what a
``db`` string means (:func:`~mercato.gateway.live.ledger.is_postgres_url`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mercato.gateway.core.types import AccountingStore
from mercato.gateway.live.config import AccountingConfig
from mercato.gateway.live.embedded_postgres import embedded_postgres, running_url
from mercato.gateway.live.ledger import SQLiteAccountingStore, is_postgres_url
from mercato.gateway.live.ledger_postgres import PostgresAccountingStore
from mercato.gateway.live.ledger_spool import SpoolingLedger


def open_ledger_store(accounting: AccountingConfig) -> AccountingStore:
    """The store the gateway writes: PostgreSQL (spooling while it is away) or SQLite."""
    if isinstance(accounting.db, str):
        return SpoolingLedger(accounting.db, accounting.spool)
    return SQLiteAccountingStore(accounting.db, accounting.synchronous)


def open_ledger_summary(db: str | Path) -> dict[str, Any]:
    """Summary of an existing ledger: a SQLite file (FileNotFoundError rather than creating one), a
    PostgreSQL URL (psycopg.OperationalError when it cannot be reached), or the folder of the
    embedded PostgreSQL that ``mercato serve --workers N`` keeps its ledger in (read through the
    gateway's server while it runs, else through one started for the read)."""
    store: PostgresAccountingStore | SQLiteAccountingStore
    if is_postgres_url(str(db)):
        store = PostgresAccountingStore(str(db))
    else:
        path = Path(db)
        if (path / "pgdata").is_dir():
            if (url := running_url(path)) is not None:
                return open_ledger_summary(url)
            with embedded_postgres(path) as server:
                return open_ledger_summary(server.url)
        if not path.is_file():
            raise FileNotFoundError(f"no ledger at {path}")
        store = SQLiteAccountingStore(path)
    try:
        return store.summary()
    finally:
        store.close()
