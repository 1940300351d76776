"""Benchmark of retrieval quality and RAG overhead on the sample corpus. Prints figures.

    .venv/bin/python benchmarks/bench_rag.py [--asks 10]

- hit@5: for each sample question, does the topic that answers it rank in the top 5?
  (goal >= 0.8)
- RAG overhead: end-to-end time of a query minus the sum of its service calls
  (embedding, vector search, LLM), p50 (goal <= 5 ms).
"""

from __future__ import annotations

import argparse

import pandas as pd
from qdrant_client import QdrantClient

from magicaf_nb import GenerationConfig, StackSpec
from magicaf_nb.ingest import ingest
from magicaf_nb.rag import RAGWorkflow
from magicaf_nb.rag.sample_questions import SAMPLE_QUESTIONS, retrieval_table
from magicaf_nb.stack import LocalStack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--asks", type=int, default=10)
    args = parser.parse_args()
    with LocalStack(StackSpec(name="bench-rag")) as stack:
        endpoints = stack.endpoints()
        client = QdrantClient(url=endpoints["QDRANT_URL"])
        if client.collection_exists("bench_rag"):  # time a fresh ingest, not a no-op re-run
            client.delete_collection("bench_rag")
        report = ingest(
            "sample",
            qdrant_url=endpoints["QDRANT_URL"],
            collection="bench_rag",
            embedding=stack.embedding_config(),
            progress=False,
        )
        workflow = RAGWorkflow.from_endpoints(
            endpoints, collection="bench_rag", top_k=5, generation=GenerationConfig(max_tokens=16)
        )
        table = retrieval_table([(q, workflow.retrieve(q.question)) for q in SAMPLE_QUESTIONS])
        timings = pd.DataFrame(
            [
                workflow.ask(SAMPLE_QUESTIONS[i % len(SAMPLE_QUESTIONS)].question).timings_ms
                for i in range(args.asks)
            ]
        )
    overhead = timings["total"] - timings[["embed", "search", "llm"]].sum(axis=1)
    with pd.option_context("display.width", 160, "display.max_colwidth", 70):
        print(table.to_string(index=False))
    rows = [
        ("sample corpus: documents", report.summary["documents"], ""),
        ("sample corpus: chunks", report.summary["chunks"], ""),
        ("sample corpus: ingest time", report.summary["seconds"], "s"),
        (f"hit@5 over {len(table)} questions (goal >= 0.8)", table["hit@5"].mean(), ""),
        ("hit@1", (table["rank"] == 1).mean(), ""),
        ("RAG overhead p50 (goal <= 5 ms)", overhead.median(), "ms"),
        ("RAG overhead p95", overhead.quantile(0.95), "ms"),
        ("embed p50", timings["embed"].median(), "ms"),
        ("search p50", timings["search"].median(), "ms"),
        ("llm p50 (16 tokens)", timings["llm"].median(), "ms"),
    ]
    print(pd.DataFrame(rows, columns=["figure", "value", "unit"]).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
