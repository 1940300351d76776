"""Translate qdrant-client's REST models to qdrant-edge objects, and engine results back.

Requests arrive as ``qdrant_client.http.models`` (the models the official client sends),
and responses leave as the same models, so the wire format is the client's own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models as m

from magicaf_nb.vector.errors import bad_input, not_supported
from magicaf_nb.vector.routing import canonical_id, engine_id, from_engine_id

DISTANCES = {
    m.Distance.COSINE: qe.Distance.Cosine,
    m.Distance.EUCLID: qe.Distance.Euclid,
    m.Distance.DOT: qe.Distance.Dot,
    m.Distance.MANHATTAN: qe.Distance.Manhattan,
}
# Distances whose score is a distance: smaller is better, results ascend.
ASCENDING = {m.Distance.EUCLID, m.Distance.MANHATTAN}

SCHEMA_TYPES = {
    m.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
    m.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
    m.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
    m.PayloadSchemaType.GEO: qe.PayloadSchemaType.Geo,
    m.PayloadSchemaType.TEXT: qe.PayloadSchemaType.Text,
    m.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool,
    m.PayloadSchemaType.DATETIME: qe.PayloadSchemaType.Datetime,
    m.PayloadSchemaType.UUID: qe.PayloadSchemaType.Uuid,
}
SCHEMA_NAMES = {engine: rest for rest, engine in SCHEMA_TYPES.items()}

DATATYPES = {
    m.Datatype.FLOAT32: qe.VectorStorageDatatype.Float32,
    m.Datatype.FLOAT16: qe.VectorStorageDatatype.Float16,
    m.Datatype.UINT8: qe.VectorStorageDatatype.Uint8,
}

# Qdrant's defaults (its config.yaml), used where a request leaves a setting out.
HNSW_DEFAULTS: dict[str, Any] = {
    "m": 16,
    "ef_construct": 100,
    "full_scan_threshold": 10000,
    "max_indexing_threads": 0,
    "on_disk": False,
    "payload_m": None,
}
OPTIMIZER_DEFAULTS: dict[str, Any] = {
    "deleted_threshold": 0.2,
    "vacuum_min_vector_number": 1000,
    "default_segment_number": 0,
    "max_segment_size": None,
    "memmap_threshold": None,
    "indexing_threshold": 10000,
    "flush_interval_sec": 5,
    "max_optimization_threads": None,
}
WAL_DEFAULTS: dict[str, Any] = {"wal_capacity_mb": 32, "wal_segments_ahead": 0}


# ---------------------------------------------------------------- collection configuration


def merged(defaults: dict[str, Any], diff: Any) -> dict[str, Any]:
    """Qdrant's "diff" semantics: the fields a request sets override the defaults."""
    values = dict(defaults)
    if diff is not None:
        values.update({k: v for k, v in diff.model_dump().items() if v is not None})
    return values


def hnsw(values: dict[str, Any]) -> qe.HnswIndexConfig:
    return qe.HnswIndexConfig(
        m=int(values["m"]),
        ef_construct=int(values["ef_construct"]),
        full_scan_threshold=int(values["full_scan_threshold"]),
        max_indexing_threads=int(values.get("max_indexing_threads") or 0),
        on_disk=values.get("on_disk"),
        payload_m=values.get("payload_m"),
    )


def quantization(config: Any) -> Any:
    """qdrant-edge's quantization config for a REST one (scalar, product, binary), or None."""
    if config is None:
        return None
    if isinstance(config, m.ScalarQuantization):
        s = config.scalar
        return qe.ScalarQuantizationConfig(
            type=qe.ScalarType.Int8, quantile=s.quantile, always_ram=s.always_ram
        )
    if isinstance(config, m.ProductQuantization):
        ratio = config.product.compression.value.upper()  # "x4" -> "X4"
        return qe.ProductQuantizationConfig(
            compression=getattr(qe.CompressionRatio, ratio), always_ram=config.product.always_ram
        )
    if isinstance(config, m.BinaryQuantization):
        return qe.BinaryQuantizationConfig(always_ram=config.binary.always_ram)
    raise not_supported(f"Quantization {type(config).__name__}")


