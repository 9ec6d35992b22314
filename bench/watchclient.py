"""The watchers check's client: W WebSockets on one event's live map, in one process.

``python -m bench.watchclient URL ORIGIN WATCHERS DIR`` connects ``WATCHERS``
sockets to ``URL`` (all at once, as a rush does), acknowledges every few frames
as the page does, reconnects after a ``resync`` (counted), and writes
``DIR/ready.json`` once every socket has its whole snapshot (or failed). On
SIGUSR1 it closes the sockets, reads ``DIR/final.json`` (written by the runner:
the seats' versions in the database, the changes' database times, the measured
window) and writes ``DIR/result.json``; then it exits.

Memory: 2 000 watchers of 40 000 seats would be 80 million seat states if each
watcher kept its own map. The frames are mostly the same text for every watcher
of a live process, so each distinct frame is kept (and parsed) once, and each
watcher keeps only the list of (frame index, arrival time); the final states
and the lags are folded from the shared frames at the end.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

try:  # pragma: no cover - optional speed-up
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

#: Frames between two acknowledgements, as the page (the server resyncs a client 200 behind).
ACK_EVERY = 10
SEATS, SNAPSHOT, RESYNC, OTHER = 0, 1, 2, 3
RESYNC_TEXT = b'{"type":"resync"}'
#: The largest message taken (a snapshot's part is about 0.4 MB).
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: A watcher closed more often than this gives up (reported as failed) instead of looping.
MAX_RECONNECTS = 50


class GcPauses:
    """The collections of this process's garbage collector that took a millisecond or more, as
    (wall time at start, seconds): while one runs no socket is read, so it is in the lags measured."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []
        self._started = 0.0

    def start(self) -> None:
        """Count from now on (the client's process only: not a process that merely imports this)."""
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif (took := time.perf_counter() - self._started) >= 0.001:
            self.pauses.append((time.time() - took, took))

    def within(self, start: float, end: float) -> dict:
        inside = [took for at, took in self.pauses if start <= at <= end]
        return {
            "count": len(inside),
            "total_ms": round(sum(inside) * 1000),
            "max_ms": round(max(inside, default=0) * 1000),
        }


gc_pauses = GcPauses()


@dataclass
class Frame:
    kind: int
    parts: int = 0
    #: (seat id, version) pairs of the frame, as two arrays.
    ids: array = field(default_factory=lambda: array("q"))
    versions: array = field(default_factory=lambda: array("q"))
    size: int = 0


def parse(text: bytes) -> Frame:
    """One distinct frame, parsed once for every watcher that receives it."""
    if text == RESYNC_TEXT:
        return Frame(RESYNC, size=len(text))
    data = orjson.loads(text)
    kind = data.get("type")
    frame = Frame(SEATS if kind == "seats" else SNAPSHOT if kind == "snapshot" else OTHER, size=len(text))
    if frame.kind == SEATS:
        for seat in data["seats"]:
            frame.ids.append(seat["id"])
            frame.versions.append(seat["version"])
    elif frame.kind == SNAPSHOT:
        frame.parts = data["parts"]
        at_id, at_version = data["columns"].index("id"), data["columns"].index("version")
        for row in data["rows"]:
            frame.ids.append(row[at_id])
            frame.versions.append(row[at_version])
    return frame


class Frames:
    """The distinct frames received, by their text (a dict hashes it), each parsed once."""

    def __init__(self) -> None:
        self.index: dict[bytes, int] = {}
        self.parsed: list[Frame] = []

    def intern(self, text: bytes) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.parsed)
            self.parsed.append(parse(text))
        return found


class Socket(WSListener):
    """One watcher's connection (picows: a callback per frame, no task or future per message, so
    the client costs the shared cores as little as it can); whole messages go to the client."""

    def __init__(self, client: Client, watcher: Watcher) -> None:
        self.client, self.watcher = client, watcher
        self.transport: WSTransport | None = None
        self.received = self.acked = self.parts = 0
        self._fragments: list[bytes] = []

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            if frame.fin and not self._fragments:
                self.client.received(self, frame.get_payload_as_bytes())
                return
            self._fragments.append(frame.get_payload_as_bytes())
            if frame.fin:
                text, self._fragments = b"".join(self._fragments), []
                self.client.received(self, text)


@dataclass
class Watcher:
    frames: array = field(default_factory=lambda: array("I"))  # frame indexes, in arrival order
    arrivals: array = field(default_factory=lambda: array("d"))  # time.time() of each
    connected_at: float | None = None  # the first handshake's end
    snapshot_at: float | None = None  # the first snapshot's last part
    reconnects: int = 0
    error: str | None = None


