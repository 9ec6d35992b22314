"""The benchmark's small configuration, so that `python -m bench` cannot rot.

It runs the whole benchmark (the production server under clients and pgbench's
fixed SQL on the same tables, in turns, with the CPU of each side; the webhook
load check's rounds with one endpoint subscribed to everything, delivered by the
Procfile's webhooks: worker to the benchmark's receiver; the contended run, the
seat map, the sweep) in seconds, and checks that every figure came out, that
each contended seat was sold exactly once and that every webhook message written
reached the receiver; the watchers check with a few live watchers of a small
event, every one ending with every seat's version in the database. The figures themselves are not judged here: they mean
something only on a quiet machine at full size (docs/benchmark.md).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import shutil
import subprocess

import pytest

from .conftest import redis_available, redis_url, require
from .processes import BIN, REPO, child_env

CLIENTS, ROUNDS = 4, 2
BROKER_DB = 15  # the webhook load check's Celery broker: a Redis database of this test's own
WATCHERS, WATCH_SEATS = 3, 500


def other_webhook_rows():
    """Webhook rows that are not the benchmark's: an inactive endpoint of someone else's with a
    message of its own, and a message it shares with a benchmark endpoint an earlier run left behind
    (which the run removes, with its own message). Only the benchmark's rows may go."""
    from django.utils import timezone

    from bench.webhooks import ENDPOINT_DESCRIPTION
    from booking.models import WebhookDelivery, WebhookEndpoint, WebhookMessage

    theirs = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/theirs", secret="whsec_x", active=False)
    stale = WebhookEndpoint.objects.create(
        url="http://127.0.0.1:9/stale", description=ENDPOINT_DESCRIPTION, secret="whsec_y", active=False
    )
    messages = [
        WebhookMessage.objects.create(msg_id=f"msg_smoke_{name}", type="hold.created", payload={"type": name})
        for name in ("theirs", "shared", "stale")
    ]
    for endpoint, message in ((theirs, 0), (theirs, 1), (stale, 1), (stale, 2)):
        WebhookDelivery.objects.create(endpoint=endpoint, message=messages[message], next_attempt_at=timezone.now())
    return theirs


