"""Measure what ``shard_number`` does: ingest, index build, latency, QPS, recall, placement.

Plain functions over any Qdrant URL (the embedded server or a real cluster), used by
notebook 05 and its widgets. Every figure comes from requests made in the call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from tqdm.auto import tqdm

from magicaf_nb.bench.loadgen import closed_loop
from magicaf_nb.bench.summary import summarize
from magicaf_nb.bench.targets import VectorSearchTarget
from magicaf_nb.vector.data import recall_at_k


def create_and_ingest(
    client: QdrantClient,
    name: str,
    vectors: np.ndarray,
    shards: int,
    *,
    batch: int = 256,
    indexing_threshold_kb: int = 10000,
    full_scan_threshold_kb: int = 10000,
    replication_factor: int = 1,
) -> float:
    """(Re)create ``name`` with ``shards`` shards and upload ``vectors``; return seconds."""
    if client.collection_exists(name):
        client.delete_collection(name)
    client.create_collection(
        name,
        vectors_config=m.VectorParams(size=vectors.shape[1], distance=m.Distance.COSINE),
        shard_number=shards,
        replication_factor=replication_factor,
        hnsw_config=m.HnswConfigDiff(full_scan_threshold=full_scan_threshold_kb),
        optimizers_config=m.OptimizersConfigDiff(indexing_threshold=indexing_threshold_kb),
    )
    start = time.perf_counter()
    for i in tqdm(range(0, len(vectors), batch), desc=f"ingest {shards} shard(s)", leave=False):
        ids = list(range(i, min(len(vectors), i + batch)))
        client.upsert(
            name,
            points=m.Batch(ids=ids, vectors=vectors[i : i + batch].tolist()),
            wait=True,
        )
    return time.perf_counter() - start


def wait_green(client: QdrantClient, name: str, timeout_s: float = 600.0) -> float:
    """Seconds until the collection's status is green (its HNSW indexes are built)."""
    start = time.perf_counter()
    while client.get_collection(name).status != m.CollectionStatus.GREEN:
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError(f"collection {name} not green after {timeout_s:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - start


def search_ids(
    client: QdrantClient, name: str, queries: np.ndarray, *, hnsw_ef: int | None = None
) -> list[list[int]]:
    """Top-10 ids of each query, sent one at a time through ``client`` (for recall)."""
    params = m.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
    return [
        [
            int(p.id)
            for p in client.query_points(
                name, query=q.tolist(), limit=10, search_params=params
            ).points
        ]
        for q in queries
    ]


def qps(
    url: str,
    name: str,
    queries: np.ndarray,
    concurrency: int,
    seconds: float,
    hnsw_ef: int | None = None,
    api_key: str | None = None,
) -> dict[str, float]:
    """Closed loop: ``concurrency`` clients searching back to back for ``seconds``.

    The load comes from the workbench's generator (``magicaf_nb.bench``) with bare HTTP
    requests encoded up front, so the server, not the client, sets the rate.
    """
    target = VectorSearchTarget(url, name, queries, api_key=api_key, hnsw_ef=hnsw_ef)
    run = closed_loop(target, concurrency, max_seconds=seconds, warmup_requests=concurrency)
    figures = summarize(run.records)
    if figures["errors"]:
        first = run.measured.loc[~run.measured["ok"], "error"].iloc[0]
        raise RuntimeError(f"{figures['errors']:.0f} searches on {name} failed; first: {first}")
    return {
        "qps": figures["requests_per_s"],
        "p50_ms": figures["latency_p50_ms"],
        "p95_ms": figures["latency_p95_ms"],
    }


def points_per_shard(client: QdrantClient, name: str) -> list[int]:
    info = client.collection_cluster_info(name)
    shards = {s.shard_id: s.points_count for s in info.local_shards}
    return [shards[k] for k in sorted(shards)]


def measure(
    client: QdrantClient,
    url: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    shard_counts: Sequence[int],
    *,
    seconds: float,
    prefix: str = "shards",
    api_key: str | None = None,
    **ingest: Any,
) -> pd.DataFrame:
    """One row per shard count: ingest, index build, latency, QPS at 1 and 8, recall@10."""
    rows = []
    for shards in tqdm(shard_counts, desc="shard counts"):
        name = f"{prefix}_{shards}"
        ingest_s = create_and_ingest(client, name, vectors, shards, **ingest)
        build_s = wait_green(client, name)
        found = search_ids(client, name, queries)
        per_shard = points_per_shard(client, name)
        one = qps(url, name, queries, 1, seconds, api_key=api_key)
        eight = qps(url, name, queries, 8, seconds, api_key=api_key)
        rows.append(
            {
                "shards": shards,
                "ingest_s": ingest_s,
                "ingest_pts_per_s": len(vectors) / ingest_s,
                "index_build_s": build_s,
                "p50_ms": one["p50_ms"],
                "p95_ms": one["p95_ms"],
                "qps_c1": one["qps"],
                "qps_c8": eight["qps"],
                "p95_ms_c8": eight["p95_ms"],
                "recall_at_10": recall_at_k(found, truth),
                "points_per_shard": per_shard,
            }
        )
    return pd.DataFrame(rows).set_index("shards")


def explore(
    client: QdrantClient,
    url: str,
    queries: np.ndarray,
    truth: np.ndarray,
    shard_counts: Sequence[int],
    hnsw_ef: int,
    *,
    prefix: str = "shards",
    seconds: float = 0.5,
    api_key: str | None = None,
) -> pd.DataFrame:
    """Recall@10 and latency of the built collections at one ``hnsw_ef`` (widget backend).

    Recall from the queries sent through ``client``; latency from one client of the load
    generator, as in ``measure``.
    """
    rows = []
    for shards in shard_counts:
        name = f"{prefix}_{shards}"
        found = search_ids(client, name, queries, hnsw_ef=hnsw_ef)
        one = qps(url, name, queries, 1, seconds, hnsw_ef=hnsw_ef, api_key=api_key)
        rows.append(
            {
                "shards": shards,
                "hnsw_ef": hnsw_ef,
                "recall_at_10": recall_at_k(found, truth),
                "p50_ms": one["p50_ms"],
                "p95_ms": one["p95_ms"],
            }
        )
    return pd.DataFrame(rows).set_index("shards")


def plot(results: pd.DataFrame) -> plt.Figure:
    """Four panels: ingest and build time, latency, throughput, recall and balance."""
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    x = [str(s) for s in results.index]
    ax = axes[0]
    ax.bar([i - 0.2 for i in range(len(x))], results["ingest_s"], 0.4, label="ingest")
    ax.bar([i + 0.2 for i in range(len(x))], results["index_build_s"], 0.4, label="index build")
    ax.set(xticks=range(len(x)), xticklabels=x, xlabel="shard_number", ylabel="seconds")
    ax.set_title("Ingest and HNSW build")
    ax.legend()
    ax = axes[1]
    ax.plot(x, results["p50_ms"], "o-", label="p50, 1 client")
    ax.plot(x, results["p95_ms"], "o--", label="p95, 1 client")
    ax.plot(x, results["p95_ms_c8"], "s:", label="p95, 8 clients")
    ax.set(xlabel="shard_number", ylabel="latency (ms)", title="Search latency")
    ax.legend()
    ax = axes[2]
    ax.plot(x, results["qps_c1"], "o-", label="1 client")
    ax.plot(x, results["qps_c8"], "s-", label="8 clients")
    ax.set(xlabel="shard_number", ylabel="searches / s", title="Throughput (QPS)")
    ax.legend()
    ax = axes[3]
    ax.plot(x, results["recall_at_10"], "o-", color="tab:green")
    ax.set(xlabel="shard_number", ylabel="recall@10 vs exact", title="Recall and balance")
    ax.set_ylim(min(0.8, results["recall_at_10"].min() - 0.02), 1.005)
    spread = [max(p) / (sum(p) / len(p)) for p in results["points_per_shard"]]
    twin = ax.twinx()
    twin.bar(x, spread, alpha=0.25, color="tab:gray")
    twin.set_ylabel("largest shard / mean shard")
    twin.set_ylim(0.9, max(1.5, max(spread) + 0.1))
    fig.tight_layout()
    return fig