class Client:
    def __init__(self, url: str, origin: str, count: int) -> None:
        self.url, self.origin = url, origin
        self.frames = Frames()
        self.watchers = [Watcher() for _ in range(count)]
        self.stopping = asyncio.Event()
        self.all_ready = asyncio.Event()
        self.pending = count
        self.started = time.time()

    def _ready(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.all_ready.set()

    def received(self, socket: Socket, text: bytes) -> None:
        """One whole message of ``socket``'s watcher: kept (its text once for all the watchers) with
        its arrival time, and acknowledged every ``ACK_EVERY`` messages, as the page does."""
        at = time.time()
        watcher = socket.watcher
        index = self.frames.intern(text)
        watcher.frames.append(index)
        watcher.arrivals.append(at)
        socket.received += 1
        frame = self.frames.parsed[index]
        if frame.kind == SNAPSHOT:
            socket.parts += 1
            if socket.parts == frame.parts and watcher.snapshot_at is None:
                watcher.snapshot_at = at
                self._ready()
        if socket.received - socket.acked >= ACK_EVERY:
            socket.acked = socket.received
            socket.transport.send(WSMsgType.TEXT, b'{"ack": %d}' % socket.received)

    async def watch(self, watcher: Watcher) -> None:
        while not self.stopping.is_set():
            transport = None
            try:
                transport, _ = await ws_connect(
                    lambda: Socket(self, watcher),
                    self.url,
                    extra_headers={"Origin": self.origin},
                    websocket_handshake_timeout=600,
                    max_frame_size=MAX_MESSAGE_BYTES,
                )
                if watcher.connected_at is None:
                    watcher.connected_at = time.time()
                await transport.wait_disconnected()  # the server closed it (a resync: 4409), or it broke
            except asyncio.CancelledError:
                if transport is not None:
                    transport.disconnect()
                raise
            except Exception as exc:  # noqa: BLE001 - a failed watcher is reported, not raised
                watcher.error = f"{type(exc).__name__}: {exc}"[:300]
                break
            if self.stopping.is_set():
                break
            watcher.reconnects += 1  # after a resync (4409), as the page does: a fresh snapshot
            if watcher.reconnects > MAX_RECONNECTS:
                watcher.error = f"closed {watcher.reconnects} times"
                break
        if watcher.snapshot_at is None:  # never ready: counted as done (failed) all the same
            self._ready()

    async def run(self, directory: Path) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.stopping.set)
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        tasks = [asyncio.ensure_future(self.watch(w)) for w in self.watchers]
        await self.all_ready.wait()
        ready = self.connect_summary()
        _write(directory / "ready.json", ready)
        await self.stopping.wait()
        stopped = time.time()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.stopped = stopped

    def connect_summary(self) -> dict:
        connected = [w.connected_at for w in self.watchers if w.connected_at is not None]
        snapshots = [w.snapshot_at for w in self.watchers if w.snapshot_at is not None]
        errors = Counter(w.error for w in self.watchers if w.error)
        return {
            "watchers": len(self.watchers),
            "connected": len(connected),
            "with_snapshot": len(snapshots),
            "failed": sum(errors.values()),
            "errors": dict(errors.most_common(5)),
            "connect_seconds": round(max(connected) - self.started, 3) if connected else None,
            "snapshot_seconds": round(max(snapshots) - self.started, 3) if snapshots else None,
            "cpu_seconds": round(time.process_time(), 3),
        }


