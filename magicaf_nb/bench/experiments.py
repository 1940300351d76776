"""The batching experiments of notebook 04 as plain functions (widgets call the same)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from magicaf_nb.bench import metrics
from magicaf_nb.bench.loadgen import closed_loop
from magicaf_nb.bench.summary import summarize
from magicaf_nb.bench.sweep import sweep_concurrency
from magicaf_nb.bench.targets import ChatTarget, EmbeddingTarget
from magicaf_nb.stack.reconfigure import reconfigure


def embedding_batch_sweep(
    url: str,
    texts: Sequence[str],
    batch_sizes: Sequence[int],
    *,
    texts_per_level: int = 128,
    min_requests: int = 3,
) -> pd.DataFrame:
    """Texts/s and latency for each client batch size, one request at a time."""
    rows = []
    for size in batch_sizes:
        requests = max(min_requests, texts_per_level // size)
        run = closed_loop(
            EmbeddingTarget(url, texts, batch_size=size),
            1,
            max_requests=requests,
            warmup_requests=1,
        )
        s = summarize(run.records)
        rows.append(
            {
                "batch_size": size,
                "requests": int(s["requests"]),
                "errors": int(s["errors"]),
                "texts_per_s": s["items_per_s"],
                "latency_p50_ms": s["latency_p50_ms"],
                "ms_per_text": s["latency_p50_ms"] / size,
                "generator_ok": run.generator_ok,
            }
        )
    return pd.DataFrame(rows)


def embedding_concurrency_sweep(
    url: str, texts: Sequence[str], levels: Sequence[int], *, requests_per_level: int = 64
) -> pd.DataFrame:
    """Batch 1 at rising concurrency: does the server batch concurrent requests?"""
    result = sweep_concurrency(
        EmbeddingTarget(url, texts, batch_size=1), levels, requests_per_level=requests_per_level
    )
    table = result.summary.rename(columns={"items_per_s": "texts_per_s"})
    return table[
        [
            "concurrency",
            "requests",
            "errors",
            "texts_per_s",
            "latency_p50_ms",
            "latency_p99_ms",
            "generator_ok",
        ]
    ]


def llm_concurrency_sweep(
    stack: Any,
    levels: Sequence[int],
    *,
    slots: int,
    requests_per_level: int,
    prompts: Sequence[str],
    max_tokens: int = 32,
) -> pd.DataFrame:
    """Restart the LLM replicas with ``--parallel slots``, then sweep concurrency,
    scraping llama-server's /metrics around each level for the batch it really ran."""
    reconfigure(stack, "llm", slots=slots)
    urls = stack.replica_urls("llm")
    snapshots: dict[str, Any] = {}

    def observe(moment: str, level: float) -> dict[str, Any]:
        snapshots[moment] = metrics.llama_snapshot(urls)
        if moment == "before":
            return {}
        delta = metrics.llama_delta(snapshots["before"], snapshots["after"])
        return {
            "server_mean_batch": float(delta["mean_batch"].mean()),
            "server_decode_steps": int(delta["decode_steps"].sum()),
        }

    target = ChatTarget(stack.endpoints()["LLM_URL"], prompts, max_tokens=max_tokens)
    result = sweep_concurrency(
        target, levels, requests_per_level=requests_per_level, warmup_requests=1, observe=observe
    )
    table = result.summary.assign(slots=slots)
    return table[
        [
            "slots",
            "concurrency",
            "requests",
            "errors",
            "output_tokens_per_s",
            "ttft_p50_ms",
            "ttft_p99_ms",
            "tpot_p50_ms",
            "latency_p50_ms",
            "server_mean_batch",
            "generator_ok",
        ]
    ]
