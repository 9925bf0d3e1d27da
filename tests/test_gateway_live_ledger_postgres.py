"""The PostgreSQL ledger: exactly once across writers, versioned migrations on both stores, the
outage spool (drill: the database stopped for 10 s under traffic), the live gateway and the CLI."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from gateway_live_support import config_for, engines, gateway
from mercato.cli import app
from mercato.gateway.core.types import LedgerRecord
from mercato.gateway.live.config import ConfigError, parse_config
from mercato.gateway.live.embedded_postgres import embedded_postgres
from mercato.gateway.live.ledger import GroupCommitter, SQLiteAccountingStore
from mercato.gateway.live.ledger_postgres import PostgresAccountingStore, migrate_postgres
from mercato.gateway.live.ledger_schema import LATEST, Migration, SchemaError, migrate_sqlite
from mercato.gateway.live.ledger_spool import SpoolingLedger
from mercato.gateway.live.ledger_store import open_ledger_summary
from mercato.gateway.live.startup import render_summary, startup_summary
from mercato.ports import free_port

T = TypeVar("T")

BACKEND = {"name": "a", "url": "http://127.0.0.1:1", "model": "m",
           "prices": {"input": 1.0, "cached_input": 0.5, "output": 2.0}}
# The table as mercato wrote it before migrations existed (no schema_version).
UNVERSIONED = """CREATE TABLE IF NOT EXISTS ledger (request_id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL,
    buyer TEXT NOT NULL, backend TEXT NOT NULL, model TEXT NOT NULL, policy TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost DOUBLE PRECISION NOT NULL, payment DOUBLE PRECISION NOT NULL, surplus DOUBLE PRECISION NOT NULL,
    paid INTEGER NOT NULL)"""


def rec(request_id: str, backend: str = "a", cost: float = 1.0, ts: float = 1.0) -> LedgerRecord:
    return LedgerRecord(request_id=request_id, ts=ts, buyer="alice", backend=backend, model="m",
                        policy="auction", prompt_tokens=100, cached_tokens=40, completion_tokens=10,
                        cost=cost, payment=cost + 0.25, surplus=0.25, paid=True)


def pg_ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT request_id FROM ledger ORDER BY request_id")]


def versions(run_sql) -> list[tuple[int, str]]:
    return [(v, n) for v, n in run_sql("SELECT version, name FROM schema_version ORDER BY version")]


# ---- the store ---------------------------------------------------------------------------
def test_postgres_store_writes_each_request_once_and_summarises_as_sqlite_does(pg_url, tmp_path):
    store = PostgresAccountingStore(pg_url)
    assert store.record_many([rec("r1", "a"), rec("r2", "b", cost=3.0)]) == [True, True]
    assert store.record_many([rec("r2", "b", cost=99.0), rec("r3", "a")]) == [False, True]
    assert store.record(rec("r1", cost=50.0)) is False
    assert store.record_many([]) == []
    lite = SQLiteAccountingStore(tmp_path / "l.sqlite")
    lite.record_many([rec("r1", "a"), rec("r2", "b", cost=3.0), rec("r3", "a")])
    summary, expected = store.summary(), lite.summary()
    assert summary["db"].startswith("postgresql://") and "@127.0.0.1:" in summary["db"]
    assert ":" not in summary["db"].split("@")[0].removeprefix("postgresql://")  # no password shown
    assert {k: v for k, v in summary.items() if k != "db"} == {k: v for k, v in expected.items() if k != "db"}
    assert summary["overall"]["requests"] == 3 and summary["overall"]["cost"] == pytest.approx(5.0)
    store.close()
    lite.close()


def test_a_lost_connection_raises_and_the_next_call_reconnects(pg_url, postgres_server):
    store = PostgresAccountingStore(pg_url)
    store.record(rec("r1"))
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:  # the server ends our session
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                      (pg_url.rsplit("/", 1)[1],))
    with pytest.raises(psycopg.OperationalError):
        store.record(rec("r2"))
    assert store.record(rec("r2")) is True
    assert pg_ids(pg_url) == ["r1", "r2"]
    store.close()


def test_two_writer_processes_with_overlapping_ids_store_each_request_exactly_once(pg_url):
    code = (
        "import sys\n"
        "from mercato.gateway.live.ledger_postgres import PostgresAccountingStore\n"
        "from mercato.gateway.core.types import LedgerRecord\n"
        "lo, hi, url = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]\n"
        "s = PostgresAccountingStore(url)\n"
        "won = 0\n"
        "for start in range(lo, hi, 20):\n"
        "    recs = [LedgerRecord(f'r{i:04d}', 1.0, 'b', 'a', 'm', 'auction', 1, 0, 5, 2.0, 2.5, 0.5, True)\n"
        "            for i in range(start, min(hi, start + 20))]\n"
        "    won += sum(s.record_many(recs))\n"
        "print(won)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, lo, hi, pg_url], stdout=subprocess.PIPE, text=True)
             for lo, hi in (("0", "300"), ("100", "400"))]
    won = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(won) == 400  # each id won by exactly one writer
    assert pg_ids(pg_url) == [f"r{i:04d}" for i in range(400)]


# ---- migrations --------------------------------------------------------------------------
def test_a_new_sqlite_ledger_is_at_the_latest_version_and_reopening_applies_nothing(tmp_path):
    conn = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    assert migrate_sqlite(conn) == list(range(1, LATEST + 1))
    assert migrate_sqlite(conn) == []
    assert versions(lambda q: conn.execute(q).fetchall()) == [(1, "ledger")]
    conn.close()


def test_an_unversioned_sqlite_ledger_is_adopted_as_version_1_with_its_rows(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(UNVERSIONED)
    conn.execute("INSERT INTO ledger VALUES ('old-1', 1, 'b', 'a', 'm', 'auction', 1, 0, 5, 2, 2.5, 0.5, 1)")
    conn.close()
    store = SQLiteAccountingStore(path)
    assert store.record(rec("old-1")) is False and store.record(rec("new-1")) is True
    store.close()
    conn = sqlite3.connect(path)
    assert versions(lambda q: conn.execute(q).fetchall()) == [(1, "ledger (adopted)")]
    assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 2
    conn.close()


def test_a_migration_file_splits_into_its_statements_and_must_end_each_with_a_semicolon():
    two = Migration(2, "more", "-- why\nCREATE TABLE a (x TEXT);\nCREATE INDEX a_x ON a (x);\n-- end\n")
    assert two.statements() == ["-- why\nCREATE TABLE a (x TEXT);", "CREATE INDEX a_x ON a (x);"]
    with pytest.raises(SchemaError, match=r"0003_open\.sql ends without a ';'"):
        Migration(3, "open", "CREATE TABLE b (y TEXT)\n").statements()


def test_a_ledger_newer_than_this_mercato_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "l.sqlite", isolation_level=None)
    migrate_sqlite(conn)
    conn.execute("INSERT INTO schema_version VALUES (?, 'future', 0)", (LATEST + 1,))
    conn.execute("DELETE FROM schema_version WHERE version = 1")  # not up to date: the check runs
    with pytest.raises(SchemaError, match="newer than this mercato"):
        migrate_sqlite(conn)
    conn.close()


def at_once(fn: Callable[[Callable[[], None]], T], count: int = 6) -> list[T]:
    """``fn`` in ``count`` threads; each calls the function it is given when ready, and all go on
    together from there. Their results."""
    barrier = threading.Barrier(count)
    results: list[T] = []
    lock = threading.Lock()

    def run() -> None:
        result = fn(barrier.wait)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_sqlite_stores_opened_at_once_apply_each_migration_once(tmp_path):
    path = tmp_path / "l.sqlite"

    def opener(ready: Callable[[], None]) -> Exception | None:
        ready()
        try:
            SQLiteAccountingStore(path).close()
        except Exception as err:  # pragma: no cover - the assertion below reports it
            return err
        return None

    errors = [e for e in at_once(opener) if e is not None]
    assert errors == []
    conn = sqlite3.connect(path)
    assert versions(lambda q: conn.execute(q).fetchall()) == [(1, "ledger")]
    conn.close()


def test_postgres_migrations_are_idempotent_and_safe_when_replicas_start_at_once(pg_url):
    def replica(ready: Callable[[], None]) -> list[int]:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            ready()
            return migrate_postgres(conn)

    applied = at_once(replica)
    assert sorted(applied) == [[]] * 5 + [list(range(1, LATEST + 1))]  # one replica applied them
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate_postgres(conn) == []
        assert versions(lambda q: conn.execute(q).fetchall()) == [(1, "ledger")]


def test_an_unversioned_postgres_ledger_is_adopted(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(UNVERSIONED)
        assert migrate_postgres(conn) == [1]
        assert versions(lambda q: conn.execute(q).fetchall()) == [(1, "ledger (adopted)")]


# ---- config and the CLI ------------------------------------------------------------------
def test_accounting_db_is_a_file_or_a_postgresql_url():
    url = "postgresql://mercato:secret@db.internal:5432/ledger"
    cfg = parse_config({"backends": [BACKEND], "accounting": {"db": url}})
    assert cfg.accounting.db == url
    assert str(parse_config({"backends": [BACKEND], "accounting": {"db": "x/l.sqlite"}}).accounting.db) == (
        "x/l.sqlite")
    with pytest.raises(ConfigError, match=r"accounting\.db: .*postgresql:// URL"):
        parse_config({"backends": [BACKEND], "accounting": {"db": "mysql://h/db"}})


def test_the_startup_summary_names_the_database_without_its_password(tmp_path):
    url = "postgresql://mercato:s3cret-pw@db.internal:5433/ledger"
    spool = str(tmp_path / "s.sqlite")
    cfg = parse_config({"backends": [BACKEND], "accounting": {"db": url, "spool": spool}})
    summary = startup_summary(cfg, "auction", "127.0.0.1", 8000)
    assert summary["ledger"] == {"db": "postgresql://mercato@db.internal:5433/ledger",
                                 "spool": str(tmp_path / "s.sqlite")}
    text = render_summary(summary, "text")
    assert f"  ledger: postgresql://mercato@db.internal:5433/ledger (spool {tmp_path / 's.sqlite'})" in text
    assert "s3cret" not in text and "s3cret" not in render_summary(summary, "json")


def test_ledger_summary_command_on_postgresql(pg_url):
    store = PostgresAccountingStore(pg_url)
    store.record_many([rec("r1", "a"), rec("r2", "b", cost=3.0)])
    store.close()
    runner = CliRunner()
    result = runner.invoke(app, ["ledger", "summary", "--db", pg_url, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["overall"]["requests"] == 2 and data["backends"]["b"]["cost"] == pytest.approx(3.0)
    table = runner.invoke(app, ["ledger", "summary", "--db", pg_url])
    assert table.exit_code == 0 and "weak budget balance (payments >= costs): yes" in table.output
    down = runner.invoke(app, ["ledger", "summary", "--db", f"postgresql://u:p@127.0.0.1:{free_port()}/x"])
    assert down.exit_code != 0 and "--db" in down.output and "Connection refused" in down.output


# ---- the outage spool --------------------------------------------------------------------
def test_spool_drill_database_stopped_for_10_s_under_traffic_loses_and_duplicates_nothing(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="mercato.gateway.live.ledger")
    with embedded_postgres() as server:
        ledger = SpoolingLedger(server.url, tmp_path / "spool.sqlite", retry_interval_s=0.2)
        acknowledged: list[str] = []
        outage_s = 10.0

        async def traffic() -> None:
            committer = GroupCommitter(ledger)
            i = 0

            async def one(request_id: str) -> None:
                if await committer.record(rec(request_id, ts=time.time())):
                    acknowledged.append(request_id)

            async def until(t_end: float) -> None:
                nonlocal i
                while time.monotonic() < t_end:
                    await asyncio.gather(*(one(f"r{i + k:05d}") for k in range(4)))
                    i += 4
                    await asyncio.sleep(0.02)

            await until(time.monotonic() + 0.5)
            await asyncio.to_thread(server.stop)
            await until(time.monotonic() + outage_s)
            spooled_during = ledger.spooled
            await one("r00000")  # a request already written before the outage, sent again
            await asyncio.to_thread(server.start)
            await until(time.monotonic() + 1.0)
            await committer.aclose()
            assert spooled_during > 100

        asyncio.run(traffic())
        deadline = time.monotonic() + 10
        while (ledger.pending or not ledger.up) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ledger.up and ledger.pending == 0
        ids = pg_ids(server.url)
        assert sorted(set(acknowledged)) == ids  # every acknowledged record, each once
        assert len(ids) == len(set(ids))
        assert ledger.summary()["overall"]["requests"] == len(ids)
        ledger.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is unavailable" in m for m in messages) == 1
    assert sum("is back" in m for m in messages) == 1


def test_spooled_records_survive_kill_9_and_reach_the_database_when_it_returns(tmp_path, pg_url):
    spool = tmp_path / "spool.sqlite"
    dead = f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres"  # nothing listens there
    code = (
        "import os, signal, sys\n"
        "from mercato.gateway.live.ledger_spool import SpoolingLedger\n"
        "from mercato.gateway.core.types import LedgerRecord\n"
        "s = SpoolingLedger(sys.argv[1], sys.argv[2])\n"
        "for i in range(50):\n"
        "    r = LedgerRecord(f'k{i:02d}', 1.0, 'b', 'a', 'm', 'auction', 10, 0, 5, 2.0, 2.5, 0.5, True)\n"
        "    if s.record(r):\n"
        "        print(f'k{i:02d}', flush=True)\n"  # the response a client would now see
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, dead, str(spool)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL
    acknowledged = proc.stdout.split()
    assert len(acknowledged) == 50
    ledger = SpoolingLedger(pg_url, spool, retry_interval_s=0.1)
    assert ledger.pending == 50
    deadline = time.monotonic() + 10
    while ledger.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pg_ids(pg_url) == acknowledged
    ledger.close()


# ---- the live gateway --------------------------------------------------------------------
def test_live_gateway_writes_its_ledger_to_postgresql(pg_url, tmp_path):
    cluster = {"small-1": "qwen3-4b", "medium": "qwen3-8b"}
    with engines(speed=50.0, cluster=cluster) as urls:
        config = config_for(urls, tmp_path / "unused.sqlite", cluster=cluster,
                            accounting={"db": pg_url, "spool": str(tmp_path / "spool.sqlite")})
        with gateway(config) as (url, gw), httpx.Client(base_url=url, timeout=30) as client:
            assert isinstance(gw.store, SpoolingLedger)
            ids = []
            for i in range(6):
                r = client.post("/v1/chat/completions", json={
                    "model": "mercato", "max_tokens": 8, "stream": i % 2 == 1,
                    "messages": [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}]})
                assert r.status_code == 200
                ids.append(r.headers["x-mercato-request-id"])
            metrics = client.get("/metrics").text
            assert "mercato_ledger_database_up 1.0" in metrics
            assert "mercato_ledger_spooled_records 0.0" in metrics
    assert pg_ids(pg_url) == sorted(ids)
    summary = open_ledger_summary(pg_url)
    assert summary["overall"]["requests"] == 6 and summary["weak_budget_balance"]
    assert not (tmp_path / "unused.sqlite").exists()


# ---- the embedded server -----------------------------------------------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="only root's server runs as another user")
def test_as_root_a_data_dir_nobody_can_reach_is_refused_by_name(tmp_path):
    with pytest.raises(RuntimeError, match=r"runs as 'nobody', which cannot enter .*chmod o\+x"):
        embedded_postgres(tmp_path / "pg").__enter__()


def test_embedded_postgres_keeps_its_ledger_across_restarts_and_never_runs_as_root(reachable_dir):
    data = reachable_dir / "pg"
    with embedded_postgres(data) as server:
        first_url = server.url
        PostgresAccountingStore(server.url).record(rec("kept"))
        if os.geteuid() == 0:
            import psutil

            assert psutil.Process(server.process.pid).username() == "nobody"
    assert server.process is None
    with embedded_postgres(data) as again:
        assert again.url.split("@")[0] == first_url.split("@")[0]  # the same password
        assert pg_ids(again.url) == ["kept"]


def test_a_server_orphaned_by_a_killed_gateway_is_stopped_and_its_cluster_reused(reachable_dir):
    data = reachable_dir / "pg"
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from mercato.gateway.live.embedded_postgres import embedded_postgres\n"
        "from mercato.gateway.live.ledger_postgres import PostgresAccountingStore\n"
        "from mercato.gateway.core.types import LedgerRecord\n"
        "with embedded_postgres(Path(sys.argv[1])) as server:\n"
        "    PostgresAccountingStore(server.url).record(\n"
        "        LedgerRecord('before-kill', 1.0, 'b', 'a', 'm', 'auction', 10, 0, 5, 2.0, 2.5, 0.5, True))\n"
        "    print(server.process.pid, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"  # no stop(): the server outlives its owner
    )
    proc = subprocess.run([sys.executable, "-c", code, str(data)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    orphan = int(proc.stdout)
    with embedded_postgres(data) as server:
        assert server.process.pid != orphan
        assert pg_ids(server.url) == ["before-kill"]
    with pytest.raises(ProcessLookupError):
        os.kill(orphan, 0)
