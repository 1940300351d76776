"""Ingestion end to end against the real stack: llama-server embeddings behind HAProxy and
the stack's vector server, spoken to through qdrant-client only."""

from __future__ import annotations

import asyncio
import io
import signal
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from qdrant_client import QdrantClient
from qdrant_client.http import models as qm
from tqdm.auto import tqdm

from magicaf_nb.ingest import Document, IngestError, aingest, ingest, point_id, sample_corpus
from magicaf_nb.ingest.chunking import Chunker
from magicaf_nb.ingest.pipeline import embed_and_upsert
from magicaf_nb.ingest.store import IngestTarget
from magicaf_nb.services import EmbeddingClient, ServiceError
from magicaf_nb.stack import LocalStack
from magicaf_nb.stack.ports import pick_free_port
from magicaf_nb.vector import VectorServer

from .test_ingest_readers import write_bad_files, write_good_files

FIELDS = {"source", "title", "chunk_index", "text", "run_id"}


def fresh_name() -> str:
    return f"ingest-{uuid.uuid4().hex[:8]}"


def settings(stack: LocalStack, collection: str, **overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "qdrant_url": stack.endpoints()["QDRANT_URL"],
        "collection": collection,
        "embedding": stack.embedding_config(),
        "chunk_size": 64,
        "overlap": 8,
        "batch_size": 4,
        "parallel_batches": 2,
        "progress": False,
    }
    return {**base, **overrides}


def all_points(client: QdrantClient, collection: str) -> dict[str, dict]:
    records, _ = client.scroll(collection, limit=10_000, with_payload=True)
    return {str(r.id): r.payload or {} for r in records}


@pytest.fixture(scope="module")
def qdrant(stack: LocalStack) -> QdrantClient:
    return QdrantClient(url=stack.endpoints()["QDRANT_URL"])


def test_folder_ingest_stores_chunks_and_a_rerun_adds_nothing(
    stack: LocalStack, qdrant: QdrantClient, tmp_path: Path
) -> None:
    write_good_files(tmp_path)
    write_bad_files(tmp_path)
    name = fresh_name()
    report = ingest(tmp_path, text_column="body", **settings(stack, name))
    summary = report.summary
    assert summary["documents"] == 9 and summary["files_read"] == 7
    assert summary["files_skipped"] == 8
    assert summary["new_chunks"] == summary["chunks"] >= 9 and summary["existing_chunks"] == 0
    files = report.files.set_index("path")
    assert files.loc["rows.csv", "chunks"] == 2 and files.loc["huge.txt", "chunks"] == 0
    assert files["chunks"].sum() == summary["chunks"]
    assert "huge file" in files.loc["huge.txt", "reason"]
    points = all_points(qdrant, name)
    assert len(points) == summary["chunks"]
    for pid, payload in points.items():
        assert set(payload) == FIELDS
        assert payload["run_id"] == summary["run_id"]
        assert pid == point_id(payload["source"], payload["text"])
    (record,) = qdrant.retrieve(name, [next(iter(points))], with_vectors=True)
    vector = np.asarray(record.vector)
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-3
    query = stack_embed(stack, "How does HNSW make vector search fast?")
    hits = qdrant.query_points(name, query=query, limit=1).points
    assert hits[0].payload["source"] == str((tmp_path / "paper.pdf").resolve())
    assert "skipped huge.txt: huge file" in repr(report)
    assert "<table>" in report._repr_html_()

    again = ingest(tmp_path, text_column="body", **settings(stack, name))
    assert again.summary["new_chunks"] == 0
    assert again.summary["existing_chunks"] == summary["chunks"]
    assert again.summary["removed_stale_chunks"] == 0
    assert all_points(qdrant, name) == points  # untouched, first run's run_id kept


def stack_embed(stack: LocalStack, text: str) -> list[float]:
    return EmbeddingClient(stack.embedding_config()).embed([text])[0].tolist()


def test_changed_file_replaces_only_its_own_chunks(
    stack: LocalStack, qdrant: QdrantClient, tmp_path: Path
) -> None:
    words = "Replicas behind a load balancer share the traffic of one service. " * 12
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.txt").write_text(f"File {name}.\n\n{words}\nThe end of {name}.\n")
    name = fresh_name()
    first = ingest(tmp_path, **settings(stack, name))
    before = all_points(qdrant, name)
    source_a = str((tmp_path / "a.txt").resolve())
    old_a = {pid for pid, p in before.items() if p["source"] == source_a}
    assert len(old_a) >= 3

    (tmp_path / "a.txt").write_text("Rewritten: shards split a collection across nodes.\n")
    (tmp_path / "c.txt").write_bytes(b"\x00\x01binary now")  # unreadable: old chunks stay
    second = ingest(tmp_path, **settings(stack, name))
    after = all_points(qdrant, name)
    new_a = {pid for pid, p in after.items() if p["source"] == source_a}
    assert second.summary["removed_stale_chunks"] == len(old_a) == len(old_a - new_a)
    assert second.summary["new_chunks"] == len(new_a) == 1
    assert [p["text"] for p in after.values() if p["source"] == source_a] == [
        "Rewritten: shards split a collection across nodes."
    ]
    untouched = {pid: p for pid, p in before.items() if p["source"] != source_a}
    assert all(after[pid] == payload for pid, payload in untouched.items())
    assert len(after) == first.summary["chunks"] - len(old_a) + 1
    files = second.files.set_index("path")
    assert files.loc["c.txt", "status"] == "skipped"
    assert files.loc["a.txt", "removed_stale_chunks"] == len(old_a)


