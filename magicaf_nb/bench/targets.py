"""What a load run sends: one ``Target`` per kind of request, over aiohttp.

aiohttp is the generator's transport (not the notebooks' httpx clients): on one core it
sends an order of magnitude more requests per second, so the client is not the limit.
Each ``send`` returns an ``Outcome``; timing of the whole request is the generator's job,
the target only adds what it alone can see (first token, token arrivals, tokens, replica).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from magicaf_nb.bench.rawhttp import RawHttpPool, RawResponse


@dataclass
class Outcome:
    """What one request produced, besides its start and end times."""

    status: int
    served_by: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    items: int = 1
    first_token_at: float | None = None  # perf_counter() of the first content token
    token_times: list[float] = field(default_factory=list)  # perf_counter() of each token
    error: str | None = None


class Target(Protocol):
    """A kind of request. ``send`` must not raise for HTTP errors: it reports them."""

    name: str

    async def send(self, session: aiohttp.ClientSession) -> Outcome: ...

    def describe(self) -> dict[str, Any]: ...


def _served_by(response: aiohttp.ClientResponse) -> str | None:
    return response.headers.get("X-Served-By")


async def _error(response: aiohttp.ClientResponse) -> Outcome:
    text = (await response.text(errors="replace"))[:300]
    return Outcome(response.status, _served_by(response), error=f"HTTP {response.status}: {text}")


class _Cycle:
    """Round-robin over inputs, so successive requests differ (no server-side cache hits)."""

    def __init__(self, items: Sequence[Any], what: str) -> None:
        if not items:
            raise ValueError(f"No {what} given: pass at least one.")
        self._it = itertools.cycle(items)

    def next(self) -> Any:
        return next(self._it)


class _RawTarget:
    """Shared plumbing of the plain request/response targets (raw keep-alive client)."""

    name = "http"

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.pool = RawHttpPool(f"{parts.scheme}://{parts.netloc}")

    async def _post_json(self, body: Any) -> RawResponse:
        return await self.pool.request("POST", self.path, json.dumps(body).encode())

    def close(self) -> None:
        self.pool.close()


def _raw_error(response: RawResponse) -> Outcome:
    text = response.body[:300].decode(errors="replace")
    return Outcome(response.status, response.served_by, error=f"HTTP {response.status}: {text}")


class HttpTarget(_RawTarget):
    """A plain request (GET, or POST with a JSON body): for example a trivial endpoint."""

    def __init__(self, url: str, method: str = "GET", body: Any = None, name: str = "http") -> None:
        super().__init__(url)
        self.method = method
        self.body = b"" if body is None else json.dumps(body).encode()
        self.name = name

    async def send(self, session: aiohttp.ClientSession) -> Outcome:
        response = await self.pool.request(self.method, self.path, self.body)
        if response.status >= 400:
            return _raw_error(response)
        return Outcome(response.status, response.served_by)

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "url": self.url, "method": self.method}


class EmbeddingTarget(_RawTarget):
    """``POST /v1/embeddings`` with ``batch_size`` texts per request."""

    name = "embedding"

    def __init__(
        self, url: str, texts: Sequence[str], batch_size: int = 1, model: str = "all-MiniLM-L6-v2"
    ) -> None:
        super().__init__(url.rstrip("/").removesuffix("/v1") + "/v1/embeddings")
        self.batch_size = batch_size
        self.model = model
        self._texts = _Cycle(texts, "texts")

    async def send(self, session: aiohttp.ClientSession) -> Outcome:
        batch = [self._texts.next() for _ in range(self.batch_size)]
        response = await self._post_json({"input": batch, "model": self.model})
        if response.status >= 400:
            return _raw_error(response)
        usage = json.loads(response.body).get("usage") or {}
        return Outcome(
            response.status,
            response.served_by,
            input_tokens=usage.get("prompt_tokens"),
            items=len(batch),
        )

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "url": self.url, "batch_size": self.batch_size}


class ChatTarget:
    """``POST /v1/chat/completions``, streamed: time to first token and every token."""

    name = "chat"

    def __init__(
        self,
        base_url: str,
        prompts: Sequence[str],
        max_tokens: int = 64,
        model: str = "SmolLM2-135M-Instruct",
        temperature: float = 0.0,
        ignore_eos: bool = True,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.max_tokens = max_tokens
        self.model = model
        self.temperature = temperature
        # Fixed-length outputs make runs comparable (vLLM's benchmarks do the same).
        self.ignore_eos = ignore_eos
        self._prompts = _Cycle(prompts, "prompts")

    async def send(self, session: aiohttp.ClientSession) -> Outcome:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": self._prompts.next()}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.ignore_eos:
            body["ignore_eos"] = True
        token_times: list[float] = []
        usage: dict[str, Any] = {}
        async with session.post(self.url, json=body) as response:
            if response.status >= 400:
                return await _error(response)
            async for raw in response.content:
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                chunk = json.loads(payload)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or []:
                    if (choice.get("delta") or {}).get("content"):
                        token_times.append(time.perf_counter())
        return Outcome(
            response.status,
            _served_by(response),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens") or len(token_times),
            first_token_at=token_times[0] if token_times else None,
            token_times=token_times,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "url": self.url,
            "max_tokens": self.max_tokens,
            "ignore_eos": self.ignore_eos,
        }


class VectorSearchTarget(_RawTarget):
    """Qdrant's ``POST /collections/{name}/points/query`` with precomputed query vectors.

    The request bodies are encoded once, up front: a 384-float vector takes longer to
    write as JSON than the server takes to parse it, and the generator must not be what
    limits the rate.
    """

    name = "vector_search"

    def __init__(
        self,
        qdrant_url: str,
        collection: str,
        vectors: Sequence[Sequence[float]],
        limit: int = 10,
        api_key: str | None = None,
        exact: bool = False,
        hnsw_ef: int | None = None,
    ) -> None:
        super().__init__(f"{qdrant_url.rstrip('/')}/collections/{collection}/points/query")
        self.limit = limit
        self.exact = exact
        self.hnsw_ef = hnsw_ef
        self.headers = {"api-key": api_key} if api_key else None
        params: dict[str, Any] = {"exact": exact}
        if hnsw_ef is not None:
            params["hnsw_ef"] = hnsw_ef
        bodies = [
            json.dumps(
                {
                    "query": [float(x) for x in v],
                    "limit": limit,
                    "with_payload": False,
                    "params": params,
                }
            ).encode()
            for v in vectors
        ]
        self._bodies = _Cycle(bodies, "query vectors")

    async def send(self, session: aiohttp.ClientSession) -> Outcome:
        response = await self.pool.request(
            "POST", self.path, self._bodies.next(), headers=self.headers
        )
        if response.status >= 400:
            return _raw_error(response)
        return Outcome(response.status, response.served_by)

    def describe(self) -> dict[str, Any]:
        return {
            "target": self.name,
            "url": self.url,
            "limit": self.limit,
            "exact": self.exact,
            "hnsw_ef": self.hnsw_ef,
        }


class AskTarget(_RawTarget):
    """The RAG app's ``POST /ask`` (JSON ``{"question": ...}``)."""

    name = "ask"

    def __init__(self, app_url: str, questions: Sequence[str], **extra: Any) -> None:
        super().__init__(app_url.rstrip("/") + "/ask")
        self.extra = extra
        self._questions = _Cycle(questions, "questions")

    async def send(self, session: aiohttp.ClientSession) -> Outcome:
        body = {"question": self._questions.next(), **self.extra}
        async with session.post(self.url, json=body) as response:
            if response.status >= 400:
                return await _error(response)
            data = await response.json()
        usage = data.get("usage") or {}
        return Outcome(
            response.status,
            _served_by(response),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
        )

    def describe(self) -> dict[str, Any]:
        return {"target": self.name, "url": self.url, **self.extra}
