"""Ingestion: read a corpus, chunk it by the embedding model's tokens, embed and upsert it.

>>> report = ingest("sample", qdrant_url=url, collection="docs",          # doctest: +SKIP
...                 embedding=stack.embedding_config())

Modules: ``documents`` (``Document``, the sample corpus), ``formats`` and ``readers``
(files, folders, DataFrames, with a per-file report), ``chunking`` (``Chunker``), ``ids``
(deterministic point ids), ``store`` (the collection, via qdrant-client), ``pipeline``
(``aingest``/``ingest``), ``report`` (``IngestReport``).
"""

from magicaf_nb.ingest.chunking import Chunk, Chunker
from magicaf_nb.ingest.documents import Document, sample_corpus
from magicaf_nb.ingest.errors import IngestError
from magicaf_nb.ingest.ids import point_id
from magicaf_nb.ingest.pipeline import aingest, ingest
from magicaf_nb.ingest.readers import DEFAULT_MAX_BYTES, read_dataframe, read_folder
from magicaf_nb.ingest.report import IngestReport

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Chunk",
    "Chunker",
    "Document",
    "IngestError",
    "IngestReport",
    "aingest",
    "ingest",
    "point_id",
    "read_dataframe",
    "read_folder",
    "sample_corpus",
]
