"""The webhook sender: committed deliveries reach the broker gathered, after the request has answered.

The broker is replaced by a recorder of ``deliver_webhooks.delay`` here (what these tests prove
is what this process hands over, and when); tests/test_webhooks_worker.py runs a real broker and
worker end to end."""

from __future__ import annotations

import threading
import time

import pytest

from booking import dependencies, tasks, webhook_sender
from booking.models import WebhookDelivery
from booking.services import webhooks
from booking.webhook_sender import TASK_BATCH, sender

from .helpers import post
from .webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


class Broker:
    """Records each task sent, optionally slowly or failing, as a broker that is slow or down."""

    def __init__(self, *, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.sent: list[list[int]] = []
        self._lock = threading.Lock()

    def __call__(self, delivery_ids: list[int]) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise ConnectionError("broker down")
        with self._lock:
            self.sent.append(list(delivery_ids))


@pytest.fixture
def broker(monkeypatch):
    recorder = Broker()
    monkeypatch.setattr(tasks.deliver_webhooks, "delay", recorder)
    yield recorder
    assert sender.flush(10)


@pytest.fixture
def endpoint():
    receiver = Receiver()
    yield webhooks.webhook_endpoint_create(url=receiver.url)
    receiver.stop()


def test_many_commits_leave_in_few_tasks_each_delivery_once(broker):
    def commits(worker: int) -> None:
        for n in range(50):
            sender.submit({1: [worker * 1000 + n], 2: [worker * 1000 + n + 500]})

    threads = [threading.Thread(target=commits, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sender.flush(5)
    sent = [delivery for task in broker.sent for delivery in task]
    assert sorted(sent) == sorted(w * 1000 + n + extra for w in range(4) for n in range(50) for extra in (0, 500))
    assert all(len(task) <= TASK_BATCH for task in broker.sent)
    # 400 deliveries of 400 commits, gathered: a handful of tasks (8 when one round took all).
    assert len(broker.sent) <= 16, [len(task) for task in broker.sent]


def test_a_round_goes_in_as_few_tasks_as_the_batch_allows_of_equal_sizes(broker):
    webhook_sender.send_now({1: list(range(TASK_BATCH + 1)), 2: [7], 3: list(range(3 * TASK_BATCH))})
    assert [len(task) for task in broker.sent] == [TASK_BATCH // 2 + 1, TASK_BATCH // 2, 1] + [TASK_BATCH] * 3
    assert broker.sent[0] + broker.sent[1] == list(range(TASK_BATCH + 1))  # in order, each once


def test_a_booking_does_not_wait_for_a_slow_broker(broker, endpoint, alice, seat_ids):
    broker.delay = 2.0
    started = time.monotonic()
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:2]}).status_code == 200
    assert post(alice, "/api/confirm", {"seatIds": seat_ids[:2]}).status_code == 200
    assert time.monotonic() - started < 1.5
    assert sender.flush(10)
    ids = set(WebhookDelivery.objects.values_list("pk", flat=True))
    assert len(ids) == 2 and {pk for task in broker.sent for pk in task} == ids


def test_a_broker_that_is_down_leaves_the_deliveries_for_beat(broker, endpoint, alice, seat_ids, caplog):
    broker.fail = True
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert sender.flush(5)
    assert "broker unavailable (ConnectionError: broker down)" in caplog.text
    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.state == "pending"
    broker.fail = False
    dependencies.broker.reset()  # the breaker's retry period, passed
    assert webhooks.webhooks_deliver_due() == 1  # beat's run, once the broker is back
    assert broker.sent == [[delivery.pk]]


def test_after_a_quiet_spell_a_delivery_leaves_at_once_and_in_a_rush_rounds_gather_longer(broker):

    assert sender.flush(5)
    time.sleep(webhook_sender.BUSY_WITHIN_SECONDS)  # quiet: the last round is a second old
    started = time.monotonic()
    sender.submit({1: [1]})
    while not broker.sent and time.monotonic() - started < 5:
        time.sleep(0.005)
    assert broker.sent == [[1]]
    assert time.monotonic() - started < webhook_sender.BUSY_GATHER_SECONDS / 2  # the short round
    # Right after that round: a rush. What commits within the longer round leaves in one task.
    started = time.monotonic()
    for n in range(2, 12):
        sender.submit({1: [n]})
        time.sleep(webhook_sender.BUSY_GATHER_SECONDS / 20)
    assert sender.flush(5)
    assert time.monotonic() - started >= webhook_sender.BUSY_GATHER_SECONDS
    assert broker.sent[1:] == [list(range(2, 12))]
