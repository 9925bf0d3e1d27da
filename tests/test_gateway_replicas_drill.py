"""Drill: `mercato serve --workers 2` under load, one worker killed with -9.

Every response a client saw succeed has exactly one ledger record (in the embedded PostgreSQL the
launcher starts when the config names no database), the surviving worker keeps serving, and the
supervisor brings a new worker up in the killed one's place.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import psutil
import psycopg

from gateway_live_support import config_for, engines
from mercato.bench.peers import mercato_process
from mercato.gateway.live.embedded_postgres import embedded_postgres
from mercato.gateway.live.ledger_store import open_ledger_summary

CLUSTER = {"small-1": "qwen3-4b", "small-2": "qwen3-4b"}
CLIENTS = 6
LOAD_S = 6.0
KILL_AT_S = 2.0


def workers(parent: psutil.Process) -> list[psutil.Process]:
    """The supervisor's live gateway workers (spawned interpreters, not its resource tracker or the
    embedded servers); a killed worker not yet reaped is a zombie and does not count."""
    found = []
    for child in parent.children():
        try:
            if "spawn_main" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.Error:  # it ended, or is a zombie, between the listing and the look
            continue
    return found


async def drive(url: str) -> tuple[list[tuple[float, str]], int]:
    """Clients in closed loops for LOAD_S; returns (finish time, request id) of each 200, and failures."""
    ok: list[tuple[float, str]] = []
    failed = 0
    start = time.monotonic()
    body = {"model": "mercato", "max_tokens": 8}

    async def client(k: int) -> None:
        nonlocal failed
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            turn = 0
            while time.monotonic() - start < LOAD_S:
                turn += 1
                messages = [{"role": "user", "content": f"client {k} asks question {turn}"}]
                try:
                    async with session.post(f"{url}/v1/chat/completions", json=body | {"messages": messages}
                                            ) as response:
                        data = await response.json()
                        if response.status == 200:
                            ok.append((time.monotonic() - start, data["mercato"]["request_id"]))
                        else:
                            failed += 1
                except (aiohttp.ClientError, TimeoutError):
                    failed += 1  # in flight at the killed worker: the client saw no success

    await asyncio.gather(*(client(k) for k in range(CLIENTS)))
    return ok, failed


def test_kill_9_one_worker_loses_no_record_and_the_rest_keep_serving(reachable_dir: Path) -> None:
    db = reachable_dir / "ledger.sqlite"  # a file path: with workers, the ledger goes to ledger.pgdata
    with engines(speed=50.0, cluster=CLUSTER) as urls:
        config = config_for(urls, db, CLUSTER)
        spool = config.accounting.model_copy(update={"spool": reachable_dir / "spool.sqlite"})
        config = config.model_copy(update={"accounting": spool})
        with mercato_process(config, reachable_dir / "gateway.yaml", workers=2) as (url, proc):
            parent = psutil.Process(proc.pid)
            deadline = time.monotonic() + 30
            while len(workers(parent)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            before = workers(parent)
            assert len(before) == 2
            victim = before[0]

            def kill_later() -> None:
                time.sleep(KILL_AT_S)
                os.kill(victim.pid, signal.SIGKILL)

            async def run() -> tuple[list[tuple[float, str]], int]:
                killing = asyncio.to_thread(kill_later)
                (ok, failed), _ = await asyncio.gather(drive(url), killing)
                return ok, failed

            ok, _ = asyncio.run(run())
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                now = workers(parent)
                if len(now) == 2 and victim.pid not in {p.pid for p in now}:
                    break
                time.sleep(0.1)
            after = {p.pid for p in workers(parent)}
            assert len(after) == 2 and victim.pid not in after, "the supervisor did not replace the worker"
            live = open_ledger_summary(reachable_dir / "ledger.pgdata")  # through the gateway's server
    assert sum(1 for t, _ in ok if t < KILL_AT_S) > 0
    assert sum(1 for t, _ in ok if t > KILL_AT_S + 0.5) > 0, "nobody was served after the kill"
    assert not db.exists()
    stored = open_ledger_summary(reachable_dir / "ledger.pgdata")  # the server is started for the read
    assert stored["overall"]["requests"] == live["overall"]["requests"] >= len(ok)
    with embedded_postgres(reachable_dir / "ledger.pgdata") as server, psycopg.connect(server.url) as conn:
        counts = dict(conn.execute("SELECT request_id, COUNT(*) FROM ledger GROUP BY request_id").fetchall())
    seen = [rid for _, rid in ok]
    assert len(set(seen)) == len(seen)
    assert [rid for rid in seen if counts.get(rid) != 1] == []  # each exactly once, none lost
