"""Asyncio helpers for Python 3.11's cancellation.

Python 3.11's ``asyncio.wait_for`` loses a cancellation that arrives as the
awaitable it wraps completes (python/cpython#86296, fixed in 3.12), and
redis-py sends every command through it when a socket timeout is set: a task
blocked in the channel layer's receive can swallow its cancel and go on
receiving. Our own code bounds waits with ``asyncio.timeout`` instead, and
stops tasks with :func:`cancel_and_wait`.
"""

from __future__ import annotations

import asyncio

#: How long a cancelled task may take to end before it is cancelled again.
CANCEL_RETRY_SECONDS = 0.2


async def cancel_and_wait(*tasks: asyncio.Future) -> None:
    """Cancel the tasks and return once every one has ended; one that swallowed its cancel is
    cancelled again. Their results and errors are dropped (the caller is stopping them)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_RETRY_SECONDS)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at exit
