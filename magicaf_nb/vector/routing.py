"""Point ids: validation, canonical form, stable shard placement and Qdrant's id order.

Qdrant ids are unsigned integers or UUIDs. A point goes to shard
``blake2b(id bytes) mod shard_number``: stable across processes and restarts (unlike
Python's ``hash``), and spread evenly whatever pattern the ids follow.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from magicaf_nb.vector.errors import format_error

PointId = int | str
MAX_ID = 2**64 - 1


def canonical_id(value: Any) -> PointId:
    """An int in [0, 2**64) or a canonical lowercase UUID string; 400 for anything else."""
    if isinstance(value, bool):
        raise format_error(f"point id {value!r} is a boolean: use an unsigned integer or a UUID")
    if isinstance(value, int):
        if not 0 <= value <= MAX_ID:
            raise format_error(
                f"point id {value} is out of range: use an unsigned 64-bit integer or a UUID"
            )
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise format_error(
                f"point id {value!r} is neither an unsigned integer nor a UUID"
            ) from None
    raise format_error(f"point id {value!r} is neither an unsigned integer nor a UUID")


def engine_id(pid: PointId) -> int | uuid.UUID:
    """The id as qdrant-edge takes it."""
    return pid if isinstance(pid, int) else uuid.UUID(pid)


def from_engine_id(value: Any) -> PointId:
    """The id qdrant-edge returned, as the REST API writes it."""
    return value if isinstance(value, int) else str(value)


def shard_of(pid: PointId, shard_number: int) -> int:
    if shard_number == 1:
        return 0
    raw = pid.to_bytes(8, "little") if isinstance(pid, int) else uuid.UUID(pid).bytes
    digest = hashlib.blake2b(raw, digest_size=8).digest()
    return int.from_bytes(digest, "little") % shard_number


def id_order(pid: PointId) -> tuple[int, int]:
    """Qdrant's scroll order: integer ids first, then UUIDs by their 128-bit value."""
    return (0, pid) if isinstance(pid, int) else (1, uuid.UUID(pid).int)
