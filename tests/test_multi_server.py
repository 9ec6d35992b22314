"""Two real server processes on one PostgreSQL database: no seat is ever held or booked twice."""

import random
from collections import Counter

import pytest
import requests

from booking.models import Seat, SeatEvent

from .processes import running_web_servers
from .racing import race

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.slow]


def test_clients_racing_across_two_servers_never_share_a_seat(make_user, seat_ids, settings):
    holders = [make_user(f"fan{i}") for i in range(24)]
    tokens = {user.username: user.auth_token.key for user in holders}
    contested = seat_ids[:8]

    with running_web_servers(2, workers=1, threads=8) as (first, second):

        def shopper(username: str, base_url: str, rng: random.Random):
            session = requests.Session()
            session.headers["Authorization"] = f"Token {tokens[username]}"
            booked, held_attempts = [], []
            for _ in range(6):
                wanted = rng.sample(contested, rng.randint(1, 3))
                lock = session.post(f"{base_url}/api/lock", json={"seatIds": wanted}, timeout=10)
                assert lock.status_code in (200, 409), lock.text
                held_attempts.append(lock.status_code)
                if lock.status_code == 200:
                    confirm = session.post(f"{base_url}/api/confirm", json={"seatIds": wanted}, timeout=10)
                    assert confirm.status_code == 200, confirm.text
                    booked += wanted
            return username, booked

        results = race(
            [
                lambda u=user.username, i=i: shopper(u, first if i % 2 else second, random.Random(i))
                for i, user in enumerate(holders)
            ]
        )

    booked_by_clients = Counter(seat for _, seats in results for seat in seats)
    assert booked_by_clients and max(booked_by_clients.values()) == 1, "a seat was confirmed to two clients"
    for username, seats in results:
        for seat_id in seats:
            assert Seat.objects.get(pk=seat_id).booked_by == username
    assert set(booked_by_clients) == set(Seat.objects.filter(status="booked").values_list("pk", flat=True))
    per_seat = Counter(SeatEvent.objects.filter(action="booked").values_list("seat_id", flat=True))
    assert set(per_seat.values()) == {1}