@pytest.mark.django_db(transaction=True)
@pytest.mark.postgres
@pytest.mark.slow
def test_benchmark_small_configuration_produces_every_figure(tmp_path):
    from booking.models import WebhookDelivery, WebhookEndpoint, WebhookMessage

    require(shutil.which("pgbench") is not None, "pgbench is not installed")
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    theirs = other_webhook_rows()
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "bench",
            "--seats=2000",
            f"--clients={CLIENTS}",
            "--duration=4",
            f"--rounds={ROUNDS}",
            "--warmup=1",
            "--contended-seats=30",
            "--map-seats=2000",
            "--best-seats=2000",
            "--sweep-holds=2000",
            f"--workdir={tmp_path / 'work'}",
            f"--json={report_path}",
            "--server-env=LOG_LEVEL=WARNING",
            f"--webhook-broker-url={redis_url().rsplit('/', 1)[0]}/{BROKER_DB}",
            "--webhook-drain=20",
            f"--watchers={WATCHERS}",
            f"--watch-seats={WATCH_SEATS}",
            "--watch-duration=2",
            "--watch-drain=1",
            f"--watch-redis-url={redis_url()}",  # the live process's channel layer: this test run's Redis
        ],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    for line in (
        "bookings/s",
        "pgbench",
        "ratio",
        "CPU per booking",
        "bookings (HTTP)",
        "bookings + webhooks",
        "webhook load check",
        "ratio with/without",
        "watchers check",
        "seat map",
        "best available",
        "holds/s",
        "sweep",
    ):
        assert line in done.stdout, line
    report = json.loads(report_path.read_text())
    assert report["server_env"] == {"LOG_LEVEL": "WARNING"}  # what was measured says so
    assert "config.wsgi:application LOG_LEVEL=WARNING" in done.stdout  # the Procfile's web: line
    assert report["command_line"].startswith("python -m bench ")

    bookings = report["bookings"]
    assert bookings["bookings"] > 0 and bookings["bookings_per_second"] > 0
    for op in ("lock", "confirm"):
        assert bookings[op]["p50_ms"] is not None and bookings[op]["p99_ms"] >= bookings[op]["p50_ms"]
        assert set(bookings[op]["statuses"]) == {"200"}, bookings[op]
    assert bookings["booked_in_database"] == bookings["confirmed_200_total"]
    # Two rounds of bookings, each followed by pgbench; the figures are their totals.
    assert len(bookings["rounds"]) == ROUNDS and all(rate > 0 for rate in bookings["rounds"])
    assert min(bookings["rounds"]) <= bookings["bookings_per_second"] <= max(bookings["rounds"])
    assert bookings["client_cpu_seconds"] > 0 and 0 < bookings["client_cpu_share_of_one_core"] < 1
    per_client = bookings["per_client"]  # every client measured, each mean within the run's range
    assert per_client["clients"] == CLIENTS and len(per_client["mean_ms_all"]) == CLIENTS
    assert (
        0
        < per_client["mean_ms_min"]
        <= per_client["mean_ms_max"]
        <= max(bookings["lock"]["max_ms"], bookings["confirm"]["max_ms"])
    )

    pgbench = report["pgbench"]
    assert pgbench["clients"] == CLIENTS and pgbench["failed"] == 0
    assert len(pgbench["rounds"]) == ROUNDS and all(rate > 0 for rate in pgbench["rounds"])
    assert pgbench["bookings_per_second"] == round(sum(pgbench["rounds"]) / ROUNDS, 1)
    # One booking is two of pgbench's transactions (hold, then book)…
    # (both rounded to 0.1, so they may differ by 0.1 and a float's error)
    assert pgbench["bookings_per_second"] == pytest.approx(pgbench["transactions_per_second"] / 2, abs=0.1 + 1e-9)
    # …each with its audit row: every hold booked, bar a client's last hold of a round.
    audit = pgbench["audit_rows"]
    assert audit["locked"] + audit["booked"] == pgbench["transactions"] > 0
    assert 0 <= audit["locked"] - audit["booked"] <= CLIENTS * ROUNDS
    # The fixed SQL: a row lock, the seat's write and its audit row, in each of two transactions.
    for part in ("lock", "confirm"):
        sql = pgbench["sql"][part]
        assert sql[0] == "BEGIN;" and sql[-1] == "COMMIT;" and len(sql) == 5, sql
        assert sql[1].startswith("SELECT") and sql[1].endswith("FOR UPDATE;"), sql
        assert sql[2].startswith("UPDATE booking_seat SET") and sql[3].startswith("INSERT INTO booking_seatevent")
    # However fast pgbench is, it books only its own copy of the seats (it wraps around: here
    # it makes more bookings a round than its 1 000 seats), so the contended run, the seat map
    # and the sweep below find their seats untouched.
    assert pgbench["foreign_seats_touched"] == 0
    assert report["ratio_to_pgbench"] == round(bookings["bookings_per_second"] / pgbench["bookings_per_second"], 3)
    assert report["ratio_to_pgbench"] > 0

    # CPU per booking, of each side, from /proc: PostgreSQL's, the web server's (its process
    # group: granian and its workers), the load client's, pgbench's.
    cpu = report["cpu"]
    http, db_only = cpu["bookings"], cpu["pgbench"]
    assert http["bookings"] == bookings["bookings"] and db_only["bookings"] == pgbench["transactions"] / 2
    for name in ("postgres", "server", "load_client", "measured_total"):
        assert http["ms_per_booking"][name] > 0, (name, http)
    for name in ("postgres", "pgbench", "measured_total"):
        assert db_only["ms_per_booking"][name] > 0, (name, db_only)
    assert "server" not in db_only["ms_per_booking"]
    assert http["processes"]["server"] >= 2 and http["processes"]["postgres"] >= 2, http["processes"]
    for phase in (http, db_only):
        assert phase["seconds"] > 0 and phase["cores_busy"] > 0 and phase["other_cpu_seconds"] >= 0
        assert phase["other_databases_transactions"] is not None
    assert cpu["postgres_ratio"] == round(http["ms_per_booking"]["postgres"] / db_only["ms_per_booking"]["postgres"], 2)

    # The webhook load check: rounds with one endpoint subscribed to everything, in turns with the
    # rounds above; every message written reached the receiver, signed, once.
    hooks = report["webhooks"]
    assert hooks["bookings_per_second_without"] == bookings["bookings_per_second"]
    assert hooks["rounds_without"] == bookings["rounds"]
    assert len(hooks["rounds_with"]) == ROUNDS and all(rate > 0 for rate in hooks["rounds_with"])
    assert hooks["bookings_per_second_with"] == hooks["bookings"]["bookings_per_second"] > 0
    assert hooks["ratio"] == round(hooks["bookings_per_second_with"] / hooks["bookings_per_second_without"], 3)
    assert len(hooks["round_ratios"]) == ROUNDS
    for op in ("lock", "confirm"):
        assert hooks["bookings"][op]["p99_ms"] >= hooks["bookings"][op]["p50_ms"] > 0
        assert set(hooks["bookings"][op]["statuses"]) == {"200"}, hooks["bookings"][op]
    assert hooks["bookings"]["booked_in_database"] == hooks["bookings"]["confirmed_200_total"]
    messages = hooks["messages"]
    assert messages["written"] > 0 and messages["all_received"], hooks
    assert messages["received"] == messages["written"] == messages["delivered_in_database"]
    # One message per lock (hold.created) and one per confirm (booking.confirmed), from the first request.
    assert messages["per_booking"] == 2.0 and set(messages["types"]) == {"hold.created", "booking.confirmed"}
    assert messages["duplicates"] == 0
    assert messages["signatures_verified"] >= 1 and messages["signature_failures"] == 0, messages
    assert hooks["messages_written_without"] == 0 and hooks["other_active_endpoints"] == 0
    assert hooks["drained"] and len(hooks["drain_seconds"]) == ROUNDS
    assert all(seconds is not None and seconds >= 0 for seconds in hooks["drain_seconds"])
    assert len(hooks["backlog_at_round_end"]) == ROUNDS and hooks["purged_tasks"] == 0
    assert hooks["worker_cpu_ms_per_message"] > 0 and hooks["receiver_cpu_ms_per_message"] >= 0
    assert hooks["postgres_sessions_per_message"] is not None
    assert "celery -A config worker -Q webhooks --pool=threads" in hooks["worker_command"]
    assert hooks["broker"].endswith(f"/{BROKER_DB}")
    for name in ("webhook_worker", "server", "postgres"):
        assert hooks["cpu"]["ms_per_booking"][name] > 0, (name, hooks["cpu"])
    assert hooks["cpu"]["ms_per_booking"]["receiver"] >= 0  # its CPU, in clock ticks, may round to 0
    # Nothing of the check's left behind, and nothing of anyone else's touched.
    assert not WebhookEndpoint.objects.exclude(pk=theirs.pk).exists()
    assert set(WebhookMessage.objects.values_list("msg_id", flat=True)) == {"msg_smoke_theirs", "msg_smoke_shared"}
    assert WebhookDelivery.objects.count() == WebhookDelivery.objects.filter(endpoint=theirs).count() == 2

    # The watchers check: W live watchers (the Procfile's live: process) while the clients book,
    # against a round without; every watcher ended with every seat's version in the database.
    watch = report["watchers"]
    assert watch["counts"] == [WATCHERS] and len(watch["rounds"]) == 1 and watch["watched_event_seats"] == WATCH_SEATS
    assert "uvicorn" in watch["live_command"] and watch["layer"] == redis_url()
    entry = watch["rounds"][0]
    seen = entry["watch"]
    assert entry["watchers"] == WATCHERS and entry["connect"]["connected"] == WATCHERS == seen["with_snapshot"]
    assert entry["connect"]["failed"] == 0 and entry["connect"]["snapshot_seconds"] > 0
    for kind in ("with", "without"):
        assert entry[kind]["bookings"] > 0 and set(entry[kind]["lock"]["statuses"]) == {"200"}, entry[kind]
    assert entry["ratio"] == round(entry["with"]["bookings_per_second"] / entry["without"]["bookings_per_second"], 3)
    assert seen["all_final"] and seen["seats"] == WATCH_SEATS and seen["watchers_not_final"] == 0, seen
    assert watch["all_final"] and report["targets"]["watchers_all_final"]["met"]
    # Every seat state the watchers got has its change's database time from the load client's
    # answers, and arrived after it (the same clock: PostgreSQL runs on this machine).
    assert seen["changes_recorded"] >= seen["changes_in_frames"] > 0 and seen["states_of_unknown_time"] == 0
    lag = seen["lag_ms"]
    assert lag["count"] == seen["states_measured"] == WATCHERS * seen["changes_in_frames"]
    assert 0 <= lag["min"] <= lag["p50"] <= lag["p99"] <= lag["max"], lag
    assert seen["frames_per_second"] > 0 and seen["resyncs"] == 0 and seen["distinct_frames"] > 0
    assert entry["live_memory_end"]["peak_mb"] > 0 and entry["live_cpu_share_of_one_core"] > 0
    assert entry["watch_client_cpu_share_of_one_core"] is not None
    assert (
        entry["with"]["cpu"]["cpu_seconds"]["live"] is not None
        and "watch_client" in entry["with"]["cpu"]["cpu_seconds"]
    )

    contended = report["contended"]
    assert contended["seats"] == 30 and contended["sold_once"], contended["problems"]

    best = report["best_available"]  # holds/s of 2 together, beside the named-seat locks
    assert best["seats"] == 2000 and best["quantity"] == 2 and best["clients"] == CLIENTS
    assert best["holds"] > 0 and best["holds_per_second"] > 0
    assert best["lock"]["p50_ms"] is not None and best["lock"]["p99_ms"] >= best["lock"]["p50_ms"]
    assert set(best["lock"]["statuses"]) <= {"200", "409"}, best["lock"]
    assert set(best["confirm"]["statuses"]) == {"200"}, best["confirm"]
    assert best["named_lock_p99_ms"] == report["bookings"]["lock"]["p99_ms"]
    assert best["sold_once"] and best["not_together"] == 0 and not best["errors"], best
    assert best["taken_in_database"] >= 2 * best["holds"]

    assert report["sweep"]["released"] == 2000 and report["sweep"]["seconds"] > 0
    assert report["seat_map"]["seats"] == 2000 and report["seat_map"]["server_ms_median"] is not None
    assert set(report["targets"]) == {
        "ratio_to_pgbench",
        "lock_p99_ms",
        "sweep_seconds",
        "seat_map_server_ms",
        "contended_sold_once",
        "best_available_sold_once",
        "best_available_together",
        "webhooks_ratio",
        "webhooks_all_received",
        "watchers_ratio",
        "watchers_lag_p99_ms",
        "watchers_all_final",
    }
    assert report["targets"]["webhooks_ratio"]["target"] == ">= 0.9"
    assert report["targets"]["webhooks_all_received"]["met"]
    assert report["targets"]["ratio_to_pgbench"]["target"] == ">= 0.2"


