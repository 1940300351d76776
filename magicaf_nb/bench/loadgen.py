"""Load models: closed loop at a concurrency, open loop at a rate (Poisson or constant).

Every request becomes one record: when it was scheduled, sent, got its first token and
ended; its status, error, tokens and the replica that served it. Warm-up requests are
recorded but flagged, and summaries leave them out.

The generator checks itself: for every send it records the lateness against its
schedule, and it measures its own event-loop lag. When the client, not the server,
was the limit (requests sent late, or the in-flight cap held requests back), the run
says so in a warning and in ``RunResult.generator_ok``, instead of silently sending
less than was asked (the trap vLLM's users fell into).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import numpy as np
import pandas as pd

from magicaf_nb.bench.targets import Outcome, Target
from magicaf_nb.config import ConfigError
from magicaf_nb.services.sync import run_sync

RECORD_COLUMNS = [
    "target",
    "scheduled_s",
    "sent_s",
    "first_token_s",
    "end_s",
    "latency_s",
    "ttft_s",
    "tpot_s",
    "itl_s",
    "lateness_s",
    "ok",
    "status",
    "error",
    "input_tokens",
    "output_tokens",
    "items",
    "served_by",
    "warmup",
]
# A send later than this against its schedule counts as late (open loop).
LATE_S = 0.005


class GeneratorLimitWarning(UserWarning):
    """The load generator, not the server, limited what was sent."""


@dataclass
class RunResult:
    """Records of one load run plus the generator's self-check."""

    records: pd.DataFrame
    config: dict[str, Any]
    loop_lag_p99_s: float
    generator_ok: bool
    generator_notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> pd.DataFrame:
        """The records without warm-up."""
        return self.records[~self.records["warmup"]]


def _record(
    target: str,
    scheduled: float,
    sent: float,
    end: float,
    outcome: Outcome | None,
    error: str | None,
    t0: float,
    warmup: bool,
) -> dict[str, Any]:
    ttft = tpot = None
    itl: list[float] = []
    if outcome is not None and outcome.first_token_at is not None:
        ttft = outcome.first_token_at - sent
        times = outcome.token_times
        itl = [b - a for a, b in itertools.pairwise(times)]
        if len(times) > 1:
            tpot = (times[-1] - times[0]) / (len(times) - 1)
    status = outcome.status if outcome is not None else None
    err = error or (outcome.error if outcome is not None else None)
    return {
        "target": target,
        "scheduled_s": scheduled - t0,
        "sent_s": sent - t0,
        "first_token_s": None if ttft is None else sent - t0 + ttft,
        "end_s": end - t0,
        "latency_s": end - sent,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "itl_s": itl,
        "lateness_s": sent - scheduled,
        "ok": err is None and status is not None and status < 400,
        "status": status,
        "error": err,
        "input_tokens": None if outcome is None else outcome.input_tokens,
        "output_tokens": None if outcome is None else outcome.output_tokens,
        "items": 1 if outcome is None else outcome.items,
        "served_by": None if outcome is None else outcome.served_by,
        "warmup": warmup,
    }


