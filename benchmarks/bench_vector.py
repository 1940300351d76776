"""Benchmark of the embedded vector server: prints figures, measured in one run.

    .venv/bin/python benchmarks/bench_vector.py [--n 100000] [--dim 384] [--shards 1 2 4]

On ``n`` embedding-like vectors (clustered, low-rank: see ``magicaf_nb.vector.data``),
for each ``shard_number``: upsert points/s in batches of 256 (``wait=true``); index
build time (last write acknowledged to status green); search p50/p95 over HTTP with the
official QdrantClient, and in-process on the same shards (qdrant-edge called directly,
same fan-out), and their ratio (also for bare HTTP requests without the client's own
overhead); recall@10 of HNSW against exact search in numpy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from magicaf_nb.vector import VectorServer
from magicaf_nb.vector.collection import Collection, QuerySpec
from magicaf_nb.vector.data import embedding_like, exact_top_k, recall_at_k, split_queries


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def run_one(
    shards: int,
    corpus: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, float]:
    storage = Path(tempfile.mkdtemp(prefix=f"bench-vector-{shards}-"))
    params = m.SearchParams(hnsw_ef=args.ef)
    with VectorServer(storage) as server:
        client = QdrantClient(url=server.url, timeout=300)
        client.create_collection(
            "bench",
            vectors_config=m.VectorParams(size=corpus.shape[1], distance=m.Distance.COSINE),
            shard_number=shards,
        )
        start = time.perf_counter()
        for i in range(0, len(corpus), args.batch):
            client.upsert(
                "bench",
                points=m.Batch(
                    ids=list(range(i, min(len(corpus), i + args.batch))),
                    vectors=corpus[i : i + args.batch].tolist(),
                ),
                wait=True,
            )
        upsert_s = time.perf_counter() - start
        start = time.perf_counter()
        while (info := client.get_collection("bench")).status != m.CollectionStatus.GREEN:
            time.sleep(0.1)
        build_s = time.perf_counter() - start
        for q in queries[:20]:  # warm-up
            client.query_points("bench", query=q.tolist(), limit=10, search_params=params)
        http: list[float] = []
        found: list[list[int]] = []
        for q in queries:
            t0 = time.perf_counter()
            hits = client.query_points("bench", query=q.tolist(), limit=10, search_params=params)
            http.append(time.perf_counter() - t0)
            found.append([int(p.id) for p in hits.points])
        raw: list[float] = []  # the same searches as bare HTTP: what the server and wire cost
        url = f"{server.url}/collections/bench/points/query"
        with httpx.Client() as http_client:
            bodies = [
                json.dumps({"query": q.tolist(), "limit": 10, "params": {"hnsw_ef": args.ef}})
                for q in queries
            ]
            headers = {"content-type": "application/json"}
            for body in bodies[:20]:
                http_client.post(url, content=body, headers=headers)
            for body in bodies:
                t0 = time.perf_counter()
                http_client.post(url, content=body, headers=headers).raise_for_status()
                raw.append(time.perf_counter() - t0)
        exact = [
            [
                int(p.id)
                for p in client.query_points(
                    "bench", query=q.tolist(), limit=10, search_params=m.SearchParams(exact=True)
                ).points
            ]
            for q in queries[:50]
        ]
        client.close()
        server.stop(keep_storage=True)
        collection = Collection.open(storage / "collections" / "bench")  # same shards, in-process
        try:
            local: list[float] = []
            for q in queries[:20]:
                collection.query(QuerySpec(vector=q.tolist(), using="", limit=10, params=params))
            for q in queries:
                vector = q.tolist()
                t0 = time.perf_counter()
                collection.query(QuerySpec(vector=vector, using="", limit=10, params=params))
                local.append(time.perf_counter() - t0)
        finally:
            collection.close()
        server.stop(keep_storage=False)
    return {
        "shards": shards,
        "upsert_pts_per_s": len(corpus) / upsert_s,
        "index_build_s": build_s,
        "indexed_vectors": info.indexed_vectors_count or 0,
        "http_p50_ms": _pct(http, 50),
        "http_p95_ms": _pct(http, 95),
        "raw_http_p50_ms": _pct(raw, 50),
        "inproc_p50_ms": _pct(local, 50),
        "inproc_p95_ms": _pct(local, 95),
        "p50_ratio": statistics.median(http) / statistics.median(local),
        "raw_p50_ratio": statistics.median(raw) / statistics.median(local),
        "recall@10_hnsw": recall_at_k(found, truth),
        "recall@10_exact": recall_at_k(exact, truth[:50]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--ef", type=int, default=128, help="hnsw_ef for searches")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    corpus, queries = split_queries(
        embedding_like(args.n + args.queries, args.dim, seed=0), args.queries
    )
    truth, _ = exact_top_k(corpus, queries, 10)
    print(
        f"{len(corpus)} x {args.dim} embedding-like vectors, {len(queries)} queries, "
        f"hnsw_ef={args.ef}, batches of {args.batch}"
    )
    rows = []
    for shards in args.shards:
        rows.append(run_one(shards, corpus, queries, truth, args))
        print(pd.DataFrame(rows[-1:]).round(3).to_string(index=False), flush=True)
    table = pd.DataFrame(rows).set_index("shards")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("\n" + table.round(3).to_string())
    print(
        f"\nHTTP/in-process p50 ratio, worst over shard counts: "
        f"{table['p50_ratio'].max():.2f} with QdrantClient, "
        f"{table['raw_p50_ratio'].max():.2f} with bare HTTP (goal <= 2)"
    )


if __name__ == "__main__":
    main()
