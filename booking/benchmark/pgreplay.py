"""The database's own ceiling for one booking: the service's SQL, replayed by pgbench.

The statements are captured from PostgreSQL itself, not written by hand: a
dedicated login role (``booking_capture``) has ``log_statement = 'all'``; a
one-thread server started exactly like the benchmark's server, but logging in
as that role, serves one warm-up booking and then one measured booking (lock +
confirm); the statements that role issued for the measured booking are read
back from the server log. Seat id and holder become pgbench variables, so each
pgbench transaction books a fresh seat for its client's own holder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from django.db import connection

CAPTURE_ROLE = "booking_capture"
# The log_line_prefix of Debian's PostgreSQL ('%m [%p] %q%u@%d '): a timestamp starts each entry.
_ENTRY_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[\d+\] ")
_STATEMENT = re.compile(r"LOG:  statement: (.*)", re.DOTALL)


class CaptureUnavailable(Exception):
    pass


@dataclass
class Captured:
    lock: list[str]
    confirm: list[str]
    log_file: str


def setup_capture_role() -> None:
    """The capture role: logs in, may use the tables (a member of the current role), logs every statement."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        owner, is_super = cursor.fetchone()
        if not is_super:
            raise CaptureUnavailable(f"role {owner} is not a superuser, so it cannot set log_statement for a role")
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [CAPTURE_ROLE])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE ROLE {CAPTURE_ROLE} LOGIN IN ROLE "{owner}"')
        cursor.execute(f"ALTER ROLE {CAPTURE_ROLE} SET log_statement = 'all'")


def find_server_log(explicit: str | None = None) -> Path:
    """The PostgreSQL server's log file: given, pg_current_logfile(), or pg_lsclusters' entry for our port."""
    if explicit:
        return Path(explicit)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_logfile(), current_setting('data_directory'), current_setting('port')")
        current, data_dir, port = cursor.fetchone()
    if current:
        path = Path(current)
        return path if path.is_absolute() else Path(data_dir) / path
    if shutil.which("pg_lsclusters"):
        lines = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.splitlines()
        for line in lines:
            fields = line.split()
            if len(fields) >= 7 and fields[2] == str(port):
                return Path(fields[6])
    raise CaptureUnavailable("cannot find the PostgreSQL server log (give --pg-log)")


def read_statements(log_file: Path, offset: int, *, user: str, database: str, until: int | None = None) -> list[str]:
    """The statements ``user`` issued on ``database``, logged from byte ``offset`` of ``log_file`` (to ``until``)."""
    with open(log_file, "rb") as handle:
        handle.seek(offset)
        data = handle.read() if until is None else handle.read(max(0, until - offset))
        text = data.decode("utf-8", "replace")
    entries: list[str] = []
    for line in text.splitlines():
        if _ENTRY_START.match(line):
            entries.append(line)
        elif entries:  # a multi-line statement goes on
            entries[-1] += "\n" + line
    marker = f" {user}@{database} "
    statements = []
    for entry in entries:
        if marker in entry:
            match = _STATEMENT.search(entry)
            if match:
                statements.append(match.group(1).strip())
    return statements


def log_size(log_file: Path) -> int:
    try:
        return log_file.stat().st_size
    except OSError as exc:
        raise CaptureUnavailable(f"cannot read the PostgreSQL log {log_file}: {exc}") from exc


def _prepares(sql: str) -> bool:
    return sql.lstrip().upper().startswith("PREPARE ")


def prepare_statements(statements: list[str]) -> list[str]:
    """The messages among ``statements`` that prepare statements (SQL ``PREPARE``) for the session,
    each once."""
    return list(dict.fromkeys(sql for sql in statements if _prepares(sql)))


def without_session_setup(statements: list[str]) -> list[str]:
    """``statements`` without what a new connection sends once (its PREPARE message, Django's
    time zone setting): a booking served on a connection opened for it sends those too, but they
    are the connection's, not the booking's."""
    return [sql for sql in statements if not _prepares(sql) and not sql.startswith("SELECT set_config('TimeZone'")]


