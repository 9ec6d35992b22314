"""The database's own rate for a booking: pgbench running the least SQL a row-locked, audited booking needs.

The script is fixed, written here, not captured from the service: per booking two
transactions on the service's own tables, each ``BEGIN``, ``SELECT … FOR UPDATE`` of
the seat, ``UPDATE`` of the seat, ``INSERT`` of its audit row, ``COMMIT``; the first
holds the seat (status ``locked``), the second books it (``booked``). Every write
satisfies the tables' check constraints (a held seat has its holder, ``locked_at``
and ``lock_expires_at``; a booked seat has ``booked_by``, ``booked_at`` and its
booking; no seat is left available with a holder), and the audit row names the
authenticated user (and a booking's row its booking), as the service's do. Each
client books into one booking of its own, made once per connection (the service
makes a booking per confirm: one more INSERT there). One pgbench transaction is one of these two SQL transactions, so
pgbench's bookings/s is its transactions/s ÷ 2.

Seats: pgbench works on an event of its own, a copy of the seats created by the
runner, ids ``first`` to ``first + size - 1`` (contiguous). Client ``c`` (pgbench's
``client_id``, 0 to ``clients - 1``) books its ``k``-th seat (k from 0) at
``first + (k mod ⌊size ÷ clients⌋) × clients + c``: the seats interleaved among the
clients as the load client shares out its own, no seat ever shared by two clients,
and a run faster than its seats wraps around to its client's first seat (the
statements write a seat whatever its state), so it never touches another event's
seats.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connection

#: The holder of pgbench's holds and bookings: ``pgbench-holder-`` and the client's id.
HOLDER_PREFIX = "pgbench-holder-"

#: The pgbench script. Given by the runner (``--define``): ``first``, ``size`` and
#: ``clients`` (above) and ``n`` = 0 (counts the client's transactions: odd ones hold,
#: even ones book). The audit rows' actor is the load client's user of the same number
#: (``bench-client-1`` for client 0, …), looked up once per connection, as the
#: service keeps a token's user at hand; ``\gset`` keeps a result in variables.
SCRIPT = """\
-- One booking = two transactions: hold the seat, then book it (docs/benchmark.md).
\\set n :n + 1
\\if :n = 1
-- Once per connection: the user the audit rows name (the client's own, as for the HTTP load),
-- and the client's booking, which its booked seats belong to (a booked seat has one).
SELECT id AS actor FROM auth_user WHERE username = 'bench-client-' || (:client_id + 1) \\gset
INSERT INTO booking_booking (reference, event_id, holder, order_id, created_at) SELECT 'PGB' || lpad(:client_id::text, 5, '0'), event_id, 'pgbench-holder-' || :client_id, '', now() FROM booking_seat WHERE id = :first ON CONFLICT (reference) DO UPDATE SET created_at = now() RETURNING id AS booking \\gset
\\endif
\\set seat :first + (((:n - 1) / 2) % (:size / :clients)) * :clients + :client_id
\\if :n % 2 = 1
-- transaction 1: hold the seat
BEGIN;
SELECT event_id, status FROM booking_seat WHERE id = :seat FOR UPDATE \\gset
UPDATE booking_seat SET status = 'locked', locked_by = 'pgbench-holder-' || :client_id, locked_at = now(), lock_expires_at = now() + interval '60 s', booked_by = '', booked_at = NULL, booking_id = NULL, version = version + 1 WHERE id = :seat;
INSERT INTO booking_seatevent (seat_id, event_id, action, holder, actor_id, created_at) VALUES (:seat, :event_id, 'locked', 'pgbench-holder-' || :client_id, :actor, now());
COMMIT;
\\else
-- transaction 2: book it
BEGIN;
SELECT event_id, status FROM booking_seat WHERE id = :seat FOR UPDATE \\gset
UPDATE booking_seat SET status = 'booked', booked_by = 'pgbench-holder-' || :client_id, booked_at = now(), booking_id = :booking, locked_by = '', locked_at = NULL, lock_expires_at = NULL, version = version + 1 WHERE id = :seat;
INSERT INTO booking_seatevent (seat_id, event_id, action, holder, actor_id, booking_id, created_at) VALUES (:seat, :event_id, 'booked', 'pgbench-holder-' || :client_id, :actor, :booking, now());
COMMIT;
\\endif
"""

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
_DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


def sql_statements() -> dict[str, list[str]]:
    """The script's SQL, without pgbench's meta-commands and comments, by part (for the report)."""
    parts: dict[str, list[str]] = {"once_per_connection": [], "lock": [], "confirm": []}
    part = "once_per_connection"
    for line in SCRIPT.splitlines():
        if line.startswith("-- transaction 1"):
            part = "lock"
        elif line.startswith("-- transaction 2"):
            part = "confirm"
        elif line and not line.startswith(("--", "\\")):
            parts[part].append(line.replace(" \\gset", ";"))
    return parts


def run(
    *,
    workdir: Path,
    clients: int,
    duration: float,
    first_seat: int,
    seat_count: int,
    output_name: str = "pgbench.out",
    probe: Callable[[], object] | None = None,
    pgbench: str = "pgbench",
) -> dict:
    """Run the script with ``clients`` connections for ``duration`` seconds on the ``seat_count``
    seats from id ``first_seat`` on; returns its rates and counts, and ``probe()`` (a CPU
    sample) taken before pgbench starts and after its connections have closed."""
    if seat_count < clients:
        raise RuntimeError(f"pgbench needs a seat per client: {seat_count} seats for {clients} clients")
    settings = connection.settings_dict
    path = workdir / "booking.pgbench.sql"
    path.write_text(SCRIPT)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin:/usr/local/bin")}
    # The session settings the service's connections start with (lock_timeout).
    if settings.get("OPTIONS", {}).get("options"):
        env["PGOPTIONS"] = settings["OPTIONS"]["options"]
    if settings.get("PASSWORD"):
        env["PGPASSWORD"] = settings["PASSWORD"]
    args = [
        pgbench,
        "--no-vacuum",
        "--report-per-command",
        f"--host={settings.get('HOST') or '127.0.0.1'}",
        f"--port={settings.get('PORT') or 5432}",
        f"--username={settings.get('USER') or 'postgres'}",
        f"--client={clients}",
        f"--jobs={min(clients, 2)}",
        f"--time={max(1, round(duration))}",
        "--define=n=0",
        f"--define=first={first_seat}",
        f"--define=size={seat_count}",
        f"--define=clients={clients}",
        f"--file={path}",
        settings["NAME"],
    ]
    before = probe() if probe else None
    children_before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=duration + 120)
    seconds = time.perf_counter() - started
    pgbench_cpu = _children_cpu() - children_before
    _wait_for_backends_to_exit(settings["NAME"])
    after = probe() if probe else None
    output = done.stdout + done.stderr
    (workdir / output_name).write_text(output)
    match = _TPS.search(output)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{output[-3000:]}")
    failed = _FAILED.search(output)
    processed = _DONE.search(output)
    tps = float(match.group(1))
    return {
        "transactions_per_second": round(tps, 1),
        "bookings_per_second": round(tps / 2, 1),
        "transactions": int(processed.group(1)) if processed else None,
        "failed": int(failed.group(1)) if failed else 0,
        "seconds": round(seconds, 2),
        "clients": clients,
        "pgbench_cpu_seconds": round(pgbench_cpu, 3),
        "probe": (before, after),
        "script": str(path),
        "output": str(workdir / output_name),
    }


def _children_cpu() -> float:
    """CPU seconds of this process's children that have exited and been waited for (pgbench)."""
    times = os.times()
    return times.children_user + times.children_system


def _wait_for_backends_to_exit(database: str, timeout: float = 5.0) -> None:
    """Until pgbench's server processes have gone: their CPU then counts in the postmaster's
    (reaped children), so the sample after pgbench has all of it."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = 'pgbench'",
                [database],
            )
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.02)
    time.sleep(0.05)  # from leaving pg_stat_activity to the postmaster reaping the process
