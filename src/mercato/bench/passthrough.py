"""The floor of `mercato bench gateway`: the least a proxy built on the gateway's own parts adds.

A pass-through that does none of mercato's work (no routing, admission, accounting, ledger or
metrics) on the same stack as the gateway: uvicorn with uvloop and httptools in front, one
aiohttp connection pool upstream, orjson. Like the gateway it forces the engine to stream with
usage, parses every event and rebuilds the client's answer with the gateway's own request
parser and accumulator (:mod:`mercato.gateway.live.wire`). Side by side in one run, the
latency mercato adds above this row is its own work; what this row adds above sglang-router is
the price of the stack, which no change inside mercato's request path can remove.

Run as ``python -m mercato.bench.passthrough UPSTREAM_URL PORT``; ``GET`` on any path answers
200 (the readiness check).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import uvicorn
from starlette.types import Receive, Scope, Send

from mercato.gateway.live.errors import APIError
from mercato.gateway.live.fleet import stop_process, wait_ready
from mercato.gateway.live.wire import CHAT, backend_body, parse_request, sse_data, usage_object
from mercato.ports import free_port

_JSON = [(b"content-type", b"application/json")]


class Passthrough:
    """ASGI app: every POST goes to ``upstream`` (an engine's chat completions URL) as a stream."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["method"] != "POST":
            await _answer(send, 200, b'{"status":"ok"}')
        else:
            status, body = await self._forward(await _read(receive))
            await _answer(send, status, body)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _forward(self, raw: bytes) -> tuple[int, bytes]:
        """The engine's streamed answer rebuilt as one chat.completion; an invalid body is refused
        with the gateway's own error, an engine's error passed back as it came."""
        if self._session is None:
            raise RuntimeError("the pass-through has not started")
        try:
            request = parse_request(CHAT, raw)
        except APIError as err:  # refused as the gateway refuses it
            return err.status, orjson.dumps(err.body())
        result = request.accumulator()
        async with self._session.post(self.upstream, data=backend_body(request, request.model, False),
                                      headers={"content-type": "application/json"}) as response:
            if response.status != 200:
                return response.status, await response.read()
            tail = b""
            async for received in response.content.iter_any():
                fields, tail = sse_data(tail, received)
                for data in fields:
                    if data != b"[DONE]":
                        result.add(orjson.loads(data))
        counts = result.usage_counts() or (0, 0, 0)
        answer: dict[str, Any] = result.response("chatcmpl-passthrough", usage_object(*counts))
        return 200, orjson.dumps(answer)


async def _read(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


@contextlib.contextmanager
def passthrough_process(upstream: str, timeout_s: float = 30.0
                        ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The pass-through in its own process in front of ``upstream``; yields its base URL and process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", __name__, upstream, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, f"{url}/health", timeout_s, "the pass-through proxy")
        yield url, proc
    finally:
        stop_process(proc)


def main(argv: list[str]) -> None:
    """Serve the pass-through on 127.0.0.1 until stopped."""
    upstream, port = argv
    uvicorn.run(Passthrough(upstream), host="127.0.0.1", port=int(port), loop="uvloop", http="httptools",
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
