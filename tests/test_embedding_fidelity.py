"""The converted all-MiniLM-L6-v2 GGUF, served by llama-server, matches a numpy reference.

Converts the model (f16 and q8_0), starts ``llama-server --embedding --pooling mean`` on each
and compares, passage by passage, its vectors and token ids with ``minilm_reference`` (the HF
tokenizer plus a plain numpy BERT forward pass over the same safetensors).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics

import httpx
import numpy as np
import pytest

from magicaf_nb.binaries import MissingBinaryError, llama_server_path
from magicaf_nb.gguf_convert import convert_minilm
from magicaf_nb.models import EMBEDDING_DIM, minilm_source_dir

from .minilm_reference import MAX_TOKENS, MiniLMReference, load_reference

N_PASSAGES = 64
BATCH = 16
HEALTH_TIMEOUT_S = 60.0
MIN_COSINE = {"f16": 0.999, "q8_0": 0.99}


def select_passages(n: int = N_PASSAGES) -> list[str]:
    """``n`` paragraphs of 20..200 words from the stdlib's pydoc topics, evenly spread."""
    candidates = [
        para.strip()
        for key in sorted(topics)
        for para in topics[key].split("\n\n")
        if 20 <= len(para.split()) <= 200
    ]
    assert len(candidates) >= n, f"only {len(candidates)} candidate paragraphs"
    return [candidates[i * len(candidates) // n] for i in range(n)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    outtype: str
    gguf: Path


def _log_tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama-server exited with {proc.returncode}; log:\n{_log_tail(log)}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"llama-server not healthy after {HEALTH_TIMEOUT_S:.0f} s; log:\n{_log_tail(log)}")


@pytest.fixture(scope="module")
def server_binary() -> Path:
    try:
        return llama_server_path()
    except MissingBinaryError as exc:
        pytest.skip(f"llama-server is not installed ({exc}); `make setup` installs it.")


@pytest.fixture(scope="module")
def passages() -> list[str]:
    return select_passages()


@pytest.fixture(scope="module")
def reference() -> MiniLMReference:
    return load_reference(minilm_source_dir())


@pytest.fixture(scope="module")
def reference_vectors(reference: MiniLMReference, passages: list[str]) -> np.ndarray:
    # Batch passages of similar length together (less padding), then restore the order.
    order = sorted(range(len(passages)), key=lambda i: reference.token_count(passages[i]))
    out = np.zeros((len(passages), EMBEDDING_DIM), dtype=np.float32)
    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        out[rows] = reference.encode([passages[i] for i in rows])
    return out


@pytest.fixture(scope="module", params=["f16", "q8_0"])
def server(
    request: pytest.FixtureRequest,
    server_binary: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    outtype: str = request.param
    work = tmp_path_factory.mktemp(f"minilm-{outtype}")
    start = time.perf_counter()
    gguf = convert_minilm(minilm_source_dir(), work / f"minilm-{outtype}.gguf", outtype)
    print(
        f"\n[{outtype}] converted in {time.perf_counter() - start:.2f} s, "
        f"{gguf.stat().st_size / 1e6:.1f} MB"
    )
    port = free_port()
    log = work / "llama-server.log"
    cmd = [
        str(server_binary),
        *("-m", str(gguf), "--host", "127.0.0.1", "--port", str(port)),
        *("--embedding", "--pooling", "mean"),
        *("-t", "2", "-b", "512", "-ub", "512", "-c", "512", "--no-webui"),
    ]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, url, log)
        yield Server(url=url, outtype=outtype, gguf=gguf)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_embeddings(server: Server, texts: list[str]) -> tuple[np.ndarray, int]:
    """The server's vectors for ``texts`` (in order) and its reported prompt token total."""
    resp = httpx.post(
        f"{server.url}/v1/embeddings", json={"input": texts, "model": "x"}, timeout=120.0
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    data = sorted(body["data"], key=lambda item: item["index"])
    assert [item["index"] for item in data] == list(range(len(texts)))
    return np.array([item["embedding"] for item in data], dtype=np.float64), int(
        body["usage"]["prompt_tokens"]
    )


def server_token_ids(server: Server, text: str) -> list[int]:
    resp = httpx.post(
        f"{server.url}/tokenize", json={"content": text, "add_special": True}, timeout=30.0
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["tokens"]


def test_passages_fit_the_context(passages: list[str], reference: MiniLMReference) -> None:
    counts = [reference.token_count(p) for p in passages]
    assert len(passages) >= 60
    # Under the limit, so neither side truncates and the comparison is like for like.
    assert max(counts) < MAX_TOKENS, max(counts)


def test_token_ids_match_hf_tokenizer(
    server: Server, passages: list[str], reference: MiniLMReference
) -> None:
    mismatches = []
    for i, text in enumerate(passages):
        ours, theirs = server_token_ids(server, text), reference.token_ids(text)
        if ours != theirs:
            mismatches.append(f"#{i}: server {len(ours)} tokens, HF {len(theirs)}: {text[:60]!r}")
    assert not mismatches, "\n".join(mismatches)


def test_embeddings_match_reference(
    server: Server,
    passages: list[str],
    reference: MiniLMReference,
    reference_vectors: np.ndarray,
) -> None:
    vectors = []
    for i in range(0, len(passages), BATCH):
        batch = passages[i : i + BATCH]
        got, prompt_tokens = server_embeddings(server, batch)
        assert prompt_tokens == sum(reference.token_count(t) for t in batch)
        vectors.append(got)
    got = np.concatenate(vectors)

    assert got.shape == (len(passages), EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)

    cosines = np.sum(got * reference_vectors, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(reference_vectors, axis=1)
    )
    print(
        f"\n[{server.outtype}] cosine vs numpy reference over {len(cosines)} passages: "
        f"min {cosines.min():.6f}, mean {cosines.mean():.6f}"
    )
    threshold = MIN_COSINE[server.outtype]
    worst = int(np.argmin(cosines))
    assert cosines.min() >= threshold, (
        f"{server.outtype}: passage #{worst} has cosine {cosines[worst]:.6f} < {threshold}: "
        f"{passages[worst][:80]!r}"
    )
