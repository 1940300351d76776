"""What a RAG query returns: the parsed result, its evidence, and where the time went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

STAGES = ("embed", "search", "filter", "format", "prompt", "llm", "parse")


@dataclass
class Evidence:
    """One retrieved chunk."""

    source: str
    chunk: int
    score: float
    text: str
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "chunk": self.chunk,
            "score": self.score,
            "title": self.title,
            "text": self.text,
        }


@dataclass
class RAGResult:
    """MagicAF's RAGResult: result, evidence, raw output, usage and per-stage timings."""

    question: str
    result: Any
    evidence: list[Evidence]
    raw_llm_output: str
    usage: dict[str, int | None] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    served_by: dict[str, str | None] = field(default_factory=dict)

    @property
    def evidence_count(self) -> int:
        return len(self.evidence)

    @property
    def total_ms(self) -> float:
        return self.timings_ms.get("total", sum(self.timings_ms.get(s, 0.0) for s in STAGES))

    def stage_table(self) -> pd.DataFrame:
        """Milliseconds per stage, and each stage's share of the whole."""
        rows = [(stage, self.timings_ms.get(stage, 0.0)) for stage in STAGES]
        table = pd.DataFrame(rows, columns=["stage", "ms"])
        table["share"] = table["ms"] / max(self.total_ms, 1e-9)
        return table

    def sources_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"#": i, **{k: v for k, v in e.to_dict().items() if k != "text"}}
                for i, e in enumerate(self.evidence, start=1)
            ],
            columns=["#", "source", "chunk", "score", "title"],
        )

    def to_dict(self) -> dict[str, Any]:
        result = self.result
        if hasattr(result, "model_dump"):
            result = result.model_dump()
        elif hasattr(result, "__dataclass_fields__"):
            from dataclasses import asdict

            result = asdict(result)
        return {
            "question": self.question,
            "result": result,
            "evidence": [e.to_dict() for e in self.evidence],
            "evidence_count": self.evidence_count,
            "raw_llm_output": self.raw_llm_output,
            "usage": self.usage,
            "timings_ms": self.timings_ms,
            "served_by": self.served_by,
        }

    def __str__(self) -> str:
        lines = [str(self.result).strip(), "", "Sources:"]
        lines += [
            f"  [{i}] {e.source} (chunk {e.chunk}, score {e.score:.3f})"
            for i, e in enumerate(self.evidence, start=1)
        ]
        stages = ", ".join(f"{s} {self.timings_ms.get(s, 0):.0f}" for s in STAGES)
        lines += ["", f"Timings (ms): {stages}; total {self.total_ms:.0f}"]
        return "\n".join(lines)
