"""The benchmark: the production server under concurrent clients, against pgbench on the same tables.

One run, on the PostgreSQL database of DATABASE_URL (use a database of its own;
the run deletes only its own events, named ``benchmark: …``):

1. creates its events with plain SQL (the booking event, a copy of its seats
   for pgbench, the contended seats, a seat map, expired holds) and one user
   with a token per client;
2. starts the web server exactly as the Procfile's ``web:`` line runs it in
   production, with DEBUG=false, on a free port;
3. in rounds, in turns: the clients (loadclient) book their own seats, one lock
   then one confirm each, through the server; then pgbench runs the least SQL a
   row-locked, audited booking needs (pgbench.SCRIPT), same clients, as long;
   the CPU time of PostgreSQL, the server, Redis and the load client (or
   pgbench) is sampled around each (cpu);
   with ``webhooks`` (the default), each round also books as many seats again with
   one webhook endpoint subscribed to every type, delivered by a Celery worker
   started as the Procfile's ``webhooks:`` line to the benchmark's own receiver,
   the two kinds of round in turns (webhooks);
   with ``watchers`` (the default), then, for each count W: the Procfile's ``live:``
   process on the channel layer the server pushes to, and rounds of bookings with W
   watchers of one event (bench.watchclient) and without, in turns (watchers);
4. all clients fight for the same few seats; best available: every client asks for the
   best 2 seats together of one large event (``best_seats``), books them, again: holds
   per second and the lock's p99, beside the named-seat locks' of step 3; the seat map
   is fetched;
5. one sweep of the expired holds is timed, in this process.

It imports the product's models and settings (through Django) to set up and check
its data; the product never imports it.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.core.management import call_command
from django.db import connection

from . import cpu, loadclient, pgbench, watchers, webhooks
from .processes import REPO, Background

NAME_PREFIX = "benchmark: "
HOST = "127.0.0.1"
CLIENT_PREFIX = "bench-client-"  # the load client's users; pgbench.SCRIPT's audit rows name them too

#: The targets on a 2-core machine shared by server, database and load.
TARGETS = {
    "ratio_to_pgbench": 0.2,
    "lock_p99_ms": 25.0,
    "sweep_seconds": 2.0,
    "seat_map_server_ms": 150.0,
    # The webhook load check: bookings/s with one endpoint subscribed to everything ÷ without.
    "webhooks_ratio": 0.9,
    # The watchers check, at its largest W: bookings/s with the watchers ÷ without, and the
    # change-to-watcher lag's p99.
    "watchers_ratio": 0.85,
    "watchers_lag_p99_ms": 1000.0,
}


@dataclass
class Options:
    seats: int = 200_000
    clients: int = 16
    duration: float = 30.0
    warmup: float = 3.0
    contended_seats: int = 100
    # Best available: an event of this many seats (rows of 100, ranked front to back, middle
    # first), every client asking for best_quantity together; 0 skips the run.
    best_seats: int = 50_000
    best_quantity: int = 2
    map_seats: int = 50_000
    sweep_holds: int = 100_000
    # The bookings and pgbench take turns, each for duration / rounds at a time: the minutes
    # of a shared machine differ by 10 to 25 %, and each minute then weighs on both.
    rounds: int = 3
    server_cmd: str | None = None
    server_env: dict[str, str] | None = None
    keep: bool = False
    workdir: str | None = None
    # The webhook load check (docs/benchmark.md): rounds with one endpoint subscribed to every
    # type, in turns with the rounds without; the broker a Redis database of its own.
    webhooks: bool = True
    webhook_broker_url: str | None = None  # webhooks.default_broker_url(): REDIS_URL's server, db 3
    webhook_drain: float = 30.0  # seconds to wait, after each round with webhooks, for the backlog
    webhook_worker_env: dict[str, str] | None = None  # the worker's environment on top of the server's
    # The watchers check (docs/benchmark.md): for each count, a round of bookings with that many
    # live watchers of one event and one without, in turns; () skips it.
    watchers: tuple[int, ...] = watchers.DEFAULT_COUNTS
    watch_seats: int = 40_000
    watch_duration: float = 10.0  # measured seconds of each of its rounds
    watch_drain: float = 5.0  # seconds after a round's last answer before the watchers' states are taken
    watch_redis_url: str | None = None  # the channel layer: watchers.default_layer_url()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- Data --------------------------------------------------------------------


def ensure_database() -> bool:
    """Create the benchmark's database if it does not exist yet; True if it did so."""
    from django.db import OperationalError

    try:
        connection.ensure_connection()
        return False
    except OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    import psycopg
    from psycopg import sql

    s = connection.settings_dict
    with psycopg.connect(
        host=s.get("HOST") or HOST,
        port=s.get("PORT") or 5432,
        user=s.get("USER") or None,
        password=s.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(s["NAME"])))
    return True


def cleanup() -> int:
    """Delete the events of earlier runs (and their seats and audit rows), and the webhook
    load check's endpoints left behind (with their deliveries and messages)."""
    removed = webhooks.remove_endpoints()
    if removed["endpoints"]:
        log(f"removed {removed['endpoints']} webhook endpoints of an earlier run ({removed['messages']} messages)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM booking_event WHERE name LIKE %s", [NAME_PREFIX + "%"])
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute("DELETE FROM booking_seatevent WHERE event_id = ANY(%s)", [ids])
            cursor.execute("DELETE FROM booking_seat WHERE event_id = ANY(%s)", [ids])
            cursor.execute("DELETE FROM booking_booking WHERE event_id = ANY(%s)", [ids])
            cursor.execute("DELETE FROM booking_event WHERE id = ANY(%s)", [ids])
    return len(ids)


