"""RAG workflow and app tier against the real stack (embedding, vector server, LLM, app)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from magicaf_nb import GenerationConfig
from magicaf_nb.ingest import Document, ingest
from magicaf_nb.rag import JsonParser, RAGWorkflow, RetrievalError, cited_numbers
from magicaf_nb.stack import LocalStack

DOCS = [
    Document(
        "doc:try",
        "try",
        "The try statement specifies exception handlers and cleanup "
        "code for a group of statements. An except clause catches the exception.",
    ),
    Document(
        "doc:eiffel",
        "Eiffel",
        "The Eiffel Tower is a wrought-iron tower in Paris, "
        "completed in 1889 for the World's Fair.",
    ),
    Document(
        "doc:photo",
        "Photosynthesis",
        "Photosynthesis converts light energy into "
        "chemical energy stored in glucose, inside the chloroplasts of plant cells.",
    ),
]
SMALL = GenerationConfig(max_tokens=24)


@pytest.fixture(scope="module")
def rag_stack(stack: LocalStack) -> LocalStack:
    endpoints = stack.endpoints()
    report = ingest(
        DOCS,
        qdrant_url=endpoints["QDRANT_URL"],
        collection=endpoints["QDRANT_COLLECTION"],
        embedding=stack.embedding_config(),
        progress=False,
    )
    assert report.summary["chunks"] == 3
    return stack


def test_workflow_answers_with_ranked_evidence_and_stage_timings(rag_stack: LocalStack) -> None:
    workflow = RAGWorkflow.from_endpoints(rag_stack.endpoints(), top_k=2, generation=SMALL)
    result = workflow.ask("How do I catch an exception?")
    assert result.evidence_count == 2
    assert result.evidence[0].source == "doc:try"
    assert result.evidence[0].score > result.evidence[1].score
    assert result.result.strip() and result.raw_llm_output.strip()
    assert result.usage["prompt_tokens"] > 40 and result.usage["completion_tokens"] > 0
    stages = result.stage_table().set_index("stage")["ms"]
    assert (stages > 0).all()
    assert result.timings_ms["total"] >= stages.sum() - 1e-6
    assert stages.idxmax() == "llm"


def test_min_score_and_filter_select_evidence(rag_stack: LocalStack) -> None:
    workflow = RAGWorkflow.from_endpoints(rag_stack.endpoints(), top_k=3, generation=SMALL)
    scores = [e.score for e in workflow.retrieve("Where is the Eiffel Tower?")]
    assert len(scores) == 3
    cut = (scores[0] + scores[1]) / 2
    kept = workflow.retrieve("Where is the Eiffel Tower?", min_score=cut)
    assert [e.source for e in kept] == ["doc:eiffel"]
    only = workflow.retrieve("Where is the Eiffel Tower?", filter={"source": "doc:photo"})
    assert [e.source for e in only] == ["doc:photo"]


@dataclass
class Verdict:
    answer: str
    confidence: float = 0.0


def test_json_parser_and_citations() -> None:
    parsed = JsonParser(Verdict).parse('Sure: {"answer": "Paris", "confidence": 0.9} done')
    assert parsed == Verdict("Paris", 0.9)
    with pytest.raises(ValueError, match="no JSON object"):
        JsonParser(Verdict).parse("no json here")
    assert cited_numbers("See [1] and [2, 3]; not [x].") == [1, 2, 3]


def test_missing_collection_is_a_clear_error(rag_stack: LocalStack) -> None:
    workflow = RAGWorkflow.from_endpoints(rag_stack.endpoints(), collection="nope")
    with pytest.raises(RetrievalError, match=r"'nope' does not exist.*ingest"):
        workflow.ask("anything")


def test_app_instances_serve_ask_behind_the_balancer(rag_stack: LocalStack) -> None:
    url = rag_stack.endpoints()["APP_URL"]
    body = {"question": "Where is the Eiffel Tower?", "top_k": 1, "max_tokens": 8}
    answer = httpx.post(f"{url}/ask", json=body, timeout=120).json()
    assert answer["evidence"][0]["source"] == "doc:eiffel"
    assert answer["evidence_count"] == 1 and answer["result"]
    assert set(answer["timings_ms"]) >= {"embed", "search", "llm", "total"}
    event = rag_stack.scale("app", 2)
    instances = {
        httpx.post(f"{url}/ask", json=body, timeout=120).json()["instance"] for _ in range(4)
    }
    assert instances == {"app-0", f"app-{event.added[0]}"}
    bad = httpx.post(f"{url}/ask", json={"question": ""}, timeout=30)
    assert bad.status_code == 400 and "question" in bad.json()["error"]
    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'magicaf_app_requests_total{outcome="ok"}' in metrics
    rag_stack.scale("app", 1)
