"""The ledger's schema, brought up to date by plain versioned SQL files applied in order.

``migrations/NNNN_name.sql`` (package data) hold the schema's history; the ``schema_version``
table records which were applied, so opening a ledger applies only the missing ones and opening
it again applies none. Each store runs :func:`apply_migrations` inside one transaction that holds
its database's migration lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so two
replicas starting at once neither both apply a file nor see half a schema. A ledger made before
versioning (table ``ledger``, no ``schema_version``) is adopted as version 1, which it equals.
Plain SQL rather than an ORM migration tool: the schema is one table whose SQL both databases
speak, and the files read the same in a code review as in ``psql``.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

# run(sql, params) -> result rows; has_table(name) -> bool: the two things a database must offer.
Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
HasTable = Callable[[str], bool]
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
ADOPTED_TABLE = "ledger"  # a ledger that has this table and no schema_version is at version 1
_VERSION_TABLE = ("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                  "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")


class SchemaError(RuntimeError):
    """The ledger's schema is newer than this mercato knows, or a migration file is misnamed."""


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The file's statements, split where SQLite's parser says one is complete."""
        out: list[str] = []
        pending = ""
        for line in self.sql.splitlines(keepends=True):
            pending += line
            if sqlite3.complete_statement(pending):
                out.append(pending.strip())
                pending = ""
        if pending.strip() and not _only_comments(pending):
            raise SchemaError(f"migration {self.version:04d}_{self.name}.sql ends without a ';'")
        return out


def _only_comments(sql: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in sql.splitlines())


def load_migrations() -> list[Migration]:
    """The packaged migrations in version order; their versions must run 1, 2, 3, ... without gaps."""
    folder = resources.files("mercato.gateway.live") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise SchemaError(f"migration versions must be 1..N without gaps, found {[m.version for m in found]}")
    return found


MIGRATIONS = load_migrations()
LATEST = len(MIGRATIONS)


def current_version(run: Run, has_table: HasTable) -> int:
    """The version a ledger is at: 0 when empty, 1 for an unversioned ledger from before migrations."""
    if has_table("schema_version"):
        return int(run("SELECT COALESCE(MAX(version), 0) FROM schema_version", ())[0][0])
    return 1 if has_table(ADOPTED_TABLE) else 0


def up_to_date(run: Run, has_table: HasTable) -> bool:
    """True when nothing is left to apply or record (checked before taking the migration lock)."""
    return has_table("schema_version") and current_version(run, has_table) == LATEST


def apply_migrations(run: Run, has_table: HasTable, param: str) -> list[int]:
    """Bring the schema to :data:`LATEST`; returns the versions applied now (adoption included).

    Call inside a transaction that holds the database's migration lock; ``param`` is the driver's
    placeholder (``?`` or ``%s``).
    """
    insert = f"INSERT INTO schema_version (version, name, applied_at) VALUES ({param}, {param}, {param})"
    applied: list[int] = []
    if not has_table("schema_version"):
        adopt = has_table(ADOPTED_TABLE)
        run(_VERSION_TABLE, ())
        if adopt:
            run(insert, (1, f"{MIGRATIONS[0].name} (adopted)", time.time()))
            applied.append(1)
    version = current_version(run, has_table)
    if version > LATEST:
        raise SchemaError(f"the ledger's schema is at version {version}, newer than this mercato's "
                          f"{LATEST}: upgrade mercato")
    for migration in MIGRATIONS[version:]:
        for statement in migration.statements():
            run(statement, ())
        run(insert, (migration.version, migration.name, time.time()))
        applied.append(migration.version)
    return applied


def migrate_sqlite(conn: sqlite3.Connection) -> list[int]:
    """Migrate a SQLite ledger (connection in autocommit mode); the write lock serialises openers."""
    def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return conn.execute(sql, tuple(params)).fetchall()

    def has_table(name: str) -> bool:
        return bool(run("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    if up_to_date(run, has_table):
        return []  # the common case: no write lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        applied = apply_migrations(run, has_table, "?")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return applied
