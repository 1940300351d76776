"""Token-based chunking with the embedding model's own tokenizer.

Chunks are windows of ``chunk_size`` tokens that overlap by ``overlap`` tokens. Window
edges snap to word starts, and each chunk is cut from the original text at the tokens'
character offsets, so a chunk re-tokenizes to the tokens it was counted with and, with
[CLS] and [SEP], always fits the model's context (512 tokens for all-MiniLM-L6-v2).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from magicaf_nb import models
from magicaf_nb.ingest.documents import Document
from magicaf_nb.ingest.errors import IngestError
from magicaf_nb.ingest.ids import point_id

SPECIAL_TOKENS = 2  # [CLS] and [SEP], added by the embedding server to every input
MIN_CHUNK_SIZE = 8
# Long documents are tokenized in sections of about this many characters (cut at a
# paragraph, line or space), so a 20 MB file never builds millions of offsets at once.
SECTION_CHARS = 100_000


@dataclass(frozen=True)
class Chunk:
    """One chunk of one document, ready to embed: its text and its place in the source."""

    source: str
    title: str
    index: int
    text: str
    tokens: int

    @property
    def id(self) -> str:
        return point_id(self.source, self.text)

    def payload(self, run_id: str) -> dict[str, object]:
        return {
            "source": self.source,
            "title": self.title,
            "chunk_index": self.index,
            "text": self.text,
            "run_id": run_id,
        }


@dataclass(frozen=True)
class Span:
    """Where a chunk sits in its text, how many tokens it has, and if it cuts no word."""

    start: int
    end: int
    tokens: int
    whole_words: bool


@functools.lru_cache(maxsize=4)
def _load_tokenizer(path: str) -> Tokenizer:
    tokenizer = Tokenizer.from_file(path)
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def model_tokenizer(model_dir: Path | None = None) -> tuple[Tokenizer, int]:
    """The embedding model's tokenizer (truncation and padding off) and its context length."""
    folder = Path(model_dir) if model_dir is not None else models.minilm_source_dir()
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise IngestError(
            f"No tokenizer.json in {folder}. Fix: point model_dir at the embedding model's "
            "Hugging Face folder (the one with tokenizer.json and config.json)."
        )
    context = 512
    config = folder / "config.json"
    if config.is_file():
        context = int(json.loads(config.read_text()).get("max_position_embeddings", context))
    return _load_tokenizer(str(tokenizer_file)), context


def sections(text: str, limit: int = SECTION_CHARS) -> list[tuple[int, str]]:
    """Split ``text`` into (offset, part) pieces of at most ``limit`` chars at natural breaks."""
    out: list[tuple[int, str]] = []
    start = 0
    while len(text) - start > limit:
        window = text[start : start + limit]
        cut = limit  # no break in the second half of the window: cut inside a word
        for mark in ("\n\n", "\n", " "):
            found = window.rfind(mark)
            if found > limit // 2:
                cut = found + len(mark)
                break
        out.append((start, text[start : start + cut]))
        start += cut
    out.append((start, text[start:]))
    return out


def windows(word_ids: Sequence[int | None], size: int, overlap: int) -> list[tuple[int, int]]:
    """Token windows [start, end) of at most ``size`` tokens, edges on word starts if possible."""
    n = len(word_ids)
    word_start = [i == 0 or word_ids[i] != word_ids[i - 1] for i in range(n)] + [True]
    spans: list[tuple[int, int]] = []
    start = previous_end = 0
    while start < n:
        end = min(start + size, n)
        back = end
        while back > start and not word_start[back]:
            back -= 1
        # Snap back to a word start unless that would add no new token (a word longer
        # than what is left of the window): then cut inside the word.
        if back > max(start, previous_end):
            end = back
        previous_end = end
        spans.append((start, end))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        snapped = nxt
        while snapped < end and not word_start[snapped]:
            snapped += 1
        start = snapped if snapped < end else nxt  # inside one long word: keep the overlap
    return spans


