"""Run callables at the same instant on real threads, each on its own database connection."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.db import connections


def race(calls: list[Callable[[], object]], timeout: float = 60) -> list[object]:
    """Start every call together (a barrier), return their results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            barrier.wait(timeout=timeout)
            return call()
        finally:
            connections.close_all()  # this thread's connections

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result(timeout=timeout) for future in [pool.submit(run, call) for call in calls]]


def statuses(responses) -> Counter:
    return Counter(response.status_code for response in responses)
