"""The benchmark: the production server under concurrent clients, against the database's own ceiling.

One run, on the PostgreSQL database of DATABASE_URL (use a database of its
own; the run deletes only its own events, named ``benchmark: …``):

1. creates its events with plain SQL (the booking event, a copy of its seats
   for pgbench, 100 contended seats, a seat map, expired holds) and one user
   with a token per client;
2. captures the SQL of one booking from the PostgreSQL log (pgreplay);
3. starts the web server exactly as the Procfile's ``web:`` line runs it in
   production, with DEBUG=false, on a free port;
4. drives it with the clients (loadclient): each books its own seats, one
   lock then one confirm each; then all fight for the same 100 seats; then
   the seat map is fetched;
5. replays the captured SQL with pgbench, same clients, same duration;
6. times one sweep of the expired holds, in this process.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.core.management import call_command
from django.db import connection

from . import loadclient, pgreplay

NAME_PREFIX = "benchmark: "
HOST = "127.0.0.1"
REPO = Path(settings.BASE_DIR)

#: The issue's targets on a 2-core machine shared by server, database and load.
TARGETS = {
    "ratio_to_pgbench": 0.3,
    "lock_p99_ms": 25.0,
    "sweep_seconds": 2.0,
    "seat_map_server_ms": 150.0,
}


@dataclass
class Options:
    seats: int = 200_000
    clients: int = 16
    duration: float = 30.0
    warmup: float = 3.0
    contended_seats: int = 100
    map_seats: int = 50_000
    sweep_holds: int = 100_000
    # The bookings and pgbench's replay take turns, each for duration / rounds at a time: the
    # minutes of a shared machine differ by 10 to 25 %, and each minute then weighs on both.
    rounds: int = 3
    server_cmd: str | None = None
    server_env: dict[str, str] | None = None
    pg_log: str | None = None
    keep: bool = False
    workdir: str | None = None


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
    """Delete the events of earlier runs (and their seats and audit rows)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM booking_event WHERE name LIKE %s", [NAME_PREFIX + "%"])
        ids = [row[0] for row in cursor.fetchall()]
        if ids:
            cursor.execute("DELETE FROM booking_seatevent WHERE event_id = ANY(%s)", [ids])
            cursor.execute("DELETE FROM booking_seat WHERE event_id = ANY(%s)", [ids])
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
            INSERT INTO booking_seat (event_id, label, row, number, status, locked_by, booked_by, version)
            SELECT %(event)s, 'R' || (g / %(per_row)s + 1) || '-' || (g %% %(per_row)s + 1),
                   'R' || (g / %(per_row)s + 1), g %% %(per_row)s + 1, 'available', '', '', 0
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
        cursor.execute(
            "UPDATE booking_seat SET status = 'booked', booked_by = 'map-holder', booked_at = now()"
            " WHERE event_id = %s AND id %% 10 = 2",
            [event_id],
        )


def make_users(count: int, prefix: str = "bench-client-") -> list[tuple[str, str]]:
    from booking.management.commands.create_api_user import ensure_api_user

    return [(f"{prefix}{i}", ensure_api_user(f"{prefix}{i}")) for i in range(1, count + 1)]


# --- The server ----------------------------------------------------------------


