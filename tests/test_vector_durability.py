"""Durability and indexing: kill -9 loses no acknowledged write; HNSW builds never stall serving."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from magicaf_nb.vector import VectorServer
from magicaf_nb.vector.data import embedding_like, exact_top_k, recall_at_k


def _wait_status(client: QdrantClient, name: str, status: m.CollectionStatus, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = client.get_collection(name)
        if info.status == status:
            return info
        time.sleep(0.05)
    raise AssertionError(f"{name} never became {status.value}: {info}")


def test_kill_9_during_acknowledged_upserts_loses_nothing(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    vectors = embedding_like(4000, 32, seed=3)
    acked: list[int] = []
    server = VectorServer(storage).start()
    client = QdrantClient(url=server.url, timeout=10)
    client.create_collection(
        "wal", vectors_config=m.VectorParams(size=32, distance=m.Distance.COSINE), shard_number=3
    )
    failures: list[BaseException] = []

    def writer() -> None:
        for start in range(0, len(vectors), 40):
            ids = list(range(start, start + 40))
            try:
                client.upsert(
                    "wal",
                    points=m.Batch(
                        ids=ids,
                        vectors=vectors[start : start + 40].tolist(),
                        payloads=[{"i": i} for i in ids],
                    ),
                    wait=True,
                )
            except Exception as exc:  # the kill: from here on nothing is acknowledged
                failures.append(exc)
                return
            acked.extend(ids)

    thread = threading.Thread(target=writer)
    thread.start()
    deadline = time.monotonic() + 30
    while len(acked) < 800 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.kill()  # SIGKILL in the middle of the stream
    thread.join(timeout=30)
    client.close()
    assert failures, "the stream finished before the kill: make it longer"
    assert 800 <= len(acked) < len(vectors)

    server = VectorServer(storage).start()  # the same storage, a new process
    try:
        client = QdrantClient(url=server.url, timeout=10)
        stored = client.retrieve("wal", ids=acked, with_vectors=True, with_payload=True)
        assert sorted(p.id for p in stored) == sorted(acked)
        for point in stored[:: max(1, len(stored) // 50)]:
            np.testing.assert_allclose(point.vector, vectors[point.id], atol=1e-5)
            assert point.payload == {"i": point.id}
        assert client.count("wal").count >= len(acked)
        client.close()
    finally:
        server.stop()


def test_index_builds_off_the_serving_path_and_survive_a_kill(tmp_path: Path) -> None:
    """Yellow while HNSW builds, green after; searches and writes keep being answered."""
    storage = tmp_path / "storage"
    n, dim = 12000, 64
    vectors = embedding_like(n + 50, dim, seed=5)
    corpus, queries = vectors[:n], vectors[n:]
    server = VectorServer(storage).start()
    try:
        client = QdrantClient(url=server.url, timeout=30)
        client.create_collection(
            "idx",
            vectors_config=m.VectorParams(size=dim, distance=m.Distance.COSINE),
            shard_number=2,
            hnsw_config=m.HnswConfigDiff(m=16, ef_construct=100, full_scan_threshold=10),
            optimizers_config=m.OptimizersConfigDiff(indexing_threshold=200),
        )
        for start in range(0, n, 1000):
            client.upsert(
                "idx",
                points=m.Batch(
                    ids=list(range(start, start + 1000)),
                    vectors=corpus[start : start + 1000].tolist(),
                ),
            )
        assert client.get_collection("idx").status == m.CollectionStatus.YELLOW
        others = embedding_like(500, dim, seed=11)
        latencies: list[float] = []
        statuses: set[m.CollectionStatus] = set()
        extra = 0
        while True:  # serve searches and writes while the index builds
            t0 = time.perf_counter()
            client.query_points("idx", query=queries[len(latencies) % 50].tolist(), limit=10)
            latencies.append(time.perf_counter() - t0)
            if len(latencies) % 10 == 0:
                client.upsert(
                    "idx",
                    points=[m.PointStruct(id=n + extra, vector=others[extra % 500].tolist())],
                )
                extra += 1
            info = client.get_collection("idx")
            statuses.add(info.status)
            if info.status == m.CollectionStatus.GREEN or len(latencies) > 20000:
                break
        metrics = httpx.get(f"{server.url}/metrics").text
        build_s = float(re.search(r"^index_build_seconds_total (\S+)$", metrics, re.M)[1])
        print(f"{len(latencies)} searches, max {max(latencies):.3f} s, builds {build_s:.2f} s")
        assert info.status == m.CollectionStatus.GREEN
        assert info.points_count == n + extra
        assert info.indexed_vectors_count >= n  # both shards carry an HNSW graph
        assert "index_builds_total 2" in metrics or "index_builds_total 3" in metrics
        # An in-process optimize() would freeze every request for the whole build.
        assert len(latencies) >= 20
        assert max(latencies) < max(0.5, build_s / 2), (max(latencies), build_s)
        truth, _ = exact_top_k(corpus, queries, 10)
        found = [
            [p.id for p in client.query_points("idx", query=q.tolist(), limit=10).points]
            for q in queries
        ]
        truth_ids = [[int(i) for i in row] for row in truth]
        assert recall_at_k([[i for i in f if i < n] for f in found], np.array(truth_ids)) >= 0.9
        # Start another build and kill -9 the server in the middle of it.
        client.upsert(
            "idx",
            points=m.Batch(
                ids=list(range(n + 100, n + 100 + 2000)),
                vectors=embedding_like(2000, dim, seed=9).tolist(),
            ),
        )
        before = client.count("idx").count
        deadline = time.monotonic() + 20
        while "index_builds_running 1" not in httpx.get(f"{server.url}/metrics").text:
            assert time.monotonic() < deadline, "no index build started"
            time.sleep(0.02)
        client.close()
        server.kill()
        server = VectorServer(storage).start()
        client = QdrantClient(url=server.url, timeout=30)
        assert client.count("idx").count == before
        info = _wait_status(client, "idx", m.CollectionStatus.GREEN, timeout_s=60)
        assert info.points_count == before
        gens = sorted(p.name for p in storage.glob("collections/idx/shards/*/gen-*"))
        assert len(gens) == 2, gens  # one live generation per shard, no leftovers
        client.close()
    finally:
        server.stop()
