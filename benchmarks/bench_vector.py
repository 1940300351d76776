"""Benchmark of the embedded vector server: prints figures, measured in one run.

    .venv/bin/python benchmarks/bench_vector.py [--n 100000] [--dim 384] [--shards 1 2 4]

On ``n`` embedding-like vectors (clustered, low-rank: see ``magicaf_nb.vector.data``),
for each ``shard_number``: upsert points/s in batches of 256 (``wait=true``); index
build time (last write acknowledged to status green); search p50/p95 in-process (the
same shards, qdrant-edge called directly with the same fan-out), over bare HTTP, and
through the official QdrantClient, taking turns query by query, and their ratios;
recall@10 of HNSW against exact search in numpy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import uvloop
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from magicaf_nb.bench.rawhttp import RawHttpPool
from magicaf_nb.vector import VectorServer
from magicaf_nb.vector.collection import Collection, QuerySpec
from magicaf_nb.vector.data import embedding_like, exact_top_k, recall_at_k, split_queries

T = TypeVar("T")


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def _timed(fn: Callable[[T], Any], items: Sequence[T]) -> list[float]:
    times = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - t0)
    return times


def _searches_per_s(collection: Collection, specs: Sequence[QuerySpec], threads: int) -> float:
    """In-process search throughput with ``threads`` threads sharing the collection.

    If the engine released the GIL while it searches, two threads on two cores would
    search about twice as fast as one; qdrant-edge 0.9 holds it, and they do not.
    """
    per_thread = 2 * len(specs) // threads

    def work(offset: int) -> None:
        for i in range(per_thread):
            collection.query(specs[(offset + i) % len(specs)])

    workers = [threading.Thread(target=work, args=(k * 7,)) for k in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return per_thread * threads / (time.perf_counter() - start)


async def _search_latencies(
    url: str, collection: Collection, queries: np.ndarray, ef: int
) -> dict[str, Any]:
    """The same searches in-process, over bare HTTP and through QdrantClient.

    In-process and bare HTTP take turns query by query, so any drift of a shared machine
    hits both alike and their ratio is measured side by side. Bare HTTP is the
    workbench's own keep-alive HTTP/1.1 client (``RawHttpPool``): it shows what the
    server and the wire add. QdrantClient, run next, adds its own request building and
    response parsing. Last, bare HTTP and in-process searches each run back to back, in
    their own loops: caches stay warm and neither side's cores fall idle in between.
    """
    params = m.SearchParams(hnsw_ef=ef)
    path = "/collections/bench/points/query"
    vectors = [q.tolist() for q in queries]
    specs = [QuerySpec(vector=v, using="", limit=10, params=params) for v in vectors]
    bodies = [
        json.dumps({"query": v, "limit": 10, "params": {"hnsw_ef": ef}}).encode() for v in vectors
    ]
    pool = RawHttpPool(url)
    client = QdrantClient(url=url, timeout=60)
    for spec, body in zip(specs, bodies, strict=True):  # warm-up: every page touched once
        collection.query(spec)
        await pool.request("POST", path, body)
    inproc: list[float] = []
    http: list[float] = []
    server: list[float] = []
    for spec, body in zip(specs, bodies, strict=True):
        t0 = time.perf_counter()
        collection.query(spec)
        t1 = time.perf_counter()
        raw = await pool.request("POST", path, body)
        t2 = time.perf_counter()
        if raw.status != 200:
            raise RuntimeError(f"POST {path} answered {raw.status}: {raw.body[:300]!r}")
        inproc.append(t1 - t0)
        http.append(t2 - t1)
        server.append(json.loads(raw.body)["time"])
    found: list[list[int]] = []

    def via_client(vector: list[float]) -> None:
        hits = client.query_points("bench", query=vector, limit=10, search_params=params)
        found.append([int(p.id) for p in hits.points])

    through_client = _timed(via_client, vectors)
    http_back_to_back = []
    for body in bodies:
        t0 = time.perf_counter()
        await pool.request("POST", path, body)
        http_back_to_back.append(time.perf_counter() - t0)
    back_to_back = _timed(collection.query, specs)
    pool.close()
    client.close()
    return {
        "inproc": inproc,
        "http": http,
        "server": server,
        "client": through_client,
        "back_to_back": back_to_back,
        "http_back_to_back": http_back_to_back,
        "found": found,
    }


def run_one(
    shards: int,
    corpus: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix=f"bench-vector-{shards}-"))
    storage = scratch / "served"
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
    # The in-process searches need their own copy of the shards (the server locks its own).
    copy = scratch / "in-process"
    shutil.copytree(storage / "collections" / "bench", copy)
    collection = Collection.open(copy)
    try:
        with VectorServer(storage) as server:
            times = uvloop.run(_search_latencies(server.url, collection, queries, args.ef))
        params = m.SearchParams(hnsw_ef=args.ef)
        specs = [QuerySpec(vector=q.tolist(), using="", limit=10, params=params) for q in queries]
        per_s = {n: _searches_per_s(collection, specs, n) for n in (1, 2)}
    finally:
        collection.close()
        shutil.rmtree(scratch, ignore_errors=True)
    inproc, http, via_client = times["inproc"], times["http"], times["client"]
    best, http_best = times["back_to_back"], times["http_back_to_back"]
    return {
        "shards": shards,
        "upsert_pts_per_s": len(corpus) / upsert_s,
        "index_build_s": build_s,
        "indexed_vectors": info.indexed_vectors_count or 0,
        "inproc_p50_ms": _pct(inproc, 50),
        "inproc_p95_ms": _pct(inproc, 95),
        "inproc_b2b_p50_ms": _pct(best, 50),
        "http_b2b_p50_ms": _pct(http_best, 50),
        "http_p50_ms": _pct(http, 50),
        "http_p95_ms": _pct(http, 95),
        "server_p50_ms": _pct(times["server"], 50),
        "client_p50_ms": _pct(via_client, 50),
        "client_p95_ms": _pct(via_client, 95),
        "http_ratio_p50": statistics.median(http) / statistics.median(inproc),
        "http_ratio_p95": _pct(http, 95) / _pct(inproc, 95),
        "http_ratio_b2b_p50": statistics.median(http_best) / statistics.median(best),
        "client_ratio_p50": statistics.median(via_client) / statistics.median(inproc),
        "searches_per_s_1_thread": per_s[1],
        "searches_per_s_2_threads": per_s[2],
        "recall@10_hnsw": recall_at_k(times["found"], truth),
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
        f"\nSearch over HTTP / in-process, worst over shard counts: "
        f"p50 {table['http_ratio_p50'].max():.2f}, p95 {table['http_ratio_p95'].max():.2f} "
        f"(goal <= 2); each back to back in its own loop p50 "
        f"{table['http_ratio_b2b_p50'].max():.2f}; through QdrantClient p50 "
        f"{table['client_ratio_p50'].max():.2f}"
    )
    gain = table["searches_per_s_2_threads"] / table["searches_per_s_1_thread"]
    print(
        f"In-process searches/s, 2 threads / 1 thread: {gain.min():.2f} to {gain.max():.2f} "
        "(about 1: the engine holds the GIL while it searches, so the server runs searches "
        "on its event loop and asks shards one after the other)"
    )


if __name__ == "__main__":
    main()