def procfile_web_command() -> str:
    """The production web command: the Procfile's ``web:`` line."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line[len("web:") :].strip()
    raise RuntimeError("Procfile has no web: line")


def database_url(user: str | None = None) -> str:
    s = connection.settings_dict
    auth = quote(user or s.get("USER") or "")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"])
    return f"postgres://{auth}@{s.get('HOST') or HOST}:{s.get('PORT') or 5432}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def production_env(port: int, **overrides: str) -> dict[str, str]:
    """The environment of README's production section, plus the benchmark's high throttle limits."""
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


class Server:
    def __init__(self, command: str, env: dict[str, str], log_path: Path):
        self.command, self.port, self.log_path = command, int(env["PORT"]), log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"server exited ({self.popen.returncode}):\n{self.log_path.read_text()[-3000:]}")
            try:
                status, *_ = loadclient.get(HOST, self.port, "/api/health")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not healthy within {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self._log.close()


def start_server(command: str, env: dict[str, str], log_path: Path) -> Server:
    server = Server(command, env, log_path)
    server.wait_healthy()
    return server


# --- The steps -------------------------------------------------------------------


def capture_booking_sql(
    command: str, env: dict[str, str], workdir: Path, seat_ids: list[int], pg_log: str | None
) -> tuple[str, dict]:
    """Serve two bookings on a one-thread server logging in as the capture role; the second's SQL as a pgbench script."""
    pgreplay.setup_capture_role()
    log_file = pgreplay.find_server_log(pg_log)
    holder, token = make_users(1, prefix="bench-capture-")[0]
    capture_env = {
        **env,
        "DATABASE_URL": database_url(pgreplay.CAPTURE_ROLE),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "1",
    }
    session_start = pgreplay.log_size(log_file)
    server = start_server(command, capture_env, workdir / "capture-server.log")
    try:

        def book(seat: int) -> None:
            result = loadclient.run_bookings(
                host=HOST, port=server.port, clients=[(holder, token)], seats=[seat], duration=30, warmup=0
            )
            if result.bookings != 1:
                raise RuntimeError(f"the capture booking of seat {seat} failed: {result.errors}")

        book(seat_ids[0])  # warms the server's connection up: no connection setup in what is captured
        time.sleep(0.2)
        offset = pgreplay.log_size(log_file)
        book(seat_ids[1])
        time.sleep(0.5)
        database = connection.settings_dict["NAME"]
        statements = pgreplay.read_statements(log_file, offset, user=pgreplay.CAPTURE_ROLE, database=database)
        # What the server's connection prepared once, at its first booking: pgbench's clients prepare it too.
        session = pgreplay.read_statements(
            log_file, session_start, user=pgreplay.CAPTURE_ROLE, database=database, until=offset
        )
    finally:
        server.stop()
    prepare = pgreplay.prepare_statements(session + statements)
    lock, confirm = pgreplay.split_booking(pgreplay.without_session_setup(statements))
    script = pgreplay.to_pgbench_script(lock, confirm, seat_id=seat_ids[1], holder=holder, prepare=prepare)
    return script, {
        "log_file": str(log_file),
        "lock_statements": len(lock),
        "confirm_statements": len(confirm),
        "statements": {"prepare": prepare, "lock": lock, "confirm": confirm},
    }


