"""The embedded stack end to end: real llama-server replicas behind real HAProxy."""

from __future__ import annotations

import time

import numpy as np
import pytest

from magicaf_nb.config import GenerationConfig
from magicaf_nb.services import EmbeddingClient, LlmClient
from magicaf_nb.stack import LocalStack
from magicaf_nb.traffic import RequestStream

from .conftest import alive

PASSAGES = [
    "To handle an error in Python, wrap the code in a try statement and catch the exception "
    "with an except clause; a finally clause runs whatever happens.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A sonnet is a fourteen-line poem, traditionally written in iambic pentameter.",
    "The stock market index fell two percent after the central bank raised interest rates.",
]
QUERY = "How do I catch an exception in Python?"


def test_up_reports_every_replica_serving(stack: LocalStack) -> None:
    table = stack.status()
    replicas = table[table["component"].isin(["embedding", "llm"])]
    assert len(replicas) == 2
    assert set(replicas["state"]) == {"serving"}
    assert all(s.startswith("UP") for s in replicas["lb_status"])
    assert (replicas["rss_mb"] > 10).all()
    balancers = table[table["component"].str.endswith("-lb")]
    assert set(balancers["state"]) == {"serving"}
    endpoints = stack.endpoints()
    assert endpoints["EMBEDDING_URL"].startswith("http://127.0.0.1:")
    assert endpoints["LLM_URL"].endswith("/v1")


def test_embedding_through_lb_is_384_dim_unit_norm_and_ranks(stack: LocalStack) -> None:
    client = EmbeddingClient(stack.embedding_config())
    assert client.health_check()
    vectors = client.embed([QUERY, *PASSAGES], batch_size=2, parallel_batches=2)
    assert vectors.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    scores = vectors[1:] @ vectors[0]
    assert int(np.argmax(scores)) == 0, f"scores {scores}"
    batch = client.embed_batch(["hello"])
    assert batch.served_by == "r0" and batch.prompt_tokens and batch.prompt_tokens >= 3


def test_chat_answers_plain_and_streaming(stack: LocalStack) -> None:
    client = LlmClient(stack.llm_config())
    plain = client.chat("Name one primary colour.")
    assert plain.text.strip()
    assert plain.completion_tokens and plain.completion_tokens > 0
    streamed = client.stream_chat("Count from one to five.")
    assert streamed.text.strip()
    assert streamed.ttft_s is not None and 0 < streamed.ttft_s < streamed.latency_s
    assert streamed.completion_tokens and streamed.completion_tokens >= 2
    assert len(streamed.token_times_s) >= 2


def test_streamed_tokens_pass_the_balancer_as_they_are_made(stack: LocalStack) -> None:
    """HAProxy must not hold small streamed chunks (``option http-no-delay``). Without it
    the first token came about 200 ms late and the rest in one burst."""
    client = LlmClient(stack.llm_config())
    generation = GenerationConfig(max_tokens=24)
    client.stream_chat("Say hello.", generation)  # the server's first request is slower
    streamed = client.stream_chat("Count from one to thirty, one number per line.", generation)
    times_ms = [round(1000 * t) for t in streamed.token_times_s]
    assert len(times_ms) >= 12, streamed.text
    assert len(set(times_ms)) >= len(times_ms) // 2, f"tokens arrived in bursts: {times_ms}"


def _embedding_stream(stack: LocalStack, rate: float) -> RequestStream:
    client = EmbeddingClient(stack.embedding_config(max_retries=0))
    texts = [p.split(",")[0] for p in PASSAGES]
    counter = iter(range(10**9))
    return RequestStream(
        lambda: client.aembed_batch([texts[next(counter) % len(texts)]]),
        rate_per_s=rate,
        max_seconds=120,
    )


def test_scale_up_and_down_under_load_fails_no_request(stack: LocalStack) -> None:
    stream = _embedding_stream(stack, rate=25).start()
    time.sleep(1.0)
    up = stack.scale("embedding", 3)
    assert up.added and len(up.added) == 2
    time.sleep(2.5)
    down = stack.scale("embedding", 1)
    assert len(down.removed) == 2
    time.sleep(1.0)
    records = stream.stop()
    assert len(records) > 80
    failed = records[~records["ok"]]
    assert failed.empty, failed["error"].tolist()[:3]
    served = set(records["served_by"])
    assert {"r0", f"r{up.added[0]}", f"r{up.added[1]}"} <= served
    table = stack.status()
    assert len(table[table["component"] == "embedding"]) == 1


def test_kill_under_load_fails_no_request_and_restart_recovers(stack: LocalStack) -> None:
    stack.scale("embedding", 2)
    victim = max(r.index for r in stack.replicas if r.component == "embedding")
    victim_pid = next(
        r.process.pid for r in stack.replicas if r.component == "embedding" and r.index == victim
    )
    stream = _embedding_stream(stack, rate=40).start()
    time.sleep(1.0)
    stack.kill("embedding", victim)
    time.sleep(2.0)
    records = stream.stop()
    failed = records[~records["ok"]]
    assert failed.empty, failed["error"].tolist()[:3]
    assert not alive({victim_pid})
    row = stack.status().set_index(["component", "replica"]).loc[("embedding", victim)]
    assert row["state"] == "killed" and row["lb_status"].startswith("DOWN")
    after_kill = records[records["t_send_s"] > records["t_send_s"].max() - 1.0]
    assert set(after_kill["served_by"]) == {"r0"}
    seconds = stack.restart("embedding", victim)
    assert seconds < 30
    served = {
        EmbeddingClient(stack.embedding_config()).embed_batch(["x"]).served_by for _ in range(4)
    }
    assert f"r{victim}" in served
    stack.scale("embedding", 1)


def test_llm_scales_out_and_both_replicas_answer(stack: LocalStack) -> None:
    event = stack.scale("llm", 2)
    assert event.after == 2
    client = LlmClient(stack.llm_config())
    served = {client.chat("Say yes.").served_by for _ in range(4)}
    assert served == {"r0", f"r{event.added[0]}"}
    stack.scale("llm", 1)
    assert stack.replica_urls("llm") and len(stack.replica_urls("llm")) == 1


def test_status_counts_requests_from_haproxy(stack: LocalStack) -> None:
    before = int(stack.status().query("component == 'embedding'")["requests"].sum())
    client = EmbeddingClient(stack.embedding_config())
    for _ in range(5):
        client.embed_batch(["count me"])
    after = int(stack.status().query("component == 'embedding'")["requests"].sum())
    assert after - before == 5


@pytest.mark.parametrize("component", ["embedding", "llm"])
def test_logs_quote_the_server(stack: LocalStack, component: str) -> None:
    whole_log = stack.logs(component, 0, lines=1_000_000)
    assert "start: " in whole_log and "llama-server" in whole_log
    assert len(stack.logs(component, 0, lines=3).splitlines()) == 3
