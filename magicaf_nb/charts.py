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
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
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


def throughput_latency(
    summary: pd.DataFrame,
    *,
    throughput: str,
    latency: str,
    label: str,
    ax: Axes | None = None,
    series: str | None = None,
    throughput_label: str = "throughput",
    latency_label: str = "latency (ms)",
) -> Axes:
    """The classic curve: each point one load level, throughput on x, latency on y."""
    ax = _axes(ax, (6, 4))
    groups = summary.groupby(series) if series else [(None, summary)]
    for name, part in groups:
        part = part.sort_values(label)
        ax.plot(
            part[throughput],
            part[latency],
            marker="o",
            label=None if name is None else f"{series}={name}",
        )
        for _, row in part.iterrows():
            ax.annotate(
                f"{row[label]:g}",
                (row[throughput], row[latency]),
                fontsize=8,
                textcoords="offset points",
                xytext=(4, 4),
            )
    ax.set_xlabel(throughput_label)
    ax.set_ylabel(latency_label)
    ax.set_title(f"Throughput against latency (labels: {label})")
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def latency_distribution(
    records: pd.DataFrame,
    by: str,
    *,
    column: str = "latency_s",
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Empirical CDF of a per-request time (ms), one line per value of ``by``."""
    ax = _axes(ax, (6, 4))
    for name, part in records[~records["warmup"].astype(bool)].groupby(by):
        values = 1000 * part[column].dropna().sort_values().to_numpy()
        if len(values):
            ax.step(
                values,
                [(i + 1) / len(values) for i in range(len(values))],
                where="post",
                label=f"{by}={name}",
            )
    ax.set_xscale("log")
    ax.set_xlabel(f"{column.removesuffix('_s')} (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(title or f"Distribution of {column.removesuffix('_s')}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def metric_against_load(
    summary: pd.DataFrame,
    *,
    load: str,
    metric: str,
    ax: Axes | None = None,
    series: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
) -> Axes:
    """One metric (TTFT, tokens/s, server batch) against the offered load."""
    ax = _axes(ax, (6, 4))
    groups = summary.groupby(series) if series else [(None, summary)]
    for name, part in groups:
        part = part.sort_values(load)
        ax.plot(
            part[load], part[metric], marker="o", label=None if name is None else f"{series}={name}"
        )
    ax.set_xlabel(load)
    ax.set_ylabel(ylabel or metric)
    ax.set_title(title or f"{ylabel or metric} against {load}")
    if series:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax
