"""SQLite ledger: exactly-once records, durability across a hard exit, summary and balance."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from mercato.cli import app
from mercato.gateway.core.types import LedgerRecord
from mercato.gateway.live.ledger import GroupCommitter, SQLiteAccountingStore, open_ledger_summary


def rec(request_id: str, backend: str = "a", cost: float = 1.0, surplus: float = 0.25,
        paid: bool = True) -> LedgerRecord:
    return LedgerRecord(request_id=request_id, ts=1.0, buyer="alice", backend=backend, model="m",
                        policy="auction", prompt_tokens=100, cached_tokens=40, completion_tokens=10,
                        cost=cost, payment=cost + surplus, surplus=surplus, paid=paid)


def test_second_write_of_a_request_is_refused_and_changes_nothing(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    assert store.record(rec("r1", cost=1.0)) is True
    assert store.record(rec("r1", cost=99.0)) is False
    summary = store.summary()
    assert summary["overall"]["requests"] == 1
    assert summary["overall"]["cost"] == pytest.approx(1.0)
    store.close()


def test_summary_totals_per_backend_and_balance(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    store.record(rec("r1", "a", cost=1.0, surplus=0.5))
    store.record(rec("r2", "a", cost=2.0, surplus=0.0, paid=False))
    store.record(rec("r3", "b", cost=4.0, surplus=1.0))
    s = store.summary()
    assert s["overall"]["requests"] == 3 and s["overall"]["paid_requests"] == 2
    assert s["overall"]["payment"] == pytest.approx(8.5)
    assert s["backends"]["a"]["cost"] == pytest.approx(3.0)
    assert s["backends"]["b"]["surplus"] == pytest.approx(1.0)
    assert s["overall"]["kv_hit_rate"] == pytest.approx(0.4)
    assert s["weak_budget_balance"] is True
    assert s["hub_balance"] == pytest.approx(1.5)
    store.close()


def test_balance_check_can_fail(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    store.record(replace(rec("r1"), payment=0.5, cost=1.0))
    assert store.summary()["weak_budget_balance"] is False
    store.close()


def test_committed_record_survives_a_hard_exit(tmp_path):
    path = tmp_path / "ledger.sqlite"
    code = (
        "import os\n"
        "from mercato.gateway.live.ledger import SQLiteAccountingStore\n"
        "from mercato.gateway.core.types import LedgerRecord\n"
        f"s = SQLiteAccountingStore({str(path)!r})\n"
        "s.record(LedgerRecord('crash-1', 1.0, 'b', 'a', 'm', 'auction', 10, 0, 5, 2.0, 2.5, 0.5, True))\n"
        "os._exit(0)\n"  # no close(), no checkpoint: only the committed WAL holds the row
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT request_id, payment FROM ledger").fetchall() == [("crash-1", 2.5)]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_concurrent_duplicate_writes_store_each_request_once(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    wins: list[bool] = []
    lock = threading.Lock()

    def writer():
        for i in range(50):
            ok = store.record(rec(f"r{i}"))
            with lock:
                wins.append(ok)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 50
    assert store.summary()["overall"]["requests"] == 50
    store.close()


@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 10), st.floats(0, 5)), max_size=40))
def test_payment_is_cost_plus_surplus_so_the_ledger_balances(rows):
    store = SQLiteAccountingStore(":memory:")
    firsts = {}
    for rid, cost, surplus in rows:
        firsts.setdefault(rid, (cost, surplus))
        store.record(rec(f"r{rid}", cost=cost, surplus=surplus))
    s = store.summary()
    assert s["overall"]["requests"] == len(firsts)
    assert s["overall"]["cost"] == pytest.approx(sum(c for c, _ in firsts.values()))
    assert s["weak_budget_balance"] is True
    store.close()


def test_ledger_summary_command(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = SQLiteAccountingStore(path)
    store.record(rec("r1", "a"))
    store.record(rec("r2", "b", cost=3.0))
    store.close()
    runner = CliRunner()
    result = runner.invoke(app, ["ledger", "summary", "--db", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["overall"]["requests"] == 2 and data["weak_budget_balance"] is True
    table = runner.invoke(app, ["ledger", "summary", "--db", str(path)])
    assert table.exit_code == 0 and "weak budget balance" in table.output
    missing = runner.invoke(app, ["ledger", "summary", "--db", str(tmp_path / "none.sqlite")])
    assert missing.exit_code != 0 and "no ledger" in missing.output
    assert not (tmp_path / "none.sqlite").exists()
    with pytest.raises(FileNotFoundError):
        open_ledger_summary(tmp_path / "none.sqlite")


def test_group_committer_commits_concurrent_durable_records_together_and_exactly_once(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite", "FULL")  # one fsync per commit: grouped
    groups: list[int] = []
    write_many = store.record_many

    def counting(recs):
        groups.append(len(recs))
        return write_many(recs)

    store.record_many = counting

    async def main():
        committer = GroupCommitter(store)
        first = await committer.record(rec("solo"))
        results = await asyncio.gather(*(committer.record(rec(f"r{i % 30}")) for i in range(60)))
        return first, results

    first, results = asyncio.run(main())
    assert first is True and sum(results) == 30  # the 30 repeats are refused
    assert sum(groups) == 61 and len(groups) < 61  # concurrent records shared transactions
    assert store.summary()["overall"]["requests"] == 31
    store.close()


def test_group_committer_reports_a_failed_commit_to_every_waiter(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    store.close()  # writing to a closed connection fails

    async def main():
        committer = GroupCommitter(store)
        return await asyncio.gather(*(committer.record(rec(f"r{i}")) for i in range(3)),
                                    return_exceptions=True)

    assert all(isinstance(r, sqlite3.ProgrammingError) for r in asyncio.run(main()))


def test_fast_commits_run_inline_and_the_wal_is_checkpointed_off_the_loop(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = SQLiteAccountingStore(path)  # NORMAL: commits need no fsync
    assert not store.fsyncs_each_commit
    loop_thread = threading.get_ident()
    writers: list[int] = []
    checkpointers: list[int] = []
    write_many, checkpoint = store.record_many, store.checkpoint

    def recording_write(recs):
        writers.append(threading.get_ident())
        return write_many(recs)

    def recording_checkpoint():
        checkpointers.append(threading.get_ident())
        checkpoint()

    store.record_many, store.checkpoint = recording_write, recording_checkpoint

    async def main():
        committer = GroupCommitter(store, checkpoint_interval_s=0.0)
        results = [await committer.record(rec(f"r{i % 40}")) for i in range(80)]
        await committer.aclose()
        return results

    results = asyncio.run(main())
    assert sum(results) == 40 and writers == [loop_thread] * 80  # exactly once, no thread hop
    assert checkpointers and loop_thread not in checkpointers
    wal = path.with_name(path.name + "-wal")
    assert wal.exists()
    reader = sqlite3.connect(path)  # a separate reader sees every committed row
    assert reader.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 40
    reader.close()
    store.close()
    assert not wal.exists() or wal.stat().st_size == 0  # the last close folds the WAL in


def test_fast_store_commits_one_loop_turn_in_one_transaction_and_recovers_from_a_failed_one(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")  # NORMAL: grouped on the loop
    groups: list[int] = []
    write_many = store.record_many
    fail_next = [True]

    def flaky(recs):
        groups.append(len(recs))
        if fail_next[0]:
            fail_next[0] = False
            raise sqlite3.OperationalError("disk I/O error")
        return write_many(recs)

    store.record_many = flaky

    async def main():
        committer = GroupCommitter(store)
        failed = await asyncio.gather(*(committer.record(rec(f"f{i}")) for i in range(5)),
                                      return_exceptions=True)
        later = await asyncio.gather(*(committer.record(rec(f"r{i % 20}")) for i in range(40)))
        return failed, later

    failed, later = asyncio.run(main())
    assert all(isinstance(r, sqlite3.OperationalError) for r in failed)  # every waiter of the group learns
    assert sum(later) == 20 and groups == [5, 40]  # one transaction per turn; the next group commits
    assert store.summary()["overall"]["requests"] == 20
    store.close()