def test_deleted_files_and_rows_lose_their_chunks_other_folders_keep_theirs(
    stack: LocalStack, qdrant: QdrantClient, tmp_path: Path
) -> None:
    docs, other = tmp_path / "docs", tmp_path / "other"
    (docs / "sub").mkdir(parents=True)
    other.mkdir()
    words = "Qdrant splits a collection into shards spread over peers. " * 6
    (docs / "keep.txt").write_text(f"Keep.\n\n{words}")
    (docs / "sub" / "drop.md").write_text(f"# Drop\n\n{words}")
    (docs / "rows.jsonl").write_text(
        '{"body": "first row about replicas"}\n{"body": "second row about shards"}\n'
    )
    (other / "elsewhere.txt").write_text(f"Another folder.\n\n{words}")
    name = fresh_name()
    ingest(other, **settings(stack, name))
    ingest(docs, text_column="body", **settings(stack, name))
    before = all_points(qdrant, name)
    drop = str((docs / "sub" / "drop.md").resolve())
    second_row = str((docs / "rows.jsonl").resolve()) + "#line2"
    doomed = {pid for pid, p in before.items() if p["source"] in (drop, second_row)}
    assert len(doomed) >= 2

    (docs / "sub" / "drop.md").unlink()
    (docs / "rows.jsonl").write_text('{"body": "first row about replicas"}\n')
    report = ingest(docs, text_column="body", **settings(stack, name))
    after = all_points(qdrant, name)
    assert set(after) == set(before) - doomed  # nothing else touched, other/ included
    assert report.summary["removed_stale_chunks"] == len(doomed)
    assert report.summary["new_chunks"] == 0 and report.summary["files_gone"] == 1
    files = report.files.set_index("path")
    assert files.loc["sub/drop.md", "status"] == "gone"
    assert files.loc["rows.jsonl", "removed_stale_chunks"] == 1
    assert "(of 1 file(s) gone)" in repr(report)

    (docs / "keep.txt").unlink()
    kept = ingest(docs, text_column="body", prune_deleted=False, **settings(stack, name))
    assert kept.summary["removed_stale_chunks"] == 0
    assert all_points(qdrant, name) == after


def test_an_interrupted_ingest_resumes_where_it_stopped(
    stack: LocalStack, qdrant: QdrantClient
) -> None:
    docs = [d for d in sample_corpus() if d.source in ("pydoc:assignment", "pydoc:async")]
    name = fresh_name()
    options = settings(stack, name, batch_size=2, parallel_batches=1)
    total = len(Chunker(64, 8).chunk_documents(docs))

    async def interrupted() -> int:
        task = asyncio.create_task(aingest(docs, **options))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if qdrant.collection_exists(name) and qdrant.count(name).count >= 10:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.5)  # a batch already sent may still land
        return qdrant.count(name).count

    stored = asyncio.run(interrupted())
    assert 10 <= stored < total
    resumed = ingest(docs, **options)
    assert resumed.summary["existing_chunks"] == stored
    assert resumed.summary["new_chunks"] == total - stored
    assert qdrant.count(name).count == total


def test_ctrl_c_stops_a_sync_ingest_and_the_rest_resumes(
    stack: LocalStack, qdrant: QdrantClient
) -> None:
    docs = [d for d in sample_corpus() if d.source in ("pydoc:assignment", "pydoc:async")]
    name = fresh_name()
    options = settings(stack, name, batch_size=2, parallel_batches=1)
    total = len(Chunker(64, 8).chunk_documents(docs))

    def press_ctrl_c() -> None:  # as the notebook's stop button does, once 6 chunks landed
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if qdrant.collection_exists(name) and qdrant.count(name).count >= 6:
                break
            time.sleep(0.05)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        ingest(docs, **options)
    presser.join()
    time.sleep(1.0)  # a batch already sent may still land
    stopped = qdrant.count(name).count
    time.sleep(1.5)
    assert qdrant.count(name).count == stopped < total  # the background run really stopped
    resumed = ingest(docs, **options)
    assert resumed.summary["existing_chunks"] == stopped
    assert qdrant.count(name).count == total


