"""The ingest's view of the vector store, through qdrant-client only (a real Qdrant drops in).

One ``IngestTarget`` per run: check the collection's vector size against the model's,
create the collection (cosine, a keyword index on ``source``), list what each source
(or the whole collection) already has stored, upsert batches, delete stale chunks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from qdrant_client import AsyncQdrantClient
from qdrant_client.http import models as qm
from qdrant_client.http.exceptions import ApiException, ResponseHandlingException

from magicaf_nb.ingest.errors import IngestError
from magicaf_nb.services.errors import ServiceError

SCAN_SOURCES_PER_REQUEST = 64
SCAN_PAGE = 1000
DELETE_PER_REQUEST = 1000


@dataclass(frozen=True)
class Stored:
    """What the store holds for one point id: enough to tell if the chunk moved."""

    source: str
    chunk_index: int | None
    title: str | None


def _cause(exc: Exception) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def check_collection_name(collection: str) -> None:
    if not isinstance(collection, str) or not collection.strip() or "/" in collection:
        raise IngestError(
            f"collection={collection!r} is not a usable collection name. Fix: use a short "
            "name of letters, digits, '-' and '_' (for example 'docs')."
        )


class IngestTarget:
    """One collection on one Qdrant-compatible server (``QDRANT_URL``)."""

    def __init__(
        self, url: str, collection: str, *, api_key: str | None = None, timeout_s: int = 60
    ) -> None:
        check_collection_name(collection)
        self.url = url
        self.collection = collection
        with warnings.catch_warnings():  # an API key over plain http on 127.0.0.1 is fine
            warnings.filterwarnings("ignore", message=".*insecure connection.*")
            self.client = AsyncQdrantClient(
                url=url, api_key=api_key, timeout=timeout_s, check_compatibility=False
            )

    def _unreachable(self, exc: Exception) -> ServiceError:
        return ServiceError(
            f"qdrant: {self.url} could not be used ({_cause(exc)}). Fix: check that the vector "
            f"store is up (`magicaf-nb status`) and that QDRANT_URL={self.url} (and "
            "QDRANT_API_KEY, if it needs one) are right.",
            url=self.url,
        )

    async def vector_size(self) -> int | None:
        """The collection's (unnamed) vector size, or None if the collection does not exist."""
        try:
            if not await self.client.collection_exists(self.collection):
                return None
            info = await self.client.get_collection(self.collection)
        except (ApiException, ResponseHandlingException, OSError) as exc:
            raise self._unreachable(exc) from exc
        vectors = info.config.params.vectors
        if isinstance(vectors, qm.VectorParams):
            return vectors.size
        names = ", ".join(sorted(vectors or {})) or "none"
        raise IngestError(
            f"Collection {self.collection!r} at {self.url} stores named vectors ({names}); "
            "ingest writes one unnamed vector per point. Fix: ingest into another collection "
            "(collection='...')."
        )

    async def check_or_create(self, dim: int, model: str) -> bool:
        """Refuse a collection of another vector size; create a missing one. True if created."""
        size = await self.vector_size()
        if size is not None and size != dim:
            raise IngestError(
                f"Collection {self.collection!r} at {self.url} holds {size}-dimensional vectors, "
                f"but the embedding model {model!r} makes {dim}-dimensional ones, so its points "
                "could not be searched together. Nothing was written. Fix: ingest into a new "
                f"collection (collection='{self.collection}-{dim}'), or delete "
                f"{self.collection!r} first if you mean to rebuild it with this model."
            )
        if size is not None:
            return False
        try:
            await self.client.create_collection(
                self.collection,
                vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.COSINE),
            )
            await self.client.create_payload_index(
                self.collection, "source", qm.PayloadSchemaType.KEYWORD, wait=True
            )
        except (ApiException, ResponseHandlingException, OSError) as exc:
            raise self._unreachable(exc) from exc
        return True

    async def stored(self, sources: Sequence[str] | None = None) -> dict[str, Stored]:
        """Every stored point id of ``sources`` (None: of the whole collection), with its
        source, chunk index and title."""
        if sources is None:
            return await self._scan(None)
        found: dict[str, Stored] = {}
        for i in range(0, len(sources), SCAN_SOURCES_PER_REQUEST):
            group = list(sources[i : i + SCAN_SOURCES_PER_REQUEST])
            flt = qm.Filter(must=[qm.FieldCondition(key="source", match=qm.MatchAny(any=group))])
            found.update(await self._scan(flt))
        return found

    async def _scan(self, flt: qm.Filter | None) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        offset = None
        while True:
            try:
                records, offset = await self.client.scroll(
                    self.collection,
                    scroll_filter=flt,
                    limit=SCAN_PAGE,
                    offset=offset,
                    with_payload=["source", "chunk_index", "title"],
                    with_vectors=False,
                )
            except (ApiException, ResponseHandlingException, OSError) as exc:
                raise self._unreachable(exc) from exc
            for record in records:
                payload = record.payload or {}
                found[str(record.id)] = Stored(
                    str(payload.get("source")), payload.get("chunk_index"), payload.get("title")
                )
            if offset is None:
                return found

    async def upsert(
        self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, object]]
    ) -> None:
        batch = qm.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads)
        try:
            await self.client.upsert(self.collection, points=batch, wait=True)
        except (ApiException, ResponseHandlingException, OSError) as exc:
            raise self._unreachable(exc) from exc

    async def delete(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), DELETE_PER_REQUEST):
            selector = qm.PointIdsList(points=list(ids[i : i + DELETE_PER_REQUEST]))
            try:
                await self.client.delete(self.collection, points_selector=selector, wait=True)
            except (ApiException, ResponseHandlingException, OSError) as exc:
                raise self._unreachable(exc) from exc

    async def count(self) -> int:
        return (await self.client.count(self.collection, exact=True)).count

    async def aclose(self) -> None:
        await self.client.close()
