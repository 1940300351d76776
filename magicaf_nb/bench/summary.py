"""Summaries of load runs: throughput, latency percentiles, TTFT/TPOT/ITL, errors, goodput."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 95, 99)
# SLO keys accepted by goodput: a request is "good" if it succeeded and meets every one.
SLO_KEYS = ("latency_s", "ttft_s", "tpot_s")


def _pct(series: pd.Series, q: int) -> float:
    values = pd.to_numeric(series, errors="coerce").dropna()
    return float(np.percentile(values, q)) if len(values) else float("nan")


def goodput(records: pd.DataFrame, slo: Mapping[str, float], duration_s: float) -> float:
    """Requests/s that succeeded and met every SLO (DistServe's goodput)."""
    unknown = set(slo) - set(SLO_KEYS)
    if unknown:
        raise ValueError(f"Unknown SLO keys {sorted(unknown)}: use {', '.join(SLO_KEYS)}.")
    good = records["ok"].astype(bool)
    for key, limit in slo.items():
        good &= pd.to_numeric(records[key], errors="coerce").fillna(np.inf) <= limit
    return float(good.sum() / duration_s) if duration_s > 0 else float("nan")


def summarize(records: pd.DataFrame, slo: Mapping[str, float] | None = None) -> pd.Series:
    """One run's figures (warm-up excluded). Times in ms, rates per second."""
    runs = records[~records["warmup"].astype(bool)] if "warmup" in records else records
    ok = runs[runs["ok"].astype(bool)]
    duration = float(runs["end_s"].max() - runs["sent_s"].min()) if len(runs) else 0.0
    out: dict[str, float] = {
        "requests": len(runs),
        "errors": int((~runs["ok"].astype(bool)).sum()),
        "error_rate": float((~runs["ok"].astype(bool)).mean()) if len(runs) else float("nan"),
        "duration_s": duration,
        "requests_per_s": len(ok) / duration if duration > 0 else float("nan"),
        "items_per_s": float(ok["items"].sum()) / duration if duration > 0 else float("nan"),
    }
    out_tokens = pd.to_numeric(ok["output_tokens"], errors="coerce").sum()
    out["output_tokens_per_s"] = float(out_tokens) / duration if duration > 0 else float("nan")
    for q in PERCENTILES:
        out[f"latency_p{q}_ms"] = 1000 * _pct(ok["latency_s"], q)
    if ok["ttft_s"].notna().any():
        for q in PERCENTILES:
            out[f"ttft_p{q}_ms"] = 1000 * _pct(ok["ttft_s"], q)
        for q in (50, 99):
            out[f"tpot_p{q}_ms"] = 1000 * _pct(ok["tpot_s"], q)
        itl = [x for row in ok["itl_s"] for x in (row if row is not None else [])]
        for q in (50, 99):
            out[f"itl_p{q}_ms"] = 1000 * float(np.percentile(itl, q)) if itl else float("nan")
    if "lateness_s" in runs:
        out["send_lateness_p99_ms"] = 1000 * _pct(runs["lateness_s"], 99)
    if slo:
        out["goodput_per_s"] = goodput(ok, slo, duration)
    return pd.Series(out)


def by_replica(records: pd.DataFrame) -> pd.DataFrame:
    """Requests, errors and p50 latency per serving replica."""
    runs = records[~records["warmup"].astype(bool)]
    table = (
        runs.fillna({"served_by": "(none)"})
        .groupby("served_by")
        .agg(
            requests=("ok", "size"),
            errors=("ok", lambda s: int((~s.astype(bool)).sum())),
            latency_p50_ms=("latency_s", lambda s: 1000 * s.median()),
        )
    )
    return table.reset_index()
