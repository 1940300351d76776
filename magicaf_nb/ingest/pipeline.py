"""``aingest``/``ingest``: read, chunk, check, then embed and upsert in a pipeline.

Order of work (every check comes before the first write):

1. read the source (skips go to the report); refuse an empty corpus or repeated sources;
2. chunk by the model's tokens; embed one chunk to learn the model's vector size;
3. refuse a collection of another vector size; create the collection if missing;
4. list what each source already has stored: ids already there are skipped (re-runs add
   nothing, an interrupted run resumes), ids no longer produced are stale; for a folder
   (or file), so are the chunks of files gone from it and of rows gone from a file
   (``prune_deleted``; see ``orphans``);
5. keep ``parallel_batches`` embedding requests in flight while finished batches are
   upserted (``wait=True``), with a progress bar;
6. only then delete the stale chunks.

So a failure at any step leaves every point stored before the run in place.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from magicaf_nb.config import EmbeddingConfig, check_positive_int
from magicaf_nb.ingest.chunking import Chunk, Chunker
from magicaf_nb.ingest.errors import IngestError
from magicaf_nb.ingest.orphans import Orphans, find_orphans
from magicaf_nb.ingest.readers import (
    DEFAULT_MAX_BYTES,
    Corpus,
    check_unique_sources,
    collect,
    empty_corpus_message,
)
from magicaf_nb.ingest.report import IngestReport
from magicaf_nb.ingest.store import IngestTarget, check_collection_name
from magicaf_nb.services.embeddings import EmbeddingClient
from magicaf_nb.services.sync import background_loop, submit


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _describe(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return "the sample corpus" if source == "sample" else str(source)
    if isinstance(source, pd.DataFrame):
        return f"the DataFrame ({len(source)} rows)"
    return f"the list of {len(source)} document(s)" if isinstance(source, list | tuple) else "it"


def plan(chunks: Sequence[Chunk], stored: dict[str, Any]) -> tuple[list[Chunk], list[Chunk]]:
    """(to write, already stored): a stored id with the same index and title is kept."""
    todo: list[Chunk] = []
    kept: list[Chunk] = []
    for chunk in chunks:
        have = stored.get(chunk.id)
        same = have is not None and have.chunk_index == chunk.index and have.title == chunk.title
        (kept if same else todo).append(chunk)
    return todo, kept


async def embed_and_upsert(
    chunks: Sequence[Chunk],
    embedder: EmbeddingClient,
    target: IngestTarget,
    *,
    run_id: str,
    batch_size: int,
    parallel_batches: int,
    bar: tqdm,
) -> None:
    """Keep ``parallel_batches`` embedding requests in flight; upsert batches as they finish."""
    batches = iter([chunks[i : i + batch_size] for i in range(0, len(chunks), batch_size)])
    done: asyncio.Queue[tuple[Sequence[Chunk], Any] | None] = asyncio.Queue(parallel_batches)

    async def embed_worker() -> None:
        for batch in batches:  # one shared iterator: each batch goes to one worker
            result = await embedder.aembed_batch([c.text for c in batch])
            await done.put((batch, result.vectors))

    async def upserter() -> None:
        while (item := await done.get()) is not None:
            batch, vectors = item
            await target.upsert([c.id for c in batch], vectors, [c.payload(run_id) for c in batch])
            bar.update(len(batch))

    async def embed_all() -> None:
        await asyncio.gather(*(embed_worker() for _ in range(parallel_batches)))
        await done.put(None)

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(embed_all())
            group.create_task(upserter())
    except* Exception as errors:  # surface the first real failure, not an ExceptionGroup
        raise errors.exceptions[0] from None


def _folder_root(source: Any) -> Path | None:
    """The resolved folder or file an ingest reads, or None for other kinds of source."""
    if isinstance(source, str | os.PathLike) and source != "sample":
        return Path(source).expanduser().resolve()
    return None


def _file_table(
    corpus: Corpus,
    chunks: Sequence[Chunk],
    todo: Sequence[Chunk],
    kept: Sequence[Chunk],
    stale_by_source: dict[str, list[str]],
    orphans: Orphans,
) -> pd.DataFrame:
    """The reader's report plus, per file, its chunks: total, written, kept, stale removed;
    and a row for each file gone from the folder whose chunks were removed."""
    gone = pd.DataFrame(
        [
            {"path": shown, "source": source, "status": "gone", "reason": "no longer in the folder"}
            for shown, source in orphans.gone_files.items()
        ],
        columns=corpus.report.columns,
    )
    files = pd.concat([corpus.report, gone], ignore_index=True) if len(gone) else corpus.report
    files = files.copy()
    for column in ("documents", "chars", "bytes"):
        files[column] = files[column].fillna(0).astype("int64")
    counts: dict[str, Counter[str]] = {}
    for name, group in (("chunks", chunks), ("new_chunks", todo), ("existing_chunks", kept)):
        counts[name] = Counter(corpus.origin.get(c.source, c.source) for c in group)
    counts["removed_stale_chunks"] = Counter()
    for source, ids in stale_by_source.items():
        counts["removed_stale_chunks"][corpus.origin.get(source, source)] += len(ids)
    for path, ids in orphans.ids_by_path.items():
        counts["removed_stale_chunks"][path] += len(ids)
    for name, per_file in counts.items():
        files[name] = files["path"].map(per_file).fillna(0).astype("int64")
    return files


async def aingest(
    source: Any,
    *,
    qdrant_url: str,
    collection: str,
    embedding: EmbeddingConfig,
    chunk_size: int = 256,
    overlap: int = 32,
    batch_size: int = 32,
    parallel_batches: int = 2,
    progress: bool = True,
    qdrant_api_key: str | None = None,
    text_column: str | None = None,
    source_column: str | None = None,
    title_column: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    prune_deleted: bool = True,
) -> IngestReport:
    """Ingest ``source`` into ``collection``: idempotent, resumable, checked before writing.

    ``source``: a folder or file path, a pandas DataFrame (with ``text_column``), a list of
    ``Document``, or "sample" (the Python reference topics). Returns an ``IngestReport``.
    For a folder or file, ``prune_deleted`` also removes the chunks of files deleted from
    it (and of rows gone from a file) since an earlier run, so answers stop citing them.
    """
    started = time.perf_counter()
    check_positive_int("batch_size", batch_size, upper=4096)
    check_positive_int("parallel_batches", parallel_batches, upper=256)
    chunker = Chunker(chunk_size, overlap)
    check_collection_name(collection)
    corpus = await asyncio.to_thread(
        collect,
        source,
        text_column=text_column,
        source_column=source_column,
        title_column=title_column,
        max_bytes=max_bytes,
    )
    if not corpus.documents:
        raise IngestError(empty_corpus_message(corpus.report, _describe(source)))
    check_unique_sources(corpus.documents)
    chunks = await asyncio.to_thread(chunker.chunk_documents, corpus.documents)
    if not chunks:
        raise IngestError(
            f"Nothing to ingest: the {len(corpus.documents)} document(s) of {_describe(source)} "
            "hold no tokens the embedding model can read (only control characters or spaces)."
        )
    run_id = new_run_id()
    embedder = EmbeddingClient(embedding)
    target = IngestTarget(qdrant_url, collection, api_key=qdrant_api_key)
    try:
        probe = await embedder.aembed_batch([chunks[0].text])
        dim = int(probe.vectors.shape[1])
        created = await target.check_or_create(dim, embedding.model)
        produced = {c.source for c in chunks}
        root = _folder_root(source) if prune_deleted else None
        orphans = Orphans()
        if created:
            stored = {}
        elif root is not None:  # one scan of the collection serves both purposes
            everything = await target.stored()
            orphans = find_orphans(everything, root, corpus.report, produced)
            stored = {p: have for p, have in everything.items() if have.source in produced}
        else:
            stored = await target.stored(sorted(produced))
        todo, kept = plan(chunks, stored)
        wanted = {c.id for c in chunks}
        stale_by_source: dict[str, list[str]] = {}
        for point, have in stored.items():
            if point not in wanted:
                stale_by_source.setdefault(have.source, []).append(point)
        pipeline_start = time.perf_counter()
        with tqdm(
            total=len(todo),
            unit="chunk",
            desc=f"ingest -> {collection}",
            disable=not progress or not todo,
            smoothing=0.1,
        ) as bar:
            await embed_and_upsert(
                todo,
                embedder,
                target,
                run_id=run_id,
                batch_size=batch_size,
                parallel_batches=parallel_batches,
                bar=bar,
            )
        pipeline_seconds = time.perf_counter() - pipeline_start
        # Only now, with every new chunk stored, drop the old ones of changed or gone sources.
        stale = [point for ids in stale_by_source.values() for point in ids] + orphans.ids
        await target.delete(stale)
    finally:
        await embedder.aclose()
        await target.aclose()
    seconds = time.perf_counter() - started
    files = _file_table(corpus, chunks, todo, kept, stale_by_source, orphans)
    read = int((files["status"] == "read").sum())
    skipped = int((files["status"] == "skipped").sum())
    summary = {
        "documents": len(corpus.documents),
        "chunks": len(chunks),
        "new_chunks": len(todo),
        "existing_chunks": len(kept),
        "removed_stale_chunks": len(stale),
        "files_read": read,
        "files_skipped": skipped,
        "files_gone": len(orphans.gone_files),
        "seconds": round(seconds, 3),
        "chunks_per_s": round(len(todo) / seconds, 2) if seconds > 0 else 0.0,
        "pipeline_seconds": round(pipeline_seconds, 3),
        "run_id": run_id,
        "collection": collection,
    }
    return IngestReport(files, summary)


def ingest(source: Any, **kwargs: Any) -> IngestReport:
    """Synchronous ``aingest`` (works inside Jupyter). Interrupting it stops the run; what
    was upserted stays, and the next run resumes from there."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None and running is background_loop():
        raise RuntimeError("ingest() was called from the background loop: await aingest() there.")
    future = submit(aingest(source, **kwargs))
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        raise
