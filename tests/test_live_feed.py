"""The feed's rounds, as the frames a watcher gets from them (booking/live_feed.py): one that is up
to date sends each round's shared text; one that is behind sends one frame with the newest state of
each seat it missed, never a state its snapshot already has, and shares it with every watcher in the
same place; one behind the rounds the feed keeps must resync. No database: the feed's own logic."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest

from booking import live_feed
from booking.live_feed import Behind, EventFeed, Snapshot


def seat(seat_id: int, version: int, status: str = "locked") -> dict:
    return {"id": seat_id, "event": 1, "status": status, "version": version}


def round_of(feed: EventFeed, *seats: dict) -> None:
    """What the feed does with a round's messages: drop stale states, number and keep the round."""
    newest: dict[int, dict] = {}
    feed._take(newest, {"type": "seats.changed", "seats": list(seats)})
    feed._publish(list(newest.values()))


def snapshot_at(feed: EventFeed, versions: dict[int, int]) -> Snapshot:
    snapshot = Snapshot(versions, frames=[])
    snapshot.first_round = feed.last_round + 1
    return snapshot


def states(frame: str | None) -> list[tuple[int, int]]:
    assert frame is not None
    return sorted((s["id"], s["version"]) for s in orjson.loads(frame)["seats"])


def test_a_watcher_up_to_date_sends_the_rounds_shared_text():
    feed = EventFeed(1)
    snapshot = snapshot_at(feed, {1: 0, 2: 0})
    round_of(feed, seat(1, 1))
    frame, next_round = feed.frame_for(snapshot, snapshot.first_round)
    assert frame is feed.rounds[-1].frame and states(frame) == [(1, 1)]
    assert feed.frame_for(snapshot, next_round) == (None, next_round)  # nothing new since


def test_a_watcher_behind_gets_one_frame_with_the_newest_state_of_each_seat():
    feed = EventFeed(1)
    snapshot = snapshot_at(feed, {1: 0, 2: 0, 3: 0})
    round_of(feed, seat(1, 1), seat(2, 1))
    round_of(feed, seat(1, 2, "booked"))
    round_of(feed, seat(3, 1))
    frame, next_round = feed.frame_for(snapshot, snapshot.first_round)
    assert states(frame) == [(1, 2), (2, 1), (3, 1)]
    assert next_round == feed.last_round + 1
    # Another watcher in the same place (the same snapshot, the same rounds) gets the same text.
    assert feed.frame_for(snapshot, snapshot.first_round)[0] is frame


def test_nothing_older_than_the_snapshot_or_than_a_state_sent_goes_out():
    feed = EventFeed(1)
    round_of(feed, seat(1, 1))
    snapshot = snapshot_at(feed, {1: 3, 2: 0})  # read after seat 1's version 3 committed
    round_of(feed, seat(1, 2), seat(2, 1))  # seat 1's push of version 2 came late
    assert states(feed.frame_for(snapshot, snapshot.first_round)[0]) == [(2, 1)]
    round_of(feed, seat(2, 1), seat(2, 0))  # from two processes, out of order: both stale now
    assert feed.last_round == 2  # no round was made of them
    round_of(feed, seat(1, 3))
    assert feed.frame_for(snapshot, 3) == (None, 4)  # the snapshot already has version 3


def test_a_watcher_behind_the_kept_rounds_must_resync(monkeypatch):
    monkeypatch.setattr(live_feed, "BACKLOG_ROUNDS", 3)
    feed = EventFeed(1)
    snapshot = snapshot_at(feed, {1: 0})
    for version in range(1, 6):
        round_of(feed, seat(1, version))
    with pytest.raises(Behind):
        feed.frame_for(snapshot, snapshot.first_round)
    assert states(feed.frame_for(snapshot, feed.last_round - 2)[0]) == [(1, 5)]


def test_rounds_get_longer_with_more_watchers_up_to_a_bound():
    feed = EventFeed(1)
    assert feed.round_seconds() == live_feed.ROUND_SECONDS
    feed.watchers = {object() for _ in range(2000)}  # type: ignore[misc]
    assert feed.round_seconds() == pytest.approx(2000 / live_feed.FRAMES_PER_SECOND)
    feed.watchers = {object() for _ in range(100_000)}  # type: ignore[misc]
    assert feed.round_seconds() == live_feed.MAX_ROUND_SECONDS


@pytest.mark.asyncio
async def test_in_a_rush_rounds_keep_their_cadence_and_after_a_quiet_spell_a_change_waits_the_shortest_round(
    monkeypatch,
):
    """A round's length is counted from the last round sent, not from the round's own first change
    (which may come a push's gathering later): in a rush rounds follow each other every round's
    length; a change after a quiet spell is sent after the shortest round."""
    monkeypatch.setattr(live_feed, "ROUND_SECONDS", 0.05)
    feed = EventFeed(1)
    monkeypatch.setattr(feed, "round_seconds", lambda: 0.5)  # as with 2 000 watchers
    loop = asyncio.get_running_loop()
    published: list[float] = []
    monkeypatch.setattr(feed, "_publish", lambda seats: published.append(loop.time()))
    rounds = asyncio.ensure_future(feed._rounds())
    try:
        feed._inbox.put_nowait({"seats": [seat(1, 1)]})
        await asyncio.sleep(0.35)  # the first round went out after 0.05 s; 0.3 s later, a change
        first = published[0]
        feed._inbox.put_nowait({"seats": [seat(1, 2)]})
        await asyncio.sleep(0.5)
        # Sent a round's length after the first round (0.5 s), not after its change came (0.8 s).
        assert len(published) == 2 and published[1] - first == pytest.approx(0.5, abs=0.1)
        await asyncio.sleep(0.6)  # a quiet spell longer than a round
        came = loop.time()
        feed._inbox.put_nowait({"seats": [seat(1, 3)]})
        await asyncio.sleep(0.25)
        assert len(published) == 3 and published[2] - came == pytest.approx(0.05, abs=0.1)
    finally:
        rounds.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rounds
