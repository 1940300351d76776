"""The HTTP server: the part of Qdrant's REST API that the workbench and RAG code use.

Requests are parsed with qdrant-client's models and answered with them, inside Qdrant's
envelope ``{"result": ..., "status": "ok", "time": seconds}``, so ``QdrantClient(url=...)``
(sync and async) works unchanged. Anything else gets HTTP 501 naming the endpoint.
Reads (search, query, retrieve, scroll, count) run on the event loop itself: qdrant-edge
0.9 holds the GIL while it searches, so a worker thread would add a hand-off (about
0.2 ms here) and no parallelism. Writes and collection operations run in worker threads
because they may wait on a shard's write lock while an index build swaps in.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio.to_thread
import pydantic_core
import qdrant_edge as qe
from qdrant_client.http import models as m
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from magicaf_nb.vector import convert
from magicaf_nb.vector.collection import Collection, QuerySpec
from magicaf_nb.vector.errors import NEEDS_QDRANT, ApiError, internal, not_found, not_supported
from magicaf_nb.vector.requests import (
    SearchRequest,
    SearchRequestBatch,
    check_count,
    flag,
    parse,
)
from magicaf_nb.vector.routing import canonical_id
from magicaf_nb.vector.store import VectorStore

log = logging.getLogger("magicaf_nb.vector")

Handler = Callable[[Request], Awaitable[Any]]
OPEN_PATHS = {"/", "/healthz", "/livez", "/readyz"}


def _api_version() -> str:
    """The REST API version this server speaks: that of the qdrant-client models it uses."""
    return importlib.metadata.version("qdrant-client")


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(
        pydantic_core.to_json(body, exclude_none=True),
        status_code=status,
        media_type="application/json",
    )


def error_response(err: ApiError, started: float) -> Response:
    return _json(
        {"status": {"error": err.message}, "time": time.perf_counter() - started}, err.status
    )


def _update_result(op_id: int, wait: bool) -> m.UpdateResult:
    status = m.UpdateStatus.COMPLETED if wait else m.UpdateStatus.ACKNOWLEDGED
    return m.UpdateResult(operation_id=op_id, status=status)


def _point_tuples(body: Any) -> list[tuple[Any, Any, dict[str, Any] | None]]:
    """(id, vector, payload) for each point of a PointsList or a PointsBatch."""
    if isinstance(body, m.PointsList):
        return [(p.id, p.vector, p.payload) for p in body.points]
    batch = body.batch
    ids = list(batch.ids)
    payloads = batch.payloads if batch.payloads is not None else [None] * len(ids)
    vectors = batch.vectors
    if isinstance(vectors, dict):
        columns = {name: list(values) for name, values in vectors.items()}
        if any(len(col) != len(ids) for col in columns.values()):
            raise ApiError(400, "Wrong input: the batch has different numbers of ids and vectors")
        rows: list[Any] = [{n: col[i] for n, col in columns.items()} for i in range(len(ids))]
    else:
        rows = list(vectors)
    if len(rows) != len(ids) or len(payloads) != len(ids):
        raise ApiError(
            400, "Wrong input: the batch has different numbers of ids, vectors and payloads"
        )
    return list(zip(ids, rows, payloads, strict=True))


def _query_vector(collection: Collection, query: Any, using: str) -> tuple[list[float], Any]:
    """The vector to search with and the id to leave out (for query-by-id)."""
    if isinstance(query, m.NearestQuery):
        if query.mmr is not None:
            raise not_supported("MMR re-ranking (nearest.mmr)")
        query = query.nearest
    if isinstance(query, list) and (not query or isinstance(query[0], int | float)):
        return query, None
    if isinstance(query, int | str) or type(query).__name__ == "UUID":
        pid = canonical_id(query)
        return collection.vector_of(pid, using), pid
    if query is None:
        raise not_supported("A query without `query` (list points with points/scroll)")
    raise not_supported(f"Query of type {type(query).__name__}")


def query_spec(collection: Collection, req: m.QueryRequest) -> QuerySpec:
    if req.prefetch is not None:
        raise not_supported("Prefetch (hybrid and multi-stage queries)")
    if req.lookup_from is not None:
        raise not_supported("lookup_from")
    if req.shard_key is not None:
        raise not_supported("Shard keys (custom sharding)")
    check_count("limit", req.limit, minimum=1)
    check_count("offset", req.offset, minimum=0)
    using = req.using or ""
    vector, exclude = _query_vector(collection, req.query, using)
    return QuerySpec(
        vector=vector,
        using=using,
        limit=req.limit if req.limit is not None else 10,
        offset=req.offset or 0,
        filter=req.filter,
        params=req.params,
        with_payload=req.with_payload,
        with_vector=req.with_vector,
        score_threshold=req.score_threshold,
        exclude=exclude,
    )


def search_spec(req: SearchRequest) -> QuerySpec:
    if req.shard_key is not None:
        raise not_supported("Shard keys (custom sharding)")
    check_count("limit", req.limit, minimum=1)
    check_count("offset", req.offset, minimum=0)
    if isinstance(req.vector, list):
        vector, using = req.vector, ""
    else:
        vector, using = req.vector.vector, req.vector.name
    return QuerySpec(
        vector=vector,
        using=using,
        limit=req.limit,
        offset=req.offset or 0,
        filter=req.filter,
        params=req.params,
        with_payload=req.with_payload,
        with_vector=req.with_vector,
        score_threshold=req.score_threshold,
    )


def build_app(store: VectorStore, api_key: str | None = None) -> Starlette:
    """The Starlette app serving ``store``."""
    op_ids = itertools.count(1)

    def endpoint(template: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if api_key and request.url.path not in OPEN_PATHS:
                    _check_api_key(request, api_key)
                result = await handler(request)
                if isinstance(result, Response):
                    response = result
                else:
                    body = {"result": result, "status": "ok"}
                    response = _json({**body, "time": time.perf_counter() - started})
            except ApiError as err:
                response = error_response(err, started)
            except Exception as exc:  # an engine or server fault: answer, log, keep serving
                log.exception("%s %s failed", request.method, request.url.path)
                response = error_response(internal(f"{type(exc).__name__}: {exc}"), started)
            store.metrics.observe(
                request.method, template, response.status_code, time.perf_counter() - started
            )
            return response

        return run

    def collection(request: Request) -> Collection:
        return store.get(request.path_params["name"])

    async def body(request: Request, model: Any) -> Any:
        return parse(await request.body(), model)

    def wait_flag(request: Request) -> bool:
        return flag(request.query_params.get("wait"), False)

    # Writes run in this pool: they may wait on a shard lock, which must not block the loop
    # (a thread hop here costs less than anyio's to_thread).
    pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="engine")

    async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    # ------------------------------------------------------------------ service

    async def root(request: Request) -> Response:
        return _json(
            {
                "title": "qdrant - vector search engine (magicaf-nb embedded server, "
                f"engine qdrant-edge {importlib.metadata.version('qdrant-edge-py')})",
                "version": _api_version(),
            }
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("healthz check passed")

    async def readyz(request: Request) -> Response:
        return PlainTextResponse("all shards are ready")

    async def metrics(request: Request) -> Response:
        text = await in_thread(store.metrics.render, store)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    async def cluster_status(request: Request) -> Any:
        return {"status": "disabled"}

    # ------------------------------------------------------------------ collections

    async def list_collections(request: Request) -> Any:
        names = store.names()
        return m.CollectionsResponse(collections=[m.CollectionDescription(name=n) for n in names])

    async def get_collection(request: Request) -> Any:
        return await in_thread(collection(request).info)

    async def create_collection(request: Request) -> Any:
        req = await body(request, m.CreateCollection)
        return await in_thread(store.create, request.path_params["name"], req)

    async def delete_collection(request: Request) -> Any:
        return await in_thread(store.delete, request.path_params["name"])

    async def exists(request: Request) -> Any:
        return m.CollectionExistence(exists=store.exists(request.path_params["name"]))

    async def collection_cluster(request: Request) -> Any:
        return await in_thread(collection(request).cluster, store.peer_id)

    async def create_index(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.CreateFieldIndex)
        operation = qe.UpdateOperation.create_field_index(
            req.field_name, convert.field_schema(req.field_schema)
        )
        await in_thread(coll.update_all, operation)
        return _update_result(next(op_ids), wait_flag(request))

    async def delete_index(request: Request) -> Any:
        coll = collection(request)
        operation = qe.UpdateOperation.delete_field_index(request.path_params["field"])
        await in_thread(coll.update_all, operation)
        return _update_result(next(op_ids), wait_flag(request))

    # ------------------------------------------------------------------ points: writes

    async def upsert(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.PointInsertOperations)
        if req.shard_key is not None:
            raise not_supported("Shard keys (custom sharding)")
        points = _point_tuples(req)
        await in_thread(coll.upsert, points, req.update_filter, req.update_mode)
        return _update_result(next(op_ids), wait_flag(request))

    async def delete_points(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.PointsSelector)
        if isinstance(req, m.PointIdsList):
            await in_thread(coll.update_ids, req.points, qe.UpdateOperation.delete_points)
        else:
            operation = qe.UpdateOperation.delete_points_by_filter(convert.filter_(req.filter))
            await in_thread(coll.update_all, operation)
        return _update_result(next(op_ids), wait_flag(request))

    def payload_op(by_ids: Any, by_filter: Any, overwrite: bool = False) -> Handler:
        async def handler(request: Request) -> Any:
            coll = collection(request)
            req = await body(request, m.SetPayload)
            if req.points is not None:
                await in_thread(
                    coll.update_ids, req.points, lambda ids: by_ids(ids, req.payload, req.key)
                )
            elif req.filter is not None:
                operation = by_filter(convert.filter_(req.filter), req.payload, req.key)
                await in_thread(coll.update_all, operation)
            else:
                raise ApiError(400, "Wrong input: give either `points` or `filter`")
            return _update_result(next(op_ids), wait_flag(request))

        return handler

    async def delete_payload(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.DeletePayload)
        if req.points is not None:
            await in_thread(
                coll.update_ids,
                req.points,
                lambda ids: qe.UpdateOperation.delete_payload(ids, req.keys),
            )
        elif req.filter is not None:
            operation = qe.UpdateOperation.delete_payload_by_filter(
                convert.filter_(req.filter), req.keys
            )
            await in_thread(coll.update_all, operation)
        else:
            raise ApiError(400, "Wrong input: give either `points` or `filter`")
        return _update_result(next(op_ids), wait_flag(request))

    async def clear_payload(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.PointsSelector)
        if isinstance(req, m.PointIdsList):
            await in_thread(coll.update_ids, req.points, qe.UpdateOperation.clear_payload)
        else:
            operation = qe.UpdateOperation.clear_payload_by_filter(convert.filter_(req.filter))
            await in_thread(coll.update_all, operation)
        return _update_result(next(op_ids), wait_flag(request))

    # ------------------------------------------------------------------ points: reads

    async def retrieve(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.PointRequest)
        payload = True if req.with_payload is None else req.with_payload
        vector = False if req.with_vector is None else req.with_vector
        return coll.retrieve(list(req.ids), payload, vector)

    async def get_point(request: Request) -> Any:
        coll = collection(request)
        raw = request.path_params["id"]
        pid = canonical_id(int(raw) if raw.isdigit() else raw)
        found = coll.retrieve([pid], True, True)
        if not found:
            raise not_found(f"No point with id {pid} found")
        return found[0]

    async def scroll(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.ScrollRequest)
        if req.order_by is not None:
            raise not_supported("Scroll with order_by")
        if req.shard_key is not None:
            raise not_supported("Shard keys (custom sharding)")
        check_count("limit", req.limit, minimum=1)
        payload = True if req.with_payload is None else req.with_payload
        vector = False if req.with_vector is None else req.with_vector
        limit = req.limit if req.limit is not None else 10
        points, next_offset = coll.scroll(req.offset, limit, req.filter, payload, vector)
        return m.ScrollResult(points=points, next_page_offset=next_offset)

    async def count(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.CountRequest)
        return m.CountResult(count=coll.count(req.filter))

    async def query(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.QueryRequest)
        return m.QueryResponse(points=coll.query(query_spec(coll, req)))

    async def query_batch(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, m.QueryRequestBatch)
        specs = [query_spec(coll, r) for r in req.searches]
        return [m.QueryResponse(points=coll.query(s)) for s in specs]

    async def search(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, SearchRequest)
        return coll.query(search_spec(req))

    async def search_batch(request: Request) -> Any:
        coll = collection(request)
        req = await body(request, SearchRequestBatch)
        specs = [search_spec(r) for r in req.searches]
        return [coll.query(s) for s in specs]

    # ------------------------------------------------------------------ everything else

    async def unsupported(request: Request) -> Any:
        raise ApiError(
            501,
            f"`{request.method} {request.url.path}` is not implemented by the embedded vector "
            f"server (Qdrant's engine, qdrant-edge, on one node; it serves collections, points, "
            f"search and query). {NEEDS_QDRANT}",
        )

    # Starlette tries routes in order (each try costs about a microsecond): searches first.
    table: list[tuple[str, str, Handler]] = [
        ("POST", "/collections/{name}/points/query", query),
        ("POST", "/collections/{name}/points/query/batch", query_batch),
        ("POST", "/collections/{name}/points/search", search),
        ("POST", "/collections/{name}/points/search/batch", search_batch),
        ("PUT", "/collections/{name}/points", upsert),
        ("GET", "/", root),
        ("GET", "/healthz", healthz),
        ("GET", "/livez", healthz),
        ("GET", "/readyz", readyz),
        ("GET", "/metrics", metrics),
        ("GET", "/cluster", cluster_status),
        ("GET", "/collections", list_collections),
        ("GET", "/collections/{name}", get_collection),
        ("PUT", "/collections/{name}", create_collection),
        ("DELETE", "/collections/{name}", delete_collection),
        ("GET", "/collections/{name}/exists", exists),
        ("GET", "/collections/{name}/cluster", collection_cluster),
        ("PUT", "/collections/{name}/index", create_index),
        ("DELETE", "/collections/{name}/index/{field}", delete_index),
        ("POST", "/collections/{name}/points", retrieve),
        ("POST", "/collections/{name}/points/delete", delete_points),
        ("POST", "/collections/{name}/points/scroll", scroll),
        ("POST", "/collections/{name}/points/count", count),
        (
            "POST",
            "/collections/{name}/points/payload",
            payload_op(qe.UpdateOperation.set_payload, qe.UpdateOperation.set_payload_by_filter),
        ),
        (
            "PUT",
            "/collections/{name}/points/payload",
            payload_op(
                qe.UpdateOperation.overwrite_payload,
                qe.UpdateOperation.overwrite_payload_by_filter,
            ),
        ),
        ("POST", "/collections/{name}/points/payload/delete", delete_payload),
        ("POST", "/collections/{name}/points/payload/clear", clear_payload),
        ("GET", "/collections/{name}/points/{id}", get_point),
    ]
    routes = [Route(path, endpoint(path, fn), methods=[verb]) for verb, path, fn in table]
    all_methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    routes.append(Route("/{rest:path}", endpoint("unsupported", unsupported), methods=all_methods))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(store.close)
            pool.shutdown(wait=False)

    return Starlette(routes=routes, lifespan=lifespan)


def _check_api_key(request: Request, api_key: str) -> None:
    given = request.headers.get("api-key")
    auth = request.headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:]
    if given is None:
        raise ApiError(401, "Must provide an API key or an Authorization bearer token")
    if given != api_key:
        raise ApiError(401, "Invalid API key or JWT")
