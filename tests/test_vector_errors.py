"""Bad input gets Qdrant's status codes and messages; refused features say why; nothing is lost."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m
from qdrant_client.http.exceptions import UnexpectedResponse

from magicaf_nb.vector import VectorServer


@pytest.fixture(scope="module")
def server() -> Iterator[VectorServer]:
    with VectorServer() as running:
        client = QdrantClient(url=running.url)
        client.create_collection(
            "c", vectors_config=m.VectorParams(size=4, distance=m.Distance.COSINE), shard_number=2
        )
        client.upsert("c", points=[m.PointStruct(id=i, vector=[1, i, 0, 1]) for i in range(10)])
        client.close()
        yield running


@pytest.fixture
def client(server: VectorServer) -> Iterator[QdrantClient]:
    qdrant = QdrantClient(url=server.url)
    yield qdrant
    assert qdrant.count("c").count == 10, "a refused request changed what is stored"
    qdrant.close()


def _error(exc: pytest.ExceptionInfo[UnexpectedResponse]) -> str:
    return exc.value.structured()["status"]["error"]


def test_wrong_vector_size_is_400_and_stores_nothing(client: QdrantClient) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.upsert(
            "c",
            points=[
                m.PointStruct(id=100, vector=[1, 2, 3, 4]),
                m.PointStruct(id=101, vector=[1, 2, 3]),
            ],
        )
    assert exc.value.status_code == 400
    assert _error(exc) == "Wrong input: Vector dimension error: expected dim: 4, got 3"
    assert client.retrieve("c", ids=[100]) == []  # the valid point of the batch was not written
    with pytest.raises(UnexpectedResponse, match="expected dim: 4, got 2") as exc:
        client.query_points("c", query=[1.0, 2.0])
    assert exc.value.status_code == 400


def test_unknown_collection_is_404(client: QdrantClient) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points("missing", query=[1.0, 0, 0, 0])
    assert exc.value.status_code == 404
    assert _error(exc) == "Not found: Collection `missing` doesn't exist!"
    with pytest.raises(UnexpectedResponse) as exc:
        client.get_collection("missing")
    assert exc.value.status_code == 404


def test_malformed_json_negative_and_zero_limits(
    server: VectorServer, client: QdrantClient
) -> None:
    url = f"{server.url}/collections/c/points/query"
    bad = httpx.post(
        url, content=b'{"query": [1, 0, 0', headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert bad.json()["status"]["error"].startswith("Format error in JSON body:")
    negative = httpx.post(url, json={"query": [1, 0, 0, 0], "limit": -1})
    assert negative.status_code == 400 and "-1" in negative.json()["status"]["error"]
    zero = httpx.post(url, json={"query": [1, 0, 0, 0], "limit": 0})
    assert zero.status_code == 422 and "limit" in zero.json()["status"]["error"]
    with pytest.raises(UnexpectedResponse) as exc:
        client.scroll("c", limit=-5)
    assert exc.value.status_code == 400
    wrong_type = httpx.put(f"{server.url}/collections/c/points", json={"points": [{"id": 1}]})
    assert wrong_type.status_code == 400
    bad_id = httpx.put(
        f"{server.url}/collections/c/points", json={"points": [{"id": "x", "vector": [1, 0, 0, 0]}]}
    )
    assert bad_id.status_code == 400 and "'x'" in bad_id.json()["status"]["error"]


def test_collection_creation_refusals(client: QdrantClient) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_collection("c", vectors_config=m.VectorParams(size=4, distance="Cosine"))
    assert exc.value.status_code == 409 and "already exists" in _error(exc)
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_collection(
            "replicated",
            vectors_config=m.VectorParams(size=4, distance=m.Distance.DOT),
            replication_factor=2,
        )
    assert exc.value.status_code == 400
    assert "Qdrant cluster" in _error(exc) and "replication_factor=2" in _error(exc)
    assert not client.collection_exists("replicated")
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_collection("bad name!", vectors_config=m.VectorParams(size=4, distance="Dot"))
    assert exc.value.status_code == 422 and "collection name" in _error(exc)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/collections/c/points/recommend"),
        ("GET", "/collections/c/snapshots"),
        ("PATCH", "/collections/c"),
        ("POST", "/collections/c/points/query/groups"),
        ("PUT", "/collections/c/shards"),
        ("GET", "/telemetry"),
    ],
)
def test_other_endpoints_are_501_naming_the_endpoint(
    server: VectorServer, client: QdrantClient, method: str, path: str
) -> None:
    response = httpx.request(method, f"{server.url}{path}", json={})
    assert response.status_code == 501
    error = response.json()["status"]["error"]
    assert f"`{method} {path}`" in error and "Qdrant server" in error


def test_unsupported_features_of_supported_endpoints_are_501(client: QdrantClient) -> None:
    with pytest.raises(UnexpectedResponse) as exc:
        client.query_points(
            "c", prefetch=[m.Prefetch(query=[1.0, 0, 0, 0])], query=m.FusionQuery(fusion="rrf")
        )
    assert exc.value.status_code == 501 and "Prefetch" in _error(exc)
    with pytest.raises(UnexpectedResponse) as exc:
        client.create_collection(
            "sparse",
            vectors_config={},
            sparse_vectors_config={"s": m.SparseVectorParams()},
        )
    assert exc.value.status_code == 501


def test_api_key_is_enforced_when_configured() -> None:
    with VectorServer(api_key="s3cret") as keyed:
        assert httpx.get(f"{keyed.url}/collections").status_code == 401
        assert httpx.get(f"{keyed.url}/readyz").status_code == 200
        with pytest.warns(UserWarning, match="insecure connection"):  # http on loopback
            client = QdrantClient(url=keyed.url, api_key="s3cret", https=False)
        assert client.get_collections().collections == []
        client.close()
