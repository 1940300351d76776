"""``RAGWorkflow``: MagicAF's steps, each timed.

embed the query -> search (top_k, optional filter) -> drop results under min_score ->
format evidence -> build the prompt -> call the LLM -> parse.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from qdrant_client.http import models
from qdrant_client.http.exceptions import UnexpectedResponse

from magicaf_nb.config import (
    ConfigError,
    EmbeddingConfig,
    GenerationConfig,
    LlmConfig,
    VectorStoreConfig,
    check_positive_int,
)
from magicaf_nb.rag.result import Evidence, RAGResult
from magicaf_nb.rag.steps import (
    CitationPromptBuilder,
    EvidenceFormatter,
    NumberedEvidenceFormatter,
    PromptBuilder,
    RawTextParser,
    ResultParser,
)
from magicaf_nb.rag.vectorstore import VectorStore, as_filter
from magicaf_nb.services import EmbeddingClient, LlmClient, ServiceError
from magicaf_nb.services.sync import run_sync

DEFAULT_COLLECTION = "magicaf"


class RetrievalError(RuntimeError):
    """The vector store could not answer a search; the message says why and the fix."""


class RAGWorkflow:
    """One application instance's pipeline over the three services."""

    def __init__(
        self,
        *,
        embedding: EmbeddingClient,
        vector_store: VectorStore,
        llm: LlmClient,
        collection: str = DEFAULT_COLLECTION,
        top_k: int = 5,
        min_score: float = 0.0,
        generation: GenerationConfig | None = None,
        formatter: EvidenceFormatter | None = None,
        prompt_builder: PromptBuilder | None = None,
        parser: ResultParser[Any] | None = None,
    ) -> None:
        self.embedding = embedding
        self.vector_store = vector_store
        self.llm = llm
        self.collection = collection
        self.top_k = check_positive_int("top_k", top_k, upper=1000)
        self.min_score = _check_score(min_score)
        self.generation = generation or GenerationConfig(max_tokens=160)
        self.formatter = formatter or NumberedEvidenceFormatter()
        self.prompt_builder = prompt_builder or CitationPromptBuilder()
        self.parser = parser or RawTextParser()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> RAGWorkflow:
        """Build from MagicAF's variables (what each stateless app instance does)."""
        source = os.environ if env is None else env
        kwargs.setdefault("collection", source.get("QDRANT_COLLECTION") or DEFAULT_COLLECTION)
        return cls(
            embedding=EmbeddingClient(EmbeddingConfig.from_env(env)),
            vector_store=VectorStore(VectorStoreConfig.from_env(env)),
            llm=LlmClient(LlmConfig.from_env(env)),
            **kwargs,
        )

    @classmethod
    def from_endpoints(cls, endpoints: Mapping[str, str], **kwargs: Any) -> RAGWorkflow:
        """Build from ``stack.endpoints()``."""
        return cls.from_env(endpoints, **kwargs)

    async def aretrieve(
        self,
        question: str,
        *,
        top_k: int | None = None,
        min_score: float | None = None,
        filter: models.Filter | Mapping[str, Any] | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[Evidence]:
        """The first three steps: embed, search, drop results under ``min_score``."""
        if not question or not question.strip():
            raise ValueError("The question is empty: ask something.")
        timings = {} if timings is None else timings
        limit = check_positive_int("top_k", top_k or self.top_k, upper=1000)
        floor = self.min_score if min_score is None else _check_score(min_score)
        start = time.perf_counter()
        batch = await self.embedding.aembed_batch([question])
        timings["embed"] = _ms(start)
        start = time.perf_counter()
        try:
            response = await self.vector_store.client().query_points(
                self.collection,
                query=batch.vectors[0].tolist(),
                limit=limit,
                with_payload=True,
                query_filter=as_filter(filter),
            )
        except UnexpectedResponse as exc:
            if exc.status_code == 404:
                raise RetrievalError(
                    f"Collection {self.collection!r} does not exist at "
                    f"{self.vector_store.config.url}. Fix: ingest a corpus first "
                    "(`magicaf-nb ingest --sample`, or magicaf_nb.ingest.ingest(...))."
                ) from exc
            raise RetrievalError(f"Search in {self.collection!r} failed: {exc}") from exc
        except Exception as exc:  # connection errors from httpx inside qdrant-client
            raise RetrievalError(
                f"The vector store at {self.vector_store.config.url} did not answer "
                f"({type(exc).__name__}: {exc}). Fix: check QDRANT_URL and that it is up."
            ) from exc
        timings["search"] = _ms(start)
        start = time.perf_counter()
        evidence = [
            Evidence(
                source=str((point.payload or {}).get("source", "")),
                chunk=int((point.payload or {}).get("chunk_index", 0)),
                score=float(point.score),
                text=str((point.payload or {}).get("text", "")),
                title=str((point.payload or {}).get("title", "")),
            )
            for point in response.points
            if point.score >= floor
        ]
        timings["filter"] = _ms(start)
        return evidence

    async def aask(
        self,
        question: str,
        *,
        top_k: int | None = None,
        min_score: float | None = None,
        filter: models.Filter | Mapping[str, Any] | None = None,
        generation: GenerationConfig | None = None,
    ) -> RAGResult:
        """Answer ``question`` from the collection, with sources and stage timings."""
        began = time.perf_counter()
        timings: dict[str, float] = {}
        evidence = await self.aretrieve(
            question, top_k=top_k, min_score=min_score, filter=filter, timings=timings
        )
        start = time.perf_counter()
        evidence_text = self.formatter.format(evidence)
        timings["format"] = _ms(start)
        start = time.perf_counter()
        messages = self.prompt_builder.build(question, evidence_text)
        timings["prompt"] = _ms(start)
        start = time.perf_counter()
        try:
            reply = await self.llm.achat(messages, generation or self.generation)
        except ServiceError:
            raise
        timings["llm"] = _ms(start)
        start = time.perf_counter()
        result = self.parser.parse(reply.text)
        timings["parse"] = _ms(start)
        timings["total"] = _ms(began)
        return RAGResult(
            question=question,
            result=result,
            evidence=evidence,
            raw_llm_output=reply.text,
            usage={
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": reply.completion_tokens,
            },
            timings_ms=timings,
            served_by={"llm": reply.served_by},
        )

    def ask(self, question: str, **kwargs: Any) -> RAGResult:
        return run_sync(self.aask(question, **kwargs))

    def retrieve(self, question: str, **kwargs: Any) -> list[Evidence]:
        return run_sync(self.aretrieve(question, **kwargs))


def _ms(start: float) -> float:
    return 1000 * (time.perf_counter() - start)


def _check_score(value: float) -> float:
    if not isinstance(value, int | float) or not -1.0 <= float(value) <= 1.0:
        raise ConfigError(f"min_score={value!r}: use a cosine score from -1.0 to 1.0.")
    return float(value)
