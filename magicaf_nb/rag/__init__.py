"""MagicAF's RAG workflow: embed, search, filter, format, prompt, LLM, parse."""

from magicaf_nb.rag.result import STAGES, Evidence, RAGResult
from magicaf_nb.rag.steps import (
    CitationPromptBuilder,
    EvidenceFormatter,
    JsonParser,
    NumberedEvidenceFormatter,
    PromptBuilder,
    RawTextParser,
    ResultParser,
    cited_numbers,
)
from magicaf_nb.rag.vectorstore import VectorStore, as_filter
from magicaf_nb.rag.workflow import DEFAULT_COLLECTION, RAGWorkflow, RetrievalError

__all__ = [
    "DEFAULT_COLLECTION",
    "STAGES",
    "CitationPromptBuilder",
    "Evidence",
    "EvidenceFormatter",
    "JsonParser",
    "NumberedEvidenceFormatter",
    "PromptBuilder",
    "RAGResult",
    "RAGWorkflow",
    "RawTextParser",
    "ResultParser",
    "RetrievalError",
    "VectorStore",
    "as_filter",
    "cited_numbers",
]
