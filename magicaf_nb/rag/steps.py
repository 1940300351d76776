"""The pluggable steps of a RAG workflow, as protocols with defaults."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from magicaf_nb.rag.result import Evidence

T = TypeVar("T")


class EvidenceFormatter(Protocol):
    def format(self, evidence: Sequence[Evidence]) -> str: ...


class PromptBuilder(Protocol):
    def build(self, question: str, evidence_text: str) -> list[dict[str, str]]: ...


class ResultParser(Protocol[T]):  # type: ignore[misc]
    def parse(self, raw: str) -> T: ...


class NumberedEvidenceFormatter:
    """``[1] (source) text`` blocks, numbered so that answers can cite them."""

    def __init__(self, max_chars_per_chunk: int = 1200) -> None:
        self.max_chars = max_chars_per_chunk

    def format(self, evidence: Sequence[Evidence]) -> str:
        blocks = []
        for i, item in enumerate(evidence, start=1):
            text = item.text.strip()
            if len(text) > self.max_chars:
                text = text[: self.max_chars].rsplit(" ", 1)[0] + " ..."
            blocks.append(f"[{i}] ({item.source}) {text}")
        return "\n\n".join(blocks)


class CitationPromptBuilder:
    """Wraps the evidence in ``<context>`` and asks for an answer citing sources by number."""

    system = (
        "You answer questions using only the numbered sources in <context>. "
        "Cite the sources you use by their number in square brackets, like [1]. "
        "If the context does not contain the answer, say that you do not know."
    )

    def build(self, question: str, evidence_text: str) -> list[dict[str, str]]:
        context = evidence_text or "(no sources found)"
        user = f"<context>\n{context}\n</context>\n\nQuestion: {question}\nAnswer:"
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


class RawTextParser:
    """The LLM's text, stripped."""

    def parse(self, raw: str) -> str:
        return raw.strip()


class JsonParser(Generic[T]):
    """The first JSON object in the output, into a dataclass or a pydantic model."""

    def __init__(self, into: type[T]) -> None:
        self.into = into

    def parse(self, raw: str) -> T:
        match = re.search(r"\{.*\}", raw, flags=re.DOTALL)
        if match is None:
            raise ValueError(f"The LLM output holds no JSON object: {raw[:200]!r}")
        data: Any = json.loads(match.group(0))
        if hasattr(self.into, "model_validate"):
            return self.into.model_validate(data)  # type: ignore[attr-defined,no-any-return]
        if dataclasses.is_dataclass(self.into):
            names = {f.name for f in dataclasses.fields(self.into)}
            return self.into(**{k: v for k, v in data.items() if k in names})
        raise TypeError(f"JsonParser needs a dataclass or pydantic model, not {self.into!r}.")


def cited_numbers(answer: str) -> list[int]:
    """The source numbers an answer cites, like ``[2]`` or ``[1, 3]``."""
    found = []
    for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", answer):
        found += [int(n) for n in group.split(",")]
    return sorted(set(found))