def vector_params(params: m.VectorParams) -> qe.EdgeVectorParams:
    if params.multivector_config is not None:
        raise not_supported("Multivectors (multivector_config)")
    if params.size < 1 or params.size > 65536:
        raise bad_input(f"vector size {params.size} is out of range: use 1 to 65536")
    datatype = DATATYPES.get(params.datatype) if params.datatype is not None else None
    return qe.EdgeVectorParams(
        size=params.size,
        distance=DISTANCES[params.distance],
        on_disk=params.on_disk,
        datatype=datatype,
        quantization_config=quantization(params.quantization_config),
        hnsw_config=hnsw(merged(HNSW_DEFAULTS, params.hnsw_config))
        if params.hnsw_config is not None
        else None,
    )


def optimizers(values: dict[str, Any]) -> qe.EdgeOptimizersConfig:
    return qe.EdgeOptimizersConfig(
        deleted_threshold=values.get("deleted_threshold"),
        vacuum_min_vector_number=values.get("vacuum_min_vector_number"),
        default_segment_number=values.get("default_segment_number"),
        max_segment_size=values.get("max_segment_size"),
        indexing_threshold=values.get("indexing_threshold"),
    )


# ---------------------------------------------------------------- filters and selectors


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return list(value) if isinstance(value, list) else [value]


def _match(match: Any) -> Any:
    if isinstance(match, m.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, m.MatchAny):
        return qe.MatchAny(list(match.any))
    if isinstance(match, m.MatchExcept):
        return qe.MatchExcept(list(match.except_))
    if isinstance(match, m.MatchText):
        return qe.MatchText(match.text)
    if isinstance(match, m.MatchTextAny):
        return qe.MatchTextAny(match.text_any)
    if isinstance(match, m.MatchPhrase):
        return qe.MatchPhrase(match.phrase)
    if isinstance(match, m.MatchPrefix):
        return qe.MatchPrefix(match.prefix)
    if isinstance(match, m.MatchSubstring):
        return qe.MatchSubstring(match.substring)
    raise not_supported(f"Match condition {type(match).__name__}")


def _iso(value: dt.date | dt.datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def _range(rng: Any) -> Any:
    if isinstance(rng, m.Range):
        return qe.RangeFloat(gte=rng.gte, gt=rng.gt, lte=rng.lte, lt=rng.lt)
    return qe.RangeDateTime(gte=_iso(rng.gte), gt=_iso(rng.gt), lte=_iso(rng.lte), lt=_iso(rng.lt))


def _geo(point: m.GeoPoint) -> qe.GeoPoint:
    return qe.GeoPoint(lon=point.lon, lat=point.lat)


def _field(cond: m.FieldCondition) -> qe.FieldCondition:
    kwargs: dict[str, Any] = {"key": cond.key}
    if cond.match is not None:
        kwargs["match"] = _match(cond.match)
    if cond.range is not None:
        kwargs["range"] = _range(cond.range)
    if cond.geo_bounding_box is not None:
        box = cond.geo_bounding_box
        kwargs["geo_bounding_box"] = qe.GeoBoundingBox(_geo(box.top_left), _geo(box.bottom_right))
    if cond.geo_radius is not None:
        kwargs["geo_radius"] = qe.GeoRadius(_geo(cond.geo_radius.center), cond.geo_radius.radius)
    if cond.geo_polygon is not None:
        poly = cond.geo_polygon
        kwargs["geo_polygon"] = qe.GeoPolygon(
            [_geo(p) for p in poly.exterior.points],
            [[_geo(p) for p in ring.points] for ring in poly.interiors] if poly.interiors else None,
        )
    if cond.values_count is not None:
        vc = cond.values_count
        kwargs["values_count"] = qe.ValuesCount(lt=vc.lt, gt=vc.gt, lte=vc.lte, gte=vc.gte)
    if cond.is_empty is not None:
        kwargs["is_empty"] = cond.is_empty
    if cond.is_null is not None:
        kwargs["is_null"] = cond.is_null
    return qe.FieldCondition(**kwargs)


def condition(cond: Any) -> Any:
    if isinstance(cond, m.FieldCondition):
        return _field(cond)
    if isinstance(cond, m.Filter):
        return filter_(cond)
    if isinstance(cond, m.IsEmptyCondition):
        return qe.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, m.IsNullCondition):
        return qe.IsNullCondition(cond.is_null.key)
    if isinstance(cond, m.HasIdCondition):
        return qe.HasIdCondition({engine_id(canonical_id(i)) for i in cond.has_id})
    if isinstance(cond, m.HasVectorCondition):
        return qe.HasVectorCondition(cond.has_vector)
    if isinstance(cond, m.NestedCondition):
        return qe.NestedCondition(cond.nested.key, filter_(cond.nested.filter))
    raise not_supported(f"Filter condition {type(cond).__name__}")


