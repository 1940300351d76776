"""Deterministic point ids: the same chunk of the same source always gets the same id."""

from __future__ import annotations

import uuid

# A fixed namespace, so ids are stable across runs, machines and versions of this package.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/magicaf/magicaf-nb/ingest")


def point_id(source: str, chunk_text: str) -> str:
    """A UUID5 of ``source`` and ``chunk_text``: re-ingesting the same chunk rewrites nothing."""
    return str(uuid.uuid5(NAMESPACE, f"{source}\x1f{chunk_text}"))
