"""Sweeps over concurrency or rate, returning tidy DataFrames (one row per level)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from magicaf_nb.bench.loadgen import RunResult, closed_loop, open_loop
from magicaf_nb.bench.summary import summarize
from magicaf_nb.bench.targets import Target


@dataclass
class SweepResult:
    summary: pd.DataFrame  # one row per level
    records: pd.DataFrame  # every request, with the level it belongs to
    runs: list[RunResult]


def _sweep(
    levels: Sequence[float],
    key: str,
    run: Callable[[float], RunResult],
    slo: Mapping[str, float] | None,
    observe: Callable[[str, float], dict[str, Any]] | None,
) -> SweepResult:
    rows, frames, runs = [], [], []
    for level in tqdm(levels, desc=f"{key} sweep", leave=False):
        if observe is not None:
            observe("before", level)
        result = run(level)
        extra = observe("after", level) if observe is not None else {}
        row = summarize(result.records, slo).to_dict()
        row.update({key: level, "generator_ok": result.generator_ok, **(extra or {})})
        rows.append(row)
        frames.append(result.records.assign(**{key: level}))
        runs.append(result)
    summary = pd.DataFrame(rows)
    summary = summary[[key, *[c for c in summary.columns if c != key]]]
    return SweepResult(summary, pd.concat(frames, ignore_index=True), runs)


def sweep_concurrency(
    target: Target,
    levels: Sequence[int],
    *,
    requests_per_level: int,
    warmup_requests: int = 2,
    slo: Mapping[str, float] | None = None,
    observe: Callable[[str, float], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> SweepResult:
    """Closed loop at each concurrency; ``observe`` may scrape server metrics around each."""
    return _sweep(
        levels,
        "concurrency",
        lambda c: closed_loop(
            target,
            int(c),
            max_requests=requests_per_level,
            warmup_requests=warmup_requests,
            **kwargs,
        ),
        slo,
        observe,
    )


def sweep_rate(
    target: Target,
    rates: Sequence[float],
    *,
    seconds_per_level: float,
    warmup_s: float = 0.5,
    slo: Mapping[str, float] | None = None,
    observe: Callable[[str, float], dict[str, Any]] | None = None,
    **kwargs: Any,
) -> SweepResult:
    """Open loop at each rate (Poisson arrivals by default)."""
    return _sweep(
        rates,
        "rate",
        lambda r: open_loop(
            target, float(r), max_seconds=seconds_per_level, warmup_s=warmup_s, **kwargs
        ),
        slo,
        observe,
    )
