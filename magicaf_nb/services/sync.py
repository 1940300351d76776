"""Run coroutines from synchronous code, including inside Jupyter's running event loop.

Jupyter already runs an asyncio loop in the kernel's main thread, so ``asyncio.run``
fails there. Sync wrappers instead submit the coroutine to one long-lived loop in a
daemon thread and wait for its result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared event loop that sync wrappers and background load run on."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="magicaf-nb-loop", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def submit(coro: Coroutine[Any, Any, T]) -> Future[T]:
    """Schedule ``coro`` on the background loop; return a concurrent Future."""
    return asyncio.run_coroutine_threadsafe(coro, background_loop())


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run ``coro`` to completion from synchronous code and return its result."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and running is _loop:
        coro.close()
        raise RuntimeError(
            "run_sync() was called from the background loop itself; await the coroutine instead."
        )
    return submit(coro).result(timeout)
