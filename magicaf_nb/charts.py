"""Matplotlib figures over the workbench's measurements (DataFrames in, Axes out)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes


def _axes(ax: Axes | None, size: tuple[float, float] = (9, 3.5)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def requests_per_replica(
    records: pd.DataFrame, ax: Axes | None = None, title: str = "Requests served per replica"
) -> Axes:
    """Bar chart: how many requests of a stream each replica served."""
    ax = _axes(ax, (6, 3))
    counts = records.fillna({"served_by": "failed"}).groupby("served_by").size()
    ax.bar(counts.index.astype(str), counts.values, color="tab:blue")
    ax.set_xlabel("replica (HAProxy server name)")
    ax.set_ylabel("requests served")
    ax.set_title(title)
    for x, y in zip(range(len(counts)), counts.values, strict=True):
        ax.annotate(str(int(y)), (x, y), ha="center", va="bottom", fontsize=9)
    return ax


def stream_timeline(
    records: pd.DataFrame,
    marks: pd.DataFrame | None = None,
    bin_s: float = 1.0,
    ax: Axes | None = None,
    title: str = "Requests per second, by the replica that served them",
) -> Axes:
    """Stacked requests/s per replica over time, with events (scale, kill) as lines."""
    ax = _axes(ax)
    if records.empty:
        ax.set_title(f"{title} (no requests)")
        return ax
    frame = records.assign(
        bin=(records["t_send_s"] // bin_s) * bin_s,
        who=records["served_by"].fillna("failed"),
    )
    table = (
        frame.pivot_table(index="bin", columns="who", values="ok", aggfunc="size", fill_value=0)
        / bin_s
    )
    table = table.reindex(sorted(table.columns, key=str), axis=1)
    ax.stackplot(table.index, table.T.values, labels=[str(c) for c in table.columns], step="post")
    if marks is not None:
        for _, mark in marks.iterrows():
            ax.axvline(mark["t_s"], color="black", linestyle="--", linewidth=1)
            ax.annotate(
                mark["event"],
                (mark["t_s"], ax.get_ylim()[1]),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
            )
    ax.set_xlabel("time since the stream started (s)")
    ax.set_ylabel("requests/s")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncols=min(6, len(table.columns)))
    return ax


def latency_timeline(
    records: pd.DataFrame, marks: pd.DataFrame | None = None, ax: Axes | None = None
) -> Axes:
    """Each request's latency against its send time; failures in red."""
    ax = _axes(ax)
    ok = records[records["ok"].astype(bool)]
    bad = records[~records["ok"].astype(bool)]
    ax.scatter(ok["t_send_s"], 1000 * ok["latency_s"], s=4, label="ok")
    if not bad.empty:
        ax.scatter(bad["t_send_s"], 1000 * bad["latency_s"], s=12, color="red", label="failed")
    if marks is not None:
        for _, mark in marks.iterrows():
            ax.axvline(mark["t_s"], color="black", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("time since the stream started (s)")
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title("Request latency over time")
    ax.legend(loc="upper left", fontsize=8)
    return ax
