"""The watchers check: W live watchers of one big event while the clients book at full rate.

For each W (``--watchers``): the Procfile's ``live:`` process (uvicorn) is started
on the Redis channel layer the web server pushes to, and two rounds of bookings
run, in turns: one with W watchers (``python -m bench.watchclient``, a process
of its own) connected to the watched event, one without any, on an event of as
many seats. The figures: bookings/s with against without, the lag from each
change's database time to its arrival at each watcher, frames/s, resyncs,
whether every watcher ended with every seat's version in the database, and the
CPU and memory of the live process and the watch client (docs/benchmark.md).

Lag from the database's clock: a change's time is read from the load client's
answers (a lock's seat: ``lockExpiresAt`` − the event's ``hold_seconds``; a
confirm: its booking's ``createdAt``), keyed by (seat, version), and compared
with the watch client's ``time.time()`` at arrival. PostgreSQL runs on this
machine: the same clock.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.db import connection

from . import cpu, loadclient
from .processes import Background
from .webhooks import procfile_command

HOST = "127.0.0.1"
DEFAULT_COUNTS = (100, 500, 2000)
LAYER_DB = 4  # the Redis database of the check's channel layer, on REDIS_URL's server


def default_layer_url() -> str:
    """REDIS_URL's server (database 0 when unset), database 4."""
    base = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{LAYER_DB}", "", ""))


def shell_exec(command: str) -> str:
    """A Procfile line as ``bash -c`` runs it in the shell's place: ``NAME=value … exec cmd``
    (``exec NAME=value cmd`` would look for a program named ``NAME=value``)."""
    match = re.match(r"((?:\w+=\S*\s+)*)(.*)", command)
    assert match is not None
    return f"{match.group(1)}exec {match.group(2)}"


