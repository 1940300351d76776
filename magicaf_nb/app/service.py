"""The stateless RAG app: an ASGI service; each instance builds its own ``RAGWorkflow``
from MagicAF's environment variables and serves ``POST /ask``, ``/health``, ``/metrics``."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from magicaf_nb.config import ConfigError, GenerationConfig
from magicaf_nb.rag import STAGES, RAGWorkflow, RetrievalError
from magicaf_nb.services import ServiceError


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "magicaf_app_requests",
            "Requests to /ask by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "magicaf_app_ask_seconds",
            "End-to-end /ask time",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
        )
        self.stage = Counter(
            "magicaf_app_stage_seconds",
            "Time spent per RAG stage",
            ["stage"],
            registry=self.registry,
        )


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def _ask_arguments(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ConfigError('The body must be a JSON object like {"question": "..."}.')
    question = body.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ConfigError('"question" is missing or empty: send {"question": "..."}.')
    args: dict[str, Any] = {"question": question}
    for key in ("top_k", "min_score", "filter"):
        if body.get(key) is not None:
            args[key] = body[key]
    if body.get("max_tokens") is not None:
        args["generation"] = GenerationConfig(max_tokens=body["max_tokens"])
    return args


def create_app(env: Mapping[str, str] | None = None) -> Starlette:
    """The ASGI app. The workflow is built at start-up, so a misconfigured instance
    fails at once and names the missing variable."""
    metrics = _Metrics()
    state: dict[str, Any] = {"instance": (env or os.environ).get("MAGICAF_APP_INSTANCE", "")}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state["workflow"] = RAGWorkflow.from_env(env)
        yield

    async def ask(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            metrics.requests.labels("bad_request").inc()
            return _bad_request("The body is not valid JSON.")
        started = time.perf_counter()
        try:
            args = _ask_arguments(body)
            result = await state["workflow"].aask(args.pop("question"), **args)
        except (ConfigError, ValueError, TypeError) as exc:
            metrics.requests.labels("bad_request").inc()
            return _bad_request(str(exc))
        except (ServiceError, RetrievalError) as exc:
            metrics.requests.labels("upstream_error").inc()
            return JSONResponse({"error": str(exc)}, status_code=502)
        metrics.requests.labels("ok").inc()
        metrics.latency.observe(time.perf_counter() - started)
        for stage in STAGES:
            metrics.stage.labels(stage).inc(result.timings_ms.get(stage, 0.0) / 1000)
        payload = result.to_dict()
        payload["instance"] = state["instance"]
        return JSONResponse(payload)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "instance": state["instance"]})

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/ask", ask, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
