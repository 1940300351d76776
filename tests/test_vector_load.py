"""Search load against the vector server: the generator's target and notebook 05's QPS."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from magicaf_nb.bench import VectorSearchTarget, closed_loop, summarize
from magicaf_nb.vector import VectorServer, sharding
from magicaf_nb.vector.data import embedding_like

KEY = "load-key"


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[tuple[VectorServer, np.ndarray]]:
    vectors = embedding_like(600, 16, seed=3)
    with VectorServer(api_key=KEY) as running:
        client = QdrantClient(url=running.url, api_key=KEY, https=False)
        client.create_collection(
            "load",
            vectors_config=m.VectorParams(size=16, distance=m.Distance.COSINE),
            shard_number=2,
        )
        client.upsert("load", points=m.Batch(ids=list(range(600)), vectors=vectors.tolist()))
        client.close()
        yield running, vectors


def test_search_target_sends_every_query_with_the_key(
    keyed_server: tuple[VectorServer, np.ndarray],
) -> None:
    server, vectors = keyed_server
    target = VectorSearchTarget(server.url, "load", vectors[:5], api_key=KEY, hnsw_ef=32)
    run = closed_loop(target, 4, max_requests=40)
    figures = summarize(run.records)
    assert figures["requests"] == 40
    assert figures["errors"] == 0
    assert target.describe()["hnsw_ef"] == 32


def test_search_target_records_refusals(keyed_server: tuple[VectorServer, np.ndarray]) -> None:
    server, vectors = keyed_server
    run = closed_loop(VectorSearchTarget(server.url, "load", vectors[:2]), 2, max_requests=6)
    assert (~run.records["ok"]).all()
    assert run.records["error"].str.contains("HTTP 401").all()


def test_qps_measures_the_server_and_names_failures(
    keyed_server: tuple[VectorServer, np.ndarray],
) -> None:
    server, vectors = keyed_server
    figures = sharding.qps(server.url, "load", vectors[:20], 2, 0.5, api_key=KEY)
    assert figures["qps"] > 0
    assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    with pytest.raises(RuntimeError, match=r"searches on missing failed.*HTTP 404"):
        sharding.qps(server.url, "missing", vectors[:20], 2, 0.3, api_key=KEY)
