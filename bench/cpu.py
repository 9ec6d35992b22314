"""CPU time per process group, from ``/proc``: how much of the machine a booking costs, and where.

A sample sums ``utime + stime + cutime + cstime`` (``/proc/<pid>/stat``) of

- PostgreSQL: every process whose command is ``postgres`` (the postmaster, its
  backends, the background processes). A backend that exits is reaped by the
  postmaster, and its time moves into the postmaster's ``cutime``/``cstime``:
  the sum keeps the CPU of connections closed meanwhile (pgbench's).
- the web server: every process of its process group (it starts in a session of
  its own: granian and its workers);
- Redis: every ``redis-server`` process;
- the load client: this process (``time.process_time()``), and pgbench: this
  process's waited-for children (``os.times()``, measured around its run);
- any other process groups named by the caller (the webhook load check's Celery
  worker and receiver, each in a session of its own);

and the whole machine's busy time (``/proc/stat``), so a report shows how much
of the CPU went elsewhere (other processes, interrupts) while it measured.
These are the whole server's figures: on a machine with other work on the same
PostgreSQL or Redis, that work counts too.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = Path("/proc")


@dataclass(frozen=True)
class Sample:
    at: float  # time.perf_counter()
    postgres: float | None  # CPU seconds; None when no process is visible
    server: float | None
    redis: float | None
    client: float
    machine: float | None  # busy CPU seconds of all cores
    postgres_processes: int = 0
    server_processes: int = 0
    # Transactions PostgreSQL's other databases have run so far (pg_stat_database): the
    # runner's probe adds it, so a report shows that the server had other work meanwhile.
    other_transactions: int | None = None
    # CPU seconds of the other process groups asked for, by name (None: no process of it seen).
    groups: dict[str, float | None] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _processes():
    """(command, process group, CPU seconds incl. reaped children) of every process we can read."""
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        head, _, rest = raw.rpartition(")")
        command = head.partition("(")[2]
        fields = rest.split()
        # rest starts at field 3 (state): pgrp is field 5, utime..cstime fields 14..17.
        try:
            pgrp = int(fields[2])
            ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        except (IndexError, ValueError):
            continue
        yield command, pgrp, ticks / TICK


def _machine_busy() -> float | None:
    try:
        first = (PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    # cpu user nice system idle iowait irq softirq steal …: busy = user + nice + system + irq + softirq.
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in first[1:8])
    return (user + nice + system + irq + softirq) / TICK


def group_cpu(pgid: int) -> float | None:
    """CPU seconds of one process group so far (None when none of its processes is visible)."""
    found = [seconds for _, pgrp, seconds in _processes() if pgrp == pgid]
    return sum(found) if found else None


def sample(
    server_pgid: int | None = None, *, other_transactions: int | None = None, groups: dict[str, int] | None = None
) -> Sample:
    """``groups``: other process groups to sum, name → process group id."""
    postgres = server = redis = 0.0
    n_postgres = n_server = n_redis = 0
    by_pgid = {pgid: name for name, pgid in (groups or {}).items()}
    group_seconds: dict[str, float | None] = dict.fromkeys(by_pgid.values())
    for command, pgrp, seconds in _processes():
        if pgrp in by_pgid:
            name = by_pgid[pgrp]
            group_seconds[name] = (group_seconds[name] or 0.0) + seconds
        if command == "postgres":
            postgres += seconds
            n_postgres += 1
        elif command.startswith("redis-server"):
            redis += seconds
            n_redis += 1
        if server_pgid is not None and pgrp == server_pgid:
            server += seconds
            n_server += 1
    return Sample(
        at=time.perf_counter(),
        postgres=postgres if n_postgres else None,
        server=server if n_server else None,
        redis=redis if n_redis else None,
        client=time.process_time(),
        machine=_machine_busy(),
        postgres_processes=n_postgres,
        server_processes=n_server,
        other_transactions=other_transactions,
        groups=group_seconds if groups else None,
    )


def _diff(after: float | None, before: float | None) -> float | None:
    if after is None or before is None:
        return None
    return max(0.0, after - before)


@dataclass
class Phase:
    """CPU seconds spent over one or more measured windows (added up), and the bookings made in them."""

    seconds: float = 0.0
    bookings: float = 0  # pgbench's: its transactions ÷ 2
    postgres: float | None = 0.0
    server: float | None = 0.0
    redis: float | None = 0.0
    client: float | None = 0.0
    machine: float | None = 0.0
    other_transactions: int | None = 0
    processes: dict | None = None  # as the last window's end saw them
    groups: dict[str, float | None] | None = None  # the other process groups' CPU seconds, by name

    def add(self, before: Sample, after: Sample, bookings: float, *, client: float | None = None) -> None:
        """One window: from ``before`` to ``after``; ``client`` replaces the load client's CPU
        (pgbench's, for pgbench's phase)."""
        self.seconds += after.at - before.at
        self.bookings += bookings
        for name in ("postgres", "server", "redis", "machine"):
            mine, spent = getattr(self, name), _diff(getattr(after, name), getattr(before, name))
            setattr(self, name, None if mine is None or spent is None else mine + spent)
        spent = client if client is not None else after.client - before.client
        self.client = None if self.client is None else self.client + spent
        if self.other_transactions is not None and None not in (after.other_transactions, before.other_transactions):
            self.other_transactions += max(0, after.other_transactions - before.other_transactions)
        else:
            self.other_transactions = None
        self.processes = {"postgres": after.postgres_processes, "server": after.server_processes}
        if after.groups is not None:
            totals = self.groups if self.groups is not None else dict.fromkeys(after.groups, 0.0)
            for name, value in after.groups.items():
                spent = _diff(value, (before.groups or {}).get(name))
                mine = totals.get(name, 0.0)
                totals[name] = None if mine is None or spent is None else mine + spent
            self.groups = totals

    def summary(self, *, client_name: str, with_server: bool = True) -> dict:
        def per_booking(value: float | None) -> float | None:
            return round(value * 1000 / self.bookings, 3) if value is not None and self.bookings else None

        def seconds(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        parts = {"postgres": self.postgres, "redis": self.redis, client_name: self.client}
        if with_server:
            parts["server"] = self.server
        parts.update(self.groups or {})
        accounted = sum(v for v in parts.values() if v is not None)
        out = {
            "seconds": round(self.seconds, 3),
            "bookings": int(self.bookings) if self.bookings == int(self.bookings) else self.bookings,
            "cpu_seconds": {name: seconds(value) for name, value in parts.items()},
            "ms_per_booking": {name: per_booking(value) for name, value in parts.items()},
            "machine_cpu_seconds": seconds(self.machine),
            # What the machine spent besides the processes above (other processes, the kernel's
            # interrupts): near 0 on a quiet machine.
            "other_cpu_seconds": None if self.machine is None else round(max(0.0, self.machine - accounted), 3),
            "cores_busy": round(self.machine / self.seconds, 2) if self.machine is not None and self.seconds else None,
            # PostgreSQL's figure is the whole server's: 0 here, or other databases' work is in it.
            "other_databases_transactions": self.other_transactions,
            "processes": self.processes,
        }
        out["ms_per_booking"]["measured_total"] = per_booking(accounted)
        return out
