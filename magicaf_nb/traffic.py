"""A steady background stream of requests, recorded one row per request.

Used to show that scaling and killing replicas cost no failed request: the stream runs
on the background event loop while the notebook (or a test) scales the stack.
It is bounded in count and time and stops by itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pandas as pd

from magicaf_nb.config import ConfigError
from magicaf_nb.services.sync import submit

Send = Callable[[], Awaitable[Any]]


class RequestStream:
    """Send ``send()`` at ``rate_per_s`` (evenly spaced) until stopped or a bound is hit."""

    def __init__(
        self,
        send: Send,
        rate_per_s: float,
        *,
        max_in_flight: int = 32,
        max_seconds: float = 600.0,
        max_requests: int = 100_000,
    ) -> None:
        if not 0 < rate_per_s <= 10_000:
            raise ConfigError(f"rate_per_s={rate_per_s}: use a rate above 0 and at most 10000.")
        self.send = send
        self.rate_per_s = rate_per_s
        self.max_in_flight = max_in_flight
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self._records: list[dict[str, Any]] = []
        self._marks: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._future: Any = None
        self._t0 = 0.0

    def start(self) -> RequestStream:
        if self._future is not None:
            raise RuntimeError("This stream is already running.")
        self._t0 = time.perf_counter()
        self._future = submit(self._run())
        return self

    def mark(self, label: str) -> None:
        """Note an event (a scale, a kill) on the stream's timeline."""
        self._marks.append({"t_s": time.perf_counter() - self._t0, "event": label})

    def stop(self, timeout_s: float = 120.0) -> pd.DataFrame:
        """Stop sending, wait for in-flight requests, return all records."""
        self._stop.set()
        return self.wait(timeout_s)

    def wait(self, timeout_s: float = 600.0) -> pd.DataFrame:
        """Wait until the stream has ended (stopped or bounded) and its requests finished."""
        if self._future is not None:
            self._future.result(timeout_s)
            self._future = None
        return self.records()

    def records(self) -> pd.DataFrame:
        columns = ["t_send_s", "latency_s", "ok", "error", "served_by"]
        return pd.DataFrame(list(self._records), columns=columns)

    def marks(self) -> pd.DataFrame:
        return pd.DataFrame(list(self._marks), columns=["t_s", "event"])

    def __enter__(self) -> RequestStream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _one(self, gate: asyncio.Semaphore) -> None:
        sent = time.perf_counter()
        try:
            result = await self.send()
        except Exception as exc:  # every failure is data here, never a crash of the stream
            row = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300], "served_by": None}
        else:
            row = {"ok": True, "error": None, "served_by": getattr(result, "served_by", None)}
        finally:
            gate.release()
        row.update(t_send_s=sent - self._t0, latency_s=time.perf_counter() - sent)
        self._records.append(row)

    async def _run(self) -> None:
        gate = asyncio.Semaphore(self.max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate_per_s
        sent = 0
        while not self._stop.is_set() and sent < self.max_requests:
            due = self._t0 + sent * interval
            if due - self._t0 > self.max_seconds:
                break
            while (delay := due - time.perf_counter()) > 0 and not self._stop.is_set():
                await asyncio.sleep(min(delay, 0.02))
            if self._stop.is_set():
                break
            await gate.acquire()
            task = asyncio.create_task(self._one(gate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if tasks:
            await asyncio.gather(*tasks)


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    """Requests, failures and latency percentiles per serving replica."""
    if records.empty:
        return pd.DataFrame(columns=["served_by", "requests", "failed", "p50_ms", "p95_ms"])
    grouped = records.fillna({"served_by": "(failed)"}).groupby("served_by")
    table = grouped.agg(
        requests=("ok", "size"),
        failed=("ok", lambda s: int((~s.astype(bool)).sum())),
        p50_ms=("latency_s", lambda s: 1000 * s.quantile(0.5)),
        p95_ms=("latency_s", lambda s: 1000 * s.quantile(0.95)),
    )
    return table.round(1).reset_index()
