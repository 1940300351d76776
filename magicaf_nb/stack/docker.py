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
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import docker.errors
import pandas as pd
from docker.types import DeviceRequest, Mount

from magicaf_nb import models
from magicaf_nb.config import StackSpec
from magicaf_nb.stack import docker_engine as engine
from magicaf_nb.stack import docker_qdrant, haproxy, state
from magicaf_nb.stack.base import BalancerRecord, ReplicaRecord, StackBase, StackError, Usage
from magicaf_nb.stack.docker_images import (
    APP_IMAGE,
    APP_IMAGE_HINT,
    ContainerSpec,
    DockerImages,
    fill,
)
from magicaf_nb.stack.ports import pick_free_port

# Components served by replicas behind a load balancer, in start order (the app last:
# its environment names the other services' URLs). Qdrant peers have no LB: each peer
# serves the whole cluster.
REPLICATED = ("embedding", "llm", "app")
QDRANT = "qdrant"
CHECK_CONTAINER_EVERY_S = 0.5


@dataclass
class DockerReplica(ReplicaRecord):
    component: str
    index: int
    port: int
    name: str
    container_id: str | None = None
    state: str = "starting"  # starting | serving | killed | stopped
    in_lb: bool = False
    grpc_port: int | None = None  # Qdrant peers only
    p2p_port: int | None = None


@dataclass
class DockerBalancer(BalancerRecord):
    component: str
    port: int
    socket_path: str
    config_path: str
    name: str
    container_id: str | None = None


def _exception_of(func: Any) -> Any:
    """Wrap ``func`` so that it returns the exception it raised (or None)."""

    def call(*args: Any) -> BaseException | None:
        try:
            func(*args)
        except BaseException as exc:
            return exc
        return None

    return call


