"""Embeddings over the OpenAI ``POST /v1/embeddings`` schema (TEI, llama-server, vLLM)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from magicaf_nb.config import EmbeddingConfig, check_positive_int
from magicaf_nb.services.errors import ServiceError
from magicaf_nb.services.http import RetryPolicy, request_json
from magicaf_nb.services.pool import ClientPool, auth_headers
from magicaf_nb.services.sync import run_sync


@dataclass
class EmbeddingBatch:
    """One request's result: vectors in input order, tokens, who served it, how long."""

    vectors: np.ndarray
    prompt_tokens: int | None
    served_by: str | None
    seconds: float


def _base_url(url: str) -> str:
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _check_texts(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    checked = list(texts)
    for i, text in enumerate(checked):
        if not isinstance(text, str):
            raise TypeError(f"Input #{i} is a {type(text).__name__}, not a str: embed text only.")
        if not text.strip():
            raise ValueError(f"Input #{i} is empty: remove blank texts before embedding.")
    return checked


class EmbeddingClient:
    """Batches texts by ``batch_size`` and keeps ``parallel_batches`` requests in flight."""

    def __init__(self, config: EmbeddingConfig) -> None:
        self.config = config
        self.base_url = _base_url(config.url)
        self.policy = RetryPolicy(max_retries=config.max_retries)
        self._pool = ClientPool(timeout_s=config.timeout_s, headers=auth_headers(config.api_key))
        self._fix = (
            f"Fix: check that the embedding server is up (`magicaf-nb status`) and that "
            f"EMBEDDING_URL={config.url} is right."
        )

    async def aembed_batch(self, texts: Sequence[str]) -> EmbeddingBatch:
        """Embed ``texts`` in one request."""
        texts = _check_texts(texts)
        url = f"{self.base_url}/v1/embeddings"
        start = time.perf_counter()
        response = await request_json(
            self._pool.get(),
            "POST",
            url,
            json={"input": texts, "model": self.config.model},
            policy=self.policy,
            service="embedding",
            fix=self._fix,
            reject_fix=(
                "Fix: the server refused the input; an input longer than the model's context "
                "(512 tokens for all-MiniLM-L6-v2) must be chunked first (magicaf_nb.ingest)."
            ),
        )
        seconds = time.perf_counter() - start
        body = response.json()
        try:
            data = sorted(body["data"], key=lambda item: item["index"])
            vectors = np.asarray([item["embedding"] for item in data], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise ServiceError(
                f"embedding: {url} answered without OpenAI 'data' embeddings: {str(body)[:200]}",
                url=url,
            ) from exc
        if len(vectors) != len(texts):
            raise ServiceError(
                f"embedding: {url} returned {len(vectors)} vectors for {len(texts)} inputs", url=url
            )
        usage = body.get("usage") or {}
        return EmbeddingBatch(
            vectors, usage.get("prompt_tokens"), response.headers.get("x-served-by"), seconds
        )

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        parallel_batches: int | None = None,
    ) -> np.ndarray:
        """Embed any number of texts; returns an (n, dim) float32 array in input order."""
        texts = _check_texts(texts)
        size = check_positive_int("batch_size", batch_size or self.config.batch_size, upper=4096)
        width = check_positive_int(
            "parallel_batches", parallel_batches or self.config.parallel_batches, upper=256
        )
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        gate = asyncio.Semaphore(width)

        async def one(chunk: list[str]) -> np.ndarray:
            async with gate:
                return (await self.aembed_batch(chunk)).vectors

        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        parts = await asyncio.gather(*(one(chunk) for chunk in chunks))
        return np.concatenate(parts)

    async def ahealth_check(self) -> bool:
        """True if the server answers ``GET /health`` with 200; else a ``ServiceError``."""
        url = f"{self.base_url}/health"
        await request_json(
            self._pool.get(),
            "GET",
            url,
            policy=RetryPolicy(max_retries=0),
            service="embedding",
            fix=self._fix,
        )
        return True

    def embed(self, texts: Sequence[str], **kwargs: int) -> np.ndarray:
        return run_sync(self.aembed(texts, **kwargs))

    def embed_batch(self, texts: Sequence[str]) -> EmbeddingBatch:
        return run_sync(self.aembed_batch(texts))

    def health_check(self) -> bool:
        return run_sync(self.ahealth_check())

    async def aclose(self) -> None:
        await self._pool.aclose()
