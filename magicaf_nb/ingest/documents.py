"""``Document``, the unit readers produce, and the built-in sample corpus."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    """One text to ingest. ``source`` identifies it (a path, ``pydoc:topic``, a row id)."""

    source: str
    title: str
    text: str


def heading_title(text: str, fallback: str) -> str:
    """The first non-blank line of ``text`` stripped of Markdown ``#`` marks, else ``fallback``."""
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line:
            return line[:200]
    return fallback


def sample_corpus() -> list[Document]:
    """The Python language reference topics that ship with CPython (``pydoc_data.topics``).

    One document per topic, ``source`` like ``pydoc:assert``; no download needed. The
    texts are those of the running Python, so they differ slightly between versions.
    """
    from pydoc_data.topics import topics

    return [
        Document(f"pydoc:{name}", heading_title(text, name), text)
        for name, text in sorted(topics.items())
        if text.strip()
    ]
