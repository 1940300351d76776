"""Benchmark of ingestion: prints figures, measured side by side in one run.

    .venv/bin/python benchmarks/bench_ingest.py [--rounds 2] [--batch-size 32] [--parallel 2]

Figures, on the sample corpus (the Python reference topics, chunked at 256/32 tokens):
- the raw embedding server's texts/s on exactly the ingest's chunks, same batch size and
  requests in flight (``EmbeddingClient.aembed``: no reading, chunking or upserts);
- ingest chunks/s (``aingest`` into a fresh collection, the whole run: read, chunk,
  checks, embed + upsert pipeline), and their ratio (goal >= 0.9);
- the ingest time of the whole sample corpus;
- how busy the machine was: load average and the CPU other processes took meanwhile,
  the cores the embedding server got in each phase, and the CPU the client and the
  vector server spent: what the pipeline costs besides embedding.

Rounds alternate which of the two goes first, so drift in machine load hits both.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

import pandas as pd
import psutil

from magicaf_nb.config import EmbeddingServerSpec, StackSpec
from magicaf_nb.ingest import Chunker, aingest, sample_corpus
from magicaf_nb.services import EmbeddingClient
from magicaf_nb.stack import LocalStack


def busy_cpu_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def cpu_by_part(stack: LocalStack) -> dict[str, float]:
    """CPU seconds so far of this process ("client") and of each stack component."""
    parts = [("client", os.getpid())]
    table = stack.status().dropna(subset=["pid"])
    parts += list(zip(table["component"], table["pid"].astype(int), strict=True))
    out: dict[str, float] = {}
    for part, pid in parts:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        out[part] = out.get(part, 0.0) + t.user + t.system + t.children_user + t.children_system
    return out


def own_cpu_s(stack: LocalStack) -> float:
    return sum(cpu_by_part(stack).values())


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - v for k, v in before.items()}


async def raw_texts_per_s(stack: LocalStack, texts: list[str], batch: int, width: int) -> float:
    client = EmbeddingClient(stack.embedding_config(batch_size=batch, parallel_batches=width))
    try:
        start = time.perf_counter()
        await client.aembed(texts)
        return len(texts) / (time.perf_counter() - start)
    finally:
        await client.aclose()


async def ingest_once(stack: LocalStack, batch: int, width: int) -> dict:
    report = await aingest(
        "sample",
        qdrant_url=stack.endpoints()["QDRANT_URL"],
        collection=f"bench-ingest-{uuid.uuid4().hex[:6]}",
        embedding=stack.embedding_config(),
        batch_size=batch,
        parallel_batches=width,
        progress=False,
    )
    return report.summary


async def measure(stack: LocalStack, rounds: int, batch: int, width: int) -> pd.DataFrame:
    texts = [c.text for c in Chunker(256, 32).chunk_documents(sample_corpus())]
    await raw_texts_per_s(stack, texts[: batch * width], batch, width)  # warm-up
    rows = []
    for i in range(rounds):
        order = ("raw", "ingest") if i % 2 == 0 else ("ingest", "raw")
        row: dict = {"round": i + 1, "first": order[0]}
        for kind in order:
            cpu_before, wall_before = cpu_by_part(stack), time.perf_counter()
            if kind == "raw":
                row["raw texts/s"] = await raw_texts_per_s(stack, texts, batch, width)
            else:
                summary = await ingest_once(stack, batch, width)
                assert summary["new_chunks"] == len(texts), (summary, len(texts))
                row["ingest chunks/s"] = summary["chunks_per_s"]
                row["ingest s"] = summary["seconds"]
                row["pipeline s"] = summary["pipeline_seconds"]
            used = cpu_delta(cpu_before, cpu_by_part(stack))
            wall = time.perf_counter() - wall_before
            # Cores the embedding server got, and CPU-s the rest of the pipeline cost.
            row[f"{kind} emb cores"] = used.get("embedding", 0.0) / wall
            row[f"{kind} client+qdrant CPU-s"] = used.get("client", 0.0) + used.get("qdrant", 0.0)
        row["ratio"] = row["ingest chunks/s"] / row["raw texts/s"]
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["chunks"] = len(texts)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=2, help="parallel_batches")
    parser.add_argument("--replicas", type=int, default=1, help="embedding replicas")
    parser.add_argument("--threads", type=int, default=1, help="threads per embedding replica")
    args = parser.parse_args()

    spec = StackSpec(
        name="bench-ingest",
        embedding=EmbeddingServerSpec(replicas=args.replicas, threads=args.threads),
    )
    load_before = os.getloadavg()
    with LocalStack(spec) as stack:
        busy0, own0, wall0 = busy_cpu_s(), own_cpu_s(stack), time.perf_counter()
        table = asyncio.run(measure(stack, args.rounds, args.batch_size, args.parallel))
        busy1, own1, wall1 = busy_cpu_s(), own_cpu_s(stack), time.perf_counter()
    load_after = os.getloadavg()
    cores = os.cpu_count() or 1
    others = max(0.0, (busy1 - busy0) - (own1 - own0))
    others_share = 100 * others / ((wall1 - wall0) * cores)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(3).to_string(index=False))
    figures = [
        ("chunks in the sample corpus (256/32 tokens)", table.attrs["chunks"], ""),
        ("batch_size / parallel_batches", f"{args.batch_size} / {args.parallel}", ""),
        ("embedding replicas x threads", f"{args.replicas} x {args.threads}", ""),
        ("raw embedding texts/s (median)", statistics.median(table["raw texts/s"]), "texts/s"),
        ("ingest chunks/s (median)", statistics.median(table["ingest chunks/s"]), "chunks/s"),
        ("ingest / raw ratio (median of paired rounds)", statistics.median(table["ratio"]), "x"),
        (
            "cores the embedding server got: raw / ingest (median)",
            f"{statistics.median(table['raw emb cores']):.2f} / "
            f"{statistics.median(table['ingest emb cores']):.2f}",
            "",
        ),
        (
            "client + vector server CPU-s: raw / ingest (median)",
            f"{statistics.median(table['raw client+qdrant CPU-s']):.1f} / "
            f"{statistics.median(table['ingest client+qdrant CPU-s']):.1f}",
            "",
        ),
        (
            "ingest time of the whole sample corpus (median)",
            statistics.median(table["ingest s"]),
            "s",
        ),
        ("load average 1 min before / after", f"{load_before[0]:.2f} / {load_after[0]:.2f}", ""),
        (
            "CPU taken by other processes during the run",
            f"{others:.1f} CPU-s = {others_share:.0f}% of {cores} cores",
            "",
        ),
    ]
    print()
    for name, value, unit in figures:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        print(f"{name:<56} {shown} {unit}".rstrip())
    ratio = statistics.median(table["ratio"])
    print(f"\ngoal ratio >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'} ({ratio:.3f})")


if __name__ == "__main__":
    main()
