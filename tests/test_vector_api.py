"""The vector server through the official qdrant-client, sync and async, against numpy.

Every result (ids, order, payloads; scores within float tolerance) is compared with an
exact search computed independently in numpy on the same vectors.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient, QdrantClient
from qdrant_client.http import models as m

from magicaf_nb.vector import VectorServer
from magicaf_nb.vector.data import embedding_like, exact_top_k

N, DIM = 600, 16
DISTANCES = {
    "Cosine": (m.Distance.COSINE, 3),
    "Euclid": (m.Distance.EUCLID, 2),
    "Dot": (m.Distance.DOT, 1),
}


@pytest.fixture(scope="module")
def server() -> Iterator[VectorServer]:
    with VectorServer() as running:
        yield running


@pytest.fixture(scope="module")
def client(server: VectorServer) -> Iterator[QdrantClient]:
    qdrant = QdrantClient(url=server.url, timeout=30)
    yield qdrant
    qdrant.close()


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    vectors = embedding_like(N + 20, DIM, clusters=12, seed=7)
    return vectors[:N], vectors[N:]


def payload(i: int) -> dict[str, object]:
    return {"i": i, "group": i % 3, "tag": "even" if i % 2 == 0 else "odd", "note": None}


@pytest.fixture(scope="module")
def loaded(client: QdrantClient, data: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """One collection per distance (with 3, 2 and 1 shards), loaded two ways."""
    corpus, _ = data
    for name, (distance, shards) in DISTANCES.items():
        client.create_collection(
            name,
            vectors_config=m.VectorParams(size=DIM, distance=distance),
            shard_number=shards,
            hnsw_config=m.HnswConfigDiff(m=8),
            optimizers_config=m.OptimizersConfigDiff(indexing_threshold=0),
        )
        half = N // 2
        client.upsert(  # a PointsList
            name,
            points=[
                m.PointStruct(id=i, vector=corpus[i].tolist(), payload=payload(i))
                for i in range(half)
            ],
        )
        client.upsert(  # a PointsBatch
            name,
            points=m.Batch(
                ids=list(range(half, N)),
                vectors=corpus[half:].tolist(),
                payloads=[payload(i) for i in range(half, N)],
            ),
        )
    return {"corpus": corpus}


def test_collections_are_listed_described_and_sharded(
    client: QdrantClient, loaded: dict[str, np.ndarray]
) -> None:
    names = {c.name for c in client.get_collections().collections}
    assert set(DISTANCES) <= names
    assert client.collection_exists("Cosine") and not client.collection_exists("nope")
    info = client.get_collection("Cosine")
    assert info.status == m.CollectionStatus.GREEN
    assert info.points_count == N
    assert info.config.params.shard_number == 3
    assert info.config.params.vectors.size == DIM
    assert info.config.hnsw_config.m == 8
    assert info.config.optimizer_config.indexing_threshold == 0
    cluster = client.collection_cluster_info("Cosine")
    assert cluster.shard_count == 3 and len(cluster.local_shards) == 3
    per_shard = [s.points_count for s in cluster.local_shards]
    assert sum(per_shard) == N and min(per_shard) > N / 3 * 0.7  # a stable hash spreads ids
    assert client.count("Cosine").count == N


@pytest.mark.parametrize("name", list(DISTANCES))
def test_query_equals_numpy_exact_search(
    client: QdrantClient, data: tuple[np.ndarray, np.ndarray], loaded: object, name: str
) -> None:
    corpus, queries = data
    truth_idx, truth_score = exact_top_k(corpus, queries, 10, name)
    for q, idx, score in zip(queries, truth_idx, truth_score, strict=True):
        got = client.query_points(
            name,
            query=q.tolist(),
            limit=10,
            with_payload=True,
            search_params=m.SearchParams(exact=True),
        ).points
        assert [p.id for p in got] == idx.tolist()
        np.testing.assert_allclose([p.score for p in got], score, rtol=1e-4, atol=1e-4)
        assert [p.payload for p in got] == [payload(int(i)) for i in idx]
        assert all(p.vector is None for p in got)


def test_query_filter_offset_threshold_vectors_and_by_id(
    client: QdrantClient, data: tuple[np.ndarray, np.ndarray], loaded: object
) -> None:
    corpus, queries = data
    keep = np.array([i for i in range(N) if i % 3 == 1 and i % 2 == 0])
    idx, score = exact_top_k(corpus[keep], queries[:1], 8)
    expected = keep[idx[0]].tolist()
    flt = m.Filter(
        must=[m.FieldCondition(key="group", match=m.MatchValue(value=1))],
        must_not=[m.FieldCondition(key="tag", match=m.MatchValue(value="odd"))],
    )
    got = client.query_points(
        "Cosine",
        query=queries[0].tolist(),
        query_filter=flt,
        limit=5,
        offset=3,
        with_vectors=True,
        search_params=m.SearchParams(exact=True),
    ).points
    assert [p.id for p in got] == expected[3:8]
    for p in got:  # Cosine vectors come back normalised, as Qdrant stores them
        np.testing.assert_allclose(p.vector, corpus[p.id] / np.linalg.norm(corpus[p.id]), atol=1e-5)
    threshold = float(score[0][4])
    above = client.query_points(
        "Cosine",
        query=queries[0].tolist(),
        query_filter=flt,
        limit=50,
        score_threshold=threshold - 1e-6,
        search_params=m.SearchParams(exact=True),
    ).points
    assert [p.id for p in above] == expected[:5]
    by_id = client.query_points(
        "Cosine", query=7, limit=5, search_params=m.SearchParams(exact=True)
    ).points
    idx7, _ = exact_top_k(corpus, corpus[7:8], 6)
    assert [p.id for p in by_id] == [i for i in idx7[0].tolist() if i != 7][:5]


def test_batch_query_and_legacy_search_endpoints(
    server: VectorServer, client: QdrantClient, data: tuple[np.ndarray, np.ndarray], loaded: object
) -> None:
    corpus, queries = data
    truth, _ = exact_top_k(corpus, queries[:3], 4, "Euclid")
    exact = m.SearchParams(exact=True)
    batch = client.query_batch_points(
        "Euclid",
        [m.QueryRequest(query=q.tolist(), limit=4, params=exact) for q in queries[:3]],
    )
    assert [[p.id for p in r.points] for r in batch] == truth.tolist()
    url = f"{server.url}/collections/Euclid/points/search"
    body = {"vector": queries[0].tolist(), "limit": 4, "params": {"exact": True}}
    single = httpx.post(url, json=body).json()["result"]
    assert [m.ScoredPoint.model_validate(p).id for p in single] == truth[0].tolist()
    many = httpx.post(f"{url}/batch", json={"searches": [body, {**body, "offset": 1}]}).json()
    truth5, _ = exact_top_k(corpus, queries[:1], 5, "Euclid")
    assert [[p["id"] for p in r] for r in many["result"]] == [
        truth5[0][:4].tolist(),
        truth5[0][1:5].tolist(),
    ]


def test_scroll_pages_in_id_order_across_shards_and_retrieve(
    client: QdrantClient, loaded: object
) -> None:
    seen: list[int] = []
    offset = None
    while True:
        page, offset = client.scroll("Cosine", limit=128, offset=offset, with_payload=False)
        seen += [p.id for p in page]
        if offset is None:
            break
    assert seen == list(range(N))
    odd, _ = client.scroll(
        "Cosine",
        scroll_filter=m.Filter(must=[m.FieldCondition(key="tag", match=m.MatchValue(value="odd"))]),
        limit=5,
    )
    assert [p.id for p in odd] == [1, 3, 5, 7, 9] and odd[0].payload == payload(1)
    got = client.retrieve("Dot", ids=[5, 2, 999], with_vectors=True)
    assert [p.id for p in got] == [5, 2]
    np.testing.assert_allclose(got[0].vector, loaded["corpus"][5], atol=1e-6)
    counted = client.count(
        "Cosine", count_filter=m.Filter(must=[m.FieldCondition(key="i", range=m.Range(lt=100))])
    )
    assert counted.count == 100


def test_writes_payloads_indexes_and_deletes(client: QdrantClient) -> None:
    name = "writes"
    client.create_collection(
        name, vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT), shard_number=2
    )
    ids = [1, 2, 3, str(uuid.UUID(int=42)), str(uuid.UUID(int=7))]
    client.upsert(
        name,
        points=[
            m.PointStruct(id=pid, vector=[float(k), 1, 0, 0], payload={"k": k, "kind": "a"})
            for k, pid in enumerate(ids)
        ],
    )
    assert client.count(name).count == 5
    page, _ = client.scroll(name, limit=10)
    assert [p.id for p in page] == [1, 2, 3, str(uuid.UUID(int=7)), str(uuid.UUID(int=42))]
    client.set_payload(name, payload={"extra": True}, points=[1, 2])
    client.overwrite_payload(name, payload={"only": 1}, points=[3])
    client.delete_payload(name, keys=["kind"], points=[2])
    client.clear_payload(name, points_selector=m.PointIdsList(points=[str(uuid.UUID(int=42))]))
    got = {p.id: p.payload for p in client.retrieve(name, ids=ids)}
    assert got[1] == {"k": 0, "kind": "a", "extra": True}
    assert got[2] == {"k": 1, "extra": True}
    assert got[3] == {"only": 1}
    assert got[str(uuid.UUID(int=42))] == {}
    client.create_payload_index(name, "k", field_schema=m.PayloadSchemaType.INTEGER)
    schema = client.get_collection(name).payload_schema
    assert schema["k"].data_type == m.PayloadSchemaType.INTEGER and schema["k"].points == 3
    client.delete_payload_index(name, "k")
    assert "k" not in client.get_collection(name).payload_schema
    client.delete(name, points_selector=m.PointIdsList(points=[1, str(uuid.UUID(int=7))]))
    client.delete(
        name,
        points_selector=m.FilterSelector(
            filter=m.Filter(must=[m.FieldCondition(key="only", match=m.MatchValue(value=1))])
        ),
    )
    assert sorted(map(str, (p.id for p in client.scroll(name)[0]))) == sorted(
        ["2", str(uuid.UUID(int=42))]
    )
    assert client.delete_collection(name) is True
    assert not client.collection_exists(name)
    assert client.delete_collection(name) is False


def test_async_client_does_the_same(
    server: VectorServer, data: tuple[np.ndarray, np.ndarray]
) -> None:
    corpus, queries = data
    truth, truth_score = exact_top_k(corpus, queries[:4], 5)

    async def run() -> None:
        client = AsyncQdrantClient(url=server.url, timeout=30)
        try:
            await client.create_collection(
                "async",
                vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE),
                shard_number=2,
            )
            await client.upsert(
                "async", points=m.Batch(ids=list(range(N)), vectors=corpus.tolist()), wait=True
            )
            assert (await client.count("async")).count == N
            assert (await client.get_collection("async")).config.params.shard_number == 2
            results = await asyncio.gather(
                *[
                    client.query_points(
                        "async", query=q.tolist(), limit=5, search_params=m.SearchParams(exact=True)
                    )
                    for q in queries[:4]
                ]
            )
            assert [[p.id for p in r.points] for r in results] == truth.tolist()
            np.testing.assert_allclose(
                [[p.score for p in r.points] for r in results], truth_score, atol=1e-4
            )
            page, nxt = await client.scroll("async", limit=10)
            assert [p.id for p in page] == list(range(10)) and nxt == 10
            got = await client.retrieve("async", ids=[3])
            assert got[0].id == 3
            await client.delete("async", points_selector=m.PointIdsList(points=[0, 1]))
            assert (await client.count("async")).count == N - 2
            assert await client.delete_collection("async")
        finally:
            await client.close()

    asyncio.run(run())


def test_service_endpoints(server: VectorServer, loaded: object) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    root = httpx.get(server.url).json()
    assert root["version"].count(".") == 2 and "qdrant" in root["title"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert f'collection_points{{collection="Cosine"}} {N}' in metrics
    assert (
        'rest_responses_total{method="POST",endpoint="/collections/{name}/points/query"' in metrics
    )
    assert httpx.get(f"{server.url}/cluster").json()["result"] == {"status": "disabled"}


@pytest.mark.parametrize(
    "quantization",
    [
        m.ScalarQuantization(scalar=m.ScalarQuantizationConfig(type=m.ScalarType.INT8)),
        m.BinaryQuantization(binary=m.BinaryQuantizationConfig(always_ram=True)),
    ],
)
def test_quantized_collections_are_configured_and_searchable(
    client: QdrantClient, data: tuple[np.ndarray, np.ndarray], quantization: object
) -> None:
    corpus, _ = data
    name = f"quant-{type(quantization).__name__}"
    client.create_collection(
        name,
        vectors_config=m.VectorParams(size=DIM, distance=m.Distance.COSINE),
        quantization_config=quantization,
    )
    client.upsert(name, points=m.Batch(ids=list(range(N)), vectors=corpus.tolist()))
    assert client.get_collection(name).config.quantization_config == quantization
    quantized = client.query_points(name, query=corpus[11].tolist(), limit=5).points
    assert len(quantized) == 5  # answered from the quantized vectors (lossy at 16 dims)
    original = m.SearchParams(quantization=m.QuantizationSearchParams(ignore=True))
    hits = client.query_points(name, query=corpus[11].tolist(), limit=1, search_params=original)
    assert hits.points[0].id == 11 and hits.points[0].score == pytest.approx(1.0, abs=1e-4)
    client.delete_collection(name)
