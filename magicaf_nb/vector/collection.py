"""A collection: ``shard_number`` EdgeShards, points routed by id, searches fanned out.

A point lives on shard ``routing.shard_of(id)``. Searches go to every shard and the
per-shard top hits are merged; counts add up. This is what a Qdrant node does with its
local shards, with one difference: qdrant-edge 0.9 holds the GIL while it searches (two
threads search no faster than one), so the shards are asked one after the other. Threads
would add a hand-off per shard and no parallelism.
"""

from __future__ import annotations

import heapq
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import qdrant_edge as qe
from qdrant_client.http import models as m

from magicaf_nb.vector import convert
from magicaf_nb.vector.errors import bad_input, not_supported
from magicaf_nb.vector.routing import PointId, canonical_id, engine_id, id_order, shard_of
from magicaf_nb.vector.shard import ShardHandle

META = "collection.json"
MAX_SHARDS = 64
T = TypeVar("T")


@dataclass
class Hit:
    """One search result with the key that orders it across shards."""

    key: float
    point: Any


@dataclass
class QuerySpec:
    """A nearest-neighbour query in engine terms (from /points/query or /points/search)."""

    vector: list[float]
    using: str
    limit: int
    offset: int = 0
    filter: m.Filter | None = None
    params: m.SearchParams | None = None
    with_payload: Any = None
    with_vector: Any = None
    score_threshold: float | None = None
    exclude: PointId | None = None  # query-by-id leaves the point itself out, as Qdrant does


def _vectors_config(request: m.CreateCollection) -> dict[str, m.VectorParams]:
    if request.sparse_vectors:
        raise not_supported("Sparse vectors")
    vectors = request.vectors
    if vectors is None:
        raise bad_input("vectors is required: give a size and a distance")
    if isinstance(vectors, m.VectorParams):
        return {"": vectors}
    if not vectors:
        raise bad_input("vectors is empty: give at least one named vector")
    return dict(vectors)


def validate_create(request: m.CreateCollection) -> None:
    """Refuse what one node cannot honour, with the reason and the fix."""
    shards = request.shard_number if request.shard_number is not None else 1
    if shards < 1 or shards > MAX_SHARDS:
        raise bad_input(f"`shard_number` {shards} is out of range: use 1 to {MAX_SHARDS}")
    if request.sharding_method == m.ShardingMethod.CUSTOM:
        raise not_supported("Custom sharding (sharding_method=custom)")
    replication = request.replication_factor or 1
    if replication > 1:
        raise bad_input(
            f"replication_factor={replication} needs {replication} Qdrant peers to hold the "
            "copies; this embedded server is one node and keeps one copy of each shard. "
            "Fix: use replication_factor=1 here, or point QDRANT_URL at a Qdrant cluster."
        )
    if (request.write_consistency_factor or 1) > 1:
        raise bad_input(
            "write_consistency_factor > 1 needs replicas on several Qdrant peers. "
            "Fix: leave it at 1 here, or point QDRANT_URL at a Qdrant cluster."
        )
    for params in _vectors_config(request).values():
        convert.vector_params(params)
    if request.quantization_config is not None:
        convert.quantization(request.quantization_config)


