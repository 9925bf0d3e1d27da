"""SQLite ledger: exactly-once records, durability across a hard exit, summary and balance."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
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
from mercato.gateway.live.ledger import (
    BALANCE_TOLERANCE,
    GroupCommitter,
    SQLiteAccountingStore,
    remove_ledger,
)
from mercato.gateway.live.ledger_store import open_ledger_summary


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


def wal_of(path):
    return path.with_name(path.name + "-wal")


def rows_in_database_file(path, tmp_path) -> int:
    """Rows a reader finds in the database file alone, i.e. what checkpoints have copied out of the WAL."""
    copy = tmp_path / "main-file-only.sqlite"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        return conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
    except sqlite3.OperationalError:  # not even the schema has been copied yet
        return 0
    finally:
        conn.close()
        copy.unlink()


def test_a_bad_synchronous_level_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"^synchronous must be one of NORMAL, FULL, got 'OFF'$"):
        SQLiteAccountingStore(tmp_path / "ledger.sqlite", "OFF")
    assert SQLiteAccountingStore(tmp_path / "n.sqlite").fsyncs_each_commit is False
    assert SQLiteAccountingStore(tmp_path / "f.sqlite", "FULL").fsyncs_each_commit is True


def test_the_ledger_creates_its_folders(tmp_path):
    path = tmp_path / "var" / "lib" / "mercato" / "ledger.sqlite"
    store = SQLiteAccountingStore(path)
    assert store.record(rec("r1")) is True
    assert store.summary()["db"] == str(path)
    store.close()
    assert path.is_file()


def test_a_failed_insert_rolls_its_whole_transaction_back_and_the_store_carries_on(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    broken = replace(rec("r2"), buyer=None)  # NOT NULL column: the second insert fails
    with pytest.raises(sqlite3.IntegrityError):
        store.record_many([rec("r1"), broken, rec("r3")])
    assert store.summary()["overall"]["requests"] == 0  # r1 was rolled back with the rest
    assert store.record_many([rec("r1"), rec("r3")]) == [True, True]  # no transaction left open
    assert store.summary()["overall"]["requests"] == 2
    store.close()


def test_an_empty_ledger_summarises_to_zeros_and_balances(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    s = store.summary()
    assert s["overall"]["requests"] == 0 and s["overall"]["kv_hit_rate"] == 0.0
    assert s["overall"]["payment"] == 0 and s["backends"] == {}
    assert s["weak_budget_balance"] is True and s["hub_balance"] == 0
    store.close()


def test_balance_allows_float_dust_and_no_more(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    store.record(replace(rec("r1"), cost=1.0, payment=1.0 - BALANCE_TOLERANCE, surplus=0.0))
    assert store.summary()["weak_budget_balance"] is True
    store.record(replace(rec("r2"), cost=1.0, payment=1.0 - 10 * BALANCE_TOLERANCE, surplus=0.0))
    assert store.summary()["weak_budget_balance"] is False
    store.close()


def test_without_checkpoints_a_fast_ledger_leaves_the_wal_to_grow(tmp_path):
    # NORMAL commits must never checkpoint (an fsync) on the event loop: SQLite's automatic
    # checkpoint at 1000 pages is off, and only checkpoint() copies the WAL.
    path = tmp_path / "ledger.sqlite"
    store = SQLiteAccountingStore(path)
    for i in range(1200):
        store.record(rec(f"r{i}"))
    assert wal_of(path).stat().st_size > 1100 * 4096
    assert rows_in_database_file(path, tmp_path) == 0
    store.close()


def test_a_checkpoint_copies_the_wal_into_the_database_and_stops_its_growth(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = SQLiteAccountingStore(path)
    for i in range(600):
        store.record(rec(f"r{i}"))
    grown = wal_of(path).stat().st_size
    store.checkpoint()
    assert rows_in_database_file(path, tmp_path) == 600
    for i in range(600, 1200):
        store.record(rec(f"r{i}"))
    assert wal_of(path).stat().st_size < 1.25 * grown  # reused from its start (else about 2x)
    store.checkpoint()
    store.checkpoint()  # again, on the same worker connection
    assert rows_in_database_file(path, tmp_path) == 1200
    store.close()


def test_a_checkpoint_from_another_thread_while_writing(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = SQLiteAccountingStore(path)
    store.record(rec("r0"))
    worker = threading.Thread(target=store.checkpoint)
    worker.start()
    worker.join()
    store.record(rec("r1"))
    done = threading.Thread(target=store.checkpoint)
    done.start()
    done.join()
    assert rows_in_database_file(path, tmp_path) == 2
    store.close()


def test_closing_twice_is_harmless(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    store.record(rec("r1"))
    store.checkpoint()
    store.close()
    store.close()


def test_remove_ledger_deletes_the_database_with_its_wal_and_shared_memory(tmp_path):
    path = tmp_path / "ledger.sqlite"
    store = SQLiteAccountingStore(path)
    store.record(rec("r1"))
    parts = [path, wal_of(path), path.with_name(path.name + "-shm")]
    assert all(p.exists() for p in parts)
    other = tmp_path / "ledger.sqlite.bak"
    other.write_text("keep me")
    remove_ledger(path)
    assert not any(p.exists() for p in parts) and other.exists()
    store.close()
    remove_ledger(path)  # nothing left to remove: not an error
    remove_ledger(tmp_path / "never-created.sqlite")


class RowStore:
    """Only the AccountingStore protocol, as a PostgreSQL store starts out: no batch insert, no
    ``fsyncs_each_commit`` and no ``checkpoint``."""

    def __init__(self) -> None:
        self.rows: dict[str, LedgerRecord] = {}
        self.threads: list[int] = []

    def record(self, rec: LedgerRecord) -> bool:
        self.threads.append(threading.get_ident())
        if rec.buyer == "mallory":
            raise RuntimeError("insert refused")
        if rec.request_id in self.rows:
            return False
        self.rows[rec.request_id] = rec
        return True

    def summary(self) -> dict:
        return {"overall": {"requests": len(self.rows)}}

    def close(self) -> None:
        pass


def test_group_committer_writes_a_store_without_batch_insert_row_by_row_off_the_loop():
    store = RowStore()

    async def main():
        committer = GroupCommitter(store)
        loop_thread = threading.get_ident()
        results = await asyncio.wait_for(
            asyncio.gather(*(committer.record(rec(f"r{i % 5}")) for i in range(10))), 10)
        failed = await asyncio.wait_for(
            asyncio.gather(committer.record(replace(rec("x"), buyer="mallory")), return_exceptions=True), 10)
        await committer.aclose()
        return loop_thread, results, failed

    loop_thread, results, failed = asyncio.run(main())
    assert sum(results) == 5 and sorted(store.rows) == [f"r{i}" for i in range(5)]
    assert isinstance(failed[0], RuntimeError)
    assert store.threads and loop_thread not in store.threads  # a store of unknown speed: a worker thread


def test_durable_commits_run_off_the_loop(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite", "FULL")
    writers: list[int] = []
    write_many = store.record_many

    def recording(recs):
        writers.append(threading.get_ident())
        return write_many(recs)

    store.record_many = recording

    async def main():
        committer = GroupCommitter(store)
        pending = (committer.record(rec(f"r{i}")) for i in range(8))
        results = await asyncio.wait_for(asyncio.gather(*pending), 10)
        return threading.get_ident(), results

    loop_thread, results = asyncio.run(main())
    assert all(results) and writers and loop_thread not in writers
    store.close()


def test_a_failed_durable_commit_strands_nobody_queued_behind_it(tmp_path):
    # A group commit fails while more records arrive: its own waiters get the error, and the
    # records queued behind it are committed by the next group.
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite", "FULL")
    write_many = store.record_many
    entered, release = threading.Event(), threading.Event()
    calls: list[list[str]] = []

    def failing_first(recs):
        calls.append([r.request_id for r in recs])
        if len(calls) == 1:
            entered.set()
            release.wait(10)
            raise sqlite3.OperationalError("disk I/O error")
        return write_many(recs)

    store.record_many = failing_first

    async def main():
        committer = GroupCommitter(store)
        first = asyncio.ensure_future(committer.record(rec("f0")))
        await asyncio.to_thread(entered.wait, 10)
        behind = [asyncio.ensure_future(committer.record(rec(f"q{i}"))) for i in range(4)]
        await asyncio.sleep(0)
        release.set()
        outcome = await asyncio.wait_for(asyncio.gather(first, *behind, return_exceptions=True), 10)
        await asyncio.wait_for(committer.aclose(), 10)
        return outcome

    outcome = asyncio.run(main())
    assert isinstance(outcome[0], sqlite3.OperationalError)
    assert outcome[1:] == [True] * 4
    assert calls == [["f0"], ["q0", "q1", "q2", "q3"]]
    assert store.summary()["overall"]["requests"] == 4
    store.close()


class Checkpoints:
    """Stands in for ``store.checkpoint``: counts calls and overlaps; can block or fail."""

    def __init__(self, store, block: threading.Event | None = None, fail: bool = False) -> None:
        self.real, self.block, self.fail = store.checkpoint, block, fail
        self.calls = self.finished = self.running = self.most_at_once = 0
        self.started = threading.Event()
        self.lock = threading.Lock()
        store.checkpoint = self

    def __call__(self) -> None:
        with self.lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.started.set()
        try:
            if self.block is not None:
                self.block.wait(10)
            if self.fail:
                raise sqlite3.OperationalError("checkpoint failed: disk full")
            self.real()
            self.finished += 1
        finally:
            with self.lock:
                self.running -= 1


async def settle():
    for _ in range(5):
        await asyncio.sleep(0.01)


def test_checkpoints_wait_for_their_interval(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    checkpoints = Checkpoints(store)

    async def main():
        committer = GroupCommitter(store, checkpoint_interval_s=3600.0)
        for i in range(20):
            await asyncio.wait_for(committer.record(rec(f"r{i}")), 10)
            await settle()
        await committer.aclose()

    asyncio.run(main())
    assert checkpoints.calls == 0  # due only an hour after the committer started
    store.close()


async def commit_until(committer, done, prefix: str, timeout_s: float = 10.0) -> list[bool]:
    """Commit one record per loop turn until ``done()`` (or the timeout); returns their results.

    Turns are spaced a little so that a finished checkpoint's task is seen as finished; how many
    turns that takes depends on the machine's load, not on the committer.
    """
    loop = asyncio.get_running_loop()
    deadline, results = loop.time() + timeout_s, []
    while not done() and loop.time() < deadline:
        results.append(await asyncio.wait_for(committer.record(rec(f"{prefix}{len(results)}")), 10))
        await asyncio.sleep(0.01)
    return results


def test_checkpoints_recur_but_never_overlap(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    block = threading.Event()
    checkpoints = Checkpoints(store, block)

    async def main():
        committer = GroupCommitter(store, checkpoint_interval_s=0.0)
        for i in range(10):  # every turn is due, but the first checkpoint is still running
            await asyncio.wait_for(committer.record(rec(f"a{i}")), 10)
            await settle()
        busy_calls = checkpoints.calls
        block.set()  # it finishes: later turns checkpoint again, one at a time
        await commit_until(committer, lambda: checkpoints.calls >= 4, "b")
        await committer.aclose()
        return busy_calls

    busy_calls = asyncio.run(main())
    assert busy_calls == 1
    assert checkpoints.calls >= 4 and checkpoints.most_at_once == 1
    store.close()


def test_a_failed_checkpoint_is_logged_and_commits_go_on(tmp_path, caplog):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    checkpoints = Checkpoints(store, fail=True)

    async def main():
        committer = GroupCommitter(store, checkpoint_interval_s=0.0)
        results = await commit_until(committer, lambda: checkpoints.calls >= 3, "r")
        await committer.aclose()
        return results

    with caplog.at_level(logging.ERROR, logger="mercato.gateway.live.ledger"):
        results = asyncio.run(main())
    assert all(results) and checkpoints.calls >= 3  # retried at the next interval
    failures = [r for r in caplog.records if r.name == "mercato.gateway.live.ledger"]
    assert [r.getMessage() for r in failures] == ["ledger checkpoint failed"] * checkpoints.calls
    assert all(r.exc_info and "disk full" in str(r.exc_info[1]) for r in failures)
    store.close()


def test_aclose_waits_for_the_running_checkpoint(tmp_path):
    store = SQLiteAccountingStore(tmp_path / "ledger.sqlite")
    block = threading.Event()
    checkpoints = Checkpoints(store, block)

    async def main():
        committer = GroupCommitter(store, checkpoint_interval_s=0.0)
        await asyncio.wait_for(committer.record(rec("r1")), 10)
        await asyncio.to_thread(checkpoints.started.wait, 10)
        asyncio.get_running_loop().call_later(0.05, block.set)
        await asyncio.wait_for(committer.aclose(), 10)
        return checkpoints.finished

    assert asyncio.run(main()) == 1  # aclose returned only after the checkpoint did
    store.close()