def test_the_product_never_imports_the_benchmark():
    """bench/ sits beside the product: it may import booking, never the other way round."""
    importers = []
    for path in [
        REPO / "manage.py",
        *sorted((REPO / "booking").rglob("*.py")),
        *sorted((REPO / "config").rglob("*.py")),
    ]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            if any(name == "bench" or name.startswith("bench.") for name in names):
                importers.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert importers == []


def test_the_pgbench_script_books_each_clients_own_seats_and_wraps_around_within_them():
    """The script's seat formula, evaluated as pgbench does (integer arithmetic): two
    transactions per seat, no seat shared by two clients, never outside its seats."""
    from bench import pgbench

    line = next(line for line in pgbench.SCRIPT.splitlines() if line.startswith("\\set seat "))
    expression = line.removeprefix("\\set seat ").replace("/", "//")
    first, size, clients = 1000, 10, 3
    seats: dict[int, list[int]] = {}
    for client_id in range(clients):
        for n in range(1, 2 * size + 1):  # more bookings than its share: it wraps around
            names = {"first": first, "size": size, "clients": clients, "client_id": client_id, "n": n}
            seat = eval(expression.replace(":", ""), {}, names)  # noqa: S307 - the script's own text
            assert first <= seat < first + size
            seats.setdefault(client_id, []).append(seat)
    for client_id, mine in seats.items():
        assert mine[0::2] == mine[1::2]  # the confirm books the seat its lock just held
        others = {seat for other, theirs in seats.items() if other != client_id for seat in theirs}
        assert not others & set(mine)