def split_booking(statements: list[str]) -> tuple[list[str], list[str]]:
    """Split one booking's statements into the lock request's and the confirm request's.

    The lock request ends with the message that commits its write; the confirm
    request is the rest (it ends with its own commit). A token lookup, when the
    server did not have the token's user at hand, starts a request.
    """
    ends = [i for i, sql in enumerate(statements) if _commits(sql)]
    if len(ends) != 2 or ends[1] != len(statements) - 1:
        raise CaptureUnavailable(f"expected a lock and a confirm, each ending in COMMIT, in: {statements}")
    return statements[: ends[0] + 1], statements[ends[0] + 1 :]


def _commits(sql: str) -> bool:
    return sql.rstrip().rstrip(";").upper().endswith("COMMIT")


def to_pgbench_script(
    lock: list[str], confirm: list[str], *, seat_id: int, holder: str, prepare: list[str] | None = None
) -> str:
    """A pgbench script replaying one booking on a fresh seat per transaction.

    ``prepare``: what the service's connection prepared for its session, run by each
    pgbench client once, in its first transaction.

    Variables: ``first`` and ``size`` (the replay's own seats: ids ``first`` to
    ``first + size - 1``) and ``clients``; ``n`` counts each client's bookings
    (define it as 0). A replay faster than its seats wraps around to its first
    seat (the replayed statements book a seat again regardless of its state),
    so it never touches another event's seats.
    """
    seat_pattern = re.compile(rf"(?<![\w.:'-]){seat_id}(?![\w.'-])")

    def template(sql: str) -> str:
        sql = sql.replace(holder, "pgbench-holder-:client_id")
        sql = seat_pattern.sub(":seat", sql)
        # Several statements the service sent in one message stay one message: pgbench's \; .
        return _compound(" ".join(sql.split()).rstrip(";")) + ";"

    lines = [
        "-- One booking as the service issues it (captured from the PostgreSQL log): lock, then confirm.",
        "\\set n :n + 1",
        *(["-- prepared once per connection, as the service's connection does", "\\if :n = 1"] if prepare else []),
        *map(template, prepare or []),
        *(["\\endif"] if prepare else []),
        "\\set seat :first + ((:n - 1) * :clients + :client_id) % :size",
        "-- lock request",
        *map(template, lock),
        "-- confirm request",
        *map(template, confirm),
    ]
    script = "\n".join(lines) + "\n"
    if script.count(":seat") < 4:
        raise CaptureUnavailable(f"the captured SQL does not name seat {seat_id} where expected:\n{script}")
    return script


def _compound(sql: str) -> str:
    """Top-level semicolons (outside quoted strings) as pgbench's ``\\;``."""
    out, quoted = [], False
    for char in sql:
        if char == "'":
            quoted = not quoted
        out.append("\\;" if char == ";" and not quoted else char)
    return "".join(out)


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
_DONE = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)


def run_pgbench(
    script: str,
    *,
    workdir: Path,
    clients: int,
    duration: float,
    first_seat: int,
    seat_count: int,
    pgbench: str = "pgbench",
    output_name: str = "pgbench.out",
) -> dict:
    """Run the script with ``clients`` connections for ``duration`` seconds on the ``seat_count``
    seats from id ``first_seat`` on (contiguous ids); returns tps and counts."""
    settings = connection.settings_dict
    path = workdir / "booking.pgbench.sql"
    path.write_text(script)
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin"}
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
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=duration + 120)
    output = done.stdout + done.stderr
    (workdir / output_name).write_text(output)
    match = _TPS.search(output)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{output[-3000:]}")
    failed = _FAILED.search(output)
    processed = _DONE.search(output)
    return {
        "tps": round(float(match.group(1)), 1),
        "transactions": int(processed.group(1)) if processed else None,
        "failed": int(failed.group(1)) if failed else 0,
        "seconds": round(time.perf_counter() - started, 1),
        "clients": clients,
        "script": str(path),
    }
