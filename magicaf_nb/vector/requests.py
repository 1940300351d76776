"""Request bodies: parsed with qdrant-client's models, plus the two it no longer ships.

qdrant-client 1.20 dropped ``SearchRequest`` (it only calls ``points/query``), but Qdrant
still serves ``points/search``; those two models mirror Qdrant's REST schema and reuse
the client's ``Filter``, ``SearchParams`` and selector models.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import AliasChoices, BaseModel, Field, TypeAdapter, ValidationError
from qdrant_client.http import models as m

from magicaf_nb.vector.errors import ApiError, format_error, validation_error

M = TypeVar("M")


class NamedVector(BaseModel):
    name: str
    vector: list[float]


class SearchRequest(BaseModel):
    """Qdrant's ``POST /collections/{name}/points/search`` body."""

    shard_key: Any = None
    vector: list[float] | NamedVector
    filter: m.Filter | None = None
    params: m.SearchParams | None = None
    limit: int
    offset: int | None = None
    with_payload: m.WithPayloadInterface | None = None
    with_vector: m.WithVector | None = Field(
        default=None, validation_alias=AliasChoices("with_vector", "with_vectors")
    )
    score_threshold: float | None = None


class SearchRequestBatch(BaseModel):
    searches: list[SearchRequest]


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def parse(body: bytes, model: Any) -> Any:
    """Validate a JSON body against ``model``; Qdrant's 400 with the reason if it does not fit."""
    if not body.strip():
        raise format_error("EOF while parsing a value at line 1 column 0")
    adapter = _ADAPTERS.get(model)
    if adapter is None:
        adapter = _ADAPTERS[model] = TypeAdapter(model)
    try:
        return adapter.validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if not str(p)[0].isupper())
        if first.get("type") == "json_invalid":
            raise format_error(first["msg"]) from None
        raise format_error(f"{first['msg']}" + (f" at `{where}`" if where else "")) from None


def check_count(name: str, value: int | None, *, minimum: int) -> None:
    """Negative counts are a format error (Qdrant reads them as unsigned); zero may be too few."""
    if value is None:
        return
    if value < 0:
        raise format_error(f"invalid value: integer `{value}`, expected usize for `{name}`")
    if value < minimum:
        raise validation_error(f"{name}: value {value} invalid, must be {minimum} or larger")


def flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ApiError(400, f"Format error in query parameters: `{value}` is not true or false")