class Collection:
    """The shards of one collection and the operations on all of them."""

    def __init__(self, name: str, root: Path, request: m.CreateCollection, created_at: str) -> None:
        self.name = name
        self.root = root
        self.request = request
        self.created_at = created_at
        self.vectors = _vectors_config(request)
        self.shard_number = request.shard_number or 1
        self.hnsw = convert.merged(convert.HNSW_DEFAULTS, request.hnsw_config)
        self.optimizer = convert.merged(convert.OPTIMIZER_DEFAULTS, request.optimizers_config)
        self.wal = convert.merged(convert.WAL_DEFAULTS, request.wal_config)
        self.shards: list[ShardHandle] = []
        self.closed = False
        self.index_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    def edge_config(self) -> qe.EdgeConfig:
        vectors = {name: convert.vector_params(p) for name, p in self.vectors.items()}
        return qe.EdgeConfig(
            vectors=vectors[""] if list(vectors) == [""] else vectors,
            on_disk_payload=self.request.on_disk_payload,
            hnsw_config=convert.hnsw(self.hnsw),
            quantization_config=convert.quantization(self.request.quantization_config),
            optimizers=convert.optimizers(self.optimizer),
        )

    @classmethod
    def create(cls, parent: Path, name: str, request: m.CreateCollection) -> Collection:
        """Create the shards in a scratch folder, then move it into place in one rename."""
        validate_create(request)
        scratch = parent / f".creating-{name}-{uuid.uuid4().hex[:8]}"
        created_at = datetime.now(UTC).isoformat()
        draft = cls(name, scratch, request, created_at)
        config = draft.edge_config()
        try:
            for i in range(draft.shard_number):
                ShardHandle.create(scratch / "shards" / str(i), i, config).close()
            meta = {
                "name": name,
                "created_at": created_at,
                "config": request.model_dump(mode="json", exclude_none=True),
            }
            (scratch / META).write_text(json.dumps(meta, indent=1))
            scratch.rename(parent / name)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return cls.open(parent / name)

    @classmethod
    def open(cls, root: Path) -> Collection:
        meta = json.loads((root / META).read_text())
        request = m.CreateCollection.model_validate(meta["config"])
        collection = cls(meta["name"], root, request, meta.get("created_at", ""))
        collection.shards = [
            ShardHandle.open(root / "shards" / str(i), i) for i in range(collection.shard_number)
        ]
        return collection

    def close(self) -> None:
        self.closed = True
        for shard in self.shards:
            shard.close()

    # ------------------------------------------------------------------ fan-out

    def _fan_out(self, fn: Callable[[ShardHandle], T], shards: Sequence[ShardHandle]) -> list[T]:
        """``fn`` on each shard, in turn: the engine holds the GIL, so threads gain nothing."""
        return [fn(shard) for shard in shards]

    # ------------------------------------------------------------------ writes

    def check_vector(self, name: str, vector: Any) -> None:
        params = self.vectors.get(name)
        if params is None:
            known = ", ".join(f"`{n}`" for n in self.vectors) if "" not in self.vectors else ""
            raise bad_input(
                f"Vector with name `{name}` is not configured in this collection"
                + (f"; its vectors are {known}" if known else "")
            )
        if not isinstance(vector, list) or (vector and not isinstance(vector[0], int | float)):
            raise not_supported(f"Vector of type {type(vector).__name__} for `{name}`")
        if len(vector) != params.size:
            raise bad_input(
                f"Vector dimension error: expected dim: {params.size}, got {len(vector)}"
            )

    def _point_vector(self, vector: Any) -> Any:
        if isinstance(vector, dict):
            for name, value in vector.items():
                self.check_vector(name, value)
            return {name: list(value) for name, value in vector.items()}
        if "" not in self.vectors:
            raise bad_input(
                "this collection has named vectors "
                f"({', '.join(self.vectors)}): give the vector as an object of name to values"
            )
        self.check_vector("", vector)
        return vector

    def upsert(
        self,
        points: Iterable[tuple[Any, Any, dict[str, Any] | None]],
        update_filter: m.Filter | None = None,
        update_mode: Any = None,
    ) -> int:
        """Validate every point first, then write them shard by shard. Returns the count."""
        by_shard: dict[int, list[qe.Point]] = {}
        count = 0
        for raw_id, vector, payload in points:
            pid = canonical_id(raw_id)
            point = qe.Point(engine_id(pid), self._point_vector(vector), payload)
            by_shard.setdefault(shard_of(pid, self.shard_number), []).append(point)
            count += 1
        condition = convert.filter_(update_filter)
        mode = None
        if update_mode is not None:
            mode = {
                "upsert": qe.UpdateMode.Upsert,
                "insert_only": qe.UpdateMode.InsertOnly,
                "update_only": qe.UpdateMode.UpdateOnly,
            }[getattr(update_mode, "value", update_mode)]
        for index, shard_points in sorted(by_shard.items()):
            self.shards[index].update(
                qe.UpdateOperation.upsert_points(shard_points, condition, mode)
            )
        return count

    def _by_shard(self, ids: Iterable[Any]) -> dict[int, list[Any]]:
        groups: dict[int, list[Any]] = {}
        for raw in ids:
            pid = canonical_id(raw)
            groups.setdefault(shard_of(pid, self.shard_number), []).append(engine_id(pid))
        return groups

    def update_ids(self, ids: Iterable[Any], make: Callable[[list[Any]], Any]) -> None:
        """Apply ``make(engine ids)`` on the shards holding ``ids``."""
        for index, engine_ids in sorted(self._by_shard(ids).items()):
            self.shards[index].update(make(engine_ids))

    def update_all(self, operation: Any) -> None:
        """Apply a filter-based update on every shard."""
        for shard in self.shards:
            shard.update(operation)

    # ------------------------------------------------------------------ reads

    def _order_key(self, using: str) -> Callable[[float], float]:
        distance = self.vectors[using].distance if using in self.vectors else m.Distance.COSINE
        return (lambda s: s) if distance in convert.ASCENDING else (lambda s: -s)

    def query(self, spec: QuerySpec) -> list[m.ScoredPoint]:
        self.check_vector(spec.using, spec.vector)
        flt = spec.filter
        if spec.exclude is not None:
            exclusion = m.HasIdCondition(has_id=[spec.exclude])
            flt = m.Filter(must=[flt] if flt else None, must_not=[exclusion])
        request = qe.QueryRequest(
            limit=spec.limit + spec.offset,
            offset=0,
            query=qe.Query.Nearest(spec.vector, using=spec.using or None),
            with_vector=convert.with_vector(spec.with_vector),
            with_payload=convert.with_payload(spec.with_payload),
            filter=convert.filter_(flt),
            score_threshold=spec.score_threshold,
            params=convert.search_params(spec.params),
        )

        def one(shard: ShardHandle) -> list[Any]:
            with shard.reading() as edge:
                return edge.query(request)

        per_shard = self._fan_out(one, self.shards)
        if len(per_shard) == 1:
            merged = per_shard[0]
        else:
            key = self._order_key(spec.using)
            merged = [
                hit.point
                for hit in heapq.merge(
                    *[[Hit(key(p.score), p) for p in hits] for hits in per_shard],
                    key=lambda h: h.key,
                )
            ]
        return [convert.scored_point(p) for p in merged[spec.offset : spec.offset + spec.limit]]

    def vector_of(self, raw_id: Any, using: str) -> list[float]:
        """The stored vector of a point (for query-by-id)."""
        pid = canonical_id(raw_id)
        shard = self.shards[shard_of(pid, self.shard_number)]
        with shard.reading() as edge:
            found = edge.retrieve([engine_id(pid)], False, [using] if using else True)
        if not found:
            raise bad_input(f"No point with id {pid} found")
        vector = found[0].vector
        if isinstance(vector, dict):
            vector = vector.get(using)
        if not isinstance(vector, list):
            raise bad_input(f"Point {pid} has no vector `{using}`")
        return vector

    def retrieve(self, ids: Sequence[Any], with_payload: Any, with_vector: Any) -> list[m.Record]:
        payload = convert.with_payload(with_payload)
        vector = convert.with_vector(with_vector)
        groups = self._by_shard(ids)
        found: dict[PointId, m.Record] = {}
        for index, engine_ids in groups.items():
            with self.shards[index].reading() as edge:
                for rec in edge.retrieve(engine_ids, payload, vector):
                    converted = convert.record(rec)
                    found[converted.id] = converted
        order = []
        for raw in ids:
            pid = canonical_id(raw)
            if pid in found and pid not in order:
                order.append(pid)
        return [found[pid] for pid in order]

    def scroll(
        self,
        offset: Any,
        limit: int,
        flt: m.Filter | None,
        with_payload: Any,
        with_vector: Any,
    ) -> tuple[list[m.Record], PointId | None]:
        """Points in Qdrant's id order from ``offset``, and the next page's first id."""
        start = engine_id(canonical_id(offset)) if offset is not None else None
        request = qe.ScrollRequest(
            offset=start,
            limit=limit + 1,
            filter=convert.filter_(flt),
            with_payload=convert.with_payload(with_payload),
            with_vector=convert.with_vector(with_vector),
        )

        def one(shard: ShardHandle) -> list[Any]:
            with shard.reading() as edge:
                return edge.scroll(request)[0]

        records = [convert.record(r) for hits in self._fan_out(one, self.shards) for r in hits]
        records.sort(key=lambda r: id_order(r.id))
        next_offset = records[limit].id if len(records) > limit else None
        return records[:limit], next_offset

    def count(self, flt: m.Filter | None) -> int:
        request = qe.CountRequest(exact=True, filter=convert.filter_(flt))

        def one(shard: ShardHandle) -> int:
            with shard.reading() as edge:
                return edge.count(request)

        return sum(self._fan_out(one, self.shards))

    # ------------------------------------------------------------------ status

    def bytes_per_point(self) -> int:
        return sum(4 * p.size for p in self.vectors.values())

    def shard_infos(self) -> list[qe.ShardInfo]:
        return [shard.info() for shard in self.shards]

    def status(self) -> m.CollectionStatus:
        if self.index_error:
            return m.CollectionStatus.RED
        if any(s.building or self.index_pending(s) for s in self.shards):
            return m.CollectionStatus.YELLOW
        return m.CollectionStatus.GREEN

    def index_pending(self, shard: ShardHandle) -> bool:
        """Whether ``shard`` holds enough unindexed vectors for an HNSW build."""
        threshold_kb = self.optimizer.get("indexing_threshold")
        if not threshold_kb or shard.dirty_since is None:
            return False  # 0 disables indexing, as in Qdrant
        info = shard.info()
        unindexed = info.points_count * len(self.vectors) - info.indexed_vectors_count
        unindexed_kb = unindexed * (self.bytes_per_point() / len(self.vectors)) / 1024
        return unindexed_kb >= threshold_kb

    def info(self) -> m.CollectionInfo:
        infos = self.shard_infos()
        schema: dict[str, m.PayloadIndexInfo] = {}
        for info in infos:
            for key, index in info.payload_schema.items():
                if key in schema:
                    schema[key].points += index.points
                else:
                    schema[key] = m.PayloadIndexInfo(
                        data_type=convert.SCHEMA_NAMES[index.data_type], points=index.points
                    )
        vectors: Any = self.vectors[""] if list(self.vectors) == [""] else self.vectors
        optimizer_status: Any = (
            m.OptimizersStatusOneOf1(error=self.index_error)
            if self.index_error
            else m.OptimizersStatusOneOf.OK
        )
        return m.CollectionInfo(
            status=self.status(),
            optimizer_status=optimizer_status,
            indexed_vectors_count=sum(i.indexed_vectors_count for i in infos),
            points_count=sum(i.points_count for i in infos),
            segments_count=sum(i.segments_count for i in infos),
            config=m.CollectionConfig(
                params=m.CollectionParams(
                    vectors=vectors,
                    shard_number=self.shard_number,
                    replication_factor=1,
                    write_consistency_factor=1,
                    on_disk_payload=self.request.on_disk_payload
                    if self.request.on_disk_payload is not None
                    else True,
                ),
                hnsw_config=m.HnswConfig(**self.hnsw),
                optimizer_config=m.OptimizersConfig(**self.optimizer),
                wal_config=m.WalConfig(**self.wal),
                quantization_config=self.request.quantization_config,
            ),
            payload_schema=schema,
            created_at=self.created_at or None,
        )

    def cluster(self, peer_id: int) -> m.CollectionClusterInfo:
        return m.CollectionClusterInfo(
            peer_id=peer_id,
            shard_count=self.shard_number,
            local_shards=[
                m.LocalShardInfo(
                    shard_id=shard.shard_id,
                    points_count=info.points_count,
                    state=m.ReplicaState.ACTIVE,
                )
                for shard, info in zip(self.shards, self.shard_infos(), strict=True)
            ],
            remote_shards=[],
            shard_transfers=[],
        )

    def wait_index_idle(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while any(s.building for s in self.shards) and time.monotonic() < deadline:
            time.sleep(0.05)