def test_the_docs_show_the_pgbench_script_that_runs():
    from bench import pgbench

    assert pgbench.SCRIPT in (REPO / "docs" / "benchmark.md").read_text()


def test_the_watch_client_folds_final_states_and_lags_from_the_shared_frames():
    """The watchers check's figures, from frames kept once for all the watchers: a watcher that
    missed the last change is not final, one that resynced is final from its fresh snapshot, and
    each seat state's lag is its arrival at each watcher minus its change's database time."""
    from bench import watchclient, watchers

    def snapshot(versions: list[int]) -> bytes:
        rows = [[seat, f"A{seat}", "available", None, version] for seat, version in enumerate(versions, 1)]
        frame = {"type": "snapshot", "parts": 1, "part": 0, "columns": ["id", "label", "status", "x", "version"]}
        return json.dumps({**frame, "now": str(versions), "rows": rows}).encode()

    def seats(*states: tuple[int, int]) -> bytes:
        return json.dumps({"type": "seats", "seats": [{"id": i, "version": v} for i, v in states]}).encode()

    first, fresh = snapshot([0, 0, 0]), snapshot([2, 2, 0])
    a, b = seats((1, 1), (2, 2)), seats((1, 2))
    client = watchclient.Client("ws://unused", "http://unused", 3)
    arrivals = {
        0: [(first, 100.0), (a, 100.25), (b, 101.0)],  # everything
        1: [(first, 100.0), (a, 100.25), (watchclient.RESYNC_TEXT, 100.5), (fresh, 100.75)],  # resynced
        2: [(first, 100.0), (a, 100.45)],  # missed b; got a 200 ms after the others
    }
    for n, frames in arrivals.items():
        watcher = client.watchers[n]
        watcher.snapshot_at = 100.0
        for text, at in frames:
            watcher.frames.append(client.frames.intern(text))
            watcher.arrivals.append(at)
    # The load client's answers: a lock (its database time = expiry - hold), a confirm, a lock.
    answers = [
        json.dumps({"seats": [{"id": 1, "version": 1, "lockExpiresAt": "1970-01-01T00:02:40Z"}]}).encode(),
        json.dumps(
            {"seats": [], "booking": {"createdAt": "1970-01-01T00:01:40.125Z", "seats": [{"id": 2, "version": 2}]}}
        ),
        json.dumps({"seats": [{"id": 1, "version": 2, "lockExpiresAt": "1970-01-01T00:02:40.5Z"}]}).encode(),
    ]
    changes = watchers.change_times(answers, hold_seconds=60)
    assert changes == [(1, 1, 100.0), (2, 2, 100.125), (1, 2, 100.5)]
    out = watchclient.result(client, {"versions": {"1": 2, "2": 2, "3": 0}, "changes": changes, "window": [99, 102]})

    assert not out["all_final"] and out["watchers_not_final"] == 1 and out["seat_states_not_final"] == 1
    assert out["resyncs"] == 1 and out["distinct_frames"] == 5 and out["frames_received"] == 9
    assert out["changes_recorded"] == 3 == out["changes_in_frames"] and out["states_of_unknown_time"] == 0
    # Frame a at 100.25 to two watchers (seat 1: 250 ms, seat 2: 125 ms) and at 100.45 to the third
    # (450, 325 ms), frame b at 101.0 to one (500 ms).
    assert out["lag_ms"] == {"count": 7, "min": 125, "p50": 250, "p99": 500, "max": 500}
    # The lag's parts: to each frame's first watcher (per seat state), and from there (per watcher).
    assert out["lag_to_first_watcher_ms"] == {"count": 3, "min": 125, "p50": 250, "p99": 500, "max": 500}
    assert out["fan_out_ms"] == {"count": 4, "min": 0, "p50": 0, "p99": 200, "max": 200}
    assert out["frames_in_window"] == 9 and out["frames_per_second"] == 3.0


