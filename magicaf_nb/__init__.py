"""MagicAF scaling workbench: launch, scale and measure a RAG stack from Jupyter."""

from magicaf_nb.config import (
    EmbeddingConfig,
    GenerationConfig,
    LlmConfig,
    StackSpec,
    VectorStoreConfig,
)

__all__ = [
    "EmbeddingConfig",
    "GenerationConfig",
    "LlmConfig",
    "StackSpec",
    "VectorStoreConfig",
]
__version__ = "0.1.0"
