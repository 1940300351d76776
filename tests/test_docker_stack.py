"""DockerStack against a real Docker engine: the same lifecycle as LocalStack, as containers.

No image can be pulled here, so the tests import a tiny image holding the host's shared
libraries and run the workbench's own servers (llama-server, HAProxy, the vector server)
in it from bind-mounted host paths. Start an engine with
`eval "$(bash scripts/dockerd.sh start)"`; without one these tests are skipped (or fail
when MAGICAF_NB_REQUIRE_DOCKER=1, as CI sets it).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from magicaf_nb.config import ConfigError, EmbeddingServerSpec, StackSpec
from magicaf_nb.services import EmbeddingClient, LlmClient
from magicaf_nb.stack import DockerStack, PortInUseError, StackError
from magicaf_nb.stack.docker_engine import (
    LABEL_STACK,
    DockerUnavailableError,
    ImageMissingError,
    connect,
)
from magicaf_nb.stack.docker_images import DockerImages, build_host_runtime_image
from magicaf_nb.traffic import RequestStream

from .conftest import unique_name

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_SOCKET = Path(os.environ.get("MAGICAF_DOCKERD_DIR", "/tmp/magicaf-dockerd")) / "docker.sock"
TEXTS = [
    "How do I catch an exception in Python?",
    "The Eiffel Tower is in Paris.",
    "Photosynthesis stores light energy in glucose.",
]


def _engine_url() -> str:
    candidates = [os.environ["DOCKER_HOST"]] if os.environ.get("DOCKER_HOST") else []
    candidates += [f"unix://{SCRIPT_SOCKET}", "unix:///var/run/docker.sock"]
    errors = []
    for url in candidates:
        try:
            connect(url).close()
            return url
        except DockerUnavailableError as exc:
            errors.append(str(exc))
    message = "No Docker engine reachable: " + " | ".join(errors)
    if os.environ.get("MAGICAF_NB_REQUIRE_DOCKER") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, Any]]:
    url = _engine_url()
    client = connect(url)
    yield url, client
    client.close()


@pytest.fixture(scope="module")
def runtime_image(engine: tuple[str, Any]) -> Iterator[str]:
    """The host-runtime image; removed at the end if this module imported it."""
    _, client = engine
    before = {t for i in client.images.list() for t in i.tags}
    ref = build_host_runtime_image(client)
    yield ref
    if ref not in before:
        client.images.remove(ref)


def _snapshot(client: Any) -> dict[str, Any]:
    return {
        "images": sorted(i.id for i in client.images.list(all=True)),
        "containers": sorted(c.id for c in client.containers.list(all=True)),
        "volumes": sorted(v.name for v in client.volumes.list()),
        "layers_size": client.df()["LayersSize"],
    }


@pytest.fixture(scope="module")
def baseline(engine: tuple[str, Any], runtime_image: str) -> dict[str, Any]:
    return _snapshot(engine[1])


def _images(ref: str) -> DockerImages:
    return DockerImages.host_binaries(ref)


@pytest.fixture(scope="module")
def stack(
    engine: tuple[str, Any], runtime_image: str, baseline: dict[str, Any]
) -> Iterator[DockerStack]:
    spec = StackSpec(name=unique_name(f"dock{os.getpid()}"))
    images = DockerImages.host_binaries(runtime_image, app_replicas=1)
    running = DockerStack(spec, images, docker_host=engine[0])
    start = time.monotonic()
    running.up()
    print(f"\nDockerStack up: {time.monotonic() - start:.2f} s")
    try:
        yield running
    finally:
        start = time.monotonic()
        running.down()
        print(f"\nDockerStack down: {time.monotonic() - start:.2f} s")


def _stream(stack: DockerStack, rate: float) -> RequestStream:
    client = EmbeddingClient(stack.embedding_config(max_retries=0))
    counter = iter(range(10**9))
    return RequestStream(
        lambda: client.aembed_batch([TEXTS[next(counter) % len(TEXTS)]]),
        rate_per_s=rate,
        max_seconds=60,
    )


# ---------------------------------------------------------------------- the running stack


def test_up_runs_every_component_as_a_labelled_limited_container(
    stack: DockerStack, engine: tuple[str, Any]
) -> None:
    table = stack.status()
    assert list(table.columns) == [
        "component",
        "replica",
        "pid",
        "port",
        "state",
        "lb_status",
        "rss_mb",
        "cpu_s",
        "requests",
        "in_flight",
    ]
    replicas = table[table["component"].isin(["embedding", "llm"])]
    assert len(replicas) == 2 and set(replicas["state"]) == {"serving"}
    assert all(s.startswith("UP") for s in replicas["lb_status"])
    assert (replicas["rss_mb"] > 10).all()
    assert set(table[table["component"].str.endswith("-lb")]["state"]) == {"serving"}
    assert table.query("component == 'qdrant'")["state"].tolist() == ["serving"]

    assert table.query("component == 'app'")["state"].tolist() == ["serving"]
    containers = {c.name: c for c in stack.containers()}
    assert len(containers) == 7  # embedding, llm and app with their balancers; vector server
    for container in containers.values():
        host = container.attrs["HostConfig"]
        assert host["NetworkMode"] == "host" and host["Init"] is True
        assert container.labels[LABEL_STACK] == stack.spec.name
    emb = containers[f"magicaf-{stack.spec.name}-embedding-0"].attrs["HostConfig"]
    assert emb["NanoCpus"] == stack.spec.embedding.threads * 10**9
    assert emb["Memory"] == 2**30
    endpoints = stack.endpoints()
    for key in ("EMBEDDING_URL", "LLM_URL", "QDRANT_URL", "APP_URL"):
        assert endpoints[key].startswith("http://127.0.0.1:")
    assert endpoints["LLM_URL"].endswith("/v1")


def test_requests_through_the_load_balancers(stack: DockerStack) -> None:
    client = EmbeddingClient(stack.embedding_config())
    vectors = client.embed(TEXTS)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert client.embed_batch(["hello"]).served_by == "r0"
    answer = LlmClient(stack.llm_config()).chat("Name one primary colour.")
    assert answer.text.strip() and answer.completion_tokens and answer.served_by == "r0"


def test_vector_server_container_stores_and_reports_shards(stack: DockerStack) -> None:
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    client = QdrantClient(url=stack.vector_config().url, timeout=10)
    name = unique_name("docs")
    client.create_collection(
        name, vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE), shard_number=2
    )
    client.upsert(
        name,
        [qm.PointStruct(id=i, vector=[1.0, i, 0.5, 0.0], payload={"i": i}) for i in range(20)],
        wait=True,
    )
    assert client.count(name).count == 20
    shards = stack.shards(name)
    assert sorted(shards["shard_id"]) == [0, 1]
    assert int(shards["points"].sum()) == 20
    with pytest.raises(StackError, match="single-node vector server"):
        stack.scale("qdrant", 2)
    client.delete_collection(name)


def test_scale_up_and_down_under_load_fails_no_request(stack: DockerStack) -> None:
    stream = _stream(stack, rate=25).start()
    time.sleep(1.0)
    up = stack.scale("embedding", 3)
    time.sleep(2.0)
    down = stack.scale("embedding", 1)
    time.sleep(0.5)
    records = stream.stop()
    print(f"\nDockerStack scale embedding 1->3: {up.seconds:.2f} s, 3->1: {down.seconds:.2f} s")
    assert up.added and len(up.added) == 2 and len(down.removed) == 2
    assert len(records) > 60
    failed = records[~records["ok"]]
    assert failed.empty, failed["error"].tolist()[:3]
    assert {"r0", f"r{up.added[0]}", f"r{up.added[1]}"} <= set(records["served_by"])
    assert len(stack.status().query("component == 'embedding'")) == 1
    names = {c.name for c in stack.containers()}
    assert not any(f"embedding-{i}" in n for i in up.added for n in names)


def test_kill_under_load_fails_no_request_and_restart_recovers(stack: DockerStack) -> None:
    stack.scale("embedding", 2)
    victim = max(r.index for r in stack.replicas if r.component == "embedding")
    stream = _stream(stack, rate=40).start()
    time.sleep(1.0)
    stack.kill("embedding", victim)
    time.sleep(2.0)
    records = stream.stop()
    failed = records[~records["ok"]]
    assert failed.empty, failed["error"].tolist()[:3]
    row = stack.status().set_index(["component", "replica"]).loc[("embedding", victim)]
    assert row["state"] == "killed" and row["lb_status"].startswith("DOWN")
    killed = next(c for c in stack.containers() if c.name.endswith(f"embedding-{victim}"))
    assert killed.status == "exited" and killed.attrs["State"]["ExitCode"] == 137
    after_kill = records[records["t_send_s"] > records["t_send_s"].max() - 1.0]
    assert set(after_kill["served_by"]) == {"r0"}
    seconds = stack.restart("embedding", victim)
    assert seconds < 30
    client = EmbeddingClient(stack.embedding_config())
    assert f"r{victim}" in {client.embed_batch(["x"]).served_by for _ in range(4)}
    stack.scale("embedding", 1)


@dataclass
class _Served:
    served_by: str | None


def test_app_instances_read_the_stack_urls_and_scale_under_load(stack: DockerStack) -> None:
    app_url = stack.endpoints()["APP_URL"]
    env = stack.client.containers.get(f"magicaf-{stack.spec.name}-app-0")
    variables = dict(v.split("=", 1) for v in env.attrs["Config"]["Env"])
    for key in ("EMBEDDING_URL", "LLM_URL", "QDRANT_URL", "QDRANT_COLLECTION"):
        assert variables[key] == stack.endpoints()[key]
    assert variables["MAGICAF_APP_INSTANCE"] == "app-0"
    http = httpx.AsyncClient(timeout=10)

    async def health() -> _Served:
        response = await http.get(f"{app_url}/health")
        response.raise_for_status()
        assert response.json()["status"] == "ok"
        return _Served(response.headers.get("x-served-by"))

    stream = RequestStream(health, rate_per_s=30, max_seconds=60).start()
    time.sleep(0.5)
    event = stack.scale("app", 2)
    time.sleep(1.5)
    stack.kill("app", 0)
    time.sleep(1.5)
    records = stream.stop()
    failed = records[~records["ok"]]
    assert failed.empty, failed["error"].tolist()[:3]
    assert {"r0", f"r{event.added[0]}"} <= set(records["served_by"])
    stack.restart("app", 0)
    stack.scale("app", 1)
    assert len(stack.replica_urls("app")) == 1


def test_llm_scales_out_and_both_replicas_answer(stack: DockerStack) -> None:
    event = stack.scale("llm", 2)
    client = LlmClient(stack.llm_config())
    served = {client.chat("Say yes.").served_by for _ in range(4)}
    assert served == {"r0", f"r{event.added[0]}"}
    stack.scale("llm", 1)
    assert len(stack.replica_urls("llm")) == 1


def test_status_counts_requests_and_logs_quote_the_container(stack: DockerStack) -> None:
    before = int(stack.status().query("component == 'embedding'")["requests"].sum())
    client = EmbeddingClient(stack.embedding_config())
    for _ in range(5):
        client.embed_batch(["count me"])
    after = int(stack.status().query("component == 'embedding'")["requests"].sum())
    assert after - before == 5
    log = stack.logs("embedding", 0, lines=100_000)
    assert "start: " in log and "llama-server" in log and "listening on" in log
    assert len(stack.logs("embedding", 0, lines=3).splitlines()) == 3
    assert "HAProxy" in stack.logs("embedding") or "Server" in stack.logs("embedding")


def test_attach_sees_the_same_stack(stack: DockerStack, engine: tuple[str, Any]) -> None:
    handle = DockerStack.attach(stack.spec.name, docker_host=engine[0])
    assert handle.endpoints() == stack.endpoints()
    mine = stack.status()[["component", "replica", "port", "state"]]
    theirs = handle.status()[["component", "replica", "port", "state"]]
    assert mine.equals(theirs)
    del handle  # a detached handle: dropping it leaves the stack running
    assert stack.status()["state"].eq("serving").all()


# ---------------------------------------------------------------------- teardown and leftovers


def test_down_leaves_no_container_and_no_layer_it_did_not_own(
    engine: tuple[str, Any], runtime_image: str, baseline: dict[str, Any]
) -> None:
    url, client = engine
    name = unique_name("down")
    spec = StackSpec(name=name, embedding=EmbeddingServerSpec(replicas=2))
    stack = DockerStack(spec, _images(runtime_image), docker_host=url).up()
    assert len(stack.containers()) == 8  # 2 embedding, llm, app, vector server, 3 balancers
    stack.scale("embedding", 3)
    stack.kill("embedding", 1)
    start = time.monotonic()
    stack.down()
    print(f"\nDockerStack down (9 containers, one killed): {time.monotonic() - start:.2f} s")
    assert client.containers.list(all=True, filters={"label": f"{LABEL_STACK}={name}"}) == []
    after = _snapshot(client)
    assert after["images"] == baseline["images"]
    assert after["volumes"] == baseline["volumes"]
    assert after["layers_size"] == baseline["layers_size"]
    assert set(after["containers"]) <= set(baseline["containers"]) | {
        c.id for c in client.containers.list(all=True, filters={"label": LABEL_STACK})
    }
    assert stack._watchdog is None


OWNER = textwrap.dedent("""
    import json, sys, time
    from magicaf_nb.config import StackSpec
    from magicaf_nb.stack import DockerStack
    from magicaf_nb.stack.docker_images import DockerImages
    stack = DockerStack(StackSpec(name=sys.argv[1]), DockerImages.host_binaries(sys.argv[2]),
                        docker_host=sys.argv[3]).up()
    print(json.dumps([c.id for c in stack.containers()]), flush=True)
    time.sleep(600)
