"""The vector store as the RAG workflow sees it: qdrant-client, one async client per loop,
so a real Qdrant (``QDRANT_URL``) and the workbench's own server are interchangeable."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any

from qdrant_client import AsyncQdrantClient
from qdrant_client.http import models

from magicaf_nb.config import VectorStoreConfig


class VectorStore:
    def __init__(self, config: VectorStoreConfig) -> None:
        self.config = config
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncQdrantClient]
        self._clients = weakref.WeakKeyDictionary()

    def client(self) -> AsyncQdrantClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = AsyncQdrantClient(
                url=self.config.url,
                api_key=self.config.api_key,
                timeout=int(self.config.timeout_s),
                prefer_grpc=False,
                check_compatibility=False,
            )
            self._clients[loop] = client
        return client


def as_filter(spec: models.Filter | Mapping[str, Any] | None) -> models.Filter | None:
    """A qdrant Filter, or ``{"field": value}`` meaning every field must match its value."""
    if spec is None or isinstance(spec, models.Filter):
        return spec
    return models.Filter(
        must=[
            models.FieldCondition(key=key, match=models.MatchValue(value=value))
            for key, value in spec.items()
        ]
    )
