"""Clients for the stack's wire formats: async at the core, sync wrappers for notebooks."""

from magicaf_nb.services.embeddings import EmbeddingBatch, EmbeddingClient
from magicaf_nb.services.errors import ServiceError
from magicaf_nb.services.llm import ChatResult, LlmClient
from magicaf_nb.services.sync import run_sync

__all__ = [
    "ChatResult",
    "EmbeddingBatch",
    "EmbeddingClient",
    "LlmClient",
    "ServiceError",
    "run_sync",
]
