"""The load generator against real endpoints: a trivial HAProxy and the stack's servers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from magicaf_nb.bench import (
    ChatTarget,
    EmbeddingTarget,
    GeneratorLimitWarning,
    HttpTarget,
    closed_loop,
    load_run,
    metrics,
    open_loop,
    run_metadata,
    save_run,
    summarize,
    sweep_concurrency,
)
from magicaf_nb.binaries import haproxy_path
from magicaf_nb.config import ConfigError
from magicaf_nb.stack import LocalStack
from magicaf_nb.stack.ports import pick_free_port

TEXTS = ["first passage about rivers", "second passage about mountains", "a third about seas"]


@pytest.fixture(scope="module")
def trivial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HAProxy answering 200 from memory: an endpoint that is never the bottleneck."""
    port = pick_free_port()
    cfg = tmp_path_factory.mktemp("trivial") / "t.cfg"
    cfg.write_text(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n"
        "    timeout server 5s\nfrontend f\n"
        f"    bind 127.0.0.1:{port}\n"
        "    http-request return status 200 content-type text/plain string ok\n"
    )
    proc = subprocess.Popen([str(haproxy_path()), "-db", "-f", str(cfg)])
    time.sleep(0.3)
    yield f"http://127.0.0.1:{port}/"
    proc.terminate()
    proc.wait()


def test_closed_loop_sends_exactly_the_budget(trivial: str) -> None:
    run = closed_loop(HttpTarget(trivial), 8, max_requests=500, warmup_requests=20)
    assert len(run.records) == 520 and len(run.measured) == 500
    assert run.records["ok"].all() and (run.records["status"] == 200).all()
    assert (run.records["latency_s"] > 0).all()
    summary = summarize(run.records)
    assert summary["requests"] == 500 and summary["requests_per_s"] > 100
    assert summary["latency_p50_ms"] <= summary["latency_p99_ms"]


def test_open_loop_keeps_its_schedule(trivial: str) -> None:
    run = open_loop(HttpTarget(trivial), 100.0, arrivals="constant", max_seconds=1.5)
    measured = run.measured
    assert 140 <= len(measured) <= 151
    gaps = measured["scheduled_s"].diff().dropna()
    assert gaps.between(0.0099, 0.0101).all()  # constant arrivals: exactly 10 ms apart
    assert run.generator_ok, run.generator_notes
    assert float(measured["lateness_s"].quantile(0.99)) < 0.02


def test_poisson_arrivals_average_the_rate(trivial: str) -> None:
    run = open_loop(HttpTarget(trivial), 200.0, max_seconds=2.0, seed=7)
    gaps = run.measured["scheduled_s"].diff().dropna()
    assert 0.0035 < gaps.mean() < 0.0065
    assert gaps.std() > 0.5 * gaps.mean()  # exponential gaps vary as much as they average


def test_generator_warns_when_the_client_is_the_limit(stack: LocalStack) -> None:
    target = EmbeddingTarget(stack.endpoints()["EMBEDDING_URL"], TEXTS)
    with pytest.warns(GeneratorLimitWarning, match="in-flight cap"):
        run = open_loop(target, 300.0, max_seconds=1.0, max_in_flight=1)
    assert not run.generator_ok
    assert any("in-flight cap" in note for note in run.generator_notes)


def test_failures_are_records_not_exceptions() -> None:
    run = closed_loop(HttpTarget("http://127.0.0.1:9/"), 2, max_requests=6)
    assert len(run.records) == 6 and not run.records["ok"].any()
    assert run.records["error"].str.contains("Connect|refused|Errno", regex=True).all()
    assert summarize(run.records)["error_rate"] == 1.0


def test_unbounded_or_absurd_runs_are_refused(trivial: str) -> None:
    with pytest.raises(ConfigError, match="bounded"):
        closed_loop(HttpTarget(trivial), 1)
    with pytest.raises(ConfigError, match="concurrency"):
        closed_loop(HttpTarget(trivial), 0, max_requests=1)
    with pytest.raises(ConfigError, match="rate"):
        open_loop(HttpTarget(trivial), -1.0, max_seconds=1)


def test_embedding_records_items_tokens_and_replica(stack: LocalStack) -> None:
    target = EmbeddingTarget(stack.endpoints()["EMBEDDING_URL"], TEXTS, batch_size=3)
    run = closed_loop(target, 2, max_requests=6)
    assert run.records["ok"].all()
    assert (run.records["items"] == 3).all() and (run.records["input_tokens"] > 6).all()
    assert set(run.records["served_by"]) == {"r0"}


def test_chat_stream_measures_ttft_tpot_and_the_server_batch(stack: LocalStack) -> None:
    urls = stack.replica_urls("llm")
    before = metrics.llama_snapshot(urls)
    target = ChatTarget(stack.endpoints()["LLM_URL"], ["Say something."], max_tokens=12)
    run = closed_loop(target, 4, max_requests=8)
    after = metrics.llama_snapshot(urls)
    records = run.records
    assert records["ok"].all()
    assert (records["output_tokens"] == 12).all()  # ignore_eos: fixed-length outputs
    assert (records["ttft_s"] < records["latency_s"]).all()
    assert (records["tpot_s"] > 0).all() and records["itl_s"].map(len).eq(11).all()
    delta = metrics.llama_delta(before, after)
    assert delta["predicted_tokens"].sum() == 8 * 12
    assert delta["mean_batch"].iloc[0] > 1.5  # 4 concurrent streams shared decode steps
    summary = summarize(records, slo={"ttft_s": 10.0, "latency_s": 60.0})
    assert summary["goodput_per_s"] == pytest.approx(summary["requests_per_s"])
    strict = summarize(records, slo={"ttft_s": 1e-6})
    assert strict["goodput_per_s"] == 0


def test_sweep_is_tidy_and_saved_runs_load_back(
    trivial: str, tmp_path: Path, stack: LocalStack
) -> None:
    result = sweep_concurrency(HttpTarget(trivial), [1, 4], requests_per_level=50)
    assert list(result.summary["concurrency"]) == [1, 4]
    assert (result.summary["requests"] == 50).all()
    assert set(result.records["concurrency"]) == {1, 4}
    meta = run_metadata({"experiment": "unit"}, stack=stack)
    path = save_run(result.records, tmp_path / "run.parquet", meta)
    loaded, loaded_meta = load_run(path)
    pd.testing.assert_series_equal(loaded["latency_s"], result.records["latency_s"])
    assert loaded_meta["load"] == {"experiment": "unit"}
    assert loaded_meta["machine"]["cpus"] >= 1 and "embedding-0" in loaded_meta["server_flags"]
    with pytest.raises(FileNotFoundError, match="No saved run"):
        load_run(tmp_path / "missing.parquet")