@pytest.mark.asyncio
async def test_the_watch_client_acknowledges_and_reconnects_after_a_resync_as_the_page_does():
    """The watch client against a WebSocket server of another library: it sends the page's Origin,
    acknowledges every 10 messages, and after ``resync`` and close 4409 reconnects for a fresh
    snapshot (counted), keeping every message with its arrival."""
    from websockets.asyncio.server import serve

    from bench import watchclient

    snapshot = json.dumps(
        {"type": "snapshot", "parts": 1, "part": 0, "columns": ["id", "version"], "rows": [[1, 0]], "now": "x"}
    )
    seen: dict[str, list] = {"origins": [], "acks": []}
    second_snapshot_sent = asyncio.Event()

    async def handler(connection):
        seen["origins"].append(connection.request.headers["Origin"])
        await connection.send(snapshot)
        if len(seen["origins"]) == 1:
            for version in range(1, 10):
                await connection.send(json.dumps({"type": "seats", "seats": [{"id": 1, "version": version}]}))
            seen["acks"].append(json.loads(await connection.recv()))
            await connection.send('{"type":"resync"}')
            await connection.close(4409)
        else:
            second_snapshot_sent.set()
            await connection.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = watchclient.Client(f"ws://127.0.0.1:{port}/ws/events/1/", "http://page.example", 1)
        watcher = client.watchers[0]
        task = asyncio.ensure_future(client.watch(watcher))
        async with asyncio.timeout(10):
            await second_snapshot_sent.wait()
            while len(watcher.frames) < 12:
                await asyncio.sleep(0.01)
        client.stopping.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert seen["origins"] == ["http://page.example"] * 2
    assert seen["acks"] == [{"ack": 10}]
    assert watcher.reconnects == 1 and watcher.error is None and watcher.snapshot_at is not None
    kinds = [client.frames.parsed[index].kind for index in watcher.frames]
    S, T, R = watchclient.SNAPSHOT, watchclient.SEATS, watchclient.RESYNC
    assert kinds == [S] + [T] * 9 + [R, S]
    assert list(watcher.arrivals) == sorted(watcher.arrivals)


