"""The production compose files and their HAProxy configuration are valid and consistent.

`docker-compose config` (Debian's docker-compose) validates each file; `haproxy -c` checks
the balancer's configuration; the images and balancer settings match the code's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from magicaf_nb.stack import docker_images, haproxy

STACK = Path(__file__).resolve().parents[1] / "stack"
FILES = ["docker-compose.yml", "docker-compose.cpu.yml"]


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((STACK / name).read_text())


@pytest.mark.parametrize("name", FILES)
def test_compose_file_passes_docker_compose_config(name: str) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    result = subprocess.run(
        [tool, "-f", str(STACK / name), "config", "-q"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", FILES)
def test_compose_file_has_the_production_shape(name: str) -> None:
    services = _load(name)["services"]
    peers = [s for s in services if s.startswith("qdrant-")]
    assert peers == ["qdrant-0", "qdrant-1", "qdrant-2"]
    for peer in peers:
        env = services[peer]["environment"]
        assert env["QDRANT__CLUSTER__ENABLED"] == "true"
        assert env["QDRANT__CLUSTER__P2P__PORT"] == "6335"
    assert services["qdrant-0"]["command"][1:] == ["--uri", "http://qdrant-0:6335"]
    for peer in ("qdrant-1", "qdrant-2"):
        assert services[peer]["command"][1:3] == ["--bootstrap", "http://qdrant-0:6335"]
    assert services["embedding"]["deploy"]["replicas"] >= 2
    assert services["app"]["deploy"]["replicas"] >= 2
    app_env = services["app"]["environment"]
    assert app_env["EMBEDDING_URL"] == "http://lb:8080"
    assert app_env["LLM_URL"] == "http://lb:8081/v1"
    assert app_env["QDRANT_URL"].startswith("http://qdrant-")
    assert (
        "./haproxy/compose.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services["lb"]["volumes"]
    )


def test_gpu_file_runs_vllm_replicas_on_gpus_and_cpu_file_uses_none() -> None:
    gpu = _load("docker-compose.yml")["services"]
    llms = [s for s in gpu if s.startswith("llm-")]
    assert len(llms) >= 2
    for name in llms:
        assert docker_images.VLLM_IMAGE in gpu[name]["image"]
        assert "llm" in gpu[name]["networks"]["default"]["aliases"]
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert docker_images.TEI_GPU_IMAGE in gpu["embedding"]["image"]
    cpu_text = (STACK / "docker-compose.cpu.yml").read_text()
    cpu = _load("docker-compose.cpu.yml")["services"]
    assert "nvidia" not in cpu_text and "vllm" not in cpu_text
    assert docker_images.LLAMA_CPP_IMAGE in cpu["llm"]["image"]
    assert docker_images.TEI_CPU_IMAGE in cpu["embedding"]["image"]
    for services in (gpu, cpu):
        assert docker_images.QDRANT_IMAGE in services["qdrant-0"]["image"]
        assert docker_images.HAPROXY_IMAGE in services["lb"]["image"]


def test_compose_haproxy_config_is_valid_and_keeps_the_stack_settings() -> None:
    cfg = STACK / "haproxy" / "compose.cfg"
    tool = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(tool).exists():
        pytest.skip("haproxy is not installed")
    result = subprocess.run([tool, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = cfg.read_text()
    rendered = haproxy.render_config(
        service="x", bind_host="127.0.0.1", bind_port=1, socket_path=Path("/s")
    )
    defaults = rendered.split("defaults\n", 1)[1].split("\n\n", 1)[0]
    for line in [*defaults.splitlines(), "    tune.bufsize 1048576"]:
        assert line in text, f"compose.cfg lacks the stack's setting: {line.strip()}"
    for backend, port in (("embedding", 80), ("llm", 8000), ("app", 8000)):
        assert f"backend {backend}\n" in text and f" {backend}:{port}" in text
    assert text.count("option httpchk GET /health") == 3
