"""The webhook load check (docs/benchmark.md, "Webhook load check").

One webhook endpoint subscribed to every type (``webhook_endpoint_create`` with no
types), pointing at the benchmark's receiver (``python -m bench.receiver PORT``, a
process of its own), and a Celery worker for the ``webhooks`` queue started as the
Procfile's ``webhooks:`` line runs it, on a Redis database of the benchmark's own
(``CELERY_BROKER_URL``; the web server gets the same one, so its on-commit sends
reach this worker). The endpoint is active only during the rounds of bookings with
webhooks and while their backlog drains, so the rounds without run as if there were
no endpoint. Afterwards the endpoint, its deliveries and its messages are deleted
(only those: a message that also went to another endpoint stays).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection, transaction

from . import cpu
from .processes import REPO, Background

HOST = "127.0.0.1"
#: The benchmark's endpoints say so in their description; only these are ever deleted.
ENDPOINT_DESCRIPTION = "benchmark: webhook load check"
QUEUE = "webhooks"  # settings.CELERY_TASK_ROUTES: booking.tasks.deliver_webhooks
BROKER_DB = 3  # the Redis database of the benchmark's broker, on REDIS_URL's server
VERIFY_EVERY = 20  # the receiver verifies the first signature and one in this many


def procfile_command(name: str) -> str:
    """A production command: the Procfile's ``name:`` line."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line[len(name) + 1 :].strip()
    raise RuntimeError(f"Procfile has no {name}: line")


def default_broker_url() -> str:
    """REDIS_URL's server (the one the benchmark's server pushes through), database 3."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{BROKER_DB}", "", ""))


def tables() -> tuple[str, str, str]:
    from booking.models import WebhookDelivery, WebhookEndpoint, WebhookMessage

    return WebhookEndpoint._meta.db_table, WebhookDelivery._meta.db_table, WebhookMessage._meta.db_table


def remove_endpoints(ids: list[int] | None = None) -> dict:
    """Delete the benchmark's endpoints (``ids``, or all whose description is the benchmark's),
    their deliveries, and those of their messages that no other endpoint's delivery names."""
    from booking.services.webhooks import endpoints

    endpoint_t, delivery_t, message_t = tables()
    with transaction.atomic(), connection.cursor() as cursor:
        if ids is None:
            cursor.execute(f"SELECT id FROM {endpoint_t} WHERE description = %s", [ENDPOINT_DESCRIPTION])
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return {"endpoints": 0, "deliveries": 0, "messages": 0}
        cursor.execute(f"DELETE FROM {delivery_t} WHERE endpoint_id = ANY(%s) RETURNING message_id", [ids])
        deliveries = cursor.rowcount
        message_ids = sorted({row[0] for row in cursor.fetchall()})
        cursor.execute(
            f"DELETE FROM {message_t} m WHERE m.id = ANY(%s)"
            f" AND NOT EXISTS (SELECT 1 FROM {delivery_t} d WHERE d.message_id = m.id)",
            [message_ids],
        )
        messages = cursor.rowcount
        cursor.execute(f"DELETE FROM {endpoint_t} WHERE id = ANY(%s)", [ids])
    endpoints.clear()  # this process's cache of the active endpoints (raw SQL sends no signal)
    return {"endpoints": len(ids), "deliveries": deliveries, "messages": messages}


def last_message_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {tables()[2]}")
        return cursor.fetchone()[0]


def messages_since(message_id: int) -> int:
    """Messages written (for any endpoint) after ``message_id``."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {tables()[2]} WHERE id > %s", [message_id])
        return cursor.fetchone()[0]


def purge_queue(broker_url: str) -> int:
    """Drop the tasks waiting in the broker's ``webhooks`` queue; how many."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=5) as conn:
        return conn.default_channel.queue_purge(QUEUE) or 0


@dataclass
class RoundResult:
    """One round of bookings with webhooks, from the endpoint's point of view."""

    written: int  # messages written for the endpoint in the round (warm-up included)
    sold: int  # bookings confirmed in the round (warm-up included)
    backlog_at_end: int  # written but not yet received when the last answer came
    drained: bool
    drain_seconds: float | None  # from the last answer to the last message received
    received: int  # of this round's messages, by the end of the wait
    worker_cpu_seconds: float | None  # from before the round to the end of the wait
    receiver_cpu_seconds: float | None
    # Connections opened meanwhile: PostgreSQL's sessions of this database (pg_stat_database), and
    # the whole Redis server's (INFO's total_connections_received; other clients' count too).
    postgres_sessions: int | None = None
    redis_connections: int | None = None
    purged: int = 0  # tasks dropped from the queue when the backlog did not drain in time

    def as_dict(self) -> dict:
        return dict(vars(self))


