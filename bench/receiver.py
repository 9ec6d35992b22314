"""``python -m bench.receiver PORT``: the webhook load check's receiver (docs/benchmark.md).

A stand-in for an integrator's server: it answers every ``POST`` with 200 at once,
counts what arrived (every request, each distinct ``webhook-id``, per type) and
verifies the Standard Webhooks signature of a sample (the first message and
then one in ``BENCH_WEBHOOK_VERIFY_EVERY``, 20 by default) with the
``standardwebhooks`` library and the endpoint's secret (``BENCH_WEBHOOK_SECRET``).
``GET /stats`` answers its counts as JSON. Small on purpose (an asyncio protocol,
uvloop when installed, no HTTP library): it shares the machine with what is
measured, and its CPU is reported.

It imports nothing of the product: the benchmark starts it in a process of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from typing import cast

try:  # pragma: no cover - optional speed-up
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

from standardwebhooks import Webhook

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Stats:
    def __init__(self, secret: str | None, verify_every: int):
        self.webhook = Webhook(secret) if secret else None
        self.verify_every = max(1, verify_every)
        self.requests = 0
        self.ids: set[str] = set()
        self.types: Counter = Counter()
        self.verified = 0
        self.verify_failures: list[str] = []
        self.first_at: float | None = None  # time.time(): the benchmark compares it with its own clock
        self.last_at: float | None = None

    def record(self, headers: dict[str, str], body: bytes) -> None:
        now = time.time()
        self.requests += 1
        self.first_at = self.first_at or now
        self.last_at = now
        msg_id = headers.get("webhook-id", "")
        if msg_id in self.ids:
            return  # a duplicate: counted in requests only
        self.ids.add(msg_id)
        try:
            self.types[json.loads(body).get("type", "?")] += 1
        except ValueError:
            self.types["(not JSON)"] += 1
        if self.webhook is not None and (len(self.ids) - 1) % self.verify_every == 0:
            try:
                self.webhook.verify(body, headers, json_parse=False)
                self.verified += 1
            except Exception as exc:  # WebhookVerificationError, or headers missing
                self.verify_failures.append(f"{msg_id}: {type(exc).__name__}: {exc}"[:200])

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "messages": len(self.ids),
            "duplicates": self.requests - len(self.ids),
            "types": dict(sorted(self.types.items())),
            "verified": self.verified,
            "verify_failures": len(self.verify_failures),
            "verify_failure_examples": self.verify_failures[:5],
            "verify_every": self.verify_every,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "cpu_seconds": round(time.process_time(), 3),
        }


class Connection(asyncio.Protocol):
    """One keep-alive connection: each complete request is answered as soon as it is in.

    A protocol rather than asyncio streams: no coroutine step and no future per request (a
    tenth less of its CPU a message in the load check; it shares the machine with what is
    measured, and most of the rest is the kernel's work on the sockets)."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is one, not a subclass

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            lines = self.buffer[:end].decode("latin-1").split("\r\n")
            method, path = (lines[0].split(" ") + ["", ""])[:2]
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return  # the body is still coming
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.transport.write(self.answer(method, path, headers, body))
            if headers.get("connection", "").lower() == "close":
                self.transport.close()
                return

    def answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if method == "POST":
            self.stats.record(headers, body)
            return OK
        if method == "GET" and path == "/stats":
            answer = json.dumps(self.stats.as_dict()).encode()
            return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
                len(answer),
                answer,
            )
        return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


async def serve(port: int, stats: Stats) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(stats), "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"receiver listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await stop.wait()
    print(f"receiver stopping: {json.dumps(stats.as_dict())}", flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bench.receiver PORT", file=sys.stderr)
        return 2
    stats = Stats(os.environ.get("BENCH_WEBHOOK_SECRET"), int(os.environ.get("BENCH_WEBHOOK_VERIFY_EVERY", "20")))
    coroutine = serve(int(argv[0]), stats)
    if uvloop is not None:
        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
