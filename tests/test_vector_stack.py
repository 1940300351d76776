"""The stack's ``qdrant`` component: embedded by default, or an external Qdrant as given."""

from __future__ import annotations

import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

from magicaf_nb.config import StackSpec, VectorServerSpec
from magicaf_nb.stack import LocalStack, StackError, state
from magicaf_nb.vector import VectorServer

from .conftest import alive, unique_name


def test_embedded_qdrant_serves_survives_kill_and_restart(stack: LocalStack) -> None:
    url = stack.endpoints()["QDRANT_URL"]
    assert url.startswith("http://127.0.0.1:") and stack.vector_config().url == url
    row = stack.status().query("component == 'qdrant'")
    assert len(row) == 1 and row["state"].iloc[0] == "serving" and row["rss_mb"].iloc[0] > 10
    client = QdrantClient(url=url)
    name = unique_name("kept")
    client.create_collection(name, vectors_config=m.VectorParams(size=3, distance="Dot"))
    client.upsert(name, points=[m.PointStruct(id=1, vector=[1, 2, 3], payload={"a": 1})])
    storage = state.run_dir(stack.spec.name) / "qdrant-storage" / "collections" / name
    assert storage.is_dir()  # under the stack's run folder, kept across down() and up()

    pid = int(row["pid"].iloc[0])
    stack.kill("qdrant", 0)
    assert stack.status().query("component == 'qdrant'")["state"].iloc[0] == "killed"
    assert alive({pid}) == set()
    stack.restart("qdrant", 0)
    assert stack.endpoints()["QDRANT_URL"] == url  # same port after a restart
    assert client.retrieve(name, ids=[1])[0].payload == {"a": 1}
    assert "collection(s) from" in stack.logs("qdrant")

    with pytest.raises(StackError, match="needs a Qdrant cluster"):
        stack.scale("qdrant", 2)
    assert stack.scale("qdrant", 1).after == 1
    client.delete_collection(name)
    client.close()


def test_external_qdrant_url_starts_nothing(tmp_path: object) -> None:
    with VectorServer() as external:
        spec = StackSpec(name=unique_name("ext"), qdrant=VectorServerSpec(url=external.url))
        with LocalStack(spec) as stack:
            assert stack.endpoints()["QDRANT_URL"] == external.url
            assert not [r for r in stack.replicas if r.component == "qdrant"]
            row = stack.status().query("component == 'qdrant'")
            assert row["state"].iloc[0] == "external"
            assert row["port"].iloc[0] == external.port
            with pytest.raises(StackError, match="external Qdrant"):
                stack.kill("qdrant", 0)
            client = QdrantClient(url=stack.endpoints()["QDRANT_URL"])
            assert client.get_collections().collections == []
            client.close()


def test_qdrant_url_from_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QDRANT_URL", "http://127.0.0.1:6333")
    assert VectorServerSpec().external_url() == "http://127.0.0.1:6333"
    assert VectorServerSpec(use_env=False).external_url() is None
    with pytest.raises(ValueError, match="not an http"):
        StackSpec(qdrant=VectorServerSpec(url="localhost:6333")).validate()
