"""``DockerStack``: the same stack as ``LocalStack``, as containers on a Docker engine.

The interface and the ``StackSpec`` are ``LocalStack``'s; what each component runs
(image, command, mounts, CPU/memory/GPU limits) comes from ``DockerImages``. Every
container uses host networking, binds to 127.0.0.1, runs with ``init=True`` and carries
labels that let ``down()``, a later ``up()`` and a watchdog find it. Each replicated
service is N replica containers behind one HAProxy container whose runtime API socket is
bind-mounted to this machine, so replicas join only once healthy and leave drained:
scaling costs no failed request, and ``kill`` is a real SIGKILL of the container.

>>> from magicaf_nb.stack.docker_images import DockerImages, build_host_runtime_image
>>> with DockerStack(StackSpec(), DockerImages.official()) as stack:   # doctest: +SKIP
...     print(stack.status())
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker.errors
import httpx
import pandas as pd
from docker.types import DeviceRequest, Mount

from magicaf_nb import models
from magicaf_nb.config import (
    MAX_REPLICAS,
    ConfigError,
    EmbeddingConfig,
    LlmConfig,
    StackSpec,
    VectorStoreConfig,
    check_positive_int,
)
from magicaf_nb.stack import docker_engine as engine
from magicaf_nb.stack import docker_qdrant, haproxy, procs, state
from magicaf_nb.stack.docker_images import (
    APP_IMAGE,
    APP_IMAGE_HINT,
    ContainerSpec,
    DockerImages,
    fill,
)
from magicaf_nb.stack.local import ScaleEvent, StackError
from magicaf_nb.stack.ports import ensure_port_free, pick_free_port
from magicaf_nb.stack.procs import ProcessRecord

# Components served by replicas behind a load balancer, in start order (the app last:
# its environment names the other services' URLs). Qdrant peers have no LB: each peer
# serves the whole cluster.
REPLICATED = ("embedding", "llm", "app")
QDRANT = "qdrant"
STATUS_COLUMNS = [
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
CHECK_CONTAINER_EVERY_S = 0.5


@dataclass
class DockerReplica:
    component: str
    index: int
    port: int
    name: str
    container_id: str | None = None
    state: str = "starting"  # starting | serving | killed | stopped
    in_lb: bool = False
    grpc_port: int | None = None  # Qdrant peers only
    p2p_port: int | None = None

    @property
    def server_name(self) -> str:
        return f"r{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class DockerBalancer:
    component: str
    port: int
    socket_path: str
    config_path: str
    name: str
    container_id: str | None = None

    @property
    def api(self) -> haproxy.RuntimeApi:
        return haproxy.RuntimeApi(Path(self.socket_path))


def _exception_of(func: Any) -> Any:
    """Wrap ``func`` so that it returns the exception it raised (or None)."""

    def call(*args: Any) -> BaseException | None:
        try:
            func(*args)
        except BaseException as exc:
            return exc
        return None

    return call


_LIVE: weakref.WeakValueDictionary[str, DockerStack] = weakref.WeakValueDictionary()


class DockerStack:
    """Launch, scale and tear down the stack as containers (same interface as ``LocalStack``).

    ``images`` says what each component runs (default: ``DockerImages.official()``);
    ``docker_host`` overrides ``DOCKER_HOST``. ``detach=True`` leaves the containers
    running after this process exits (``DockerStack.attach(name).down()`` stops them);
    otherwise a watchdog removes them if this process dies without ``down()``.
    """

    def __init__(
        self,
        spec: StackSpec | None = None,
        images: DockerImages | None = None,
        *,
        docker_host: str | None = None,
        detach: bool = False,
    ) -> None:
        self.spec = (spec or StackSpec()).validate()
        self.images = (images or DockerImages.official()).validate()
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST")
        self.detach = detach
        self.replicas: list[DockerReplica] = []
        self.balancers: dict[str, DockerBalancer] = {}
        self._client: Any = None
        self._owner = engine.owner_token(detach)
        self._watchdog: ProcessRecord | None = None
        self._lock = threading.RLock()
        self._up = False
        self._app_replicas = self.images.app.replicas if self.images.app else 0
        self._qdrant_peers = self.images.qdrant.replicas if self.images.qdrant else 0
        # An external Qdrant (spec.qdrant.url, else QDRANT_URL), fixed when the stack starts.
        self._qdrant_external = self._external_qdrant_url()
        self.components = self._components()

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> DockerStack:
        """Start every load balancer and replica; wait until all serve through the LBs."""
        with self._lock:
            if self._up:
                return self
            client = self.client
            self._qdrant_external = self._external_qdrant_url()
            self.components = self._components()
            model_paths = self._resolve_models()
            engine.ensure_images(
                client,
                [self.images.for_component(c).image for c in self._containerized()]
                + [self.images.lb.image],
                pull=self.images.pull,
                hints={APP_IMAGE: APP_IMAGE_HINT},
            )
            previous = _LIVE.get(self.spec.name)
            if previous is not None and previous is not self and previous.is_up:
                warnings.warn(
                    f"Replacing the Docker stack {self.spec.name!r} this process started earlier.",
                    stacklevel=2,
                )
                previous.down()
            for comp in self._balanced():
                port = self._lb_port_setting(comp)
                if port is not None:
                    ensure_port_free(port, f"{comp} load balancer")
            qdrant_port = getattr(getattr(self.spec, QDRANT, None), "port", None)
            if QDRANT in self._containerized() and qdrant_port is not None:
                ensure_port_free(qdrant_port, "vector server (qdrant)")
            self._reap_previous()
            try:
                self._start_watchdog()
                for comp in self._balanced():
                    self._start_balancer(comp)
                # Every port is known once the replicas are registered, so all containers
                # (the app's environment names the LB and Qdrant URLs) start together.
                containerized = self._containerized()
                wanted = [
                    (c, i)
                    for c in containerized
                    for i in range(1 if c == QDRANT else self._target(c))
                ]
                new = self._start_replicas(wanted, model_paths)
                for comp in self._balanced():
                    self._wait_balancer(comp)
                self._wait_healthy(new)
                self._join_all(new)
                if QDRANT in containerized and self._target(QDRANT) > 1:
                    # Cluster peers join the first one, so they start once it serves.
                    peers = self._start_replicas(
                        [(QDRANT, i) for i in range(1, self._target(QDRANT))], model_paths
                    )
                    self._wait_healthy(peers)
            except BaseException:
                self._teardown()
                raise
            self._up = True
            _LIVE[self.spec.name] = self
            return self

    def down(self) -> None:
        """Remove every container this stack started (running or not) and stop its watchdog."""
        with self._lock:
            self._teardown()
            self._up = False

    def __enter__(self) -> DockerStack:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def __del__(self) -> None:  # a dropped notebook variable should not leak containers
        if getattr(self, "_up", False) and not self.detach:
            with contextlib.suppress(Exception):
                self.down()

    @classmethod
    def attach(cls, name: str = "default", *, docker_host: str | None = None) -> DockerStack:
        """A handle on a running stack, rebuilt from its containers' labels.

        The handle never tears the stack down by accident (it is ``detach``-ed) but its
        ``down()`` removes every container of the stack.
        """
        client = engine.connect(docker_host)
        containers = engine.stack_containers(client, name)
        lbs = [c for c in containers if c.labels.get(engine.LABEL_ROLE) == "lb"]
        if not lbs:
            raise StackError(
                f"No running Docker stack named {name!r}. Fix: start one with "
                "DockerStack(...).up()."
            )
        labels = lbs[0].labels
        spec = StackSpec.from_dict(json.loads(labels[engine.LABEL_SPEC]))
        images = DockerImages.from_dict(json.loads(labels[engine.LABEL_IMAGES]))
        stack = cls(spec, images, docker_host=docker_host, detach=True)
        stack._client = client
        extra = json.loads(labels.get(engine.LABEL_EXTRA, "{}"))
        stack._app_replicas = int(extra.get("app_replicas", stack._app_replicas))
        stack.components = stack._components()
        for c in containers:
            comp, role = c.labels.get(engine.LABEL_COMPONENT), c.labels.get(engine.LABEL_ROLE)
            port = int(c.labels.get(engine.LABEL_PORT, "0"))
            if role == "lb":
                info = json.loads(c.labels.get(engine.LABEL_EXTRA, "{}"))
                stack.balancers[comp] = DockerBalancer(
                    comp, port, info["socket"], info["config"], c.name, c.id
                )
            elif role == "replica":
                index = int(c.labels[engine.LABEL_INDEX])
                replica = DockerReplica(comp, index, port, c.name, c.id)
                replica.state = "serving" if c.status == "running" else "killed"
                stack.replicas.append(replica)
        for replica in stack.replicas:
            lb = stack.balancers.get(replica.component)
            with contextlib.suppress(OSError, haproxy.HaproxyError):
                replica.in_lb = (
                    lb is not None and lb.api.server_row(replica.server_name) is not None
                )
        stack.replicas.sort(key=lambda r: (r.component, r.index))
        stack._up = True
        return stack

    # ------------------------------------------------------------------ scaling and faults

    def scale(self, component: str, n: int) -> ScaleEvent:
        """Bring ``component`` to ``n`` serving replicas, live and without failed requests."""
        self._check_component(component)
        check_positive_int(f"{component} replicas", n, upper=MAX_REPLICAS)
        with self._lock:
            self._require_up()
            start = time.monotonic()
            for dead in [r for r in self._of(component) if r.state == "killed"]:
                self._remove(dead)
            current = self._of(component)
            before = len(current)
            added: list[int] = []
            removed: list[int] = []
            if component == QDRANT:
                self._check_qdrant_scalable(n)
            if n > before:
                next_index = max((r.index for r in current), default=-1) + 1
                new = self._start_replicas(
                    [(component, next_index + k) for k in range(n - before)],
                    self._resolve_models(),
                )
                try:
                    self._wait_healthy(new)
                except BaseException:
                    for replica in new:
                        self._remove(replica)
                    raise
                self._join_all(new)
                added = [r.index for r in new]
            elif n < before:
                leaving = sorted(current, key=lambda r: r.index)[n:]
                for replica in leaving:
                    if component == QDRANT:
                        staying = [r for r in self._of(QDRANT) if r not in leaving]
                        docker_qdrant.drain_peer(
                            (replica.index, replica.url),
                            [(r.index, r.url) for r in staying if r.state == "serving"],
                        )
                    self._remove(replica)
                    removed.append(replica.index)
            self._set_target(component, n)
            return ScaleEvent(component, before, n, time.monotonic() - start, added, removed)

    def kill(self, component: str, index: int) -> None:
        """SIGKILL one replica's container (fault injection). The LB routes around it."""
        with self._lock:
            replica = self._replica(component, index)
            if replica.state != "serving":
                raise StackError(
                    f"{component} replica {index} is {replica.state}, not serving: nothing to "
                    f"kill. Fix: restart('{component}', {index}) first."
                )
            container = self._container(replica.container_id)
            with contextlib.suppress(docker.errors.APIError):
                container.kill(signal="SIGKILL")
            container.wait(timeout=30)
            replica.state = "killed"

    def restart(self, component: str, index: int) -> float:
        """Restart one replica's container on its port; return seconds until it serves again."""
        with self._lock:
            replica = self._replica(component, index)
            start = time.monotonic()
            if component not in self.balancers:  # a Qdrant peer: no load balancer
                container = self._container(replica.container_id)
                container.stop(timeout=10)
                container.start()
                replica.state = "starting"
                self._wait_healthy([replica])
                return time.monotonic() - start
            lb = self.balancers[component].api
            if replica.in_lb:
                if replica.state == "serving":
                    lb.set_state(replica.server_name, "drain")
                    self._wait_drained(replica)
                lb.set_state(replica.server_name, "maint")
            container = self._container(replica.container_id)
            container.stop(timeout=3)
            container.start()
            replica.state = "starting"
            self._wait_healthy([replica])
            if replica.in_lb:
                lb.set_state(replica.server_name, "ready")
            else:
                self._join_lb(replica)
            self._wait_lb_up([replica])
            return time.monotonic() - start

    # ------------------------------------------------------------------ inspection

    def endpoints(self) -> dict[str, str]:
        """The load balancers' URLs under MagicAF's variable names."""
        self._require_up()
        return self._endpoints()

    def embedding_config(self, **overrides: Any) -> EmbeddingConfig:
        return EmbeddingConfig.from_env(self.endpoints(), **overrides)

    def llm_config(self, **overrides: Any) -> LlmConfig:
        return LlmConfig.from_env(self.endpoints(), **overrides)

    def vector_config(self, **overrides: Any) -> VectorStoreConfig:
        return VectorStoreConfig.from_env(self.endpoints(), **overrides)

    def shards(self, collection: str | None = None) -> pd.DataFrame:
        """Shard placement from the cluster API: one row per shard replica and its state.

        Columns: collection, shard_id, peer_id, replica (this stack's peer index), state,
        points. With an external Qdrant, the peer the URL names answers for its shards.
        """
        self._require_up()
        if self._qdrant_external:
            return docker_qdrant.shard_table([(0, self._qdrant_external)], collection)
        peers = [(r.index, r.url) for r in self._of(QDRANT) if r.state == "serving"]
        return docker_qdrant.shard_table(peers, collection)

    def replica_urls(self, component: str) -> list[str]:
        """Direct URLs of the serving replicas (bypassing the load balancer)."""
        self._check_component(component)
        return [r.url for r in self._of(component) if r.state == "serving"]

    def status(self) -> pd.DataFrame:
        """One row per container: replicas and load balancers, with live counters."""
        rows: list[dict[str, Any]] = []
        for comp in self.components:
            lb = self.balancers.get(comp)
            lb_rows: dict[str, dict[str, Any]] = {}
            if lb is not None:
                with contextlib.suppress(OSError, KeyError):
                    lb_rows = {
                        row["server"]: row for row in lb.api.server_stats().to_dict("records")
                    }
            for replica in self._of(comp):
                lb_row = lb_rows.get(replica.server_name)
                if comp == QDRANT and replica.state == "serving":
                    lb_row = {"status": docker_qdrant.role(replica.url), "responses": 0, "scur": 0}
                rows.append(self._replica_row(replica, lb_row))
            if lb is not None:
                rows.append(self._balancer_row(lb, lb_rows))
            if comp == QDRANT and self._qdrant_external:
                rows.append(self._external_row())
        table = pd.DataFrame(rows, columns=STATUS_COLUMNS)
        for col in ("replica", "pid", "port", "requests", "in_flight"):
            table[col] = table[col].astype("Int64")
        return table

    def lb_stats(self, component: str) -> pd.DataFrame:
        """HAProxy's per-server counters for one service."""
        self._check_component(component)
        self._require_up()
        return self.balancers[component].api.server_stats()

    def logs(self, component: str, index: int | None = None, lines: int = 40) -> str:
        """The last ``lines`` of a replica container's log, or of the component's LB."""
        self._check_component(component)
        self._require_up()
        if component not in self.balancers and index is None:
            index = min((r.index for r in self._of(component)), default=0)
        if index is None:
            target = self.balancers[component].container_id
        else:
            target = self._replica(component, index).container_id
        container = self._container(target)
        head = (
            f"=== container {container.name} ({container.image.tags or container.image.id}) "
            f"start: {' '.join(container.attrs['Config'].get('Entrypoint') or [])} "
            f"{' '.join(container.attrs['Config'].get('Cmd') or [])}"
        )
        body = engine.log_tail(container, lines)
        return "\n".join([head, *body.splitlines()][-lines:])

    def containers(self) -> list[Any]:
        """Every container of this stack on the engine (for inspection)."""
        return engine.stack_containers(self.client, self.spec.name)

    @property
    def is_up(self) -> bool:
        return self._up

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = engine.connect(self.docker_host)
        return self._client

    # ------------------------------------------------------------------ internals: topology

    def _components(self) -> list[str]:
        comps = [c for c in ("embedding", "llm") if getattr(self.spec, c, None) is not None]
        if self._qdrant_external or (
            getattr(self.spec, QDRANT, None) is not None and self.images.qdrant is not None
        ):
            comps.append(QDRANT)
        if getattr(self.spec, "app", None) is not None or (
            self.images.app is not None and self._app_replicas > 0
        ):
            comps.append("app")
        return comps

    def _containerized(self) -> list[str]:
        """Components this stack runs as containers (an external Qdrant is not one)."""
        return [c for c in self.components if not (c == QDRANT and self._qdrant_external)]

    def _balanced(self) -> list[str]:
        return [c for c in self.components if c in REPLICATED]

    def _external_qdrant_url(self) -> str | None:
        part = getattr(self.spec, QDRANT, None)
        external = getattr(part, "external_url", None)
        return external() if callable(external) else None

    def _target(self, component: str) -> int:
        if component == QDRANT:
            return self._qdrant_peers
        part = getattr(self.spec, component, None)
        if part is not None and hasattr(part, "replicas"):
            return int(part.replicas)
        return self._app_replicas

    def _set_target(self, component: str, n: int) -> None:
        part = getattr(self.spec, component, None)
        if component == QDRANT:
            self._qdrant_peers = n
        elif part is not None and hasattr(part, "replicas"):
            part.replicas = n
        else:
            self._app_replicas = n

    def _check_qdrant_scalable(self, n: int) -> None:
        if self._qdrant_external:
            raise StackError(
                f"The vector store is the external Qdrant at {self._qdrant_external}; this stack "
                "does not manage its peers. Fix: scale that cluster where it runs."
            )
        cspec = self.images.for_component(QDRANT)
        if n > 1 and cspec.join_command is None:
            raise StackError(
                f"scale('{QDRANT}', {n}): the image {cspec.image} runs a single-node vector "
                "server, which scales by shards (shard_number), not by peers. Fix: use "
                "DockerImages.official() (qdrant/qdrant in cluster mode) for a cluster, or "
                "create collections with shard_number=N."
            )

    def _lb_port_setting(self, component: str) -> int | None:
        part = getattr(self.spec, component, None)
        return getattr(part, "lb_port", None)

    def _check_component(self, component: str) -> None:
        if component not in self.components:
            raise ConfigError(
                f"Unknown component {component!r}: use one of {', '.join(self.components)}."
            )

    def _require_up(self) -> None:
        if not self._up:
            raise StackError("The stack is not up. Fix: call up() first (or use `with stack:`).")

    def _of(self, component: str) -> list[DockerReplica]:
        return [r for r in self.replicas if r.component == component]

    def _replica(self, component: str, index: int) -> DockerReplica:
        self._check_component(component)
        self._require_up()
        if component == QDRANT and self._qdrant_external:
            raise StackError(
                f"The vector store is the external Qdrant at {self._qdrant_external}; this stack "
                "does not manage its processes. Fix: kill or restart it where it runs."
            )
        for replica in self._of(component):
            if replica.index == index:
                return replica
        known = ", ".join(str(r.index) for r in self._of(component)) or "none"
        raise StackError(f"No {component} replica {index!r}; the replicas are: {known}.")

    def _container(self, container_id: str | None) -> Any:
        try:
            return self.client.containers.get(container_id)
        except docker.errors.NotFound:
            raise StackError(
                f"Container {container_id} is gone from the Docker engine (removed outside "
                "the stack). Fix: down() and up() again."
            ) from None

    def _resolve_models(self) -> dict[str, Path]:
        """Host model files for components whose container spec mounts the workbench's GGUF."""
        out: dict[str, Path] = {}
        for comp in ("embedding", "llm"):
            if comp not in self.components or self.images.for_component(comp).model is not None:
                continue
            part = getattr(self.spec, comp)
            if part.model_path is not None:
                path = Path(part.model_path)
            elif comp == "embedding":
                path = models.embedding_model_path(part.quant)
            else:
                path = models.chat_model_path()
            if not path.is_file():
                raise models.ModelNotFoundError(
                    f"The {comp} model file {path} does not exist. Fix: point "
                    f"StackSpec.{comp}.model_path at a GGUF file, or leave it None for the "
                    "packaged default."
                )
            out[comp] = path.resolve()
        return out

    def _endpoints(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if "embedding" in self.balancers:
            out["EMBEDDING_URL"] = f"http://127.0.0.1:{self.balancers['embedding'].port}"
            out["EMBEDDING_MODEL"] = self.images.embedding.model_name or models.EMBEDDING_MODEL_NAME
        if "llm" in self.balancers:
            out["LLM_URL"] = f"http://127.0.0.1:{self.balancers['llm'].port}/v1"
            out["LLM_MODEL"] = self.images.llm.model_name or models.CHAT_MODEL_NAME
        if self._qdrant_external:
            out["QDRANT_URL"] = self._qdrant_external
            key = os.environ.get("QDRANT_API_KEY")
            if key and not getattr(self.spec.qdrant, "url", None):
                out["QDRANT_API_KEY"] = key
        else:
            peers = [r for r in self._of(QDRANT) if r.state == "serving"] or self._of(QDRANT)
            if peers:
                out["QDRANT_URL"] = min(peers, key=lambda r: r.index).url
        app = getattr(self.spec, "app", None)
        if getattr(app, "collection", None):
            out["QDRANT_COLLECTION"] = app.collection
        if "app" in self.balancers:
            out["APP_URL"] = f"http://127.0.0.1:{self.balancers['app'].port}"
        return out

    # ------------------------------------------------------------------ internals: containers

    def _labels(self, component: str, role: str, port: int, index: int | None) -> dict[str, str]:
        labels = {
            engine.LABEL_STACK: self.spec.name,
            engine.LABEL_OWNER: self._owner,
            engine.LABEL_COMPONENT: component,
            engine.LABEL_ROLE: role,
            engine.LABEL_PORT: str(port),
        }
        if index is not None:
            labels[engine.LABEL_INDEX] = str(index)
        return labels

    def _template_values(self, component: str, index: int, port: int) -> dict[str, Any]:
        values: dict[str, Any] = {}
        part = getattr(self.spec, component, None)
        if part is not None:
            for key, value in asdict(part).items():
                if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                    values[key] = value
        values.update(host=self.spec.host, port=port, index=index)
        if component == "embedding":
            values["embedding_context"] = 512 * int(values.get("slots", 1))
        cspec = self.images.for_component(component)
        values["model_name"] = cspec.model_name or {
            "embedding": models.EMBEDDING_MODEL_NAME,
            "llm": models.CHAT_MODEL_NAME,
        }.get(component, component)
        values.update(self._endpoints())
        return values

    def _run_container(
        self,
        *,
        name: str,
        cspec: ContainerSpec,
        command: list[str],
        environment: dict[str, str],
        labels: dict[str, str],
        mounts: list[Mount],
        cpus: float | None,
        gpu_slot: int = 0,
    ) -> Any:
        what = f"the {labels[engine.LABEL_COMPONENT]} {labels[engine.LABEL_ROLE]} container"
        kwargs: dict[str, Any] = {
            "command": command,
            "name": name,
            "labels": labels,
            "network_mode": "host",
            "init": True,
            "detach": True,
            "environment": environment,
            "mounts": [
                *[Mount(c, h, type="bind", read_only=True) for h, c in cspec.mounts],
                *mounts,
            ],
        }
        if cspec.entrypoint is not None:
            kwargs["entrypoint"] = list(cspec.entrypoint)
        limit = cspec.cpus if cspec.cpus is not None else cpus
        if limit:
            kwargs["nano_cpus"] = int(float(limit) * 1e9)
        if cspec.memory:
            kwargs["mem_limit"] = cspec.memory
        if cspec.user:
            kwargs["user"] = cspec.user
        if cspec.gpus:
            if cspec.gpu_ids:
                ids = [cspec.gpu_ids[gpu_slot % len(cspec.gpu_ids)]]
                kwargs["device_requests"] = [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
            else:
                kwargs["device_requests"] = [
                    DeviceRequest(count=cspec.gpus, capabilities=[["gpu"]])
                ]
        try:
            container = self.client.containers.create(cspec.image, **kwargs)
        except docker.errors.ImageNotFound:
            raise engine.ImageMissingError(
                f"Image {cspec.image} for {what} is not on the Docker engine. Fix: `docker "
                "pull`/`docker load` it, or choose another image in DockerImages."
            ) from None
        except docker.errors.APIError as exc:
            raise StackError(
                f"Docker refused to create {what} {name}: {exc.explanation or exc}"
            ) from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            hint = ""
            if "gpu" in str(exc).lower():
                hint = (
                    " Fix: install the NVIDIA Container Toolkit on the Docker host, or set "
                    "gpus=0 in DockerImages for this component."
                )
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
            raise StackError(
                f"Docker could not start {what} {name}: {exc.explanation or exc}.{hint}"
            ) from None
        return container

    def _start_replicas(
        self, wanted: list[tuple[str, int]], model_paths: dict[str, Path]
    ) -> list[DockerReplica]:
        """Register the replicas, then create and start their containers concurrently."""
        taken = {r.port for r in self.replicas} | {b.port for b in self.balancers.values()}
        new: list[DockerReplica] = []

        def free_port() -> int:
            port = pick_free_port()
            while port in taken:
                port = pick_free_port()
            taken.add(port)
            return port

        for comp, index in wanted:
            fixed = getattr(getattr(self.spec, comp, None), "port", None)
            port = fixed if (comp == QDRANT and index == 0 and fixed) else free_port()
            replica = DockerReplica(comp, index, port, f"magicaf-{self.spec.name}-{comp}-{index}")
            if comp == QDRANT:
                replica.grpc_port, replica.p2p_port = free_port(), free_port()
            self.replicas.append(replica)
            new.append(replica)

        def start_one(replica: DockerReplica) -> None:
            cspec, command, environment, mounts = self._replica_config(replica, model_paths)
            threads = getattr(getattr(self.spec, replica.component, None), "threads", None)
            labels = self._labels(replica.component, "replica", replica.port, replica.index)
            if replica.component == QDRANT:
                labels[engine.LABEL_EXTRA] = json.dumps(
                    {"grpc_port": replica.grpc_port, "p2p_port": replica.p2p_port}
                )
            container = self._run_container(
                name=replica.name,
                cspec=cspec,
                command=command,
                environment=environment,
                labels=labels,
                mounts=mounts,
                cpus=float(threads) if threads else None,
                gpu_slot=replica.index,
            )
            replica.container_id = container.id

        if new:
            with ThreadPoolExecutor(max_workers=min(8, len(new))) as pool:
                errors = [e for e in pool.map(_exception_of(start_one), new) if e is not None]
            if errors:
                raise errors[0]
        return new

    def _replica_config(
        self, replica: DockerReplica, model_paths: dict[str, Path]
    ) -> tuple[ContainerSpec, list[str], dict[str, str], list[Mount]]:
        """What a replica's container runs: its spec, filled command and environment, mounts."""
        comp = replica.component
        cspec = self.images.for_component(comp)
        values = self._template_values(comp, replica.index, replica.port)
        mounts: list[Mount] = []
        if comp in model_paths:
            path = model_paths[comp]
            inside = f"/models/{path.name}"
            mounts.append(Mount(inside, str(path), type="bind", read_only=True))
            values["model"] = inside
        elif cspec.model is not None:
            values["model"] = cspec.model
        command = cspec.command
        if comp == QDRANT:
            mounts += self._qdrant_mounts(cspec)
            values.update(self._qdrant_values(replica, cspec))
            if replica.index > 0 and cspec.join_command is not None:
                command = cspec.join_command
        what = f"the {comp} replica container"
        return (
            cspec,
            [fill(a, values, what) for a in command],
            {k: fill(v, values, what) for k, v in cspec.environment.items()},
            mounts,
        )

    def _qdrant_mounts(self, cspec: ContainerSpec) -> list[Mount]:
        """The single-node server's storage: a host folder that survives down() and up()."""
        if cspec.join_command is not None or not cspec.storage:
            return []
        part = getattr(self.spec, QDRANT, None)
        folder = getattr(part, "storage_dir", None) or (
            state.run_dir(self.spec.name) / "docker-qdrant-storage"
        )
        Path(folder).mkdir(parents=True, exist_ok=True)
        return [Mount(cspec.storage, str(Path(folder).resolve()), type="bind")]

    def _qdrant_values(self, replica: DockerReplica, cspec: ContainerSpec) -> dict[str, Any]:
        first = min(
            (r for r in self._of(QDRANT) if r.state == "serving" and r is not replica),
            key=lambda r: r.index,
            default=replica,
        )
        return {
            "grpc_port": replica.grpc_port,
            "p2p_port": replica.p2p_port,
            "bootstrap_p2p_port": first.p2p_port,
            "storage": cspec.storage or "",
        }

    def _start_balancer(self, component: str) -> None:
        run = state.run_dir(self.spec.name) / "docker"
        run.mkdir(parents=True, exist_ok=True)
        port = self._lb_port_setting(component) or pick_free_port()
        sock_dir = state.socket_dir(self.spec.name)
        sock = sock_dir / f"docker-{component}.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        cfg = run / f"{component}-haproxy.cfg"
        cfg.write_text(
            haproxy.render_config(
                service=component, bind_host=self.spec.host, bind_port=port, socket_path=sock
            )
        )
        cspec = self.images.lb
        if cspec.user is None:  # the socket must belong to this user for the runtime API
            cspec = ContainerSpec(**{**asdict(cspec), "user": f"{os.getuid()}:{os.getgid()}"})
        name = f"magicaf-{self.spec.name}-{component}-lb"
        balancer = DockerBalancer(component, port, str(sock), str(cfg), name)
        self.balancers[component] = balancer
        labels = self._labels(component, "lb", port, None)
        labels[engine.LABEL_SPEC] = json.dumps(self.spec.to_dict())
        labels[engine.LABEL_IMAGES] = json.dumps(self.images.to_dict())
        labels[engine.LABEL_EXTRA] = json.dumps(
            {"socket": str(sock), "config": str(cfg), "app_replicas": self._app_replicas}
        )
        values = {"config": str(cfg), "port": port, "host": self.spec.host}
        what = f"the {component} load balancer container"
        container = self._run_container(
            name=name,
            cspec=cspec,
            command=[fill(a, values, what) for a in cspec.command],
            environment={k: fill(v, values, what) for k, v in cspec.environment.items()},
            labels=labels,
            mounts=[
                Mount(str(cfg), str(cfg), type="bind", read_only=True),
                Mount(str(sock_dir), str(sock_dir), type="bind"),
            ],
            cpus=cspec.cpus,
        )
        balancer.container_id = container.id

    def _wait_balancer(self, component: str, timeout_s: float = 20.0) -> None:
        balancer = self.balancers[component]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if balancer.api.is_ready():
                return
            container = self._container(balancer.container_id)
            if container.status in ("exited", "dead"):
                break
            time.sleep(0.05)
        container = self._container(balancer.container_id)
        raise StackError(
            f"The {component} load balancer (container {balancer.name}, HAProxy on "
            f"127.0.0.1:{balancer.port}) did not start ({container.status}). Last log lines:\n"
            f"{engine.log_tail(container, 20)}"
        )

    def _wait_healthy(self, pending: list[DockerReplica]) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        waiting = list(pending)
        next_check = time.monotonic() + 0.2
        with httpx.Client(timeout=2.0) as http:
            while waiting:
                check_containers = time.monotonic() >= next_check
                if check_containers:
                    next_check = time.monotonic() + CHECK_CONTAINER_EVERY_S
                for replica in list(waiting):
                    if check_containers:
                        self._raise_if_exited(replica)
                    path = self.images.for_component(replica.component).health_path
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{replica.url}{path}").status_code == 200:
                            replica.state = "serving"
                            waiting.remove(replica)
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(r.name for r in waiting)
                    tail = engine.log_tail(self._container(waiting[0].container_id), 20)
                    raise StackError(
                        f"Timed out after {self.spec.startup_timeout_s:.0f} s waiting for "
                        f"{names} to become healthy. Fix: raise StackSpec.startup_timeout_s or "
                        f"check the log of {waiting[0].name}:\n{tail}"
                    )
                if waiting:
                    time.sleep(0.05)

    def _raise_if_exited(self, replica: DockerReplica) -> None:
        container = self._container(replica.container_id)
        if container.status not in ("exited", "dead"):
            return
        code = (container.attrs.get("State") or {}).get("ExitCode")
        replica.state = "stopped"
        raise StackError(
            f"{replica.component} replica {replica.index} (container {replica.name}, image "
            f"{self.images.for_component(replica.component).image}, port {replica.port}) "
            f"exited with code {code} during start. Last log lines:\n"
            f"{engine.log_tail(container, 20)}"
        )

    def _join_lb(self, replica: DockerReplica) -> None:
        self.balancers[replica.component].api.add_server(
            replica.server_name, "127.0.0.1", replica.port
        )
        replica.in_lb = True

    def _join_all(self, replicas: list[DockerReplica]) -> None:
        balanced = [r for r in replicas if r.component in self.balancers]
        for replica in balanced:
            self._join_lb(replica)
        self._wait_lb_up(balanced)

    def _wait_lb_up(self, replicas: list[DockerReplica], timeout_s: float = 15.0) -> None:
        """Wait until HAProxy's health checks see every given replica UP."""
        for component in {r.component for r in replicas}:
            names = {r.server_name for r in replicas if r.component == component}
            try:
                self.balancers[component].api.wait_up(names, timeout_s)
            except haproxy.HaproxyError as exc:
                raise StackError(f"{component}: {exc}") from exc

    def _wait_drained(self, replica: DockerReplica, timeout_s: float = 60.0) -> None:
        self.balancers[replica.component].api.wait_drained(replica.server_name, timeout_s)

    def _remove(self, replica: DockerReplica) -> None:
        """Drain and delete a replica from its LB, then stop and remove its container."""
        if replica.in_lb:
            with contextlib.suppress(OSError):
                self.balancers[replica.component].api.remove_server(replica.server_name)
            replica.in_lb = False
        if replica.container_id is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container = self.client.containers.get(replica.container_id)
                with contextlib.suppress(docker.errors.APIError):
                    container.stop(timeout=3)
                container.remove(force=True, v=True)
        replica.state = "stopped"
        if replica in self.replicas:
            self.replicas.remove(replica)

    def _reap_previous(self) -> None:
        leftovers = engine.stack_containers(self.client, self.spec.name)
        if not leftovers:
            return
        owners = {c.labels.get(engine.LABEL_OWNER, "") for c in leftovers}
        live = [o for o in owners if o != self._owner and engine.owner_alive(o)]
        if live:
            who = "a detached stack" if engine.DETACHED in live else f"process {live[0]}"
            raise StackError(
                f"A Docker stack named {self.spec.name!r} is already running, started by {who}. "
                f"Fix: DockerStack.attach({self.spec.name!r}).down(), or give this stack "
                "another name."
            )
        removed = engine.remove_containers(leftovers)
        warnings.warn(
            f"Removed {removed} leftover container(s) of Docker stack {self.spec.name!r} "
            "whose owner had died.",
            stacklevel=3,
        )

    def _start_watchdog(self) -> None:
        if self.detach:
            return
        url = self.docker_host or "unix:///var/run/docker.sock"
        self._watchdog = procs.spawn(
            [
                sys.executable,
                "-m",
                "magicaf_nb.stack.docker_watchdog",
                url,
                self.spec.name,
                self._owner,
            ],
            state.run_dir(self.spec.name) / "docker-watchdog.log",
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )

    def _teardown(self) -> None:
        client = self._client if self._client is not None else None
        if client is None:
            with contextlib.suppress(engine.DockerUnavailableError):
                client = self.client
        if client is not None:
            mine = engine.stack_containers(client, self.spec.name)
            if not self.detach:
                mine = [c for c in mine if c.labels.get(engine.LABEL_OWNER) == self._owner]
            # SIGKILL is enough: the stack keeps no state worth a graceful stop.
            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(lambda c: engine.remove_containers([c]), mine))
        if self._watchdog is not None:
            procs.kill_group(self._watchdog, signal.SIGKILL)
            self._watchdog = None
        for balancer in self.balancers.values():
            with contextlib.suppress(FileNotFoundError):
                Path(balancer.socket_path).unlink()
        self.replicas.clear()
        self.balancers.clear()

    # ------------------------------------------------------------------ internals: status rows

    def _replica_row(self, replica: DockerReplica, lb_row: dict[str, Any] | None) -> dict[str, Any]:
        pid, running = None, False
        if replica.container_id is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container = self.client.containers.get(replica.container_id)
                running = container.status == "running"
                pid = engine.container_pid(container) if running else None
        cpu, rss = engine.cpu_and_rss(pid)
        state_now = replica.state if (running or replica.state != "serving") else "dead"
        return {
            "component": replica.component,
            "replica": replica.index,
            "pid": pid,
            "port": replica.port,
            "state": state_now,
            "lb_status": lb_row["status"] if lb_row else "-",
            "rss_mb": None if rss is None else round(rss, 1),
            "cpu_s": None if cpu is None else round(cpu, 2),
            "requests": int(lb_row["responses"]) if lb_row else 0,
            "in_flight": int(lb_row["scur"]) if lb_row else 0,
        }

    def _external_row(self) -> dict[str, Any]:
        return {
            "component": QDRANT,
            "replica": None,
            "pid": None,
            "port": httpx.URL(self._qdrant_external or "").port,
            "state": "external",
            "lb_status": "-",
            "rss_mb": None,
            "cpu_s": None,
            "requests": 0,
            "in_flight": 0,
        }

    def _balancer_row(
        self, lb: DockerBalancer, lb_rows: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        pid, running = None, False
        with contextlib.suppress(docker.errors.NotFound):
            container = self.client.containers.get(lb.container_id)
            running = container.status == "running"
            pid = engine.container_pid(container) if running else None
        cpu, rss = engine.cpu_and_rss(pid)
        return {
            "component": f"{lb.component}-lb",
            "replica": None,
            "pid": pid,
            "port": lb.port,
            "state": "serving" if running else "dead",
            "lb_status": "-",
            "rss_mb": None if rss is None else round(rss, 1),
            "cpu_s": None if cpu is None else round(cpu, 2),
            "requests": sum(int(r["responses"]) for r in lb_rows.values()),
            "in_flight": sum(int(r["scur"]) for r in lb_rows.values()),
        }