class DockerStack(StackBase[DockerReplica, DockerBalancer, dict[str, Path]]):
    """Launch, scale and tear down the stack as containers (same interface as ``LocalStack``).

    ``images`` says what each component runs (default: ``DockerImages.official()``);
    ``docker_host`` overrides ``DOCKER_HOST``. ``detach=True`` leaves the containers
    running after this process exits (``DockerStack.attach(name).down()`` stops them);
    otherwise a watchdog removes them if this process dies without ``down()``.
    """

    _kind = "Docker stack"
    _exit_check_first_s = 0.2
    _exit_check_every_s = CHECK_CONTAINER_EVERY_S

    def __init__(
        self,
        spec: StackSpec | None = None,
        images: DockerImages | None = None,
        *,
        docker_host: str | None = None,
        detach: bool = False,
    ) -> None:
        super().__init__(spec, detach=detach)
        self.images = (images or DockerImages.official()).validate()
        self.docker_host = docker_host or os.environ.get("DOCKER_HOST")
        self._client: Any = None
        self._owner = engine.owner_token(detach)
        self._app_replicas = self.images.app.replicas if self.images.app else 0
        self._qdrant_peers = self.images.qdrant.replicas if self.images.qdrant else 0
        self.components = self._components()

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

    # ------------------------------------------------------------------ inspection

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

    def _known_components(self) -> list[str]:
        return self.components

    def _row_components(self) -> list[str]:
        return self.components

    def _runs_vector_store(self) -> bool:
        return QDRANT in self._containerized()

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

    def _check_scalable(self, component: str, n: int) -> None:
        if component != QDRANT:
            return
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

    def _before_leaving(self, replica: DockerReplica, leaving: list[DockerReplica]) -> None:
        if replica.component == QDRANT:
            staying = [r for r in self._of(QDRANT) if r not in leaving]
            docker_qdrant.drain_peer(
                (replica.index, replica.url),
                [(r.index, r.url) for r in staying if r.state == "serving"],
            )

    def _model_name(self, component: str) -> str:
        return self.images.for_component(component).model_name or super()._model_name(component)

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

    # ------------------------------------------------------------------ internals: up and down

    def _prepare(self) -> dict[str, Path]:
        client = self.client
        self.components = self._components()
        model_paths = self._resolve_models()
        engine.ensure_images(
            client,
            [self.images.for_component(c).image for c in self._containerized()]
            + [self.images.lb.image],
            pull=self.images.pull,
            hints={APP_IMAGE: APP_IMAGE_HINT},
        )
        return model_paths

    def _launch(self, plan: dict[str, Path]) -> None:
        for comp in self._balanced():
            self._start_balancer(comp)
        # Every port is known once the replicas are registered, so all containers
        # (the app's environment names the LB and Qdrant URLs) start together.
        containerized = self._containerized()
        wanted = [
            (c, i) for c in containerized for i in range(1 if c == QDRANT else self._target(c))
        ]
        new = self._start_replicas(wanted, plan)
        for comp in self._balanced():
            self._wait_balancer(comp)
        self._wait_healthy(new)
        self._join_all(new)
        if QDRANT in containerized and self._target(QDRANT) > 1:
            # Cluster peers join the first one, so they start once it serves.
            peers = self._start_replicas(
                [(QDRANT, i) for i in range(1, self._target(QDRANT))], plan
            )
            self._wait_healthy(peers)

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

    def _watchdog_command(self) -> tuple[str, list[str], str]:
        url = self.docker_host or "unix:///var/run/docker.sock"
        args = [url, self.spec.name, self._owner]
        return "magicaf_nb.stack.docker_watchdog", args, "docker-watchdog.log"

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
        self._stop_watchdog()
        for balancer in self.balancers.values():
            with contextlib.suppress(FileNotFoundError):
                Path(balancer.socket_path).unlink()
        self.replicas.clear()
        self.balancers.clear()

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
        values["model_name"] = self._model_name(component)
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
        sock_dir = state.socket_dir(self.spec.name)
        sock = sock_dir / f"docker-{component}.sock"
        port, cfg = self._write_lb_config(component, run, sock, self.spec.host)
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

    # ------------------------------------------------------------------ internals: replicas

    def _start_new(self, component: str, indices: list[int]) -> list[DockerReplica]:
        return self._start_replicas([(component, i) for i in indices], self._resolve_models())

    def _relaunch(self, replica: DockerReplica, grace_s: int) -> None:
        container = self._container(replica.container_id)
        container.stop(timeout=grace_s)
        container.start()

    def _destroy(self, replica: DockerReplica) -> None:
        if replica.container_id is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container = self.client.containers.get(replica.container_id)
                with contextlib.suppress(docker.errors.APIError):
                    container.stop(timeout=3)
                container.remove(force=True, v=True)

    def _leave_lb(self, replica: DockerReplica) -> None:
        with contextlib.suppress(OSError):  # the LB container is gone: nothing to leave
            super()._leave_lb(replica)

    def _has_server(self, replica: DockerReplica) -> bool:
        return replica.container_id is not None

    def _sigkill(self, replica: DockerReplica) -> None:
        container = self._container(replica.container_id)
        with contextlib.suppress(docker.errors.APIError):
            container.kill(signal="SIGKILL")
        container.wait(timeout=30)

    def _raise_if_exited(self, replica: DockerReplica) -> None:
        container = self._container(replica.container_id)
        if container.status not in ("exited", "dead"):
            return
        code = (container.attrs.get("State") or {}).get("ExitCode")
        image = self.images.for_component(replica.component).image
        where = f"container {replica.name}, image {image}, port {replica.port}"
        raise self._start_failure(replica, where, code, engine.log_tail(container, 20))

    def _health_path(self, replica: DockerReplica) -> str:
        return self.images.for_component(replica.component).health_path

    def _display_name(self, replica: DockerReplica) -> str:
        return replica.name

    def _startup_log_hint(self, replica: DockerReplica) -> str:
        tail = engine.log_tail(self._container(replica.container_id), 20)
        return f"log of {replica.name}:\n{tail}"

    # ------------------------------------------------------------------ internals: status rows

    def _lb_row(
        self, replica: DockerReplica, lb_rows: dict[str, dict[str, Any]]
    ) -> dict[str, Any] | None:
        if replica.component == QDRANT and replica.state == "serving":
            # A Qdrant peer has no LB: its row shows the peer's role in the cluster.
            return {"status": docker_qdrant.role(replica.url), "responses": 0, "scur": 0}
        return super()._lb_row(replica, lb_rows)

    def _replica_usage(self, replica: DockerReplica) -> Usage:
        return self._container_usage(replica.container_id)

    def _balancer_usage(self, lb: DockerBalancer) -> Usage:
        return self._container_usage(lb.container_id)

    def _container_usage(self, container_id: str | None) -> Usage:
        pid, running = None, False
        if container_id is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container = self.client.containers.get(container_id)
                running = container.status == "running"
                pid = engine.container_pid(container) if running else None
        cpu, rss = engine.cpu_and_rss(pid)
        return Usage(pid, running, cpu, rss)
