"""Benchmark of the embedded stack: prints figures, measured side by side in one run.

    .venv/bin/python benchmarks/bench_stack.py [--texts 256] [--chats 16]

Figures: stack cold start; time from scale() to the new replica serving; embedding
texts/s at batch 1 and 32, through the load balancer and direct to the replica; chat
output tokens/s at concurrency 1 and 8 (one replica, 8 slots).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pydoc_data.topics import topics

import pandas as pd

from magicaf_nb import GenerationConfig, StackSpec
from magicaf_nb.config import EmbeddingConfig
from magicaf_nb.services import EmbeddingClient, LlmClient
from magicaf_nb.stack import LocalStack

PROMPTS = [
    "Explain what a load balancer does.",
    "Write a short poem about the sea.",
    "List three uses of a hash table.",
    "Describe how a vector database finds neighbours.",
]


def passages(n: int) -> list[str]:
    paras = [p.strip() for text in topics.values() for p in text.split("\n\n")]
    paras = [p for p in paras if 20 <= len(p.split()) <= 120]
    return paras[:n]


async def texts_per_s(url: str, texts: list[str], batch: int) -> float:
    client = EmbeddingClient(EmbeddingConfig(url=url, batch_size=batch, parallel_batches=1))
    await client.aembed(texts[:batch])  # warm-up
    start = time.perf_counter()
    await client.aembed(texts)
    return len(texts) / (time.perf_counter() - start)


async def chat_tokens_per_s(client: LlmClient, concurrency: int, total: int) -> float:
    generation = GenerationConfig(max_tokens=64, temperature=0.7, seed=None)
    await client.achat(PROMPTS[0], GenerationConfig(max_tokens=4))  # warm-up
    queue = list(range(total))
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while queue:
            i = queue.pop()
            result = await client.achat(PROMPTS[i % len(PROMPTS)], generation)
            tokens += result.completion_tokens or 0

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens / (time.perf_counter() - start)


async def measure(stack: LocalStack, n_texts: int, n_chats: int) -> list[tuple[str, float, str]]:
    rows = []
    texts = passages(n_texts)
    lb = stack.endpoints()["EMBEDDING_URL"]
    direct = stack.replica_urls("embedding")[0]
    for batch in (1, 32):
        for where, url in (("through LB", lb), ("direct", direct)):
            rate = await texts_per_s(url, texts, batch)
            rows.append((f"embedding texts/s, batch {batch}, {where}", rate, "texts/s"))
    llm = LlmClient(stack.llm_config())
    for concurrency in (1, 8):
        rate = await chat_tokens_per_s(llm, concurrency, n_chats)
        rows.append((f"chat output tokens/s, concurrency {concurrency}", rate, "tokens/s"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--chats", type=int, default=16)
    args = parser.parse_args()

    start = time.perf_counter()
    stack = LocalStack(StackSpec(name="bench-stack")).up()
    rows = [("stack cold start (up() until every LB serves)", time.perf_counter() - start, "s")]
    try:
        rows += asyncio.run(measure(stack, args.texts, args.chats))
        event = stack.scale("embedding", 2)
        rows.append(("scale embedding 1->2 until the new replica serves", event.seconds, "s"))
        event = stack.scale("llm", 2)
        rows.append(("scale llm 1->2 until the new replica serves", event.seconds, "s"))
    finally:
        stack.down()
    table = pd.DataFrame(rows, columns=["figure", "value", "unit"])
    ratio = table.set_index("figure")["value"]
    extra = [
        (
            "batch 32 / batch 1 (through LB)",
            ratio["embedding texts/s, batch 32, through LB"]
            / ratio["embedding texts/s, batch 1, through LB"],
            "x",
        ),
        (
            "LB / direct at batch 1",
            ratio["embedding texts/s, batch 1, through LB"]
            / ratio["embedding texts/s, batch 1, direct"],
            "x",
        ),
        (
            "concurrency 8 / concurrency 1 tokens/s",
            ratio["chat output tokens/s, concurrency 8"]
            / ratio["chat output tokens/s, concurrency 1"],
            "x",
        ),
    ]
    table = pd.concat([table, pd.DataFrame(extra, columns=table.columns)], ignore_index=True)
    with pd.option_context("display.width", 140, "display.max_colwidth", 70):
        print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