def test_the_webhook_receiver_answers_each_request_however_it_arrives_and_counts_and_verifies():
    """The load check's receiver (bench/receiver.py): requests whole, split mid-body and two in
    one write on a kept-alive connection are each answered 200, counted once per webhook-id, and
    the sampled signatures checked with the standardwebhooks library (a tampered body fails)."""
    import socket
    import time
    import urllib.request
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**child_env(), "BENCH_WEBHOOK_SECRET": secret, "BENCH_WEBHOOK_VERIFY_EVERY": "1"}
    receiver = subprocess.Popen([str(BIN / "python"), "-m", "bench.receiver", str(port)], cwd=REPO, env=env)

    def request(msg_id: str, body: bytes, *, tamper: bool = False) -> bytes:
        now = datetime.now(UTC)
        signature = Webhook(secret).sign(msg_id, now, body.decode())
        head = (
            f"POST /hooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nwebhook-id: {msg_id}\r\n"
            f"webhook-timestamp: {int(now.timestamp())}\r\nwebhook-signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head + (body.replace(b"1", b"2") if tamper else body)

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.1)
        with connection:
            first = request("msg_1", b'{"type":"hold.created","data":{"n":1}}')
            connection.sendall(first[:-10])  # the body split across two writes
            time.sleep(0.2)
            connection.sendall(first[-10:])
            pipelined = request("msg_2", b'{"type":"booking.confirmed","data":{"n":1}}') + request(
                "msg_3", b'{"type":"booking.confirmed","data":{"n":1}}', tamper=True
            )
            connection.sendall(pipelined + request("msg_1", b'{"type":"hold.created","data":{"n":1}}'))
            answers = b""
            while answers.count(b"200 OK") < 4:
                chunk = connection.recv(65536)
                assert chunk, answers
                answers += chunk
        assert answers == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok" * 4
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as answer:
            stats = json.loads(answer.read())
    finally:
        receiver.terminate()
        receiver.wait(10)
    assert (stats["requests"], stats["messages"], stats["duplicates"]) == (4, 3, 1)
    assert stats["types"] == {"booking.confirmed": 2, "hold.created": 1}
    assert (stats["verified"], stats["verify_failures"]) == (2, 1)  # msg_3's body was changed