class _LagProbe:
    """Measures how late the event loop wakes a 5 ms sleeper: the generator's own lag."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append(time.perf_counter() - start - 0.005)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return float(np.percentile(self.lags, 99)) if self.lags else 0.0


def _session(max_connections: int, timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=max_connections,
        force_close=False,
        enable_cleanup_closed=True,
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s), trust_env=False
    )


async def _send_one(
    target: Target, session: aiohttp.ClientSession, scheduled: float, t0: float, warmup: bool
) -> dict[str, Any]:
    sent = time.perf_counter()
    outcome: Outcome | None = None
    error = None
    try:
        outcome = await target.send(session)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
    return _record(target.name, scheduled, sent, time.perf_counter(), outcome, error, t0, warmup)


def _close(target: Target) -> None:
    close = getattr(target, "close", None)
    if callable(close):
        close()


def _check_bounds(max_requests: int | None, max_seconds: float | None) -> None:
    if max_requests is None and max_seconds is None:
        raise ConfigError("Give max_requests, max_seconds or both: a run must be bounded.")
    if max_requests is not None and not 1 <= max_requests <= 10_000_000:
        raise ConfigError(f"max_requests={max_requests}: use 1 to 10,000,000.")
    if max_seconds is not None and not 0 < max_seconds <= 24 * 3600:
        raise ConfigError(f"max_seconds={max_seconds}: use a positive duration up to a day.")


async def aclosed_loop(
    target: Target,
    concurrency: int,
    *,
    max_requests: int | None = None,
    max_seconds: float | None = None,
    warmup_requests: int = 0,
    timeout_s: float = 300.0,
) -> RunResult:
    """``concurrency`` workers, each sending its next request as soon as the last ends."""
    if not 1 <= concurrency <= 4096:
        raise ConfigError(f"concurrency={concurrency}: use 1 to 4096.")
    _check_bounds(max_requests, max_seconds)
    records: list[dict[str, Any]] = []
    budget = (max_requests or 10**9) + warmup_requests
    issued = 0
    probe = _LagProbe()
    async with _session(concurrency, timeout_s) as session:
        t0 = time.perf_counter()
        deadline = t0 + max_seconds if max_seconds else float("inf")

        async def worker() -> None:
            nonlocal issued
            while issued < budget and time.perf_counter() < deadline:
                warm = issued < warmup_requests
                issued += 1
                now = time.perf_counter()
                records.append(await _send_one(target, session, now, t0, warm))

        probe.start()
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            _close(target)
        lag = await probe.stop()
    config = {
        "load": "closed",
        "concurrency": concurrency,
        "max_requests": max_requests,
        "max_seconds": max_seconds,
        "warmup_requests": warmup_requests,
        **target.describe(),
    }
    return _finish(records, config, lag, rate=None, capped=0)


async def aopen_loop(
    target: Target,
    rate: float,
    *,
    arrivals: Literal["poisson", "constant"] = "poisson",
    max_requests: int | None = None,
    max_seconds: float | None = None,
    warmup_s: float = 0.0,
    max_in_flight: int = 1024,
    seed: int = 0,
    timeout_s: float = 300.0,
) -> RunResult:
    """Send at ``rate`` requests/s whatever the server does (arrivals Poisson or constant)."""
    if not 0 < rate <= 1_000_000:
        raise ConfigError(f"rate={rate}: use a rate above 0 and at most 1,000,000 requests/s.")
    if arrivals not in ("poisson", "constant"):
        raise ConfigError(f"arrivals={arrivals!r}: use 'poisson' or 'constant'.")
    _check_bounds(max_requests, max_seconds)
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    capped = 0
    gate = asyncio.Semaphore(max_in_flight)
    probe = _LagProbe()
    async with _session(max_in_flight, timeout_s) as session:
        t0 = time.perf_counter()
        end = t0 + warmup_s + max_seconds if max_seconds else float("inf")
        budget = max_requests if max_requests else 10**9
        scheduled = t0
        measured = 0

        async def fire(at: float, warm: bool) -> None:
            try:
                records.append(await _send_one(target, session, at, t0, warm))
            finally:
                gate.release()

        probe.start()
        while measured < budget:
            gap = rng.exponential(1 / rate) if arrivals == "poisson" else 1 / rate
            scheduled += gap
            if scheduled > end:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if gate.locked():
                capped += 1
            await gate.acquire()
            warm = scheduled - t0 < warmup_s
            measured += 0 if warm else 1
            task = asyncio.create_task(fire(scheduled, warm))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        _close(target)
        lag = await probe.stop()
    config = {
        "load": "open",
        "rate": rate,
        "arrivals": arrivals,
        "max_requests": max_requests,
        "max_seconds": max_seconds,
        "warmup_s": warmup_s,
        "max_in_flight": max_in_flight,
        "seed": seed,
        **target.describe(),
    }
    return _finish(records, config, lag, rate=rate, capped=capped)


def _finish(
    records: list[dict[str, Any]],
    config: dict[str, Any],
    lag: float,
    rate: float | None,
    capped: int,
) -> RunResult:
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS).sort_values("scheduled_s")
    frame = frame.reset_index(drop=True)
    notes = []
    measured = frame[~frame["warmup"]]
    if rate is not None and len(measured) > 1:
        late = measured["lateness_s"]
        p99 = float(late.quantile(0.99))
        span = measured["sent_s"].max() - measured["sent_s"].min()
        sent_rate = (len(measured) - 1) / span if span > 0 else float("nan")
        if p99 > LATE_S:
            notes.append(
                f"p99 send lateness {1000 * p99:.1f} ms > {1000 * LATE_S:.0f} ms: the "
                "generator could not keep the schedule"
            )
        if sent_rate < 0.9 * rate and len(measured) >= 50:
            notes.append(f"sent {sent_rate:.1f} requests/s of the {rate:.1f} requested")
    if capped:
        notes.append(
            f"{capped} sends waited for the in-flight cap ({config['max_in_flight']}): "
            "raise max_in_flight or lower the rate"
        )
    if lag > 0.02:
        notes.append(f"event-loop lag p99 {1000 * lag:.1f} ms: the client was busy")
    for note in notes:
        warnings.warn(f"Load generator limit: {note}.", GeneratorLimitWarning, stacklevel=3)
    return RunResult(frame, config, lag, not notes, notes)


def closed_loop(target: Target, concurrency: int, **kwargs: Any) -> RunResult:
    """Sync wrapper of ``aclosed_loop`` (works inside Jupyter)."""
    return run_sync(aclosed_loop(target, concurrency, **kwargs))


def open_loop(target: Target, rate: float, **kwargs: Any) -> RunResult:
    """Sync wrapper of ``aopen_loop`` (works inside Jupyter)."""
    return run_sync(aopen_loop(target, rate, **kwargs))
