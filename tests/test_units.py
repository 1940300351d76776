"""Fast checks of the pieces that need no running stack."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from magicaf_nb import binaries
from magicaf_nb.config import (
    ConfigError,
    EmbeddingConfig,
    GenerationConfig,
    LlmConfig,
    LlmServerSpec,
    StackSpec,
)
from magicaf_nb.ingest.orphans import find_orphans
from magicaf_nb.ingest.store import Stored
from magicaf_nb.stack import haproxy
from magicaf_nb.traffic import RequestStream, summarize


def test_generated_haproxy_config_passes_haproxy_check(tmp_path: Path) -> None:
    cfg = tmp_path / "lb.cfg"
    cfg.write_text(
        haproxy.render_config(
            service="embedding",
            bind_host="127.0.0.1",
            bind_port=18999,
            socket_path=tmp_path / "s.sock",
        )
    )
    run = subprocess.run(
        [str(binaries.haproxy_path()), "-c", "-f", str(cfg)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    text = cfg.read_text()
    assert "retry-on" in text and "option redispatch" in text and "httpchk GET /health" in text


def test_configs_load_magicaf_variable_names() -> None:
    env = {
        "EMBEDDING_URL": "http://127.0.0.1:1",
        "EMBEDDING_MODEL": "m",
        "LLM_URL": "http://127.0.0.1:2/v1",
        "LLM_MODEL": "l",
        "LLM_API_KEY": "k",
    }
    assert EmbeddingConfig.from_env(env).model == "m"
    llm = LlmConfig.from_env(env)
    assert (llm.base_url, llm.model, llm.api_key) == ("http://127.0.0.1:2/v1", "l", "k")


def test_spec_round_trips_through_its_state_form() -> None:
    spec = StackSpec(name="x", llm=LlmServerSpec(replicas=2, slots=4, lb_port=18080))
    again = StackSpec.from_dict(spec.to_dict())
    assert again == spec


@pytest.mark.parametrize(
    "build",
    [
        lambda: StackSpec(llm=LlmServerSpec(context=1024, slots=8)).validate(),
        lambda: StackSpec(host="0.0.0.0").validate(),
        lambda: StackSpec(llm=LlmServerSpec(lb_port=70000)).validate(),
        lambda: GenerationConfig(max_tokens=0),
        lambda: EmbeddingConfig(url="http://127.0.0.1:1", batch_size=0),
    ],
)
def test_absurd_settings_are_refused(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"use|raise"):
        build()


def test_request_stream_records_successes_and_failures() -> None:
    calls = iter(range(1000))

    class Result:
        served_by = "r0"

    async def send() -> Result:
        if next(calls) % 4 == 3:
            raise RuntimeError("boom")
        return Result()

    stream = RequestStream(send, rate_per_s=200, max_requests=40).start()
    records = stream.wait(timeout_s=30)
    assert len(records) == 40
    assert int((~records["ok"]).sum()) == 10
    table = summarize(records)
    assert dict(zip(table["served_by"], table["requests"], strict=True)) == {
        "(failed)": 10,
        "r0": 30,
    }


def test_request_stream_refuses_absurd_rates() -> None:
    async def send() -> None:
        return None

    for rate in (0, -5, 1e9):
        with pytest.raises(ConfigError, match="rate_per_s"):
            RequestStream(send, rate_per_s=rate)


def test_summary_of_no_records_is_empty() -> None:
    assert summarize(pd.DataFrame(columns=["t_send_s", "latency_s", "ok", "error"])).empty


def test_committed_haproxy_example_matches_the_generated_config() -> None:
    example = Path(__file__).parent.parent / "stack" / "haproxy" / "service.cfg"
    rendered = haproxy.render_config(
        service="embedding",
        bind_host="127.0.0.1",
        bind_port=8080,
        socket_path=Path("/run/haproxy/embedding.sock"),
    )
    assert example.read_text().startswith(rendered)


def test_orphans_stay_inside_the_folder_and_spare_skipped_files(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (tmp_path / "docs2").mkdir()
    base = str(root.resolve())
    report = pd.DataFrame(
        {
            "path": ["a.txt", "rows.csv", "bad.bin"],
            "source": [f"{base}/a.txt", f"{base}/rows.csv", f"{base}/bad.bin"],
            "status": ["read", "read", "skipped"],
        }
    )
    stored = {
        "1": Stored(f"{base}/a.txt", 0, "a"),  # produced again
        "2": Stored(f"{base}/gone.md", 0, "gone"),  # file deleted
        "3": Stored(f"{base}/rows.csv#row2", 0, "r2"),  # row deleted from a read file
        "4": Stored(f"{base}/bad.bin", 0, "bad"),  # skipped now: kept
        "5": Stored(f"{tmp_path.resolve()}/docs2/x.txt", 0, "x"),  # another folder
        "6": Stored("dataframe:abc", 0, "df"),
    }
    produced = {f"{base}/a.txt", f"{base}/rows.csv#row1"}
    found = find_orphans(stored, root.resolve(), report, produced)
    assert sorted(found.ids) == ["2", "3"]
    assert found.gone_files == {"gone.md": f"{base}/gone.md"}
    assert found.ids_by_path == {"gone.md": ["2"], "rows.csv": ["3"]}
    single = find_orphans(stored, (root / "rows.csv").resolve(), report, produced)
    assert single.ids == ["3"]