def test_bad_input_is_refused_before_anything_is_written(
    stack: LocalStack, qdrant: QdrantClient, tmp_path: Path
) -> None:
    name = fresh_name()
    with pytest.raises(IngestError, match="no such file or folder"):
        ingest(tmp_path / "missing", **settings(stack, name))
    write_bad_files(tmp_path)
    with pytest.raises(IngestError) as empty:
        ingest(tmp_path, **settings(stack, name))
    message = str(empty.value)
    assert "no readable document" in message and "8 item(s) skipped" in message
    assert "binary file" in message and "huge file" in message
    duplicated = pd.DataFrame({"text": ["one", "two"], "url": ["same", "same"]})
    with pytest.raises(IngestError, match="'same' x2"):
        ingest(duplicated, text_column="text", source_column="url", **settings(stack, name))
    with pytest.raises(IngestError, match="not a usable collection name"):
        ingest("sample", **settings(stack, "a/b"))
    with pytest.raises(IngestError, match="chunk_size=1000"):
        ingest("sample", **settings(stack, name, chunk_size=1000))
    dead = f"http://127.0.0.1:{pick_free_port()}"
    with pytest.raises(ServiceError, match=f"qdrant: {dead}"):
        ingest([Document("x", "X", "some text")], **settings(stack, name, qdrant_url=dead))
    assert not qdrant.collection_exists(name)

    qdrant.create_collection(name, vectors_config=qm.VectorParams(size=8, distance="Cosine"))
    qdrant.upsert(name, [qm.PointStruct(id=1, vector=[1.0] * 8, payload={"source": "x"})])
    with pytest.raises(IngestError) as mismatch:
        ingest([Document("x", "X", "some text")], **settings(stack, name))
    message = str(mismatch.value)
    assert "holds 8-dimensional vectors" in message and "makes 384-dimensional" in message
    assert f"collection='{name}-384'" in message
    assert qdrant.count(name).count == 1  # nothing lost, nothing added


def test_dataframe_and_document_sources(stack: LocalStack, qdrant: QdrantClient) -> None:
    name = fresh_name()
    df = pd.DataFrame(
        {"body": ["Round robin spreads load.", None], "id": ["doc-1", "doc-2"], "t": ["A", "B"]}
    )
    report = ingest(
        df, text_column="body", source_column="id", title_column="t", **settings(stack, name)
    )
    assert list(report.files["status"]) == ["read", "skipped"]
    assert report.summary["new_chunks"] == 1
    (payload,) = all_points(qdrant, name).values()
    assert (payload["source"], payload["title"], payload["chunk_index"]) == ("doc-1", "A", 0)
    more = ingest(
        [Document("doc-3", "C", "Health checks find dead replicas.")], **settings(stack, name)
    )
    assert more.summary["new_chunks"] == 1 and qdrant.count(name).count == 2
    # Without a source column, rows are keyed by their text: a second DataFrame in the
    # same collection adds to the first instead of replacing it.
    for texts in (["Shards split data."], ["Replicas copy data."]):
        added = ingest(pd.DataFrame({"body": texts}), text_column="body", **settings(stack, name))
        assert added.summary["new_chunks"] == 1 and added.summary["removed_stale_chunks"] == 0
    assert qdrant.count(name).count == 4


class CountingEmbeddings(EmbeddingClient):
    """The real client, instrumented: how many requests are in flight at once."""

    in_flight = 0
    peak = 0
    upserts_during_embedding = 0

    async def aembed_batch(self, texts):  # type: ignore[override]
        type(self).in_flight += 1
        type(self).peak = max(type(self).peak, type(self).in_flight)
        try:
            return await super().aembed_batch(texts)
        finally:
            type(self).in_flight -= 1


class WatchedTarget(IngestTarget):
    async def upsert(self, ids, vectors, payloads):  # type: ignore[override]
        if CountingEmbeddings.in_flight:
            CountingEmbeddings.upserts_during_embedding += 1
        await super().upsert(ids, vectors, payloads)


def test_pipeline_keeps_parallel_batches_in_flight_while_upserting(stack: LocalStack) -> None:
    chunks = Chunker(32, 0).chunk_documents(sample_corpus()[:3])
    assert len(chunks) >= 24
    name = fresh_name()

    async def run() -> int:
        embedder = CountingEmbeddings(stack.embedding_config())
        target = WatchedTarget(stack.endpoints()["QDRANT_URL"], name)
        try:
            await target.check_or_create(384, "all-MiniLM-L6-v2")
            with tqdm(total=len(chunks), file=io.StringIO()) as bar:
                await embed_and_upsert(
                    chunks,
                    embedder,
                    target,
                    run_id="t",
                    batch_size=2,
                    parallel_batches=3,
                    bar=bar,
                )
                assert bar.n == len(chunks)
            return await target.count()
        finally:
            await embedder.aclose()
            await target.aclose()

    assert asyncio.run(run()) == len(chunks)
    assert CountingEmbeddings.peak == 3
    assert CountingEmbeddings.upserts_during_embedding >= len(chunks) // 2 // 2


def test_qdrant_api_key_is_sent_and_a_missing_one_is_named(stack: LocalStack) -> None:
    docs = [Document("k", "K", "An API key guards the vector store.")]
    with VectorServer(api_key="s3cret") as server:
        options = settings(stack, fresh_name(), qdrant_url=server.url)
        with pytest.raises(ServiceError, match="QDRANT_API_KEY"):
            ingest(docs, **options)
        report = ingest(docs, qdrant_api_key="s3cret", **options)
        assert report.summary["new_chunks"] == 1
