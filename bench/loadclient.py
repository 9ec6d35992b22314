"""The benchmark's load client: raw HTTP/1.1 keep-alive over asyncio streams.

One process, one event loop (uvloop when installed), one connection per
simulated client. It is deliberately thin (no HTTP library), so that it is
not the bottleneck; the report gives its own CPU time to show it. It knows
nothing of Django: it speaks HTTP to the server only.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field

try:  # pragma: no cover - optional speed-up
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


class HttpError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self._head = "".join(f"{name}: {value}\r\n" for name, value in {"Host": f"{host}:{port}", **headers}.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self, method: str, path: str, body: bytes = b"", *, headers: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; the response's status, headers (lower-case names; ``{}`` unless
        ``headers``: parsing them is most of this client's work per request) and body."""
        for attempt in (1, 2):
            if self._writer is None:
                await self._open()
            head = f"{method} {path} HTTP/1.1\r\n{self._head}"
            if body or method == "POST":
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            try:
                self._writer.write(head.encode() + b"\r\n" + body)
                return await self._read_response(headers)
            except (ConnectionError, asyncio.IncompleteReadError, HttpError):
                # A keep-alive connection the server closed between requests: retry once on a new one.
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _read_response(self, want_headers: bool) -> tuple[int, dict[str, str], bytes]:
        raw = await self._reader.readuntil(b"\r\n\r\n")
        status_line, _, head = raw.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HttpError(f"bad status line {status_line!r}")
        head = head.lower()
        length = _CONTENT_LENGTH.search(head)
        if length is not None:
            body = await self._reader.readexactly(int(length.group(1)))
        elif _CHUNKED.search(head):
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append(await self._reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(chunk[:-2] for chunk in chunks)
        else:
            body = await self._reader.read()
            self.close()
        if _CLOSE.search(head):
            self.close()
        headers = _parse_headers(raw) if want_headers else {}
        return int(parts[1]), headers, body


_CONTENT_LENGTH = re.compile(rb"(?:^|\r\n)content-length:\s*(\d+)")
_CHUNKED = re.compile(rb"(?:^|\r\n)transfer-encoding:[^\r]*chunked")
_CLOSE = re.compile(rb"(?:^|\r\n)connection:\s*close")


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers = {}
    for line in raw.decode("latin-1").split("\r\n")[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return headers


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


@dataclass
class OpStats:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        return {
            "count": len(self.latencies_ms),
            "p50_ms": _round(percentile(self.latencies_ms, 0.50)),
            "p99_ms": _round(percentile(self.latencies_ms, 0.99)),
            "max_ms": _round(max(self.latencies_ms) if self.latencies_ms else None),
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


@dataclass
class RunResult:
    seconds: float
    bookings: int
    lock: OpStats
    confirm: OpStats
    client_cpu_seconds: float
    # The whole run, warm-up included: the time over which the client spent its CPU.
    wall_seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    sold: list[tuple[str, int]] = field(default_factory=list)  # (holder, seat) per confirm answered 200
    # Each client's measured latencies (lock and confirm): how evenly the server served its connections.
    per_client_ms: dict[str, list[float]] = field(default_factory=dict)
    # What ``probe()`` returned when the measured window opened and after the last answer.
    probe_start: object = None
    probe_end: object = None
    # Best available: clients told no_seats_available, and answers that were not one block together.
    sold_out: int = 0
    not_together: int = 0

    def summary(self) -> dict:
        return {
            "seconds": round(self.seconds, 3),
            "bookings": self.bookings,
            "bookings_per_second": round(self.bookings / self.seconds, 1) if self.seconds else 0.0,
            "lock": self.lock.summary(),
            "confirm": self.confirm.summary(),
            "client_cpu_seconds": round(self.client_cpu_seconds, 3),
            "client_cpu_share_of_one_core": (
                round(self.client_cpu_seconds / self.wall_seconds, 3) if self.wall_seconds else 0.0
            ),
            "per_client": per_client_summary(self.per_client_ms),
            "errors": self.errors[:10],
        }


def merged(results: list[RunResult]) -> RunResult:
    """Several runs' measurements as one: counts and seconds added up, latencies pooled."""
    total = RunResult(seconds=0.0, bookings=0, lock=OpStats(), confirm=OpStats(), client_cpu_seconds=0.0)
    for result in results:
        total.seconds += result.seconds
        total.bookings += result.bookings
        total.client_cpu_seconds += result.client_cpu_seconds
        total.wall_seconds += result.wall_seconds
        for mine, theirs in ((total.lock, result.lock), (total.confirm, result.confirm)):
            mine.latencies_ms += theirs.latencies_ms
            mine.statuses.update(theirs.statuses)
        total.errors += result.errors
        total.sold += result.sold
        for client, latencies in result.per_client_ms.items():
            total.per_client_ms.setdefault(client, []).extend(latencies)
    return total


def per_client_summary(per_client_ms: dict[str, list[float]]) -> dict:
    """The spread of the clients' mean latencies: a server whose processes took unequal shares
    of the keep-alive connections serves the clients of its busier process more slowly."""
    means = sorted(sum(values) / len(values) for values in per_client_ms.values() if values)
    if not means:
        return {"clients": 0, "mean_ms_min": None, "mean_ms_max": None, "mean_ms_all": []}
    return {
        "clients": len(means),
        "mean_ms_min": _round(means[0]),
        "mean_ms_max": _round(means[-1]),
        "mean_ms_all": [_round(m) for m in means],
    }


def _headers(token: str) -> dict[str, str]:
    # Behind the TLS-terminating load balancer production runs behind, every request arrives marked https.
    return {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https", "Connection": "keep-alive"}


async def _book_own_seats(
    host: str,
    port: int,
    holder: str,
    token: str,
    seats: list[int],
    start: float,
    measure_from: float,
    end: float,
    out,
    answers: list[bytes] | None = None,
):
    """One client: lock then confirm its own seats one by one, until ``end``; ``answers``
    collects the bodies of the 200s (parsed after the run, not in its way)."""
    conn = Connection(host, port, _headers(token))
    lock, confirm, errors = out["lock"], out["confirm"], out["errors"]
    mine = out["per_client"].setdefault(holder, [])
    try:
        for seat in seats:
            if time.perf_counter() >= end:
                break
            body = b'{"seatId": %d}' % seat
            t0 = time.perf_counter()
            status, _, answer = await conn.request("POST", "/api/lock", body, headers=False)
            t1 = time.perf_counter()
            measured = t0 >= measure_from
            if measured:
                lock.latencies_ms.append((t1 - t0) * 1000)
                lock.statuses[status] += 1
                mine.append((t1 - t0) * 1000)
            if status != 200:
                errors.append(f"lock {seat}: {status} {answer[:200]!r}")
                continue
            if answers is not None:
                answers.append(answer)
            status, _, answer = await conn.request("POST", "/api/confirm", body, headers=False)
            t2 = time.perf_counter()
            if measured:
                confirm.latencies_ms.append((t2 - t1) * 1000)
                confirm.statuses[status] += 1
                mine.append((t2 - t1) * 1000)
            if status == 200:
                out["sold"].append((holder, seat))
                if answers is not None:
                    answers.append(answer)
                if measured:
                    out["bookings"] += 1
            else:
                errors.append(f"confirm {seat}: {status} {answer[:200]!r}")
    finally:
        conn.close()


async def _fight_for_seats(host: str, port: int, holder: str, token: str, remaining: set[int], end: float, rng, out):
    """One client of the contended run: grab any seat still for sale, book it, until none is left."""
    conn = Connection(host, port, _headers(token))
    lock, confirm, errors = out["lock"], out["confirm"], out["errors"]
    try:
        while remaining and time.perf_counter() < end:
            seat = rng.choice(tuple(remaining))
            body = b'{"seatId": %d}' % seat
            t0 = time.perf_counter()
            status, _, answer = await conn.request("POST", "/api/lock", body, headers=False)
            t1 = time.perf_counter()
            lock.latencies_ms.append((t1 - t0) * 1000)
            lock.statuses[status] += 1
            if status == 409:
                code = json.loads(answer).get("code")
                if code == "seat_booked":
                    remaining.discard(seat)
                elif code != "seat_locked":
                    errors.append(f"lock {seat}: {status} {answer[:200]!r}")
                await asyncio.sleep(0)
                continue
            if status != 200:
                errors.append(f"lock {seat}: {status} {answer[:200]!r}")
                continue
            status, _, answer = await conn.request("POST", "/api/confirm", body, headers=False)
            confirm.latencies_ms.append((time.perf_counter() - t1) * 1000)
            confirm.statuses[status] += 1
            if status == 200:
                out["sold"].append((holder, seat))
                out["bookings"] += 1
                remaining.discard(seat)
            else:
                errors.append(f"confirm {seat}: {status} {answer[:200]!r}")
    finally:
        conn.close()


async def _best_available(
    host: str, port: int, holder: str, token: str, event_id: int, quantity: int, measure_from: float, end: float, out
):
    """One client of the best-available run: ask for the best ``quantity`` together, book what it
    got (so the hold limit never stops it), again, until ``end`` or the event is sold out."""
    conn = Connection(host, port, _headers(token))
    lock, confirm, errors = out["lock"], out["confirm"], out["errors"]
    body = b'{"event": %d, "quantity": %d}' % (event_id, quantity)
    try:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            status, _, answer = await conn.request("POST", "/api/lock", body, headers=False)
            t1 = time.perf_counter()
            measured = t0 >= measure_from
            if measured:
                lock.latencies_ms.append((t1 - t0) * 1000)
                lock.statuses[status] += 1
            if status == 409 and json.loads(answer).get("code") == "no_seats_available":
                out["sold_out"] += 1
                break
            if status != 200:
                errors.append(f"best available: {status} {answer[:200]!r}")
                continue
            seats = json.loads(answer)["seats"]
            places = sorted((s["section"], s["row"], s["number"]) for s in seats)
            together = len({p[:2] for p in places}) == 1 and all(
                b[2] == a[2] + 1 for a, b in zip(places, places[1:], strict=False)
            )
            if not together or len(seats) != quantity:
                out["not_together"] += 1
            if measured:
                out["bookings"] += 1  # holds, here
            ids = b",".join(b"%d" % s["id"] for s in seats)
            status, _, answer = await conn.request("POST", "/api/confirm", b'{"seatIds": [%s]}' % ids, headers=False)
            if measured:
                confirm.latencies_ms.append((time.perf_counter() - t1) * 1000)
                confirm.statuses[status] += 1
            if status == 200:
                out["sold"].extend((holder, s["id"]) for s in seats)
            else:
                errors.append(f"confirm {ids!r}: {status} {answer[:200]!r}")
    finally:
        conn.close()


def _new_out() -> dict:
    return {
        "lock": OpStats(),
        "confirm": OpStats(),
        "errors": [],
        "sold": [],
        "bookings": 0,
        "per_client": {},
        "probe": [None, None],
        "sold_out": 0,
        "not_together": 0,
    }


def _run(coroutine_factory) -> RunResult:
    out = _new_out()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    seconds = _event_loop_run(coroutine_factory(out))
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    return RunResult(
        seconds=seconds if seconds is not None else wall,
        bookings=out["bookings"],
        lock=out["lock"],
        confirm=out["confirm"],
        client_cpu_seconds=cpu,
        wall_seconds=wall,
        errors=out["errors"],
        sold=out["sold"],
        per_client_ms=out["per_client"],
        probe_start=out["probe"][0],
        probe_end=out["probe"][1],
        sold_out=out["sold_out"],
        not_together=out["not_together"],
    )


def _event_loop_run(coroutine):
    if uvloop is not None:
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def run_bookings(
    *,
    host: str,
    port: int,
    clients: list[tuple[str, str]],
    seats: list[int],
    duration: float,
    warmup: float,
    probe=None,
    answers: list[bytes] | None = None,
) -> RunResult:
    """Each client (holder, token) books its own share of ``seats``: lock one, confirm it, next.

    ``answers``: a list to collect the body of every lock and confirm answered 200 (the
    watchers check reads the seats' versions and database times from them).

    Requests started during the first ``warmup`` seconds are not measured. ``probe``
    (a CPU sample, say) is called when the measured window opens and after the last
    answer; the result keeps what it returned.
    """

    async def main(out):
        start = time.perf_counter()
        measure_from, end = start + warmup, start + warmup + duration

        async def open_window():
            await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
            out["probe"][0] = probe()

        opening = asyncio.ensure_future(open_window()) if probe else None
        shares = [seats[i :: len(clients)] for i in range(len(clients))]
        await asyncio.gather(
            *(
                _book_own_seats(host, port, holder, token, share, start, measure_from, end, out, answers)
                for (holder, token), share in zip(clients, shares, strict=True)
            )
        )
        if opening is not None:
            await opening
            out["probe"][1] = probe()
        return min(time.perf_counter(), end) - measure_from

    return _run(main)


def run_contended(
    *, host: str, port: int, clients: list[tuple[str, str]], seats: list[int], timeout: float, seed: int = 1
) -> RunResult:
    """Every client fights for the same ``seats`` until all are sold (or ``timeout``)."""

    async def main(out):
        remaining = set(seats)
        start = time.perf_counter()
        end = start + timeout
        await asyncio.gather(
            *(
                _fight_for_seats(host, port, holder, token, remaining, end, random.Random(seed + i), out)
                for i, (holder, token) in enumerate(clients)
            )
        )
        return time.perf_counter() - start

    return _run(main)


def run_best_available(
    *,
    host: str,
    port: int,
    clients: list[tuple[str, str]],
    event_id: int,
    quantity: int,
    duration: float,
    warmup: float,
) -> RunResult:
    """Every client asks for the best ``quantity`` seats together of one event, books them, again.
    ``bookings`` counts the holds granted in the measured window; ``lock`` their latencies."""

    async def main(out):
        start = time.perf_counter()
        measure_from, end = start + warmup, start + warmup + duration
        await asyncio.gather(
            *(
                _best_available(host, port, holder, token, event_id, quantity, measure_from, end, out)
                for holder, token in clients
            )
        )
        return min(time.perf_counter(), end) - measure_from

    return _run(main)


def get(host: str, port: int, path: str) -> tuple[int, dict[str, str], bytes, float]:
    """One GET on a new connection; returns status, headers, body and the client-side seconds."""

    async def main():
        conn = Connection(host, port, {"X-Forwarded-Proto": "https"})
        try:
            t0 = time.perf_counter()
            status, headers, body = await conn.request("GET", path)
            return status, headers, body, time.perf_counter() - t0
        finally:
            conn.close()

    return _event_loop_run(main())