def filter_(flt: m.Filter | None) -> qe.Filter | None:
    if flt is None:
        return None

    def conds(value: Any) -> list[Any] | None:
        items = _as_list(value)
        return None if items is None else [condition(c) for c in items]

    min_should = None
    if flt.min_should is not None:
        min_should = qe.MinShould(
            [condition(c) for c in flt.min_should.conditions], flt.min_should.min_count
        )
    return qe.Filter(
        must=conds(flt.must),
        should=conds(flt.should),
        must_not=conds(flt.must_not),
        min_should=min_should,
    )


def with_payload(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool | list):
        return value
    if isinstance(value, m.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(value.include))
    if isinstance(value, m.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(value.exclude))
    raise bad_input(f"with_payload={value!r}: use true, false, a list of keys, include or exclude")


def with_vector(value: Any) -> Any:
    if value is None or isinstance(value, bool | list):
        return value
    raise bad_input(f"with_vector={value!r}: use true, false or a list of vector names")


def search_params(params: m.SearchParams | None) -> qe.SearchParams | None:
    if params is None:
        return None
    quant = None
    if params.quantization is not None:
        q = params.quantization
        quant = qe.QuantizationSearchParams(
            ignore=bool(q.ignore), rescore=q.rescore, oversampling=q.oversampling
        )
    if params.hnsw_ef is not None and params.hnsw_ef < 1:
        raise bad_input(f"hnsw_ef={params.hnsw_ef}: use a positive integer")
    return qe.SearchParams(
        hnsw_ef=params.hnsw_ef,
        exact=bool(params.exact),
        quantization=quant,
        indexed_only=bool(params.indexed_only),
    )


def field_schema(schema: Any) -> Any:
    """The engine's payload index type for ``CreateFieldIndex.field_schema``."""
    if schema is None:
        raise bad_input("field_schema is required: give a type such as keyword, integer or float")
    if isinstance(schema, m.PayloadSchemaType):
        return SCHEMA_TYPES[schema]
    if isinstance(schema, str):
        return SCHEMA_TYPES[m.PayloadSchemaType(schema)]
    kind = getattr(schema, "type", None)
    if kind is not None:
        return SCHEMA_TYPES[m.PayloadSchemaType(getattr(kind, "value", kind))]
    raise not_supported(f"Payload index schema {type(schema).__name__}")


# ---------------------------------------------------------------- results


def scored_point(point: Any) -> m.ScoredPoint:
    return m.ScoredPoint(
        id=from_engine_id(point.id),
        version=point.version,
        score=point.score,
        payload=point.payload,
        vector=point.vector,
    )


def record(point: Any) -> m.Record:
    return m.Record(id=from_engine_id(point.id), payload=point.payload, vector=point.vector)
