"""``LocalStack``: the MagicAF stack as real server processes on 127.0.0.1.

Each replicated service (embedding, LLM) is N ``llama-server`` replicas behind one
HAProxy. Replicas join the load balancer only once healthy and leave it drained, so
scaling costs no failed request; ``kill`` is a real SIGKILL for fault injection.
The vector store (``qdrant``) is one process serving Qdrant's REST API over Qdrant's
engine (``magicaf_nb.vector``), or an external Qdrant named by ``QDRANT_URL``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from magicaf_nb import binaries, models
from magicaf_nb.config import (
    COMPONENTS,
    MAX_REPLICAS,
    VECTOR_COMPONENT,
    StackSpec,
    check_positive_int,
)
from magicaf_nb.stack import haproxy, procs, state
from magicaf_nb.stack.base import (
    BalancerRecord,
    ReplicaRecord,
    ScaleEvent,
    StackBase,
    StackError,
    Usage,
)
from magicaf_nb.stack.ports import pick_free_port
from magicaf_nb.stack.procs import ProcessRecord
from magicaf_nb.vector.launch import server_command, server_env


@dataclass
class Replica(ReplicaRecord):
    component: str
    index: int
    port: int
    process: ProcessRecord | None = None
    state: str = "starting"  # starting | serving | killed | stopped
    in_lb: bool = False


@dataclass
class Balancer(BalancerRecord):
    component: str
    port: int
    socket_path: str
    config_path: str
    process: ProcessRecord | None = None


class _Plan(NamedTuple):
    """What ``up()`` found before starting anything."""

    models: dict[str, Path]
    llama_server: Path
    haproxy: Path


def _replica_from_dict(item: dict[str, Any]) -> Replica:
    proc = ProcessRecord(**item["process"]) if item.get("process") else None
    return Replica(**{**item, "process": proc})


def _balancer_from_dict(item: dict[str, Any]) -> Balancer:
    proc = ProcessRecord(**item["process"]) if item.get("process") else None
    return Balancer(**{**item, "process": proc})


def _process_usage(record: ProcessRecord | None) -> Usage:
    if record is None:
        return Usage(None, False, None, None)
    cpu, rss = procs.cpu_and_rss(record)
    return Usage(record.pid, record.is_alive(), cpu, rss)


class LocalStack(StackBase[Replica, Balancer, _Plan]):
    """Launch, scale and tear down the embedded stack.

    >>> with LocalStack(StackSpec()) as stack:          # doctest: +SKIP
    ...     print(stack.endpoints()["EMBEDDING_URL"])

    ``detach=True`` leaves the servers running after this Python process exits (the
    CLI uses it); otherwise a watchdog reaps them if this process dies without ``down()``.
    """

    def __init__(self, spec: StackSpec | None = None, *, detach: bool = False) -> None:
        super().__init__(spec, detach=detach)

    @classmethod
    def attach(cls, name: str = "default") -> LocalStack:
        """Reconnect to a running stack (for example one the CLI started)."""
        data = state.read(name)
        if not data or data.get("corrupt") or not data.get("up"):
            raise StackError(
                f"No running stack named {name!r}. Fix: start one with `magicaf-nb up` "
                "or LocalStack(...).up()."
            )
        stack = cls(StackSpec.from_dict(data["spec"]), detach=data.get("detached", False))
        stack.replicas = [_replica_from_dict(r) for r in data["replicas"]]
        stack.balancers = {b["component"]: _balancer_from_dict(b) for b in data["balancers"]}
        stack._watchdog = ProcessRecord(**data["watchdog"]) if data.get("watchdog") else None
        stack._qdrant_external = data.get("qdrant_external")
        stack._up = True
        stack.detach = True  # an attached handle never tears the stack down by accident
        return stack

    def scale(self, component: str, n: int) -> ScaleEvent:
        """Bring ``component`` to ``n`` serving replicas, live and without failed requests.

        Dead (killed) replicas are removed first; new replicas join the load balancer
        only once healthy; removed ones are drained of in-flight requests first.
        The vector store scales by shards, not replicas: ``qdrant`` stays at one node.
        """
        if component == VECTOR_COMPONENT:
            return self._scale_vector(n)
        return super().scale(component, n)

    def logs(self, component: str, index: int | None = None, lines: int = 40) -> str:
        """The last ``lines`` of a replica's log, or of the component's LB if no index."""
        if component == VECTOR_COMPONENT and index is None:
            index = 0
        if index is None:
            self._check_component(component)
            return procs.tail(Path(state.run_dir(self.spec.name)) / f"{component}-lb.log", lines)
        replica = self._replica(component, index)
        return procs.tail(self._log_path(replica.component, replica.index), lines)

    # ------------------------------------------------------------------ topology

    def _known_components(self) -> Sequence[str]:
        return COMPONENTS

    def _balanced(self) -> Sequence[str]:
        return COMPONENTS

    def _row_components(self) -> Sequence[str]:
        return (*COMPONENTS, VECTOR_COMPONENT)

    def _runs_vector_store(self) -> bool:
        return self._qdrant_external is None

    def _check_replica_component(self, component: str) -> None:
        if component != VECTOR_COMPONENT:
            self._check_component(component)
        elif self._qdrant_external is not None:
            self._refuse_external_qdrant()

    # ------------------------------------------------------------------ up and down

    def _prepare(self) -> _Plan:
        return _Plan(self._resolve_models(), binaries.llama_server_path(), binaries.haproxy_path())

    def _launch(self, plan: _Plan) -> None:
        for comp in COMPONENTS:
            self._start_balancer(comp, plan.haproxy)
        vector = [] if self._qdrant_external else [self._spawn_vector()]
        new = [
            self._spawn_replica(comp, i, plan.llama_server, plan.models.get(comp))
            for comp in COMPONENTS
            for i in range(self.spec.component(comp).replicas)
        ]
        self._wait_healthy(new + vector)
        self._join_all(new)

    def _resolve_models(self) -> dict[str, Path]:
        emb = self.spec.embedding.model_path or models.embedding_model_path(
            self.spec.embedding.quant
        )
        llm = self.spec.llm.model_path or models.chat_model_path()
        for comp, path in (("embedding", emb), ("llm", llm)):
            if not Path(path).is_file():
                raise models.ModelNotFoundError(
                    f"The {comp} model file {path} does not exist. Fix: point "
                    f"StackSpec.{comp}.model_path at a GGUF file, or leave it None for the "
                    "packaged default."
                )
        return {"embedding": Path(emb), "llm": Path(llm)}

    def _warn_if_oversubscribed(self) -> None:
        cores = os.cpu_count() or 1
        if self.spec.cpu_threads() > cores:
            warnings.warn(
                f"The stack asks for {self.spec.cpu_threads()} server threads on {cores} cores; "
                "replicas will compete for CPU, so per-replica speed drops.",
                stacklevel=3,
            )

    def _reap_previous(self) -> None:
        data = state.read(self.spec.name)
        if data is None:
            return
        live = [r for r in state.recorded_processes(data) if r.is_alive()]
        if live and (data.get("detached") or state.owner_alive(data)):
            owner = "the CLI (detached)" if data.get("detached") else f"pid {data['owner_pid']}"
            raise StackError(
                f"A stack named {self.spec.name!r} is already running, started by {owner}. "
                f"Fix: `magicaf-nb down --name {self.spec.name}` (or LocalStack.attach("
                f"{self.spec.name!r}).down()), or give this stack another name."
            )
        if live:
            state.reap(data)
            warnings.warn(
                f"Reaped {len(live)} leftover process(es) of stack {self.spec.name!r} whose "
                "owner had died.",
                stacklevel=3,
            )
        state.remove(self.spec.name)

    def _watchdog_command(self) -> tuple[str, list[str], str]:
        me = psutil.Process()
        args = [self.spec.name, str(me.pid), repr(me.create_time())]
        return "magicaf_nb.stack.watchdog", args, "watchdog.log"

    def _teardown(self) -> None:
        records = [r.process for r in self.replicas if r.process is not None]
        records += [b.process for b in self.balancers.values() if b.process is not None]
        for record in records:
            procs.kill_group(record, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(r.is_alive() for r in records):
            time.sleep(0.05)
        for record in records:
            procs.kill_group(record, signal.SIGKILL)
        self._stop_watchdog()
        self.replicas.clear()
        self.balancers.clear()
        state.remove(self.spec.name)

    # ------------------------------------------------------------------ state

    def _state_dict(self) -> dict[str, Any]:
        me = psutil.Process()
        return {
            "name": self.spec.name,
            "up": self._up,
            "detached": self.detach,
            "owner_pid": None if self.detach else me.pid,
            "owner_create_time": None if self.detach else me.create_time(),
            "spec": self.spec.to_dict(),
            "replicas": [asdict(r) for r in self.replicas],
            "balancers": [asdict(b) for b in self.balancers.values()],
            "watchdog": asdict(self._watchdog) if self._watchdog else None,
            "qdrant_external": self._qdrant_external,
        }

    def _save(self) -> None:
        state.write(self.spec.name, self._state_dict())

    def _log_path(self, component: str, index: int) -> Path:
        return state.run_dir(self.spec.name) / f"{component}-{index}.log"

    # ------------------------------------------------------------------ load balancers

    def _start_balancer(self, component: str, haproxy_bin: Path) -> None:
        run = state.run_dir(self.spec.name)
        sock = state.socket_dir(self.spec.name) / f"{component}.sock"
        port, cfg = self._write_lb_config(component, run, sock, "127.0.0.1")
        check = procs.spawn(
            [str(haproxy_bin), "-c", "-q", "-f", str(cfg)], run / "haproxy-check.log"
        )
        for _ in range(100):
            if procs.exit_code(check) is not None:
                break
            time.sleep(0.02)
        if procs.exit_code(check) != 0:
            raise StackError(
                f"HAProxy rejected the generated {component} configuration {cfg}:\n"
                f"{procs.tail(check.log_path)}"
            )
        record = procs.spawn([str(haproxy_bin), "-db", "-f", str(cfg)], run / f"{component}-lb.log")
        balancer = Balancer(component, port, str(sock), str(cfg), record)
        self.balancers[component] = balancer
        self._save()
        if not haproxy.wait_ready(balancer.api, timeout_s=10):
            raise StackError(
                f"The {component} load balancer (HAProxy on 127.0.0.1:{port}) did not start:\n"
                f"{procs.tail(record.log_path)}"
            )

    def _balancer_alive(self, lb: Balancer) -> bool:
        return lb.process is not None and lb.process.is_alive()

    def _balancer_usage(self, lb: Balancer) -> Usage:
        return _process_usage(lb.process)

    # ------------------------------------------------------------------ replicas

    def _service_env(self, index: int) -> dict[str, str]:
        """What an app instance reads: MagicAF's variables pointing at this stack's LBs."""
        endpoints = {k: v for k, v in self._endpoints().items() if k != "APP_URL"}
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            **endpoints,
            "MAGICAF_APP_INSTANCE": f"app-{index}",
        }

    def _server_command(
        self, component: str, port: int, model: Path | None, llama: Path
    ) -> list[str]:
        if component == "app":
            return [sys.executable, "-m", "magicaf_nb.app", "--port", str(port)]
        common = [
            str(llama),
            "-m",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-webui",
            "--metrics",
        ]
        if component == "embedding":
            spec = self.spec.embedding
            return [
                *common,
                "--alias",
                models.EMBEDDING_MODEL_NAME,
                "--embedding",
                "--pooling",
                "mean",
                "-t",
                str(spec.threads),
                "--parallel",
                str(spec.slots),
                "-c",
                str(512 * spec.slots),
                "-b",
                str(spec.batch_tokens),
                "-ub",
                str(spec.batch_tokens),
            ]
        spec_llm = self.spec.llm
        return [
            *common,
            "--alias",
            models.CHAT_MODEL_NAME,
            "-t",
            str(spec_llm.threads),
            "-c",
            str(spec_llm.context),
            # One KV pool shared by all slots: a long RAG prompt may use most of the
            # context instead of a fixed 1/slots share of it.
            "--kv-unified",
            "--parallel",
            str(spec_llm.slots),
        ]

    def _spawn_replica(
        self,
        component: str,
        index: int,
        llama: Path,
        model: Path | None,
        *,
        port: int | None = None,
        register: bool = True,
    ) -> Replica:
        port = port or pick_free_port()
        cmd = self._server_command(component, port, model, llama)
        env = self._service_env(index) if component == "app" else None
        record = procs.spawn(cmd, self._log_path(component, index), env=env)
        replica = Replica(component, index, port, record)
        if register:
            self.replicas.append(replica)
            self._save()
        return replica

    def _start_new(self, component: str, indices: list[int]) -> list[Replica]:
        paths = self._resolve_models()
        llama_server = binaries.llama_server_path()
        new = [
            self._spawn_replica(component, index, llama_server, paths.get(component))
            for index in indices
        ]
        self._save()
        return new

    def _relaunch(self, replica: Replica, grace_s: int) -> None:
        if replica.process is not None:
            procs.stop(replica.process, grace_s=grace_s)
        if replica.component == VECTOR_COMPONENT:
            fresh = self._spawn_vector(port=replica.port, register=False)
        else:
            fresh = self._spawn_replica(
                replica.component,
                replica.index,
                binaries.llama_server_path(),
                self._resolve_models().get(replica.component),
                port=replica.port,
                register=False,
            )
        replica.process = fresh.process

    def _destroy(self, replica: Replica) -> None:
        if replica.process is not None:
            procs.stop(replica.process)

    def _has_server(self, replica: Replica) -> bool:
        return replica.process is not None

    def _sigkill(self, replica: Replica) -> None:
        assert replica.process is not None
        procs.kill_group(replica.process, signal.SIGKILL)

    def _raise_if_exited(self, replica: Replica) -> None:
        assert replica.process is not None
        code = procs.exit_code(replica.process)
        server = "vector server" if replica.component == VECTOR_COMPONENT else "llama-server"
        if code is not None or not replica.process.is_alive():
            log = replica.process.log_path
            where = f"{server} on port {replica.port}"
            raise self._start_failure(replica, where, code, procs.tail(log), log=log)

    def _health_path(self, replica: Replica) -> str:
        return "/readyz" if replica.component == VECTOR_COMPONENT else "/health"

    def _display_name(self, replica: Replica) -> str:
        return f"{replica.component}-{replica.index}"

    def _startup_log_hint(self, replica: Replica) -> str:
        return f"log:\n{procs.tail(replica.process.log_path if replica.process else '')}"

    def _replica_usage(self, replica: Replica) -> Usage:
        return _process_usage(replica.process)

    # ------------------------------------------------------------------ the vector store

    def _vector_storage(self) -> Path:
        path = self.spec.qdrant.storage_dir or state.run_dir(self.spec.name) / "qdrant-storage"
        Path(path).mkdir(parents=True, exist_ok=True)
        return Path(path)

    def _spawn_vector(self, port: int | None = None, register: bool = True) -> Replica:
        """Start the embedded vector server (its storage persists across restarts)."""
        port = port or self.spec.qdrant.port or pick_free_port()
        cmd = server_command(port, self._vector_storage())
        record = procs.spawn(cmd, self._log_path(VECTOR_COMPONENT, 0), env=server_env())
        replica = Replica(VECTOR_COMPONENT, 0, port, record)
        if register:
            self.replicas.append(replica)
            self._save()
        return replica

    def _scale_vector(self, n: int) -> ScaleEvent:
        check_positive_int(f"{VECTOR_COMPONENT} replicas", n, upper=MAX_REPLICAS)
        if n > 1:
            raise StackError(
                f"scale('{VECTOR_COMPONENT}', {n}): Qdrant does not scale by identical replicas "
                "behind a load balancer. It scales by shards (create the collection with "
                "shard_number=N; the embedded server holds them all on this node) and by "
                "replicas of those shards on several peers, which needs a Qdrant cluster. "
                "Fix: use shard_number, or point QDRANT_URL at a Qdrant cluster and set "
                "replication_factor."
            )
        return ScaleEvent(VECTOR_COMPONENT, 1, 1, 0.0)
