"""A real HTTP receiver for webhooks on 127.0.0.1: records what arrives, answers as scripted."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str = ""  # the request's target: an absolute URL when it came through as a proxy


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a batch's attempts connect at once (socketserver's default: 5)


class Receiver:
    """``answers``: the statuses to give, in turn (the last one from then on); ``delays``: seconds
    to wait before answering, in turn (the last one from then on); ``answer_for``: the status for
    a body, where it gives one (attempts made at once arrive in any order). ``stop()`` takes it
    down (connections refused), ``start()`` brings it back on the same port. ``tls``: a server
    context makes it an HTTPS receiver."""

    def __init__(
        self,
        answers: list[int] | None = None,
        delays: list[float] | None = None,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        answer_for: Callable[[bytes], int | None] | None = None,
    ):
        self.tls = tls
        self.answer_for = answer_for
        self.body: bytes | None = None  # the answer's body; "answered <status>" if None
        self.answers = list(answers or [200])
        self.delays = list(delays or [0.0])
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: _Server | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append(Received({k.lower(): v for k, v in self.headers.items()}, body, self.path))
                    status = receiver.answers.pop(0) if len(receiver.answers) > 1 else receiver.answers[0]
                    status = (receiver.answer_for and receiver.answer_for(body)) or status
                    delay = receiver.delays.pop(0) if len(receiver.delays) > 1 else receiver.delays[0]
                if delay:
                    time.sleep(delay)
                answer = receiver.body if receiver.body is not None else f"answered {status}".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):  # quiet
                pass

        self._server = _Server(("127.0.0.1", self._port), Handler)
        self._server.daemon_threads = True
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            raise AssertionError(f"{len(self.received)} of {count} webhooks arrived within {timeout}s")