def settle_database() -> None:
    """Every measured phase starts from the same state: tables vacuumed and analyzed (no
    autovacuum of an earlier phase's writes running into it) and a checkpoint just taken
    (every phase pays the full-page writes that follow one; they land in whichever phase a
    checkpoint happens to start in otherwise, about once a minute under this load)."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE booking_seat")
        cursor.execute("VACUUM ANALYZE booking_seatevent")
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
    """One sweep of all expired holds, in this process, its log lines going to a file as a server's would."""
    import logging

    from booking import conf
    from booking.services import holds_release_expired

    logger = logging.getLogger("booking.expiry")
    handler = logging.FileHandler(workdir / "sweep.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        started = time.perf_counter()
        released = holds_release_expired(workers=conf.sweep_workers())  # as the beat task runs it
        seconds = time.perf_counter() - started
    finally:
        handler.close()
        logger.handlers[:], logger.propagate, _ = saved
        logger.setLevel(saved[2])
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


def seats_touched_by_pgbench(*, outside_event: int) -> int:
    """Seats of other events that pgbench's holders hold or booked: none, or the other figures are off."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM booking_seat WHERE event_id <> %s"
            " AND (locked_by LIKE 'pgbench-holder-%%' OR booked_by LIKE 'pgbench-holder-%%')",
            [outside_event],
        )
        return cursor.fetchone()[0]


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


def run(options: Options) -> dict:
    if connection.vendor != "postgresql":
        raise RuntimeError("the benchmark runs on PostgreSQL: set DATABASE_URL=postgres://…")
    if ensure_database():
        log(f"created database {connection.settings_dict['NAME']}")
    workdir = Path(options.workdir or tempfile.mkdtemp(prefix="booking-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    command = options.server_cmd or procfile_web_command()
    report: dict = {
        "command_line": "python manage.py benchmark",
        "options": {k: v for k, v in vars(options).items() if k not in ("server_env",)},
        "machine": machine(),
        "server_command": command,
        # What --server-env added (BOOKING_HOT_PATH=false, …): it changes what is measured.
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
    pg_event, pg_seats = create_event("pgbench copy", options.seats + 2)
    if pg_seats[-1] - pg_seats[0] + 1 != len(pg_seats):
        raise RuntimeError("the pgbench copy's seat ids are not contiguous (another writer?); run again")
    contended_event, contended_seats = create_event("contended", options.contended_seats, per_row=20)
    map_event, _ = create_event("seat map", options.map_seats, per_row=100)
    make_mixed_map(map_event)
    sweep_event, _ = create_event("expired holds", options.sweep_holds)
    make_expired_holds(sweep_event)
    clients = make_users(options.clients)
    log(
        f"created {options.seats} + {options.seats + 2} + {options.contended_seats} + {options.map_seats}"
        f" + {options.sweep_holds} seats and {options.clients} users in {time.perf_counter() - started:.1f}s"
    )

    env = production_env(free_port(), **(options.server_env or {}))

    # The SQL of one booking, from the database's log.
    try:
        script, capture = capture_booking_sql(command, env, workdir, pg_seats[:2], options.pg_log)
        report["capture"] = {k: v for k, v in capture.items()}
        log(
            f"captured {capture['lock_statements']} + {capture['confirm_statements']} statements from {capture['log_file']}"
        )
    except pgreplay.CaptureUnavailable as exc:
        raise RuntimeError(f"cannot capture the service's SQL: {exc}") from exc

    # The production server under load, and the database's own rate for the same statements,
    # in turns: each round the bookings, then pgbench, each from the same start.
    server = start_server(command, env, workdir / "server.log")
    rounds, round_seconds = options.rounds, options.duration / options.rounds
    bookings_runs, pgbench_runs = [], []
    pg_share = (len(pg_seats) - 2) // rounds
    try:
        log(
            f"server: {command} (port {server.port}); {options.clients} clients; {rounds} rounds of"
            f" {options.warmup}s warm-up + {round_seconds:g}s bookings, then {round_seconds:g}s pgbench"
        )
        for n in range(rounds):
            settle_database()
            if n == 0:
                report["load_during_start"] = load_average()
            bookings_runs.append(
                loadclient.run_bookings(
                    host=HOST,
                    port=server.port,
                    clients=clients,
                    seats=main_seats[n * len(main_seats) // rounds : (n + 1) * len(main_seats) // rounds],
                    duration=round_seconds,
                    warmup=options.warmup,
                )
            )
            report["load_after_bookings"] = load_average()
            settle_database()
            pgbench_runs.append(
                pgreplay.run_pgbench(
                    script,
                    workdir=workdir,
                    clients=options.clients,
                    duration=round_seconds,
                    # Fresh seats each round too, as the bookings' (its own share of its copy).
                    first_seat=pg_seats[2] + n * pg_share,
                    seat_count=pg_share,
                    output_name=f"pgbench-{n + 1}.out",
                )
            )
            report["load_after_pgbench"] = load_average()
            log(
                f"round {n + 1}: bookings/s {bookings_runs[-1].summary()['bookings_per_second']},"
                f" pgbench {pgbench_runs[-1]['tps']}/s"
            )
        bookings = loadclient.merged(bookings_runs)
        report["bookings"] = bookings.summary()
        report["bookings"]["rounds"] = [run.summary()["bookings_per_second"] for run in bookings_runs]
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM booking_seat WHERE event_id = %s AND status = 'booked'", [main_event])
            report["bookings"]["booked_in_database"] = cursor.fetchone()[0]
            report["bookings"]["confirmed_200_total"] = len(bookings.sold)
        report["pgbench"] = {
            **pgbench_runs[-1],
            "tps": round(sum(run["tps"] for run in pgbench_runs) / rounds, 1),  # rounds of equal length
            "transactions": sum(run["transactions"] or 0 for run in pgbench_runs),
            "failed": sum(run["failed"] for run in pgbench_runs),
            "seconds": round(sum(run["seconds"] for run in pgbench_runs), 1),
            "rounds": [run["tps"] for run in pgbench_runs],
        }
        report["pgbench"]["foreign_seats_touched"] = seats_touched_by_pgbench(outside_event=pg_event)
        if report["pgbench"]["foreign_seats_touched"]:
            raise RuntimeError(f"pgbench changed {report['pgbench']['foreign_seats_touched']} seats of other events")
        log(f"bookings/s {report['bookings']['bookings_per_second']}; pgbench {report['pgbench']['tps']} bookings/s")

        contended = loadclient.run_contended(
            host=HOST, port=server.port, clients=clients, seats=contended_seats, timeout=max(60.0, options.duration)
        )
        report["contended"] = check_contended(contended_event, contended, contended_seats)
        log(f"contended: {report['contended']['seats']} seats sold once each: {report['contended']['sold_once']}")

        # Measured on its own too: not behind the autovacuum of the bookings' writes.
        settle_database()
        report["seat_map"] = seat_map_timing(server.port, map_event)
        log(f"seat map of {report['seat_map']['seats']} seats: {report['seat_map']['server_ms_median']} ms server time")
    finally:
        server.stop()

    # The sweep on its own: not behind the autovacuum of the last round's writes.
    settle_database()
    report["load_before_sweep"] = load_average()
    report["sweep"] = sweep_timing(workdir)
    log(f"sweep released {report['sweep']['released']} holds in {report['sweep']['seconds']}s")

    bps = report["bookings"]["bookings_per_second"]
    report["ratio_to_pgbench"] = round(bps / report["pgbench"]["tps"], 3) if report["pgbench"]["tps"] else None
    report["targets"] = targets(report)
    report["load_after"] = load_average()
    if not options.keep:
        cleanup()
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def targets(report: dict) -> dict:
    checks = {
        "ratio_to_pgbench": (report["ratio_to_pgbench"], ">=", TARGETS["ratio_to_pgbench"]),
        "lock_p99_ms": (report["bookings"]["lock"]["p99_ms"], "<=", TARGETS["lock_p99_ms"]),
        "sweep_seconds": (report["sweep"]["seconds"], "<=", TARGETS["sweep_seconds"]),
        "seat_map_server_ms": (report["seat_map"]["server_ms_median"], "<=", TARGETS["seat_map_server_ms"]),
        "contended_sold_once": (report["contended"]["sold_once"], "==", True),
    }
    out = {}
    for name, (value, op, goal) in checks.items():
        ok = value is not None and (value >= goal if op == ">=" else value <= goal if op == "<=" else value == goal)
        out[name] = {"value": value, "target": f"{op} {goal}", "met": bool(ok)}
    return out


def format_report(report: dict) -> str:
    b, c, m, s, p = report["bookings"], report["contended"], report["seat_map"], report["sweep"], report["pgbench"]
    o = report["options"]
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
        f"pgbench replay      {p['tps']:>9} bookings/s ({report['capture']['lock_statements']} + "
        f"{report['capture']['confirm_statements']} statements captured from the PostgreSQL log, "
        f"{p['clients']} clients, {p['failed']} failed; rounds {', '.join(str(r) for r in p['rounds'])})",
        f"ratio               {report['ratio_to_pgbench']:>9}   (bookings/s / pgbench rate)",
        f"contended           {c['seats']} seats, all sold exactly once: {c['sold_once']} "
        f"({c['lock_attempts']} lock attempts in {c['seconds']}s; lock p99 {c['lock']['p99_ms']} ms)",
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