""")


def test_sigkilled_owner_leaves_no_container(engine: tuple[str, Any], runtime_image: str) -> None:
    url, client = engine
    name = unique_name("orphan")
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, name, runtime_image, url],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line, "the owner process died before its stack was up"
    assert len(json.loads(line)) == 7
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 20
    left = ["?"]
    while left and time.monotonic() < deadline:
        left = client.containers.list(all=True, filters={"label": f"{LABEL_STACK}={name}"})
        time.sleep(0.2)
    assert left == [], f"containers outlived their SIGKILLed owner: {[c.name for c in left]}"


# ---------------------------------------------------------------------- clear errors


def _no_containers(client: Any, name: str) -> bool:
    return client.containers.list(all=True, filters={"label": f"{LABEL_STACK}={name}"}) == []


def test_no_engine_is_a_clear_error(runtime_image: str) -> None:
    stack = DockerStack(
        StackSpec(name=unique_name("noengine")),
        _images(runtime_image),
        docker_host="unix:///nonexistent/docker.sock",
    )
    with pytest.raises(DockerUnavailableError, match="No Docker engine answers at unix:///non"):
        stack.up()
    with pytest.raises(DockerUnavailableError, match="remote engine"):
        DockerStack(docker_host="tcp://docker-host.invalid:2376").up()


def test_missing_image_is_a_clear_error(engine: tuple[str, Any], runtime_image: str) -> None:
    url, client = engine
    images = _images(runtime_image)
    images.llm = replace(images.llm, image="magicaf-nb/not-here:0")
    name = unique_name("noimage")
    with pytest.raises(ImageMissingError) as err:
        DockerStack(StackSpec(name=name), images, docker_host=url).up()
    assert "magicaf-nb/not-here:0" in str(err.value) and "pulls are off" in str(err.value)
    assert _no_containers(client, name)


def test_official_images_missing_here_name_how_to_get_them(engine: tuple[str, Any]) -> None:
    url, client = engine
    images = DockerImages.official()
    absent = [ref for ref in images.images() if not client.images.list(name=ref)]
    if not absent:
        pytest.skip("this engine has every official image")
    name = unique_name("official")
    with pytest.raises(ImageMissingError) as err:
        DockerStack(StackSpec(name=name), images, docker_host=url).up()
    message = str(err.value)
    for ref in absent:
        assert ref in message
    if images.app is not None and images.app.image in absent:
        assert "docker build -f stack/app.Dockerfile" in message
    assert _no_containers(client, name)


def test_taken_port_is_a_clear_error(engine: tuple[str, Any], runtime_image: str) -> None:
    url, client = engine
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        name = unique_name("port")
        spec = StackSpec(name=name, embedding=EmbeddingServerSpec(lb_port=port))
        with pytest.raises(PortInUseError, match=f"Port {port}.*embedding load balancer"):
            DockerStack(spec, _images(runtime_image), docker_host=url).up()
    assert _no_containers(client, name)


def test_container_exiting_at_start_quotes_its_log(
    engine: tuple[str, Any], runtime_image: str, tmp_path: Path
) -> None:
    url, client = engine
    junk = tmp_path / "not-a-model.gguf"
    junk.write_bytes(b"this is not a GGUF file" * 100)
    name = unique_name("exits")
    spec = StackSpec(name=name, embedding=EmbeddingServerSpec(model_path=junk))
    with pytest.raises(StackError) as err:
        DockerStack(spec, _images(runtime_image), docker_host=url).up()
    message = str(err.value)
    assert "embedding replica 0" in message and "exited with code" in message
    assert "Last log lines" in message and "gguf" in message.lower()
    assert _no_containers(client, name)


def test_unknown_template_placeholder_names_the_known_ones(
    engine: tuple[str, Any], runtime_image: str
) -> None:
    url, client = engine
    images = _images(runtime_image)
    images.embedding = replace(images.embedding, command=(*images.embedding.command, "{gpu}"))
    name = unique_name("tmpl")
    with pytest.raises(ConfigError, match=r"\{gpu\}.*Known placeholders.*\{threads\}"):
        DockerStack(StackSpec(name=name), images, docker_host=url).up()
    assert _no_containers(client, name)


# ---------------------------------------------------------------------- Qdrant cluster


def test_qdrant_cluster_peers_scale_and_place_shards(engine: tuple[str, Any]) -> None:
    url, client = engine
    official = DockerImages.official()
    assert official.qdrant is not None
    try:
        client.images.get(official.qdrant.image)
    except Exception:
        pytest.skip(
            f"The Qdrant cluster path needs the {official.qdrant.image} image, which this "
            "Docker engine does not have (and no image can be pulled here)."
        )
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm

    ref = build_host_runtime_image(client)
    images = _images(ref)
    images.qdrant = replace(official.qdrant, replicas=3)
    name = unique_name("cluster")
    with DockerStack(StackSpec(name=name), images, docker_host=url) as stack:
        peers = stack.status().query("component == 'qdrant'")
        assert len(peers) == 3 and set(peers["state"]) == {"serving"}
        assert "Leader" in set(peers["lb_status"])
        q = QdrantClient(url=stack.vector_config().url, timeout=30)
        q.create_collection(
            "c",
            vectors_config=qm.VectorParams(size=4, distance=qm.Distance.COSINE),
            shard_number=3,
            replication_factor=2,
        )
        q.upsert("c", [qm.PointStruct(id=i, vector=[1.0, i, 0, 0]) for i in range(30)], wait=True)
        shards = stack.shards("c")
        assert len(shards) == 6 and set(shards["state"]) == {"Active"}
        stack.scale("qdrant", 4)
        stack.scale("qdrant", 2)
        shards = stack.shards("c")
        assert set(shards["replica"]) <= {0, 1} and sorted(set(shards["shard_id"])) == [0, 1, 2]
        assert q.count("c").count == 30


def test_official_qdrant_peers_render_cluster_commands() -> None:
    """No image needed: the first peer starts the cluster, the others join it by p2p port."""
    from magicaf_nb.stack.docker import DockerReplica

    stack = DockerStack(StackSpec(name=unique_name("render")), DockerImages.official())
    first = DockerReplica(
        "qdrant", 0, 16333, "q0", state="serving", grpc_port=16334, p2p_port=16335
    )
    second = DockerReplica("qdrant", 1, 17333, "q1", grpc_port=17334, p2p_port=17335)
    stack.replicas += [first, second]
    _, command, env, mounts = stack._replica_config(first, {})
    assert command == ["./qdrant", "--uri", "http://127.0.0.1:16335"]
    assert env["QDRANT__CLUSTER__ENABLED"] == "true"
    assert env["QDRANT__SERVICE__HTTP_PORT"] == "16333"
    assert env["QDRANT__SERVICE__GRPC_PORT"] == "16334"
    assert env["QDRANT__CLUSTER__P2P__PORT"] == "16335"
    assert env["QDRANT__SERVICE__HOST"] == "127.0.0.1" and mounts == []
    _, command, env, _ = stack._replica_config(second, {})
    assert command == [
        "./qdrant",
        "--bootstrap",
        "http://127.0.0.1:16335",
        "--uri",
        "http://127.0.0.1:17335",
    ]
    assert env["QDRANT__CLUSTER__P2P__PORT"] == "17335"
    stack.replicas.append(DockerReplica("embedding", 0, 18080, "e0"))
    _, command, _, _ = stack._replica_config(stack.replicas[-1], {})
    assert command[:2] == ["--model-id", "sentence-transformers/all-MiniLM-L6-v2"]
    assert command[command.index("--port") + 1] == "18080"
    gpu = DockerStack(StackSpec(name=unique_name("render")), DockerImages.official(gpu=True))
    assert gpu.images.llm.gpus == 1 and "vllm" in gpu.images.llm.image
    gpu.replicas.append(DockerReplica("llm", 0, 18000, "l0"))
    _, command, _, _ = gpu._replica_config(gpu.replicas[-1], {})
    assert command[command.index("--served-model-name") + 1] == "SmolLM2-135M-Instruct"
    assert command[command.index("--max-model-len") + 1] == str(gpu.spec.llm.context)