def result(client: Client, final: dict) -> dict:
    """The figures, folded from the shared frames: final states against the database, lags, frames/s."""
    parsed = client.frames.parsed
    db_versions = {int(seat): version for seat, version in final["versions"].items()}
    changed_at = {(seat, version): at for seat, version, at in final["changes"]}
    start, end = final["window"]

    # Final states: one fold per distinct set of frames (usually one for all the watchers).
    verdicts: dict[frozenset, tuple[int, int]] = {}
    wrong_watchers = missing_total = 0
    for watcher in client.watchers:
        key = frozenset(watcher.frames)
        verdict = verdicts.get(key)
        if verdict is None:
            state: dict[int, int] = {}
            for index in key:
                frame = parsed[index]
                for seat, version in zip(frame.ids, frame.versions, strict=True):
                    if version > state.get(seat, -1):
                        state[seat] = version
            wrong = sum(1 for seat, version in db_versions.items() if state.get(seat) != version)
            verdict = verdicts[key] = (wrong, len(state))
        if verdict[0] or watcher.snapshot_at is None:
            wrong_watchers += 1
            missing_total += verdict[0] if watcher.snapshot_at is not None else len(db_versions)

    # Lags: each seat state in a frame against its change's database time, for every watcher
    # that got the frame. Arrivals and change times in whole milliseconds, counted per frame.
    arrivals: dict[int, Counter] = {}
    frames_in_window = bytes_in_window = frames_total = 0
    for watcher in client.watchers:
        frames_total += len(watcher.frames)
        for index, at in zip(watcher.frames, watcher.arrivals, strict=True):
            frame = parsed[index]
            if start <= at <= end:
                frames_in_window += 1
                bytes_in_window += frame.size
            if frame.kind == SEATS:
                arrivals.setdefault(index, Counter())[int(at * 1000)] += 1
    lags: Counter = Counter()
    # The lag in two parts: from the change to the frame's first watcher (the web server, the layer,
    # the feed's round), and from there to each watcher (the fan-out and this client's own reading).
    to_first: Counter = Counter()
    fan_out: Counter = Counter()
    states_delivered = states_unknown = 0
    seen_changes: set[tuple[int, int]] = set()
    for index, counted in arrivals.items():
        frame = parsed[index]
        times: Counter = Counter()
        for pair in zip(frame.ids, frame.versions, strict=True):
            at = changed_at.get(pair)
            if at is None:
                states_unknown += 1
                continue
            seen_changes.add(pair)
            times[int(at * 1000)] += 1
        receivers = sum(counted.values())
        states_delivered += receivers * sum(times.values())
        first = min(counted)
        for changed, m in times.items():
            to_first[first - changed] += m
        for arrived, n in counted.items():
            fan_out[arrived - first] += n
            for changed, m in times.items():
                lags[arrived - changed] += n * m
    resyncs = sum(1 for w in client.watchers for index in w.frames if parsed[index].kind == RESYNC)
    seconds = end - start
    return {
        **client.connect_summary(),
        "distinct_frames": len(parsed),
        "frames_received": frames_total,
        "frames_in_window": frames_in_window,
        "frames_per_second": round(frames_in_window / seconds, 1) if seconds > 0 else None,
        "megabytes_per_second": round(bytes_in_window / seconds / 1e6, 2) if seconds > 0 else None,
        "resyncs": resyncs,
        "reconnects": sum(w.reconnects for w in client.watchers),
        "seats": len(db_versions),
        "all_final": wrong_watchers == 0 and bool(client.watchers),
        "watchers_not_final": wrong_watchers,
        "seat_states_not_final": missing_total,
        "distinct_final_states": len(verdicts),
        "changes_recorded": len(changed_at),
        # A lock and its confirm in one 100 ms round reach the watchers as the confirm only.
        "changes_in_frames": len(seen_changes),
        "states_measured": states_delivered,
        "states_of_unknown_time": states_unknown,
        "lag_ms": _percentiles(lags),
        "client_gc_pauses": gc_pauses.within(start, end),
        "lag_to_first_watcher_ms": _percentiles(to_first),  # per seat state
        "fan_out_ms": _percentiles(fan_out),  # per frame and watcher
        "last_frame_at": max((w.arrivals[-1] for w in client.watchers if len(w.arrivals)), default=None),
    }


def _percentiles(histogram: Counter) -> dict:
    total = sum(histogram.values())
    out: dict = {"count": total, "p50": None, "p99": None, "max": None, "min": None}
    if not total:
        return out
    ordered = sorted(histogram.items())
    out["min"], out["max"] = ordered[0][0], ordered[-1][0]
    for name, fraction in (("p50", 0.5), ("p99", 0.99)):
        rank, seen = max(1, int(fraction * total + 0.5)), 0
        for value, n in ordered:
            seen += n
            if seen >= rank:
                out[name] = value
                break
    return out


def _write(path: Path, data: dict) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)  # the runner polls for the file: it sees it whole


def main(argv: list[str]) -> int:
    url, origin, count, directory = argv[0], argv[1], int(argv[2]), Path(argv[3])
    gc_pauses.start()

    async def go() -> Client:
        client = Client(url, origin, count)
        await client.run(directory)
        return client

    client = uvloop.run(go()) if uvloop is not None else asyncio.run(go())
    final = json.loads((directory / "final.json").read_text())
    out = result(client, final)
    out["cpu_seconds_total"] = round(time.process_time(), 3)
    _write(directory / "result.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