@dataclass
class WebhookCheck:
    workdir: Path
    env: dict[str, str]  # the web server's environment (its CELERY_BROKER_URL too)
    drain_limit: float = 30.0
    worker_env: dict[str, str] = field(default_factory=dict)  # the worker's on top of env (--webhook-worker-env)
    endpoint_id: int | None = None
    url: str = ""
    worker: Background | None = None
    receiver: Background | None = None
    rounds: list[RoundResult] = field(default_factory=list)
    _visible_at: float = 0.0

    @property
    def broker_url(self) -> str:
        return self.env["CELERY_BROKER_URL"]

    @property
    def worker_command(self) -> str:
        return procfile_command("webhooks")

    @property
    def cache_seconds(self) -> float:
        """How long the server's processes may go on using their list of active endpoints."""
        value = self.env.get("BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS")
        return float(value) if value else float(settings.BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS)

    def start(self) -> None:
        """The endpoint (inactive for now), the receiver and the worker; the queue emptied first."""
        from booking.models import WebhookEndpoint
        from booking.services.webhooks import webhook_endpoint_create

        from .runner import free_port

        purged = purge_queue(self.broker_url)
        if purged:
            print(f"dropped {purged} tasks an earlier run left in {self.broker_url} {QUEUE}", flush=True)
        port = free_port()
        self.url = f"http://{HOST}:{port}/hooks"
        endpoint = webhook_endpoint_create(url=self.url, description=ENDPOINT_DESCRIPTION)
        self.endpoint_id = endpoint.pk
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
        receiver_env = {
            **self.env,
            "BENCH_WEBHOOK_SECRET": endpoint.secret,
            "BENCH_WEBHOOK_VERIFY_EVERY": str(VERIFY_EVERY),
        }
        self.receiver = Background(
            "receiver", [sys.executable, "-m", "bench.receiver", str(port)], receiver_env, self.workdir / "receiver.log"
        )
        # The worker exactly as the Procfile's webhooks: line runs it, with the server's environment.
        # Its attempts go to 127.0.0.1 directly, never through a proxy of the environment's.
        worker_env = {**self.env, "NO_PROXY": f"{HOST},localhost", "no_proxy": f"{HOST},localhost", **self.worker_env}
        self.worker = Background(
            "webhook worker", ["bash", "-c", f"exec {self.worker_command}"], worker_env, self.workdir / "worker.log"
        )
        deadline = time.monotonic() + 60
        while True:
            self.receiver.check_alive()
            self.worker.check_alive()
            ready = " ready." in self.worker.log_tail(100_000)
            try:
                self.stats()
            except OSError:
                ready = False
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"webhook worker or receiver not ready within 60 s:\n{self.worker.log_tail()}")
            time.sleep(0.1)

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url.rsplit('/', 1)[0]}/stats", timeout=5) as answer:
            return json.loads(answer.read())

    def set_active(self, active: bool) -> None:
        """Switch the endpoint on or off; the server's processes see it after ``cache_seconds``."""
        from booking.models import WebhookEndpoint

        WebhookEndpoint.objects.filter(pk=self.endpoint_id).update(active=active)
        self._visible_at = time.monotonic() + self.cache_seconds + 0.2

    def wait_visible(self) -> None:
        time.sleep(max(0.0, self._visible_at - time.monotonic()))

    def written(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {tables()[1]} WHERE endpoint_id = %s", [self.endpoint_id])
            return cursor.fetchone()[0]

    def delivered(self) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {tables()[1]} WHERE endpoint_id = %s AND state = 'delivered'",
                [self.endpoint_id],
            )
            return cursor.fetchone()[0]

    def cpu_seconds(self) -> tuple[float | None, float | None]:
        return cpu.group_cpu(self.worker.pgid), cpu.group_cpu(self.receiver.pgid)

    def probe_groups(self) -> dict[str, int]:
        return {"webhook_worker": self.worker.pgid, "receiver": self.receiver.pgid}

    def connections(self) -> tuple[int | None, int | None]:
        """(PostgreSQL sessions of this database so far, connections the Redis server has accepted)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            row = cursor.fetchone()
        redis_count = None
        try:
            import redis

            client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=2)
            try:
                redis_count = int(client.info("stats")["total_connections_received"]) - 1  # not this one's
            finally:
                client.close()
        except Exception:  # not Redis, or not reachable: the figure is n/a
            pass
        return (int(row[0]) if row and row[0] is not None else None), redis_count

    def before_round(self) -> dict:
        worker_cpu, receiver_cpu = self.cpu_seconds()
        sessions, redis_connections = self.connections()
        return {
            "written": self.written(),
            "received": self.stats()["messages"],
            "worker_cpu": worker_cpu,
            "receiver_cpu": receiver_cpu,
            "sessions": sessions,
            "redis_connections": redis_connections,
        }

    def after_round(self, before: dict, sold: int) -> RoundResult:
        """Once the round's last answer came: its messages counted, the backlog waited for (up to
        ``drain_limit`` seconds), and, if it did not drain, the rest of the queue dropped (the next
        round must not run beside a busy worker)."""
        ended = time.time()
        written = self.written() - before["written"]
        expected = before["received"] + written
        stats = self.stats()
        backlog = expected - stats["messages"]
        deadline = time.monotonic() + self.drain_limit
        while stats["messages"] < expected and time.monotonic() < deadline:
            self.worker.check_alive()
            time.sleep(0.05)
            stats = self.stats()
        drained = stats["messages"] >= expected
        purged = 0
        if not drained:
            purged = purge_queue(self.broker_url)
        worker_cpu, receiver_cpu = self.cpu_seconds()
        time.sleep(0.5)  # PostgreSQL reports its sessions' counts within half a second or so
        sessions, redis_connections = self.connections()
        result = RoundResult(
            written=written,
            sold=sold,
            backlog_at_end=backlog,
            drained=drained,
            drain_seconds=round(max(0.0, (stats["last_at"] or ended) - ended), 3) if drained else None,
            received=stats["messages"] - before["received"],
            worker_cpu_seconds=_spent(worker_cpu, before["worker_cpu"]),
            receiver_cpu_seconds=_spent(receiver_cpu, before["receiver_cpu"]),
            postgres_sessions=_spent(sessions, before["sessions"]),
            redis_connections=_spent(redis_connections, before["redis_connections"]),
            purged=purged,
        )
        self.rounds.append(result)
        return result

    def summary(self) -> dict:
        stats = self.stats()
        written = sum(r.written for r in self.rounds)
        received = sum(r.received for r in self.rounds)
        sold = sum(r.sold for r in self.rounds)

        def per_message(name: str, scale: float = 1000) -> float | None:
            values = [getattr(r, name) for r in self.rounds]
            if None in values or not received:
                return None
            return round(sum(values) * scale / received, 3)

        drains = [r.drain_seconds for r in self.rounds]
        return {
            "endpoint": {"url": self.url, "event_types": "all (none named)"},
            "broker": self.broker_url,
            "worker_command": self.worker_command,
            "worker_env": dict(self.worker_env),
            "receiver_command": f"python -m bench.receiver {urlsplit(self.url).port}",
            "endpoint_cache_seconds": self.cache_seconds,
            "messages": {
                "written": written,
                # By the end: everything the receiver got (its URL is this run's endpoint's alone).
                "received": stats["messages"],
                "all_received": stats["messages"] == written and all(r.drained for r in self.rounds),
                "delivered_in_database": self.delivered(),
                "per_booking": round(written / sold, 3) if sold else None,
                "types": stats["types"],
                "duplicates": stats["duplicates"],
                "signatures_verified": stats["verified"],
                "signature_failures": stats["verify_failures"],
                "signature_failure_examples": stats["verify_failure_examples"],
                "verify_every": stats["verify_every"],
            },
            "backlog_at_round_end": [r.backlog_at_end for r in self.rounds],
            "drain_seconds": drains,
            "drain_seconds_max": None if None in drains or not drains else max(drains),
            "drained": all(r.drained for r in self.rounds),
            "drain_limit_seconds": self.drain_limit,
            "purged_tasks": sum(r.purged for r in self.rounds),
            "worker_cpu_ms_per_message": per_message("worker_cpu_seconds"),
            "receiver_cpu_ms_per_message": per_message("receiver_cpu_seconds"),
            "postgres_sessions_per_message": per_message("postgres_sessions", 1),
            "redis_connections_per_message": per_message("redis_connections", 1),
            "rounds_detail": [r.as_dict() for r in self.rounds],
        }

    def stop(self) -> None:
        """The worker and the receiver stopped, then the endpoint removed with what it was sent."""
        for part in (self.worker, self.receiver):
            if part is not None:
                part.stop()
        self.worker = self.receiver = None
        if self.endpoint_id is not None:
            remove_endpoints([self.endpoint_id])
            self.endpoint_id = None


def _spent(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(max(0.0, after - before), 3)
