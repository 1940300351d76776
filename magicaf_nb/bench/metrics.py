"""Server-side metrics scraped next to the client's: llama-server ``/metrics``
(Prometheus text) and HAProxy's per-server counters, as before/after deltas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """All samples of one Prometheus endpoint, by sample name (labels dropped)."""
    response = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout_s, trust_env=False)
    response.raise_for_status()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name] = float(sample.value)
    return samples


@dataclass
class LlamaSnapshot:
    url: str
    samples: dict[str, float]

    def get(self, key: str) -> float:
        return self.samples.get(f"llamacpp:{key}", 0.0)


def llama_snapshot(urls: Sequence[str]) -> list[LlamaSnapshot]:
    return [LlamaSnapshot(url, scrape(url)) for url in urls]


def llama_delta(before: Sequence[LlamaSnapshot], after: Sequence[LlamaSnapshot]) -> pd.DataFrame:
    """Per replica: decode steps, tokens, and the mean batch the server really ran.

    ``n_busy_slots_per_decode`` is a running mean since start, so the mean over the run
    is recovered from the before/after means and decode counts.
    """
    rows = []
    for b, a in zip(before, after, strict=True):
        decodes = a.get("n_decode_total") - b.get("n_decode_total")
        busy = a.get("n_busy_slots_per_decode") * a.get("n_decode_total") - b.get(
            "n_busy_slots_per_decode"
        ) * b.get("n_decode_total")
        rows.append(
            {
                "replica_url": a.url,
                "decode_steps": decodes,
                "prompt_tokens": a.get("prompt_tokens_total") - b.get("prompt_tokens_total"),
                "predicted_tokens": a.get("tokens_predicted_total")
                - b.get("tokens_predicted_total"),
                "mean_batch": busy / decodes if decodes > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def haproxy_delta(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """Responses, retries and redispatches per server during a run (from ``lb_stats``)."""
    cols = [c for c in ("responses", "wretr", "wredis", "eresp", "econ") if c in after]
    merged = after.set_index("server")[cols].subtract(
        before.set_index("server")[cols], fill_value=0
    )
    return merged.reset_index()
