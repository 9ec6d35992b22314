"""The benchmark's small configuration, so that `python manage.py benchmark` cannot rot.

It runs the whole benchmark (capture of the service's SQL from the PostgreSQL
log, the production server under clients, the contended run, the seat map,
pgbench, the sweep) in seconds, and checks that every figure came out and that
each contended seat was sold exactly once. The figures themselves are not
judged here: they mean something only on a quiet machine at full size.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from .conftest import require
from .processes import BIN, REPO, child_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.slow]


def test_benchmark_small_configuration_produces_every_figure(tmp_path):
    require(shutil.which("pgbench") is not None, "pgbench is not installed")
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [
            str(BIN / "python"),
            "manage.py",
            "benchmark",
            "--seats=2000",
            "--clients=4",
            "--duration=4",
            "--rounds=2",
            "--warmup=1",
            "--contended-seats=30",
            "--map-seats=2000",
            "--sweep-holds=2000",
            f"--workdir={tmp_path / 'work'}",
            f"--json={report_path}",
            "--server-env=BOOKING_HOT_PATH=true",
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "bookings/s" in done.stdout and "pgbench replay" in done.stdout
    report = json.loads(report_path.read_text())
    assert report["server_env"] == {"BOOKING_HOT_PATH": "true"}  # what was measured says so
    assert "config.wsgi:application BOOKING_HOT_PATH=true" in done.stdout

    bookings = report["bookings"]
    assert bookings["bookings"] > 0 and bookings["bookings_per_second"] > 0
    for op in ("lock", "confirm"):
        assert bookings[op]["p50_ms"] is not None and bookings[op]["p99_ms"] >= bookings[op]["p50_ms"]
        assert set(bookings[op]["statuses"]) == {"200"}, bookings[op]
    assert bookings["booked_in_database"] == bookings["confirmed_200_total"]
    # Two rounds of bookings, each followed by pgbench; the figures are their totals.
    assert len(bookings["rounds"]) == 2 and all(rate > 0 for rate in bookings["rounds"])
    assert len(report["pgbench"]["rounds"]) == 2 and all(rate > 0 for rate in report["pgbench"]["rounds"])
    assert report["pgbench"]["tps"] == round(sum(report["pgbench"]["rounds"]) / 2, 1)
    assert min(bookings["rounds"]) <= bookings["bookings_per_second"] <= max(bookings["rounds"])
    assert bookings["client_cpu_seconds"] > 0 and 0 < bookings["client_cpu_share_of_one_core"] < 1
    per_client = bookings["per_client"]  # every client measured, each mean within the run's range
    assert per_client["clients"] == 4 and len(per_client["mean_ms_all"]) == 4
    assert (
        0
        < per_client["mean_ms_min"]
        <= per_client["mean_ms_max"]
        <= max(bookings["lock"]["max_ms"], bookings["confirm"]["max_ms"])
    )

    capture = report["capture"]
    # What the server's connection prepared once (pgbench's clients prepare it too), then per
    # request two messages: the row locks (and, for a lock, the holder's lock and holds), and
    # the write with its audit rows and the COMMIT. The token's user was at hand (cached).
    prepared = " ".join(capture["statements"]["prepare"])
    assert "FOR UPDATE" in prepared and "INSERT INTO booking_seatevent" in prepared, prepared
    for op in ("lock", "confirm"):
        sent = capture["statements"][op]
        assert capture[f"{op}_statements"] == len(sent) == 2, sent
        assert sent[0].startswith("BEGIN;") and "EXECUTE booking_lock_rows(" in sent[0], sent
        assert "EXECUTE booking_write_seats(" in sent[1] and sent[1].endswith("COMMIT"), sent
    assert "EXECUTE booking_holder_lock(" in capture["statements"]["lock"][0]
    assert report["pgbench"]["tps"] > 0 and report["pgbench"]["failed"] == 0
    # However fast pgbench is, it books only its own copy of the seats (it wraps around),
    # so the contended run, the seat map and the sweep below find their seats untouched.
    assert report["pgbench"]["foreign_seats_touched"] == 0
    assert report["ratio_to_pgbench"] > 0

    contended = report["contended"]
    assert contended["seats"] == 30 and contended["sold_once"], contended["problems"]

    assert report["sweep"]["released"] == 2000 and report["sweep"]["seconds"] > 0
    assert report["seat_map"]["seats"] == 2000 and report["seat_map"]["server_ms_median"] is not None
    assert set(report["targets"]) == {
        "ratio_to_pgbench",
        "lock_p99_ms",
        "sweep_seconds",
        "seat_map_server_ms",
        "contended_sold_once",
    }


def test_a_booking_served_on_a_new_connection_is_replayed_without_the_connections_setup():
    """A server whose measured booking lands on a connection opened for it sends that connection's
    setup too (Django's time zone, the PREPARE message): pgbench prepares once per client, and
    replays the booking's own statements."""
    from booking.benchmark import pgreplay

    prepare = "PREPARE booking_lock_rows(bigint[]) AS SELECT 1;PREPARE booking_write_seats(bigint[]) AS SELECT 2"
    warm_up = [prepare, "BEGIN;EXECUTE booking_lock_rows('{5}')", "EXECUTE booking_write_seats('{5}');COMMIT"]
    measured = [
        "SELECT set_config('TimeZone', 'UTC', false)",
        prepare,
        "EXECUTE booking_token_user('k')",
        "BEGIN;EXECUTE booking_lock_rows('{6}')",
        "EXECUTE booking_write_seats('{6}');COMMIT",
        "BEGIN;EXECUTE booking_lock_rows('{6}')",
        "EXECUTE booking_write_seats('{6}');COMMIT",
    ]
    prepared = pgreplay.prepare_statements(warm_up + measured)
    lock, confirm = pgreplay.split_booking(pgreplay.without_session_setup(measured))
    assert prepared == [prepare]
    assert lock == measured[2:5] and confirm == measured[5:]
    script = pgreplay.to_pgbench_script(lock, confirm, seat_id=6, holder="h", prepare=prepared)
    assert script.count("PREPARE booking_lock_rows") == 1
    assert script.index("\\if :n = 1") < script.index("PREPARE") < script.index("\\endif")
    assert script.count("'{:seat}'") == 4
