"""Publishes an engine's KV events over ZeroMQ the way vLLM's ``ZmqEventPublisher`` does.

Each engine step's events go out as one multipart message ``[topic, seq, payload]`` on a PUB
socket: ``seq`` counts batches from 0 as an 8-byte big-endian integer, ``payload`` is the msgpack
``EventBatch``. A subscriber that sees a jump in ``seq`` missed batches (PUB drops what nobody
was connected to hear); with a replay endpoint it asks a ROUTER socket for them by sending the
first missing ``seq`` (8 bytes, big-endian) and receives ``[seq, payload]`` for every batch still
buffered from there on, then the end marker ``[-1 as 8 signed bytes, b""]``. Sequence numbers
restart at 0 with the process, which is how subscribers tell a restarted engine (empty cache).

The simulated engine binds both endpoints (vLLM binds an endpoint with a ``*`` host and connects
to any other; give the simulator ``tcp://127.0.0.1:PORT`` and the gateway connects to it).
Everything runs on the engine's event loop: sending on a PUB socket never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import zmq
import zmq.asyncio

from mercato.engine.kv_events import KVEventLog, encode_batch

END_SEQ = (-1).to_bytes(8, "big", signed=True)
BUFFER_STEPS = 10_000  # batches kept for replay (vLLM's default)
HWM = 100_000  # messages a slow subscriber may fall behind before PUB drops them (vLLM's default)


class KVEventPublisher:
    """PUB (and optional ROUTER replay) sockets draining one :class:`KVEventLog`."""

    def __init__(self, log: KVEventLog, endpoint: str, replay_endpoint: str | None = None,
                 topic: str = "", buffer_steps: int = BUFFER_STEPS, rank: int = 0) -> None:
        self.log = log
        self.topic = topic.encode()
        self.rank = rank
        self.seq = 0  # the next batch's sequence number
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_steps)
        self._ctx = zmq.asyncio.Context()
        self._pub = zmq.Socket(self._ctx, zmq.PUB)
        self._pub.set_hwm(HWM)
        self._pub.bind(endpoint)
        self._replay: zmq.asyncio.Socket | None = None
        if replay_endpoint is not None:
            self._replay = self._ctx.socket(zmq.ROUTER)
            self._replay.bind(replay_endpoint)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Serve replay requests on the running event loop (when a replay endpoint was given)."""
        if self._replay is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve_replay(),
                                                                name="mercato-kv-replay")

    def flush(self) -> None:
        """Publish what the engine logged since the last flush as one batch (nothing if nothing)."""
        if not len(self.log):
            return
        payload = encode_batch(self.log.take(), self.rank)
        seq = self.seq
        self.seq += 1
        self._pub.send_multipart((self.topic, seq.to_bytes(8, "big"), payload), flags=zmq.NOBLOCK)
        self._buffer.append((seq, payload))

    async def close(self) -> None:
        """Stop serving replays and close the sockets."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._pub.close(linger=0)
        if self._replay is not None:
            self._replay.close(linger=0)
        self._ctx.term()

    async def _serve_replay(self) -> None:
        """Answer each request ``[identity, b"", start_seq]`` with the buffered batches from there on."""
        assert self._replay is not None
        replay = self._replay
        while True:
            frames = await replay.recv_multipart()
            if len(frames) != 3 or len(frames[2]) != 8:
                continue  # not a replay request: nothing to answer
            client, _, start = frames
            first = int.from_bytes(start, "big")
            for seq, payload in list(self._buffer):
                if seq >= first:
                    await replay.send_multipart((client, b"", seq.to_bytes(8, "big"), payload))
            await replay.send_multipart((client, b"", END_SEQ, b""))