def compact_tables() -> None:
    """Rewrite the booking tables without the space earlier runs' rows left behind.

    Every run writes about a million seat and audit rows and deletes them at the end. The
    next run's seats then went into the freed space wherever it lay, so an event's seats
    were spread over many more pages than when created into a compact table: the 50 000-seat
    map took 130 to 150 ms after a few runs, 90 to 100 ms from compact tables. Every run
    starts from the same layout instead. (VACUUM FULL locks the tables while it runs: the
    benchmark's database is its own.)"""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM FULL booking_seatevent, booking_seat, booking_event")


def create_event(name: str, seats: int, *, per_row: int = 1000) -> tuple[int, list[int]]:
    """An event with ``seats`` available seats (rows of ``per_row``), by one INSERT … SELECT; its seat ids."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO booking_event (name, starts_at, hold_seconds, created_at)"
            " VALUES (%s, now() + interval '7 days', 60, now()) RETURNING id",
            [NAME_PREFIX + name],
        )
        event_id = cursor.fetchone()[0]
        cursor.execute(
            """
            INSERT INTO booking_seat (event_id, label, row, number, status, locked_by, booked_by, version,
                                      section, category, accessible, rank, block_reason)
            SELECT %(event)s, 'R' || (g / %(per_row)s + 1) || '-' || (g %% %(per_row)s + 1),
                   'R' || (g / %(per_row)s + 1), g %% %(per_row)s + 1, 'available', '', '', 0,
                   '', '', false,
                   -- booking/seating.py's default rank: the row's position, then the distance from the middle
                   (g / %(per_row)s) * 10000 + abs(2 * (g %% %(per_row)s + 1) - (1 + %(per_row)s)), ''
            FROM generate_series(0, %(seats)s - 1) AS g ORDER BY g
            """,
            {"event": event_id, "per_row": per_row, "seats": seats},
        )
        cursor.execute("SELECT id FROM booking_seat WHERE event_id = %s ORDER BY id", [event_id])
        ids = [row[0] for row in cursor.fetchall()]
    return event_id, ids


def make_expired_holds(event_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE booking_seat SET status = 'locked', locked_by = 'sweep-holder-' || (id %% 1000),"
            " locked_at = now() - interval '61 seconds', lock_expires_at = now() - interval '1 second'"
            " WHERE event_id = %s",
            [event_id],
        )


def make_mixed_map(event_id: int) -> None:
    """A realistic seat map: a tenth held (unexpired), a tenth booked."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE booking_seat SET status = 'locked', locked_by = 'map-holder', locked_at = now(),"
            " lock_expires_at = now() + interval '1 hour' WHERE event_id = %s AND id %% 10 = 1",
            [event_id],
        )
        # The booked tenth in one booking (a booked seat has one).
        cursor.execute(
            "INSERT INTO booking_booking (reference, event_id, holder, order_id, created_at)"
            " VALUES ('MAP' || lpad(%s::text, 5, '0'), %s, 'map-holder', '', now()) RETURNING id",
            [event_id % 100_000, event_id],
        )
        booking_id = cursor.fetchone()[0]
        cursor.execute(
            "UPDATE booking_seat SET status = 'booked', booked_by = 'map-holder', booked_at = now(), booking_id = %s"
            " WHERE event_id = %s AND id %% 10 = 2",
            [booking_id, event_id],
        )


def make_users(count: int, prefix: str = CLIENT_PREFIX) -> list[tuple[str, str]]:
    from booking.management.commands.create_api_user import ensure_api_user

    return [(f"{prefix}{i}", ensure_api_user(f"{prefix}{i}")) for i in range(1, count + 1)]


# --- The server ----------------------------------------------------------------