class Chunker:
    """Split documents into overlapping windows of the embedding model's tokens.

    >>> Chunker(chunk_size=128, overlap=16).split("Some long text ...")  # doctest: +SKIP
    """

    def __init__(
        self, chunk_size: int = 256, overlap: int = 32, *, model_dir: Path | None = None
    ) -> None:
        self.tokenizer, self.context = model_tokenizer(model_dir)
        self.max_chunk_size = self.context - SPECIAL_TOKENS
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise IngestError(f"chunk_size={chunk_size!r} is not a whole number of tokens.")
        if chunk_size > self.max_chunk_size:
            raise IngestError(
                f"chunk_size={chunk_size} tokens plus [CLS] and [SEP] exceeds the embedding "
                f"model's {self.context}-token context, so the server would truncate or refuse "
                f"it. Fix: use chunk_size <= {self.max_chunk_size} (256 is the default)."
            )
        if chunk_size < MIN_CHUNK_SIZE:
            raise IngestError(
                f"chunk_size={chunk_size} tokens is too small to carry meaning. Fix: use "
                f"{MIN_CHUNK_SIZE} to {self.max_chunk_size} (256 is the default)."
            )
        if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
            raise IngestError(f"overlap={overlap!r}: use a whole number of tokens >= 0.")
        if overlap >= chunk_size:
            raise IngestError(
                f"overlap={overlap} must be smaller than chunk_size={chunk_size}, or no "
                f"window would move forward. Fix: use overlap <= {chunk_size // 2}."
            )
        self.chunk_size = chunk_size
        self.overlap = overlap

    def __repr__(self) -> str:
        return f"Chunker(chunk_size={self.chunk_size}, overlap={self.overlap})"

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without [CLS]/[SEP]."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def char_spans(self, texts: Sequence[str]) -> list[list[Span]]:
        """For each text, its chunks' character spans with their token counts."""
        pieces = [(i, off, part) for i, text in enumerate(texts) for off, part in sections(text)]
        encodings = self.tokenizer.encode_batch(
            [part for _, _, part in pieces], add_special_tokens=False
        )
        out: list[list[Span]] = [[] for _ in texts]
        for (i, off, _), encoding in zip(pieces, encodings, strict=True):
            offsets, word_ids = encoding.offsets, encoding.word_ids
            n = len(word_ids)
            for s, e in windows(word_ids, self.chunk_size, self.overlap):
                whole_words = (s == 0 or word_ids[s] != word_ids[s - 1]) and (
                    e == n or word_ids[e] != word_ids[e - 1]
                )
                out[i].append(
                    Span(off + offsets[s][0], off + offsets[e - 1][1], e - s, whole_words)
                )
        return out

    def _fit(self, text: str, span: tuple[int, int]) -> tuple[str, int]:
        """The chunk text of ``span`` and its token count, shortened if it re-tokenizes longer.

        Only a window cut inside one very long word can re-tokenize differently.
        """
        start, end = span
        while True:
            chunk = text[start:end]
            count = self.count_tokens(chunk)
            if count <= self.chunk_size or end - start <= 1:
                return chunk, count
            end = start + max(1, (end - start) * self.chunk_size // count - 1)

    def split(self, text: str) -> list[str]:
        """The chunk texts of one text."""
        return [self._text(text, span)[0] for span in self.char_spans([text])[0]]

    def _text(self, text: str, span: Span) -> tuple[str, int]:
        # A window of whole words re-tokenizes to exactly its tokens (BERT's pre-tokenizer
        # splits on spaces and punctuation, and words tokenize independently); one cut
        # inside a word is re-counted and shortened if needed.
        if span.whole_words:
            return text[span.start : span.end], span.tokens
        return self._fit(text, (span.start, span.end))

    def chunk_documents(self, documents: Iterable[Document]) -> list[Chunk]:
        """Every chunk of every document, in order; identical chunks of one source appear once."""
        docs = list(documents)
        spans = self.char_spans([doc.text for doc in docs])
        chunks: list[Chunk] = []
        for doc, doc_spans in zip(docs, spans, strict=True):
            seen: set[str] = set()
            for span in doc_spans:
                chunk_text, count = self._text(doc.text, span)
                if not chunk_text.strip() or chunk_text in seen:
                    continue
                seen.add(chunk_text)
                chunks.append(Chunk(doc.source, doc.title, len(seen) - 1, chunk_text, count))
        return chunks
