"""Handing committed webhook deliveries to the webhooks worker, gathered per process.

A change's transaction writes its messages and deliveries (the outbox,
``booking/services/webhooks.py``); after commit it only tells this process's
sender which deliveries are new and goes on. The sender's one daemon thread
wakes, gathers for ``GATHER_SECONDS`` (``BUSY_GATHER_SECONDS`` while rounds
follow each other) and sends one Celery task per endpoint for what came (up to
``TASK_BATCH`` deliveries a task), so under load one broker publish carries the
deliveries of many requests, and a request never waits for the broker. A broker
that is down or slow only delays the deliveries: the send is bounded by the
broker's own timeouts, and beat's ``deliver_due_webhooks`` sends whatever is due
(a send lost with a killed process too).

Started on first use, and again in a forked child (a web server worker, a
Celery pool process), where the parent's thread does not exist.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence

from . import dependencies

logger = logging.getLogger("booking.webhooks")

#: How long the sender gathers new deliveries before it sends them, after a quiet spell.
GATHER_SECONDS = 0.05
#: How long it gathers while rounds follow each other (the last sent under BUSY_WITHIN_SECONDS
#: ago). A Celery send costs the web server about 0.5 ms of CPU and a task the worker more,
#: whatever its size, so in a rush longer rounds make both cheaper per message (measured:
#: docs/benchmark.md); half a second is nothing to a webhook's receiver.
BUSY_GATHER_SECONDS = 0.5
BUSY_WITHIN_SECONDS = 1.0
#: Most deliveries per task: one endpoint's, made a few at once on kept-alive connections
#: (BOOKING_WEBHOOK_PARALLEL_ATTEMPTS). A task costs the worker about 1.5 ms whatever its size (its lease, endpoints and
#: outcomes: docs/benchmark.md), so a round's deliveries go in as few tasks as this allows, of
#: equal sizes (101 go as 51 and 50, not as 100 and a task of one).
TASK_BATCH = 100
#: How long a process that exits waits for its sends still in flight.
FLUSH_SECONDS = 5.0


def send_now(by_endpoint: Mapping[int, Sequence[int]]) -> None:
    """Send the deliveries to workers at once, a task per endpoint and batch (one endpoint never
    waits for another's); a broker that fails only delays them (beat sends them when due). Each
    send waits at most the dependency timeouts (settings), and none is tried while the broker's
    breaker is open (booking/dependencies.py, which counts and logs the failures)."""
    from .tasks import deliver_webhooks

    for ids in by_endpoint.values():
        tasks = math.ceil(len(ids) / TASK_BATCH)  # as few as TASK_BATCH allows, of equal sizes
        size = math.ceil(len(ids) / tasks) if tasks else 1
        for start in range(0, len(ids), size):
            if not dependencies.broker.allow():
                return  # the deliveries are committed: beat's deliver-due task sends them
            batch = list(ids[start : start + size])
            try:
                deliver_webhooks.delay(batch)
            except Exception as error:  # the change committed: it must not fail because the broker did
                dependencies.broker.failed(error)
                return
            dependencies.broker.succeeded()


class Sender:
    """One daemon thread per process that sends the gathered deliveries, round after round."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: dict[int, list[int]] = {}
        self._sending = False
        self._pid: int | None = None

    def submit(self, by_endpoint: Mapping[int, Sequence[int]]) -> None:
        """Queue committed deliveries; the thread sends them within about ``GATHER_SECONDS``
        (``BUSY_GATHER_SECONDS`` in a rush)."""
        with self._lock:
            self._start_if_needed()
            for endpoint_id, ids in by_endpoint.items():
                self._pending.setdefault(endpoint_id, []).extend(ids)
            self._wake.notify_all()

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until this process's queued deliveries have been sent; True if none is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._pid != os.getpid():
                return True
            while self._pending or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.01))
        return True

    def _start_if_needed(self) -> None:
        if self._pid != os.getpid():  # first use, or a forked child: the parent's thread is not here
            self._pending, self._sending, self._pid = {}, False, os.getpid()
            threading.Thread(target=self._run, name="webhook-sender", daemon=True).start()

    def _run(self) -> None:
        last_round = -BUSY_WITHIN_SECONDS
        while True:
            with self._lock:
                while not self._pending:
                    self._wake.wait()
            busy = time.monotonic() - last_round < BUSY_WITHIN_SECONDS
            time.sleep(BUSY_GATHER_SECONDS if busy else GATHER_SECONDS)  # commits meanwhile join this round
            last_round = time.monotonic()
            with self._lock:
                batch, self._pending, self._sending = self._pending, {}, True
            try:
                send_now(batch)
            finally:
                with self._lock:
                    self._sending = False
                    self._wake.notify_all()


sender = Sender()
atexit.register(sender.flush)