def procfile_web_command() -> str:
    """The production web command: the Procfile's ``web:`` line."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line[len("web:") :].strip()
    raise RuntimeError("Procfile has no web: line")


def database_url() -> str:
    s = connection.settings_dict
    auth = quote(s.get("USER") or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s.get('HOST') or HOST}:{s.get('PORT') or 5432}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def production_env(port: int, **overrides: str) -> dict[str, str]:
    """The production environment (the Procfile's), plus the benchmark's high throttle limits."""
    env = dict(os.environ)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(name, None)
    # The server's executables (granian, …) from this Python's environment first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url(),
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PORT=str(port),
        # The benchmark's clients are few users sending many requests each: no throttling in the way.
        THROTTLE_USER_RATE="100000000/second",
        THROTTLE_ANON_RATE="100000000/second",
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


class Server(Background):
    """The web server in a session (and process group) of its own: its CPU is its group's."""

    def __init__(self, command: str, env: dict[str, str], log_path: Path):
        super().__init__("server", ["bash", "-c", f"exec {command}"], env, log_path)
        self.command, self.port = command, int(env["PORT"])

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status, *_ = loadclient.get(HOST, self.port, "/api/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not healthy within {timeout}s:\n{self.log_tail()}")


def start_server(command: str, env: dict[str, str], log_path: Path) -> Server:
    server = Server(command, env, log_path)
    server.wait_healthy()
    return server


# --- The steps -------------------------------------------------------------------


def settle_database(*, webhook_tables: bool = False) -> None:
    """Every measured phase starts from the same state: tables vacuumed and analyzed (no
    autovacuum of an earlier phase's writes running into it) and a checkpoint just taken
    (every phase pays the full-page writes that follow one; they land in whichever phase a
    checkpoint happens to start in otherwise, about once a minute under this load).
    ``webhook_tables``: the webhook outbox's too (the webhook load check's rounds)."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE booking_seat")
        cursor.execute("VACUUM ANALYZE booking_seatevent")
        if webhook_tables:
            _, deliveries, messages = webhooks.tables()
            cursor.execute(f"VACUUM ANALYZE {messages}")
            cursor.execute(f"VACUUM ANALYZE {deliveries}")
        cursor.execute("CHECKPOINT")


def seat_map_timing(port: int, event_id: int, tries: int = 5) -> dict:
    server_ms, client_ms, size = [], [], 0
    for _ in range(tries):
        status, headers, body, seconds = loadclient.get(HOST, port, f"/api/events/{event_id}/seats")
        if status != 200:
            raise RuntimeError(f"seat map: {status} {body[:300]!r}")
        client_ms.append(seconds * 1000)
        size = len(body)
        match = re.search(r"dur=([0-9.]+)", headers.get("server-timing", ""))
        if match:
            server_ms.append(float(match.group(1)))
    seats = len(json.loads(body))
    return {
        "seats": seats,
        "bytes": size,
        "server_ms_median": round(sorted(server_ms)[len(server_ms) // 2], 1) if server_ms else None,
        "server_ms_all": [round(v, 1) for v in server_ms],
        "client_ms_median": round(sorted(client_ms)[len(client_ms) // 2], 1),
    }


def sweep_timing(workdir: Path) -> dict:
    """One sweep of all expired holds, as beat runs it (its task, called in this process), its
    log lines going to a file as a worker's would."""
    import logging

    from booking import conf
    from booking.tasks import release_expired_holds

    # The sweep's own lines and the structured line per holder (booking.activity).
    loggers = [logging.getLogger(name) for name in ("booking.expiry", "booking.activity")]
    handler = logging.FileHandler(workdir / "sweep.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    saved = [(logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    for logger in loggers:
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    try:
        started = time.perf_counter()
        released = release_expired_holds()
        seconds = time.perf_counter() - started
    finally:
        handler.close()
        for logger, (handlers, propagate, level) in zip(loggers, saved, strict=True):
            logger.handlers[:], logger.propagate = handlers, propagate
            logger.setLevel(level)
    return {
        "released": released,
        "seconds": round(seconds, 3),
        "batch": settings.BOOKING_SWEEP_BATCH,
        "workers": conf.sweep_workers(),
    }


def check_contended(event_id: int, result: loadclient.RunResult, seat_ids: list[int]) -> dict:
    """All contended seats sold, each exactly once, to the client whose confirm got the 200."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, status, booked_by FROM booking_seat WHERE event_id = %s", [event_id])
        rows = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        cursor.execute(
            "SELECT seat_id, count(*) FROM booking_seatevent WHERE event_id = %s AND action = 'booked' GROUP BY 1",
            [event_id],
        )
        booked_audit = dict(cursor.fetchall())
    sold = [seat for _, seat in result.sold]
    problems = []
    if sorted(sold) != sorted(seat_ids):
        problems.append(f"confirmed 200: {len(sold)} answers for {len(set(sold))} distinct of {len(seat_ids)} seats")
    for holder, seat in result.sold:
        if rows.get(seat) != ("booked", holder):
            problems.append(f"seat {seat} confirmed to {holder} but is {rows.get(seat)}")
    if any(status != "booked" for status, _ in rows.values()):
        problems.append("some contended seats are not booked")
    if set(booked_audit.values()) != {1} or len(booked_audit) != len(seat_ids):
        problems.append(f"audit: booked rows per seat {sorted(set(booked_audit.values()))}")
    return {
        "seats": len(seat_ids),
        "sold_once": not problems,
        "problems": problems[:10],
        "seconds": round(result.seconds, 3),
        "lock_attempts": len(result.lock.latencies_ms),
        "lock": result.lock.summary(),
        "confirm": result.confirm.summary(),
    }


def pgbench_footprint(pg_event: int) -> dict:
    """What pgbench wrote: its audit rows (one per transaction), and the seats of other events
    its holders hold or booked (none, or the other figures are off)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT action, count(*) FROM booking_seatevent WHERE event_id = %s AND holder LIKE %s GROUP BY 1",
            [pg_event, pgbench.HOLDER_PREFIX + "%"],
        )
        audit = dict(cursor.fetchall())
        cursor.execute(
            "SELECT count(*) FROM booking_seat WHERE event_id <> %s AND (locked_by LIKE %s OR booked_by LIKE %s)",
            [pg_event, pgbench.HOLDER_PREFIX + "%", pgbench.HOLDER_PREFIX + "%"],
        )
        foreign = cursor.fetchone()[0]
    return {"audit_rows": {"locked": audit.get("locked", 0), "booked": audit.get("booked", 0)}, "foreign": foreign}


class OtherDatabases:
    """Transactions committed or rolled back so far in the PostgreSQL server's other databases.

    On a connection of its own (psycopg's, in autocommit), outside Django's: the load client
    samples it from its event loop, where Django's connection may not be used."""

    def __init__(self) -> None:
        import psycopg

        s = connection.settings_dict
        self._conn = psycopg.connect(
            host=s.get("HOST") or HOST,
            port=s.get("PORT") or 5432,
            user=s.get("USER") or None,
            password=s.get("PASSWORD") or None,
            dbname=s["NAME"],
            autocommit=True,
        )

    def transactions(self) -> int:
        row = self._conn.execute(
            "SELECT coalesce(sum(xact_commit + xact_rollback), 0) FROM pg_stat_database"
            " WHERE datname IS NOT NULL AND datname <> current_database()"
        ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._conn.close()


def machine() -> dict:
    model = ""
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "postgresql": pg_version,
        "note": "server, PostgreSQL and the load client share these cores",
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- The whole run ------------------------------------------------------------------


def run(options: Options, command_line: str = "python -m bench") -> dict:
    if connection.vendor != "postgresql":
        raise RuntimeError("the benchmark runs on PostgreSQL: set DATABASE_URL=postgres://…")
    if ensure_database():
        log(f"created database {connection.settings_dict['NAME']}")
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="booking-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = options.server_cmd or procfile_web_command()
    report: dict = {
        "command_line": command_line,
        "options": {k: v for k, v in vars(options).items() if k not in ("server_env", "webhook_worker_env")},
        "machine": machine(),
        "server_command": command,
        # What --server-env added: it changes what is measured.
        "server_env": dict(options.server_env or {}),
        "load_before": load_average(),
        "workdir": str(workdir),
    }
    log(f"workdir {workdir}; load average {report['load_before']}")
    call_command("migrate", verbosity=0, interactive=False)
    removed = cleanup()
    if removed:
        log(f"removed {removed} events of an earlier run")
    compact_tables()

    started = time.perf_counter()
    main_event, main_seats = create_event("bookings", options.seats)
    pg_event, pg_seats = create_event("pgbench copy", options.seats)
    if pg_seats[-1] - pg_seats[0] + 1 != len(pg_seats):
        raise RuntimeError("the pgbench copy's seat ids are not contiguous (another writer?); run again")
    contended_event, contended_seats = create_event("contended", options.contended_seats, per_row=20)
    best_event = None
    if options.best_seats:
        best_event, _ = create_event("best available", options.best_seats, per_row=100)
    map_event, _ = create_event("seat map", options.map_seats, per_row=100)
    make_mixed_map(map_event)
    sweep_event, _ = create_event("expired holds", options.sweep_holds)
    make_expired_holds(sweep_event)
    hooks_event, hooks_seats = None, []
    if options.webhooks:  # the rounds with webhooks book seats of their own, as many
        hooks_event, hooks_seats = create_event("bookings with webhooks", options.seats)
    watched = unwatched = (0, [])
    if options.watchers:  # the watched event, and as many seats for the rounds without watchers
        watched = create_event("watched", options.watch_seats)
        unwatched = create_event("unwatched", options.watch_seats)
    clients = make_users(options.clients)
    log(
        f"created {options.seats} + {options.seats} + {options.contended_seats} + {options.map_seats}"
        f" + {options.sweep_holds}{f' + {options.seats}' if options.webhooks else ''}"
        f"{f' + 2 × {options.watch_seats}' if options.watchers else ''} seats and"
        f" {options.clients} users in {time.perf_counter() - started:.1f}s"
    )

    # The webhook load check's broker: the server's on-commit sends go there, to the worker's queue.
    broker = {"CELERY_BROKER_URL": options.webhook_broker_url or webhooks.default_broker_url()}
    # The watchers check's channel layer: the server pushes there, the live process reads it.
    layer = {"REDIS_URL": options.watch_redis_url or watchers.default_layer_url()}
    env = production_env(
        free_port(),
        **(broker if options.webhooks else {}),
        **(layer if options.watchers else {}),
        **(options.server_env or {}),
    )

    # The production server under load, and pgbench on the same tables, in turns: each
    # round the bookings (without webhooks, and with them, in turns), then pgbench, each
    # from the same start.
    check = webhooks.WebhookCheck(
        workdir=workdir, env=env, drain_limit=options.webhook_drain, worker_env=dict(options.webhook_worker_env or {})
    )
    server = None
    rounds, round_seconds = options.rounds, options.duration / options.rounds
    bookings_runs, pgbench_runs, hooks_runs = [], [], []
    bookings_cpu, pgbench_cpu, hooks_cpu = cpu.Phase(), cpu.Phase(), cpu.Phase()
    pg_share = len(pg_seats) // rounds
    other_endpoints = 0
    without_messages = 0  # messages written during the rounds without webhooks: none

    others = OtherDatabases()

    def probe() -> cpu.Sample:
        return cpu.sample(server_pgid=server.pgid, other_transactions=others.transactions())

    def probe_hooks() -> cpu.Sample:
        return cpu.sample(
            server_pgid=server.pgid, other_transactions=others.transactions(), groups=check.probe_groups()
        )

    def share(seats: list[int], n: int) -> list[int]:
        return seats[n * len(seats) // rounds : (n + 1) * len(seats) // rounds]

    try:
        if options.webhooks:
            check.start()
            other_endpoints = other_active_endpoints(check.endpoint_id)
            log(
                f"webhooks: endpoint {check.url} (every type, active only in the rounds with webhooks);"
                f" worker: {check.worker_command} on {check.broker_url}"
            )
            if other_endpoints:
                log(f"warning: {other_endpoints} other active webhook endpoints: the rounds without have some too")
        server = start_server(command, env, workdir / "server.log")
        log(
            f"server: {command} (port {server.port}); {options.clients} clients; {rounds} rounds of"
            f" {options.warmup}s warm-up + {round_seconds:g}s bookings"
            + (
                f", as long with webhooks (in turns; each then up to {options.webhook_drain:g}s for the backlog)"
                if options.webhooks
                else ""
            )
            + f", then {round_seconds:g}s pgbench"
        )
        for n in range(rounds):
            # Without, then with webhooks in even rounds, the other way round in odd ones: a
            # machine that slows down (or speeds up) over the run weighs on both alike.
            kinds = ["without", "with"] if n % 2 == 0 else ["with", "without"]
            for kind in kinds if options.webhooks else ["without"]:
                if kind == "with":
                    check.set_active(True)
                    settle_database(webhook_tables=True)
                    check.wait_visible()
                    before = check.before_round()
                    hooked = loadclient.run_bookings(
                        host=HOST,
                        port=server.port,
                        clients=clients,
                        seats=share(hooks_seats, n),
                        duration=round_seconds,
                        warmup=options.warmup,
                        probe=probe_hooks,
                    )
                    hooks_runs.append(hooked)
                    hooks_cpu.add(hooked.probe_start, hooked.probe_end, hooked.bookings)
                    outcome = check.after_round(before, sold=len(hooked.sold))
                    check.set_active(False)
                    log(
                        f"round {n + 1}: with webhooks {hooked.summary()['bookings_per_second']} bookings/s;"
                        f" {outcome.written} messages, backlog {outcome.backlog_at_end} at the end,"
                        + (
                            f" drained in {outcome.drain_seconds}s"
                            if outcome.drained
                            else f" NOT drained within {options.webhook_drain:g}s ({outcome.received} received,"
                            f" {outcome.purged} tasks dropped)"
                        )
                    )
                    continue
                if options.webhooks:
                    settle_database(webhook_tables=True)
                    check.wait_visible()  # the endpoint switched off is off in the server too
                    last_message = webhooks.last_message_id()
                else:
                    settle_database()
                if n == 0 and "load_during_start" not in report:
                    report["load_during_start"] = load_average()
                result = loadclient.run_bookings(
                    host=HOST,
                    port=server.port,
                    clients=clients,
                    seats=share(main_seats, n),
                    duration=round_seconds,
                    warmup=options.warmup,
                    probe=probe,
                )
                bookings_runs.append(result)
                bookings_cpu.add(result.probe_start, result.probe_end, result.bookings)
                report["load_after_bookings"] = load_average()
                if options.webhooks:
                    without_messages += webhooks.messages_since(last_message)
            settle_database(webhook_tables=options.webhooks)
            replay = pgbench.run(
                workdir=workdir,
                clients=options.clients,
                duration=round_seconds,
                # Fresh seats each round too, as the bookings' (its own share of its copy).
                first_seat=pg_seats[0] + n * pg_share,
                seat_count=pg_share,
                output_name=f"pgbench-{n + 1}.out",
                probe=probe,
            )
            pgbench_runs.append(replay)
            before, after = replay.pop("probe")
            # One booking = two transactions.
            pgbench_cpu.add(before, after, (replay["transactions"] or 0) / 2, client=replay["pgbench_cpu_seconds"])
            report["load_after_pgbench"] = load_average()
            log(
                f"round {n + 1}: bookings/s {result.summary()['bookings_per_second']},"
                f" pgbench {replay['bookings_per_second']} bookings/s"
            )
        bookings = loadclient.merged(bookings_runs)
        report["bookings"] = bookings.summary()
        report["bookings"]["rounds"] = [run.summary()["bookings_per_second"] for run in bookings_runs]
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM booking_seat WHERE event_id = %s AND status = 'booked'", [main_event])
            report["bookings"]["booked_in_database"] = cursor.fetchone()[0]
            report["bookings"]["confirmed_200_total"] = len(bookings.sold)
        footprint = pgbench_footprint(pg_event)
        report["pgbench"] = {
            # Rounds of equal length: their mean is the rate over all of them.
            "bookings_per_second": round(sum(r["bookings_per_second"] for r in pgbench_runs) / rounds, 1),
            "transactions_per_second": round(sum(r["transactions_per_second"] for r in pgbench_runs) / rounds, 1),
            "transactions": sum(r["transactions"] or 0 for r in pgbench_runs),
            "failed": sum(r["failed"] for r in pgbench_runs),
            "seconds": round(sum(r["seconds"] for r in pgbench_runs), 1),
            "clients": options.clients,
            "rounds": [r["bookings_per_second"] for r in pgbench_runs],
            "audit_rows": footprint["audit_rows"],
            "foreign_seats_touched": footprint["foreign"],
            "script": str(workdir / "booking.pgbench.sql"),
            "outputs": [r["output"] for r in pgbench_runs],
            "sql": pgbench.sql_statements(),
        }
        if footprint["foreign"]:
            raise RuntimeError(f"pgbench changed {footprint['foreign']} seats of other events")
        report["cpu"] = {
            "bookings": bookings_cpu.summary(client_name="load_client"),
            "pgbench": pgbench_cpu.summary(client_name="pgbench", with_server=False),
        }
        ours = report["cpu"]["bookings"]["ms_per_booking"]["postgres"]
        theirs = report["cpu"]["pgbench"]["ms_per_booking"]["postgres"]
        report["cpu"]["postgres_ratio"] = round(ours / theirs, 2) if ours and theirs else None
        log(
            f"bookings/s {report['bookings']['bookings_per_second']}; pgbench"
            f" {report['pgbench']['bookings_per_second']} bookings/s; PostgreSQL CPU per booking"
            f" {ours} ms against pgbench's {theirs} ms"
        )
        if options.webhooks:
            report["webhooks"] = webhook_report(
                report, check, hooks_runs, hooks_cpu, hooks_event, without_messages, other_endpoints
            )
            w = report["webhooks"]
            log(
                f"webhooks: {w['bookings_per_second_with']} bookings/s with, {w['bookings_per_second_without']}"
                f" without: {w['ratio']}; {w['messages']['written']} messages written,"
                f" {w['messages']['received']} received"
            )
            check.stop()  # the worker and the receiver gone, the endpoint removed with its messages

        if options.watchers:
            watch = watchers.WatchersCheck(
                workdir=workdir,
                env=env,
                counts=list(options.watchers),
                watched=watched,
                plain=unwatched,
                drain=options.watch_drain,
            )
            log(
                f"watchers: {', '.join(map(str, options.watchers))} watchers of {options.watch_seats} seats;"
                f" live: {watchers.procfile_command('live')} on {watch.layer_url}; rounds of {options.warmup}s"
                f" warm-up + {options.watch_duration:g}s with and without watchers, in turns"
            )
            watch.run(
                server=server,
                clients=clients,
                duration=options.watch_duration,
                warmup=options.warmup,
                others=others,
                settle=settle_database,
                log=log,
            )
            report["watchers"] = watch.summary()

        contended = loadclient.run_contended(
            host=HOST, port=server.port, clients=clients, seats=contended_seats, timeout=max(60.0, options.duration)
        )
        report["contended"] = check_contended(contended_event, contended, contended_seats)
        log(f"contended: {report['contended']['seats']} seats sold once each: {report['contended']['sold_once']}")

        if best_event is not None:
            settle_database()
            best = loadclient.run_best_available(
                host=HOST,
                port=server.port,
                clients=clients,
                event_id=best_event,
                quantity=options.best_quantity,
                duration=options.duration / options.rounds,
                warmup=options.warmup,
            )
            report["best_available"] = best_available_report(report, best_event, best, options)
            b = report["best_available"]
            log(
                f"best available: {b['holds_per_second']} holds/s of {options.best_quantity} together, lock p99"
                f" {b['lock']['p99_ms']} ms (named-seat lock p99 {b['named_lock_p99_ms']} ms)"
            )

        # Measured on its own too: not behind the autovacuum of the bookings' writes.
        settle_database()
        report["seat_map"] = seat_map_timing(server.port, map_event)
        log(f"seat map of {report['seat_map']['seats']} seats: {report['seat_map']['server_ms_median']} ms server time")
    finally:
        others.close()
        check.stop()
        if server is not None:
            server.stop()

    # The sweep on its own: not behind the autovacuum of the last round's writes.
    settle_database()
    report["load_before_sweep"] = load_average()
    report["sweep"] = sweep_timing(workdir)
    log(f"sweep released {report['sweep']['released']} holds in {report['sweep']['seconds']}s")

    bps, pg_bps = report["bookings"]["bookings_per_second"], report["pgbench"]["bookings_per_second"]
    report["ratio_to_pgbench"] = round(bps / pg_bps, 3) if pg_bps else None
    report["targets"] = targets(report)
    report["load_after"] = load_average()
    if not options.keep:
        cleanup()
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def best_available_report(report: dict, event_id: int, result: loadclient.RunResult, options: Options) -> dict:
    """Best available's figures, beside the named-seat locks', and checks on what it sold."""
    summary = result.summary()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM booking_seat WHERE event_id = %s AND status IN ('locked', 'booked')", [event_id]
        )
        taken = cursor.fetchone()[0]
    sold = [seat for _, seat in result.sold]
    return {
        "seats": options.best_seats,
        "quantity": options.best_quantity,
        "clients": options.clients,
        "seconds": summary["seconds"],
        "holds": result.bookings,
        "holds_per_second": summary["bookings_per_second"],
        "lock": summary["lock"],
        "confirm": summary["confirm"],
        "named_lock_p99_ms": report["bookings"]["lock"]["p99_ms"],
        "named_bookings_per_second": report["bookings"]["bookings_per_second"],
        "not_together": result.not_together,
        "sold_out_answers": result.sold_out,
        # Every seat a confirm got is taken in the database, and no seat was given twice.
        "sold_once": len(sold) == len(set(sold)) and taken >= len(sold),
        "taken_in_database": taken,
        "client_cpu_seconds": summary["client_cpu_seconds"],
        "errors": summary["errors"],
    }


def other_active_endpoints(own: int | None) -> int:
    """Active webhook endpoints besides the benchmark's: 0, or the rounds without webhooks have some."""
    from booking.models import WebhookEndpoint

    return WebhookEndpoint.objects.filter(active=True).exclude(pk=own).count()


def webhook_report(
    report: dict,
    check: webhooks.WebhookCheck,
    runs: list[loadclient.RunResult],
    phase: cpu.Phase,
    event_id: int,
    without_messages: int,
    other_endpoints: int,
) -> dict:
    """The webhook load check's figures: the rounds with webhooks against those without."""
    hooked = loadclient.merged(runs)
    out = check.summary()
    summary = hooked.summary()
    summary["rounds"] = [run.summary()["bookings_per_second"] for run in runs]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM booking_seat WHERE event_id = %s AND status = 'booked'", [event_id])
        summary["booked_in_database"] = cursor.fetchone()[0]
    summary["confirmed_200_total"] = len(hooked.sold)
    without, with_ = report["bookings"]["bookings_per_second"], summary["bookings_per_second"]
    pairs = zip(report["bookings"]["rounds"], summary["rounds"], strict=True)
    out.update(
        bookings_per_second_without=without,
        bookings_per_second_with=with_,
        ratio=round(with_ / without, 3) if without else None,
        rounds_without=report["bookings"]["rounds"],
        rounds_with=summary["rounds"],
        round_ratios=[round(w / wo, 3) if wo else None for wo, w in pairs],
        bookings=summary,
        messages_written_without=without_messages,
        other_active_endpoints=other_endpoints,
        cpu=phase.summary(client_name="load_client"),
    )
    return out


def targets(report: dict) -> dict:
    checks = {
        "ratio_to_pgbench": (report["ratio_to_pgbench"], ">=", TARGETS["ratio_to_pgbench"]),
        "lock_p99_ms": (report["bookings"]["lock"]["p99_ms"], "<=", TARGETS["lock_p99_ms"]),
        "sweep_seconds": (report["sweep"]["seconds"], "<=", TARGETS["sweep_seconds"]),
        "seat_map_server_ms": (report["seat_map"]["server_ms_median"], "<=", TARGETS["seat_map_server_ms"]),
        "contended_sold_once": (report["contended"]["sold_once"], "==", True),
    }
    if "best_available" in report:
        b = report["best_available"]
        checks["best_available_sold_once"] = (b["sold_once"], "==", True)
        checks["best_available_together"] = (b["not_together"], "==", 0)
    if "webhooks" in report:
        w = report["webhooks"]
        checks["webhooks_ratio"] = (w["ratio"], ">=", TARGETS["webhooks_ratio"])
        checks["webhooks_all_received"] = (w["messages"]["all_received"], "==", True)
    if "watchers" in report:
        w = report["watchers"]
        checks["watchers_ratio"] = (w["ratio_at_most_watchers"], ">=", TARGETS["watchers_ratio"])
        checks["watchers_lag_p99_ms"] = (w["lag_p99_ms_at_most_watchers"], "<=", TARGETS["watchers_lag_p99_ms"])
        checks["watchers_all_final"] = (w["all_final"], "==", True)
    out = {}
    for name, (value, op, goal) in checks.items():
        ok = value is not None and (value >= goal if op == ">=" else value <= goal if op == "<=" else value == goal)
        out[name] = {"value": value, "target": f"{op} {goal}", "met": bool(ok)}
    return out


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _cpu_line(name: str, phase: dict, client: str, cpus: int | None) -> str:
    per = phase["ms_per_booking"]
    server = _ms(per["server"]) if "server" in per else "-"
    return (
        f"  {name:<18} {_ms(per['postgres']):>10}  {server:>10}  {_ms(per[client]):>6}  {_ms(per['redis']):>5}"
        f"  {_ms(per['measured_total']):>6}   {phase['cores_busy']} of {cpus}  {phase['other_cpu_seconds']:>7} s"
        f"  {phase['other_databases_transactions']}"
    )


def _list(values: list) -> str:
    return ", ".join("n/a" if v is None else str(v) for v in values)


def best_available_lines(report: dict) -> list[str]:
    b = report["best_available"]
    return [
        f"best available      {b['holds_per_second']} holds/s of {b['quantity']} together, {b['clients']} clients,"
        f" {b['seats']} seats: lock p50 {b['lock']['p50_ms']} ms, p99 {b['lock']['p99_ms']} ms"
        f" (named-seat lock p99 {b['named_lock_p99_ms']} ms, {b['named_bookings_per_second']} bookings/s);"
        f" sold once: {b['sold_once']}, not together: {b['not_together']}",
    ]


def webhook_lines(report: dict) -> list[str]:
    w = report["webhooks"]
    b, m, u = w["bookings"], w["messages"], w["cpu"]
    per, without = u["ms_per_booking"], report["cpu"]["bookings"]["ms_per_booking"]
    more = "n/a"
    if None not in (per["server"], without["server"], per["postgres"], without["postgres"]):
        more = f"{per['server'] - without['server']:+.3f}, PostgreSQL {per['postgres'] - without['postgres']:+.3f}"
    drains = w["drain_seconds"]
    drained = (
        f"drained in {_list(drains)} s (from the last answer to the last message received)"
        if w["drained"]
        else f"NOT all drained within {w['drain_limit_seconds']} s: {_list(drains)} s; {w['purged_tasks']} tasks dropped"
    )
    return [
        "",
        "webhook load check  one endpoint subscribed to every type, receiver on 127.0.0.1 (answers 200 at once);"
        " worker: the Procfile's webhooks: line"
        + "".join(f" {name}={value}" for name, value in w["worker_env"].items())
        + f"; broker {w['broker']}",
        f"bookings/s          {w['bookings_per_second_with']:>9}   with webhooks (rounds {_list(w['rounds_with'])}),"
        f" against {w['bookings_per_second_without']} without (rounds {_list(w['rounds_without'])});"
        " the two kinds in turns",
        f"ratio with/without  {w['ratio']:>9}   (target >= {TARGETS['webhooks_ratio']}; per round"
        f" {_list(w['round_ratios'])})",
        f"lock    p50 / p99   {b['lock']['p50_ms']} / {b['lock']['p99_ms']} ms   statuses {b['lock']['statuses']}"
        " (with webhooks)",
        f"confirm p50 / p99   {b['confirm']['p50_ms']} / {b['confirm']['p99_ms']} ms   statuses"
        f" {b['confirm']['statuses']}",
        f"messages            {m['written']} written ({m['per_booking']} per booking: {_list(list(m['types']))}),"
        f" {m['received']} received, {m['delivered_in_database']} delivered in the database; {m['duplicates']}"
        f" duplicates; signatures verified {m['signatures_verified']} (one in {m['verify_every']}),"
        f" {m['signature_failures']} failed; {w['messages_written_without']} written in the rounds without",
        f"backlog             {_list(w['backlog_at_round_end'])} messages at each round's last answer; {drained}",
        f"worker CPU          {_ms(w['worker_cpu_ms_per_message'])} ms per message (receiver"
        f" {_ms(w['receiver_cpu_ms_per_message'])} ms), from each round's start to its last message; connections"
        f" opened per message: PostgreSQL {_ms(w['postgres_sessions_per_message'])}, Redis"
        f" {_ms(w['redis_connections_per_message'])}",
        f"CPU per booking     with webhooks, in its measured windows: webhook worker {_ms(per.get('webhook_worker'))},"
        f" receiver {_ms(per.get('receiver'))} ms (in the total of the line above); web server {more} ms"
        " against the bookings without",
    ]


def watcher_lines(report: dict) -> list[str]:
    w = report["watchers"]
    lines = [
        "",
        f"watchers check      W watchers of one event of {w['watched_event_seats']} seats (python -m bench.watchclient);"
        f" live: the Procfile's live: line on {w['layer']}; web server pushes there; figures taken"
        f" {w['drain_seconds']:g} s after a round's last answer; lag from the change's database time",
        "  W      bookings/s with / without  ratio   lag p50 / p99 ms   frames/s  MB/s    resyncs  all final"
        "  connect / snapshots s  live CPU  live RSS / peak MB  client CPU",
    ]
    for r in w["rounds"]:
        v, lag, c = r["watch"], r["watch"]["lag_ms"], r["connect"]
        mem = r["live_memory_end"]
        lines.append(
            f"  {r['watchers']:<6} {r['with']['bookings_per_second']:>8} / {r['without']['bookings_per_second']:<12}"
            f"  {r['ratio']!s:<6}  {lag['p50']!s:>6} / {lag['p99']!s:<8}  {v['frames_per_second']!s:>9}"
            f"  {v['megabytes_per_second']!s:<6}  {v['resyncs']:>7}  {v['all_final']!s:<9}"
            f"  {c['connect_seconds']} / {c['snapshot_seconds']} ({c['failed']} failed)"
            f"  {r['live_cpu_share_of_one_core']}  {mem['rss_mb']} / {mem['peak_mb']}"
            f"  {r['watch_client_cpu_share_of_one_core']}"
        )
    for r in w["rounds"]:
        v = r["watch"]
        if "fan_out_ms" in v:  # reports before the lag's parts have none
            first, fan = v["lag_to_first_watcher_ms"], v["fan_out_ms"]
            lines.append(
                f"  {r['watchers']:<6} lag's parts p50 / p99 ms: change to the frame's first watcher"
                f" {first['p50']} / {first['p99']}, first watcher to each watcher {fan['p50']} / {fan['p99']}"
            )
    lines.append(
        "  (CPU: share of one core over the measured window; live RSS at the figures' time, peak since its start;"
        " all final: every watcher had every seat's version in the database)"
    )
    return lines


def format_report(report: dict) -> str:
    b, c, m, s, p = report["bookings"], report["contended"], report["seat_map"], report["sweep"], report["pgbench"]
    o, u = report["options"], report["cpu"]
    ub, up = u["bookings"], u["pgbench"]
    lines = [
        "",
        "=== Seat booking benchmark ===",
        f"machine: {report['machine']['cpus']} CPUs ({report['machine']['cpu_model']}), PostgreSQL "
        f"{report['machine']['postgresql']}, Python {report['machine']['python']}; "
        "server, database and load client share the CPUs",
        f"load average (1, 5, 15 min): before {report['load_before']}, after bookings "
        f"{report['load_after_bookings']}, after pgbench {report['load_after_pgbench']}",
        f"server: {report['server_command']}"
        + "".join(f" {name}={value}" for name, value in report.get("server_env", {}).items()),
        f"event of {o['seats']} seats; {o['clients']} clients (one user and token each), "
        f"{o['duration']}s measured in {o['rounds']} rounds, each after a {o['warmup']}s warm-up and followed by"
        " pgbench for as long; each booking = one lock + one confirm",
        "",
        f"bookings/s          {b['bookings_per_second']:>9}   ({b['bookings']} bookings in {b['seconds']}s;"
        f" rounds {', '.join(str(r) for r in b['rounds'])})",
        f"lock    p50 / p99   {b['lock']['p50_ms']} / {b['lock']['p99_ms']} ms   statuses {b['lock']['statuses']}",
        f"confirm p50 / p99   {b['confirm']['p50_ms']} / {b['confirm']['p99_ms']} ms   statuses {b['confirm']['statuses']}",
        f"per-client mean     {b['per_client']['mean_ms_min']} to {b['per_client']['mean_ms_max']} ms (each client's"
        " lock and confirm; apart when the server's processes took unequal shares of the connections)",
        f"load client CPU     {b['client_cpu_seconds']}s = {b['client_cpu_share_of_one_core']:.0%} of one core"
        " (over the rounds, warm-ups included)",
        f"pgbench             {p['bookings_per_second']:>9}   bookings/s = {p['transactions_per_second']} transactions/s"
        f" ÷ 2 (fixed SQL: per booking 2 transactions of SELECT … FOR UPDATE, UPDATE, audit INSERT;"
        f" {p['clients']} clients, {p['failed']} failed; rounds {', '.join(str(r) for r in p['rounds'])})",
        f"ratio               {report['ratio_to_pgbench']:>9}   (bookings/s ÷ pgbench's bookings/s)",
        "",
        "CPU per booking, ms   PostgreSQL  web server  client  Redis   total   cores busy  elsewhere"
        "  other DBs' transactions",
        _cpu_line("bookings (HTTP)", ub, "load_client", report["machine"]["cpus"]),
        *(
            [_cpu_line("bookings + webhooks", report["webhooks"]["cpu"], "load_client", report["machine"]["cpus"])]
            if "webhooks" in report
            else []
        ),
        _cpu_line("pgbench", up, "pgbench", report["machine"]["cpus"]),
        f"PostgreSQL's CPU per booking: {u['postgres_ratio']} × pgbench's (client: the load client, or pgbench;"
        " elsewhere: CPU of other processes meanwhile; PostgreSQL's figure is the whole server's)",
        *(webhook_lines(report) if "webhooks" in report else []),
        *(watcher_lines(report) if "watchers" in report else []),
        "",
        f"contended           {c['seats']} seats, all sold exactly once: {c['sold_once']} "
        f"({c['lock_attempts']} lock attempts in {c['seconds']}s; lock p99 {c['lock']['p99_ms']} ms)",
        *(best_available_lines(report) if "best_available" in report else []),
        f"sweep               {s['released']} expired holds released in {s['seconds']}s "
        f"(batches of {s['batch']}, {s['workers']} at once)",
        f"seat map            {m['seats']} seats, {m['bytes']} bytes: {m['server_ms_median']} ms server time "
        f"(median of {len(m['server_ms_all'])}), {m['client_ms_median']} ms at the client",
        "",
        "targets:",
    ]
    for name, check in report["targets"].items():
        lines.append(f"  {'met ' if check['met'] else 'MISS'} {name}: {check['value']} (target {check['target']})")
    lines.append(f"full report: {report['workdir']}/report.json; pgbench script: {p['script']}")
    return "\n".join(lines)
