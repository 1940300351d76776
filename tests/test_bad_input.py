"""Bad input gets a clear error naming the thing and the fix; nothing is left running."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from magicaf_nb.config import (
    ConfigError,
    EmbeddingConfig,
    EmbeddingServerSpec,
    LlmConfig,
    LlmServerSpec,
    StackSpec,
)
from magicaf_nb.models import ModelNotFoundError
from magicaf_nb.services import EmbeddingClient, LlmClient, ServiceError
from magicaf_nb.stack import LocalStack, PortInUseError, StackError, state

from .conftest import server_pids, unique_name


@pytest.fixture
def no_new_processes():
    before = server_pids()
    yield
    leaked = server_pids() - before
    assert not leaked, f"processes left running: {leaked}"


@pytest.mark.parametrize("bad", [0, -1, 1000, "two", 2.5, None])
def test_absurd_replica_counts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        StackSpec(embedding=EmbeddingServerSpec(replicas=bad)).validate()  # type: ignore[arg-type]
    message = str(err.value)
    assert "embedding replicas" in message and "1 to 16" in message


@pytest.mark.parametrize("bad", ["0", "-1", "1000", "abc"])
def test_cli_refuses_bad_replica_counts(bad: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "magicaf_nb.cli", "up", "--embedding", bad],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "embedding replicas" in run.stderr and "1 to 16" in run.stderr


def test_scale_to_zero_or_unknown_component_is_refused(stack: LocalStack) -> None:
    with pytest.raises(ConfigError, match="from 1 to 16"):
        stack.scale("embedding", 0)
    with pytest.raises(ConfigError, match="Unknown component 'gpu'"):
        stack.scale("gpu", 2)
    with pytest.raises(StackError, match="No embedding replica 7"):
        stack.kill("embedding", 7)


def test_taken_port_is_named_and_nothing_starts(no_new_processes: None) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = StackSpec(name=unique_name("port"), llm=LlmServerSpec(lb_port=port))
        with pytest.raises(PortInUseError) as err:
            LocalStack(spec).up()
    message = str(err.value)
    assert str(port) in message and "llm load balancer" in message and "auto-pick" in message
    assert state.read(spec.name) is None


def test_missing_model_file_is_named(no_new_processes: None) -> None:
    missing = Path("/nonexistent/model.gguf")
    spec = StackSpec(name=unique_name("model"), llm=LlmServerSpec(model_path=missing))
    with pytest.raises(ModelNotFoundError, match=r"/nonexistent/model\.gguf"):
        LocalStack(spec).up()
    assert state.read(spec.name) is None


def test_corrupt_model_fails_up_quoting_the_log_and_tears_down(
    tmp_path: Path, no_new_processes: None
) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a gguf file" * 100)
    spec = StackSpec(name=unique_name("corrupt"), llm=LlmServerSpec(model_path=bogus))
    with pytest.raises(StackError) as err:
        LocalStack(spec).up()
    message = str(err.value)
    assert "llm replica 0" in message and "exited" in message
    assert "not-a-model.gguf" in message  # the quoted log names the file it failed on
    assert state.read(spec.name) is None


def test_unreachable_embedding_url_names_url_and_fix() -> None:
    client = EmbeddingClient(EmbeddingConfig(url="http://127.0.0.1:9", max_retries=1))
    with pytest.raises(ServiceError) as err:
        client.embed(["hello"])
    message = str(err.value)
    assert "http://127.0.0.1:9/v1/embeddings" in message
    assert "after 2 attempt(s)" in message and "connection" in message
    assert "EMBEDDING_URL" in message


def test_unreachable_llm_url_names_url_and_fix() -> None:
    client = LlmClient(LlmConfig(base_url="http://127.0.0.1:9/v1", max_retries=0))
    with pytest.raises(ServiceError, match=r"127\.0\.0\.1:9/v1/chat/completions.*LLM_URL"):
        client.chat("hi")
    with pytest.raises(ServiceError, match="LLM_URL"):
        client.stream_chat("hi")


def test_missing_env_vars_say_what_to_export() -> None:
    with pytest.raises(ConfigError, match="EMBEDDING_URL is not set"):
        EmbeddingConfig.from_env({})


def test_empty_and_non_text_inputs_are_refused() -> None:
    client = EmbeddingClient(EmbeddingConfig(url="http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="Input #1 is empty"):
        client.embed(["ok", "  "])
    with pytest.raises(TypeError, match="Input #0 is a bytes"):
        client.embed([b"raw"])  # type: ignore[list-item]
