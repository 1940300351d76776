"""The RAG commands of ``magicaf-nb``: ``ingest``, ``ask`` and ``demo``."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Mapping

from magicaf_nb.config import EmbeddingConfig, GenerationConfig
from magicaf_nb.rag import DEFAULT_COLLECTION, RAGResult, RAGWorkflow

DEMO_QUESTION = "How do I catch an exception raised inside a block of code?"


def endpoints_for(name: str) -> Mapping[str, str]:
    """The running stack's endpoints, else the environment's MagicAF variables."""
    from magicaf_nb.stack import LocalStack, StackError

    try:
        return LocalStack.attach(name).endpoints()
    except StackError:
        return dict(os.environ)


def print_result(result: RAGResult) -> None:
    print(str(result.result).strip())
    print("\nSources:")
    for i, item in enumerate(result.evidence, start=1):
        print(f"  [{i}] {item.source}  chunk {item.chunk}  score {item.score:.3f}")
    if not result.evidence:
        print("  (none above min_score)")
    print("\nStage timings (ms):")
    for row in result.stage_table().itertuples():
        print(f"  {row.stage:<7} {row.ms:9.1f}  {row.share:6.1%}")
    print(f"  {'total':<7} {result.total_ms:9.1f}")


def ingest_into(
    endpoints: Mapping[str, str], source: object, collection: str, prune_deleted: bool = True
) -> object:
    from magicaf_nb.ingest import ingest

    return ingest(
        source,
        qdrant_url=endpoints["QDRANT_URL"],
        collection=collection,
        embedding=EmbeddingConfig.from_env(endpoints),
        qdrant_api_key=endpoints.get("QDRANT_API_KEY"),
        prune_deleted=prune_deleted,
    )


def cmd_ingest(args: argparse.Namespace) -> int:
    if not args.sample and not args.path:
        raise ValueError("Give a PATH to ingest, or --sample for the built-in corpus.")
    report = ingest_into(
        endpoints_for(args.name),
        "sample" if args.sample else args.path,
        args.collection,
        prune_deleted=not args.keep_deleted,
    )
    print(report)
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    workflow = RAGWorkflow.from_endpoints(
        endpoints_for(args.name),
        collection=args.collection,
        top_k=args.top_k,
        min_score=args.min_score,
    )
    print_result(
        workflow.ask(args.question, generation=GenerationConfig(max_tokens=args.max_tokens))
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Up, ingest the sample corpus, ask, print, down: the README's main job, headless."""
    from magicaf_nb.config import StackSpec
    from magicaf_nb.stack import LocalStack

    started = time.monotonic()
    with LocalStack(StackSpec(name=f"{args.name}-demo")) as stack:
        print(f"stack up in {time.monotonic() - started:.1f} s")
        endpoints = stack.endpoints()
        print(ingest_into(endpoints, "sample", args.collection))
        workflow = RAGWorkflow.from_endpoints(endpoints, collection=args.collection, top_k=3)
        print(f"\nQ: {args.question}\n")
        print_result(workflow.ask(args.question, generation=GenerationConfig(max_tokens=96)))
    print(f"\ndemo done in {time.monotonic() - started:.1f} s; the stack is down")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ingest = sub.add_parser("ingest", help="chunk, embed and store a folder or the sample")
    ingest.add_argument("path", nargs="?")
    ingest.add_argument("--sample", action="store_true", help="the built-in sample corpus")
    ingest.add_argument("--collection", default=DEFAULT_COLLECTION)
    ingest.add_argument(
        "--keep-deleted",
        action="store_true",
        help="keep the chunks of files deleted from PATH since an earlier ingest",
    )
    ingest.set_defaults(func=cmd_ingest)

    ask = sub.add_parser("ask", help="a RAG query: answer, numbered sources, stage timings")
    ask.add_argument("question")
    ask.add_argument("--collection", default=DEFAULT_COLLECTION)
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--min-score", type=float, default=0.0)
    ask.add_argument("--max-tokens", type=int, default=160)
    ask.set_defaults(func=cmd_ask)

    demo = sub.add_parser("demo", help="up, ingest the sample, ask, print, down")
    demo.add_argument("question", nargs="?", default=DEMO_QUESTION)
    demo.add_argument("--collection", default=DEFAULT_COLLECTION)
    demo.set_defaults(func=cmd_demo)