def memory_mb(pid: int) -> dict[str, float | None]:
    """Resident memory now (VmRSS) and at its peak so far (VmHWM), in MB."""
    out: dict[str, float | None] = {"rss_mb": None, "peak_mb": None}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out["rss_mb" if name == "VmRSS" else "peak_mb"] = round(int(value.split()[0]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return out


def raise_open_files(needed: int) -> None:
    """One socket per watcher in the live process and in the watch client (they inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def change_times(answers: list[bytes], hold_seconds: int) -> list[tuple[int, int, float]]:
    """(seat, version, database time) of every change the load client's 200s made: a lock's
    from its seat's expiry (a first hold is never cut by the ceiling), a confirm's from its booking."""
    out = []
    for body in answers:
        data = json.loads(body)
        booking = data.get("booking")
        if booking is not None:
            at = _epoch(booking["createdAt"])
            out += [(seat["id"], seat["version"], at) for seat in booking["seats"]]
        else:
            out += [(s["id"], s["version"], _epoch(s["lockExpiresAt"]) - hold_seconds) for s in data["seats"]]
    return out


class Live(Background):
    """The Procfile's ``live:`` process, in a session of its own."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.command = procfile_command("live")
        self.port = int(env["LIVE_PORT"])
        super().__init__("live", ["bash", "-c", shell_exec(self.command)], env, log_path)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if loadclient.get(HOST, self.port, "/api/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"live process not healthy within {timeout}s:\n{self.log_tail()}")


class WatchClient(Background):
    def __init__(self, live: Live, event_id: int, count: int, directory: Path, env: dict[str, str]):
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("ready.json", "final.json", "result.json"):
            (directory / name).unlink(missing_ok=True)
        self.directory, self.count = directory, count
        url = f"ws://{HOST}:{live.port}/ws/events/{event_id}/"
        origin = f"http://{HOST}:{live.port}"
        args = [sys.executable, "-m", "bench.watchclient", url, origin, str(count), str(directory)]
        super().__init__("watch client", args, env, directory / "watchclient.log")

    def wait_ready(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        path = self.directory / "ready.json"
        while not path.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.count} watchers not connected within {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return json.loads(path.read_text())

    def finish(self, final: dict, timeout: float = 900) -> dict:
        """Hand over the database's final state, stop the watchers, wait for the figures."""
        temporary = self.directory / "final.tmp"
        temporary.write_text(json.dumps(final))
        os.replace(temporary, self.directory / "final.json")
        os.kill(self.popen.pid, signal.SIGUSR1)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"watch client gave no figures within {timeout:g}s") from None
        self.check_result()
        return json.loads((self.directory / "result.json").read_text())

    def check_result(self) -> None:
        if self.popen.returncode != 0 or not (self.directory / "result.json").exists():
            raise RuntimeError(f"watch client failed ({self.popen.returncode}):\n{self.log_tail()}")


def seat_versions(event_id: int) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, version FROM booking_seat WHERE event_id = %s", [event_id])
        return dict(cursor.fetchall())


def hold_seconds(event_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT hold_seconds FROM booking_event WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def _epoch_of(sample: cpu.Sample) -> float:
    """A sample's perf_counter time on the wall clock (time.time()), for the watch client's times."""
    return time.time() - (time.perf_counter() - sample.at)


@dataclass
class WatchersCheck:
    workdir: Path
    env: dict[str, str]  # the web server's (REDIS_URL: the layer)
    counts: list[int]
    watched: tuple[int, list[int]]  # the watched event and its seats
    plain: tuple[int, list[int]]  # the event the rounds without watchers book, as many seats
    drain: float = 5.0
    connect_timeout: float = 900.0
    results: list[dict] = field(default_factory=list)

    @property
    def layer_url(self) -> str:
        return self.env["REDIS_URL"]

    def run(self, *, server, clients, duration: float, warmup: float, others, settle, log) -> None:
        """Each W in turn: a fresh live process, a round with W watchers and one without."""
        from .runner import free_port

        raise_open_files(max(self.counts) + 1000)
        for k, count in enumerate(self.counts):
            live = Live({**self.env, "LIVE_PORT": str(free_port())}, self.workdir / f"live-{count}.log")
            entry: dict = {"watchers": count, "live_command": live.command}
            try:
                live.wait_healthy()
                entry["live_memory_idle"] = memory_mb(live.pgid)
                for kind in ["without", "with"] if k % 2 == 0 else ["with", "without"]:
                    share = _share(self.watched[1] if kind == "with" else self.plain[1], k, len(self.counts))
                    settle()
                    if kind == "with":
                        entry.update(self._with(live, count, server, clients, share, duration, warmup, others, log))
                    else:
                        run, phase = self._book(server, clients, share, duration, warmup, others, {"live": live.pgid})
                        entry["without"] = {**run.summary(), "cpu": phase.summary(client_name="load_client")}
                live.check_alive()
            finally:
                live.stop()
            without = entry["without"]["bookings_per_second"]
            with_ = entry["with"]["bookings_per_second"]
            entry["ratio"] = round(with_ / without, 3) if without else None
            self.results.append(entry)
            w = entry["watch"]
            log(
                f"watchers {count}: {with_} bookings/s with, {without} without ({entry['ratio']}); lag p50/p99"
                f" {w['lag_ms']['p50']}/{w['lag_ms']['p99']} ms (to the first watcher"
                f" {w['lag_to_first_watcher_ms']['p50']}/{w['lag_to_first_watcher_ms']['p99']}, fan-out"
                f" {w['fan_out_ms']['p50']}/{w['fan_out_ms']['p99']}); {w['frames_per_second']} frames/s; all final:"
                f" {w['all_final']}; {w['resyncs']} resyncs; live peak {entry['live_memory_end']['peak_mb']} MB"
            )

    def _book(self, server, clients, seats, duration, warmup, others, groups, answers=None):
        def probe() -> cpu.Sample:
            return cpu.sample(server_pgid=server.pgid, other_transactions=others.transactions(), groups=groups)

        run = loadclient.run_bookings(
            host=HOST,
            port=server.port,
            clients=clients,
            seats=seats,
            duration=duration,
            warmup=warmup,
            probe=probe,
            answers=answers if answers is not None else [],  # collected in both kinds: the same client work
        )
        phase = cpu.Phase()
        phase.add(run.probe_start, run.probe_end, run.bookings)
        return run, phase

    def _with(self, live, count, server, clients, seats, duration, warmup, others, log) -> dict:
        event_id = self.watched[0]
        cpu_before = cpu.group_cpu(live.pgid)
        client = WatchClient(live, event_id, count, self.workdir / f"watchers-{count}", self.env)
        try:
            ready = client.wait_ready(self.connect_timeout)
            connect_cpu = _spent(cpu.group_cpu(live.pgid), cpu_before)
            memory_connected = memory_mb(live.pgid)
            log(
                f"watchers {count}: connected in {ready['connect_seconds']} s, snapshots in"
                f" {ready['snapshot_seconds']} s ({ready['failed']} failed); live RSS {memory_connected['rss_mb']} MB"
            )
            answers: list[bytes] = []
            run, phase = self._book(
                server,
                clients,
                seats,
                duration,
                warmup,
                others,
                {"live": live.pgid, "watch_client": client.pgid},
                answers,
            )
            window = [_epoch_of(run.probe_start), _epoch_of(run.probe_end)]
            time.sleep(self.drain)  # the last changes' way to the watchers
            client.check_alive()
            live_memory_end = memory_mb(live.pgid)
            changes = change_times(answers, hold_seconds(event_id))
            watch = client.finish({"versions": seat_versions(event_id), "changes": changes, "window": window})
        finally:
            client.stop()
        seconds = phase.seconds
        groups = phase.groups or {}
        return {
            "with": {**run.summary(), "cpu": phase.summary(client_name="load_client")},
            "watch": watch,
            "connect": {**ready, "live_cpu_seconds": connect_cpu},
            "live_memory_connected": memory_connected,
            "live_memory_end": live_memory_end,
            "live_cpu_share_of_one_core": _share_of(groups.get("live"), seconds),
            "watch_client_cpu_share_of_one_core": _share_of(groups.get("watch_client"), seconds),
        }

    def summary(self) -> dict:
        last = self.results[-1] if self.results else None
        return {
            "layer": self.layer_url,
            "live_command": procfile_command("live"),
            "watched_event_seats": len(self.watched[1]),
            "drain_seconds": self.drain,
            "counts": self.counts,
            "rounds": self.results,
            "all_final": bool(self.results) and all(r["watch"]["all_final"] for r in self.results),
            "ratio_at_most_watchers": last["ratio"] if last else None,
            "lag_p99_ms_at_most_watchers": last["watch"]["lag_ms"]["p99"] if last else None,
        }


def _share(seats: list[int], n: int, rounds: int) -> list[int]:
    return seats[n * len(seats) // rounds : (n + 1) * len(seats) // rounds]


def _spent(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else round(max(0.0, after - before), 3)


def _share_of(value: float | None, seconds: float) -> float | None:
    return None if value is None or not seconds else round(value / seconds, 3)
