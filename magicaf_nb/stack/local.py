"""``LocalStack``: the MagicAF stack as real server processes on 127.0.0.1.

Each replicated service (embedding, LLM) is N ``llama-server`` replicas behind one
HAProxy. Replicas join the load balancer only once healthy and leave it drained, so
scaling costs no failed request; ``kill`` is a real SIGKILL for fault injection.
The vector store (``qdrant``) is one process serving Qdrant's REST API over Qdrant's
engine (``magicaf_nb.vector``), or an external Qdrant named by ``QDRANT_URL``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import warnings
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil

from magicaf_nb import binaries, models
from magicaf_nb.config import (
    COMPONENTS,
    MAX_REPLICAS,
    VECTOR_COMPONENT,
    ConfigError,
    EmbeddingConfig,
    LlmConfig,
    StackSpec,
    VectorStoreConfig,
    check_positive_int,
)
from magicaf_nb.stack import haproxy, procs, state
from magicaf_nb.stack.ports import ensure_port_free, pick_free_port
from magicaf_nb.stack.procs import ProcessRecord
from magicaf_nb.vector.launch import server_command, server_env


class StackError(RuntimeError):
    """The stack could not do what was asked; the message quotes the cause and the fix."""


@dataclass
class Replica:
    component: str
    index: int
    port: int
    process: ProcessRecord | None = None
    state: str = "starting"  # starting | serving | killed | stopped
    in_lb: bool = False

    @property
    def server_name(self) -> str:
        return f"r{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Balancer:
    component: str
    port: int
    socket_path: str
    config_path: str
    process: ProcessRecord | None = None

    @property
    def api(self) -> haproxy.RuntimeApi:
        return haproxy.RuntimeApi(Path(self.socket_path))


@dataclass
class ScaleEvent:
    """What one ``scale`` call did and how long the new replicas took to serve."""

    component: str
    before: int
    after: int
    seconds: float
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


def _replica_from_dict(item: dict[str, Any]) -> Replica:
    proc = ProcessRecord(**item["process"]) if item.get("process") else None
    return Replica(**{**item, "process": proc})


def _balancer_from_dict(item: dict[str, Any]) -> Balancer:
    proc = ProcessRecord(**item["process"]) if item.get("process") else None
    return Balancer(**{**item, "process": proc})


# Stacks this process has up, by name: re-running a notebook's launch cell replaces the
# previous stack of the same name instead of failing on it.
_LIVE: weakref.WeakValueDictionary[str, LocalStack] = weakref.WeakValueDictionary()


class LocalStack:
    """Launch, scale and tear down the embedded stack.

    >>> with LocalStack(StackSpec()) as stack:          # doctest: +SKIP
    ...     print(stack.endpoints()["EMBEDDING_URL"])

    ``detach=True`` leaves the servers running after this Python process exits (the
    CLI uses it); otherwise a watchdog reaps them if this process dies without ``down()``.
    """

    def __init__(self, spec: StackSpec | None = None, *, detach: bool = False) -> None:
        self.spec = (spec or StackSpec()).validate()
        self.detach = detach
        self.replicas: list[Replica] = []
        self.balancers: dict[str, Balancer] = {}
        self._watchdog: ProcessRecord | None = None
        # An external Qdrant (spec.qdrant.url, else QDRANT_URL), fixed when the stack starts.
        self._qdrant_external = self.spec.qdrant.external_url()
        self._lock = threading.RLock()
        self._up = False

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> LocalStack:
        """Start every replica and load balancer; wait until all serve through the LBs."""
        with self._lock:
            if self._up:
                return self
            self._qdrant_external = self.spec.qdrant.external_url()
            model_paths = self._resolve_models()
            llama_server = binaries.llama_server_path()
            haproxy_bin = binaries.haproxy_path()
            previous = _LIVE.get(self.spec.name)
            if previous is not None and previous is not self and previous.is_up:
                warnings.warn(
                    f"Replacing the stack {self.spec.name!r} this process started earlier.",
                    stacklevel=2,
                )
                previous.down()
            for comp in COMPONENTS:
                port = self.spec.component(comp).lb_port
                if port is not None:
                    ensure_port_free(port, f"{comp} load balancer")
            if self.spec.qdrant.port is not None and self._external_qdrant() is None:
                ensure_port_free(self.spec.qdrant.port, "vector server (qdrant)")
            self._reap_previous()
            self._warn_if_oversubscribed()
            self._save()
            try:
                self._start_watchdog()
                for comp in COMPONENTS:
                    self._start_balancer(comp, haproxy_bin)
                vector = [] if self._external_qdrant() else [self._spawn_vector()]
                new = [
                    self._spawn_replica(comp, i, llama_server, model_paths.get(comp))
                    for comp in COMPONENTS
                    for i in range(self.spec.component(comp).replicas)
                ]
                self._wait_healthy(new + vector)
                for replica in new:
                    self._join_lb(replica)
                self._wait_lb_up(new)
            except BaseException:
                self._teardown()
                raise
            self._up = True
            _LIVE[self.spec.name] = self
            self._save()
            return self

    def down(self) -> None:
        """Stop every process this stack started and forget its state."""
        with self._lock:
            self._teardown()
            self._up = False

    def __enter__(self) -> LocalStack:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def __del__(self) -> None:  # a dropped notebook variable should not leak servers
        if getattr(self, "_up", False) and not self.detach:
            with contextlib.suppress(Exception):
                self.down()

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

    # ------------------------------------------------------------------ scaling and faults

    def scale(self, component: str, n: int) -> ScaleEvent:
        """Bring ``component`` to ``n`` serving replicas, live and without failed requests.

        Dead (killed) replicas are removed first; new replicas join the load balancer
        only once healthy; removed ones are drained of in-flight requests first.
        The vector store scales by shards, not replicas: ``qdrant`` stays at one node.
        """
        if component == VECTOR_COMPONENT:
            return self._scale_vector(n)
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
            if n > before:
                next_index = (
                    max((r.index for r in self.replicas if r.component == component), default=-1)
                    + 1
                )
                paths = self._resolve_models()
                llama_server = binaries.llama_server_path()
                new = [
                    self._spawn_replica(
                        component, next_index + k, llama_server, paths.get(component)
                    )
                    for k in range(n - before)
                ]
                self._save()
                try:
                    self._wait_healthy(new)
                except BaseException:
                    for replica in new:
                        self._remove(replica)
                    self._save()
                    raise
                for replica in new:
                    self._join_lb(replica)
                self._wait_lb_up(new)
                added = [r.index for r in new]
            elif n < before:
                for replica in sorted(current, key=lambda r: r.index)[n:]:
                    self._remove(replica)
                    removed.append(replica.index)
            getattr(self.spec, component).replicas = n
            self._save()
            return ScaleEvent(component, before, n, time.monotonic() - start, added, removed)

    def kill(self, component: str, index: int) -> None:
        """SIGKILL one replica (fault injection). The LB routes around it."""
        with self._lock:
            replica = self._replica(component, index)
            if replica.state != "serving" or replica.process is None:
                raise StackError(
                    f"{component} replica {index} is {replica.state}, not serving: nothing to "
                    f"kill. Fix: restart('{component}', {index}) first."
                )
            procs.kill_group(replica.process, signal.SIGKILL)
            replica.state = "killed"
            self._save()

    def restart(self, component: str, index: int) -> float:
        """Restart one replica on its port; return seconds until it serves again."""
        with self._lock:
            replica = self._replica(component, index)
            start = time.monotonic()
            if component == VECTOR_COMPONENT:
                self._restart_vector(replica)
                return time.monotonic() - start
            lb = self.balancers[component].api
            if replica.in_lb:
                if replica.state == "serving":
                    lb.set_state(replica.server_name, "drain")
                    self._wait_drained(replica)
                lb.set_state(replica.server_name, "maint")
            if replica.process is not None:
                procs.stop(replica.process)
            fresh = self._spawn_replica(
                component,
                index,
                binaries.llama_server_path(),
                self._resolve_models().get(component),
                port=replica.port,
                register=False,
            )
            replica.process, replica.state = fresh.process, "starting"
            self._save()
            self._wait_healthy([replica])
            if replica.in_lb:
                lb.set_state(replica.server_name, "ready")
            else:
                self._join_lb(replica)
            self._wait_lb_up([replica])
            self._save()
            return time.monotonic() - start

    # ------------------------------------------------------------------ inspection

    def endpoints(self) -> dict[str, str]:
        """The load balancers' URLs under MagicAF's variable names."""
        self._require_up()
        return {
            "EMBEDDING_URL": f"http://127.0.0.1:{self.balancers['embedding'].port}",
            "EMBEDDING_MODEL": models.EMBEDDING_MODEL_NAME,
            "LLM_URL": f"http://127.0.0.1:{self.balancers['llm'].port}/v1",
            "LLM_MODEL": models.CHAT_MODEL_NAME,
            **self._qdrant_endpoints(),
            "QDRANT_COLLECTION": self.spec.app.collection,
            "APP_URL": f"http://127.0.0.1:{self.balancers['app'].port}",
        }

    def embedding_config(self, **overrides: Any) -> EmbeddingConfig:
        return EmbeddingConfig.from_env(self.endpoints(), **overrides)

    def llm_config(self, **overrides: Any) -> LlmConfig:
        return LlmConfig.from_env(self.endpoints(), **overrides)

    def vector_config(self, **overrides: Any) -> VectorStoreConfig:
        return VectorStoreConfig.from_env(self.endpoints(), **overrides)

    def replica_urls(self, component: str) -> list[str]:
        """Direct URLs of the serving replicas (bypassing the load balancer)."""
        self._check_component(component)
        return [r.url for r in self._of(component) if r.state == "serving"]

    def status(self) -> pd.DataFrame:
        """One row per process: replicas and load balancers, with live counters."""
        rows: list[dict[str, Any]] = []
        for comp in COMPONENTS:
            lb = self.balancers.get(comp)
            lb_rows: dict[str, dict[str, Any]] = {}
            if lb is not None and lb.process is not None and lb.process.is_alive():
                with contextlib.suppress(OSError, KeyError):
                    lb_rows = {
                        row["server"]: row for row in lb.api.server_stats().to_dict("records")
                    }
            for replica in self._of(comp, include_dead=True):
                rows.append(self._replica_row(replica, lb_rows.get(replica.server_name)))
            if lb is not None:
                rows.append(self._balancer_row(lb, lb_rows))
        rows += self._vector_rows()
        columns = [
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
        table = pd.DataFrame(rows, columns=columns)
        for col in ("replica", "pid", "port", "requests", "in_flight"):
            table[col] = table[col].astype("Int64")
        return table

    def lb_stats(self, component: str) -> pd.DataFrame:
        """HAProxy's per-server counters for one service."""
        self._check_component(component)
        self._require_up()
        return self.balancers[component].api.server_stats()

    def logs(self, component: str, index: int | None = None, lines: int = 40) -> str:
        """The last ``lines`` of a replica's log, or of the component's LB if no index."""
        if component == VECTOR_COMPONENT and index is None:
            index = 0
        if index is None:
            self._check_component(component)
            return procs.tail(Path(state.run_dir(self.spec.name)) / f"{component}-lb.log", lines)
        replica = self._replica(component, index)
        return procs.tail(self._log_path(replica.component, replica.index), lines)

    @property
    def is_up(self) -> bool:
        return self._up

    # ------------------------------------------------------------------ internals

    def _check_component(self, component: str) -> None:
        if component not in COMPONENTS:
            raise ConfigError(
                f"Unknown component {component!r}: use one of {', '.join(COMPONENTS)}."
            )

    def _require_up(self) -> None:
        if not self._up:
            raise StackError("The stack is not up. Fix: call up() first (or use `with stack:`).")

    def _of(self, component: str, include_dead: bool = True) -> list[Replica]:
        return [
            r
            for r in self.replicas
            if r.component == component and (include_dead or r.state != "killed")
        ]

    def _replica(self, component: str, index: int) -> Replica:
        if component == VECTOR_COMPONENT:
            external = self._external_qdrant()
            if external is not None:
                raise StackError(
                    f"The vector store is the external Qdrant at {external}; this stack does not "
                    "manage its processes. Fix: kill or restart it where it runs."
                )
        else:
            self._check_component(component)
        self._require_up()
        for replica in self._of(component):
            if replica.index == index:
                return replica
        known = ", ".join(str(r.index) for r in self._of(component)) or "none"
        raise StackError(f"No {component} replica {index!r}; the replicas are: {known}.")

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

    def _start_watchdog(self) -> None:
        if self.detach:
            return
        me = psutil.Process()
        self._watchdog = procs.spawn(
            [
                sys.executable,
                "-m",
                "magicaf_nb.stack.watchdog",
                self.spec.name,
                str(me.pid),
                repr(me.create_time()),
            ],
            state.run_dir(self.spec.name) / "watchdog.log",
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self._save()

    def _start_balancer(self, component: str, haproxy_bin: Path) -> None:
        run = state.run_dir(self.spec.name)
        port = self.spec.component(component).lb_port or pick_free_port()
        sock = state.socket_dir(self.spec.name) / f"{component}.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        cfg = run / f"{component}-haproxy.cfg"
        cfg.write_text(
            haproxy.render_config(
                service=component, bind_host="127.0.0.1", bind_port=port, socket_path=sock
            )
        )
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

    def _service_env(self, index: int) -> dict[str, str]:
        """What an app instance reads: MagicAF's variables pointing at this stack's LBs."""
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "EMBEDDING_URL": f"http://127.0.0.1:{self.balancers['embedding'].port}",
            "EMBEDDING_MODEL": models.EMBEDDING_MODEL_NAME,
            "LLM_URL": f"http://127.0.0.1:{self.balancers['llm'].port}/v1",
            "LLM_MODEL": models.CHAT_MODEL_NAME,
            "QDRANT_COLLECTION": self.spec.app.collection,
            "MAGICAF_APP_INSTANCE": f"app-{index}",
            **self._qdrant_endpoints(),
        }
        return env

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

    def _wait_healthy(self, pending: list[Replica]) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        waiting = list(pending)
        with httpx.Client(timeout=2.0) as client:
            while waiting:
                for replica in list(waiting):
                    assert replica.process is not None
                    code = procs.exit_code(replica.process)
                    server = "vector server" if replica.component == VECTOR_COMPONENT else None
                    if code is not None or not replica.process.is_alive():
                        replica.state = "stopped"
                        raise StackError(
                            f"{replica.component} replica {replica.index} "
                            f"({server or 'llama-server'} on port "
                            f"{replica.port}) exited with code {code} during start. Last log "
                            f"lines ({replica.process.log_path}):\n"
                            f"{procs.tail(replica.process.log_path)}"
                        )
                    with contextlib.suppress(httpx.HTTPError):
                        path = "/readyz" if server else "/health"
                        if client.get(f"{replica.url}{path}").status_code == 200:
                            replica.state = "serving"
                            waiting.remove(replica)
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(f"{r.component}-{r.index}" for r in waiting)
                    last = waiting[0].process.log_path if waiting[0].process else ""
                    raise StackError(
                        f"Timed out after {self.spec.startup_timeout_s:.0f} s waiting for {names} "
                        f"to become healthy. Fix: raise StackSpec.startup_timeout_s or check the "
                        f"log:\n{procs.tail(last)}"
                    )
                if waiting:
                    time.sleep(0.05)

    def _join_lb(self, replica: Replica) -> None:
        api = self.balancers[replica.component].api
        api.add_server(replica.server_name, "127.0.0.1", replica.port)
        replica.in_lb = True
        self._save()

    def _wait_lb_up(self, replicas: list[Replica], timeout_s: float = 15.0) -> None:
        """Wait until HAProxy's health checks see every given replica UP."""
        for component in {r.component for r in replicas}:
            names = {r.server_name for r in replicas if r.component == component}
            try:
                self.balancers[component].api.wait_up(names, timeout_s)
            except haproxy.HaproxyError as exc:
                raise StackError(f"{component}: {exc}") from exc

    def _wait_drained(self, replica: Replica, timeout_s: float = 60.0) -> None:
        self.balancers[replica.component].api.wait_drained(replica.server_name, timeout_s)

    def _remove(self, replica: Replica) -> None:
        """Drain and delete a replica from its LB, then stop its process."""
        if replica.in_lb:
            balancer = self.balancers[replica.component]
            if balancer.process is not None and balancer.process.is_alive():
                balancer.api.remove_server(replica.server_name)
            replica.in_lb = False
        if replica.process is not None:
            procs.stop(replica.process)
        replica.state = "stopped"
        self.replicas.remove(replica)
        self._save()

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
        if self._watchdog is not None:
            procs.kill_group(self._watchdog, signal.SIGKILL)
        self.replicas.clear()
        self.balancers.clear()
        self._watchdog = None
        state.remove(self.spec.name)

    # ------------------------------------------------------------------ the vector store

    def _external_qdrant(self) -> str | None:
        return self._qdrant_external

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

    def _restart_vector(self, replica: Replica) -> None:
        if replica.process is not None:
            procs.stop(replica.process, grace_s=10.0)
        fresh = self._spawn_vector(port=replica.port, register=False)
        replica.process, replica.state = fresh.process, "starting"
        self._save()
        self._wait_healthy([replica])
        self._save()

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

    def _qdrant_endpoints(self) -> dict[str, str]:
        external = self._external_qdrant()
        if external is not None:
            key = os.environ.get("QDRANT_API_KEY") if not self.spec.qdrant.url else None
            return {"QDRANT_URL": external, **({"QDRANT_API_KEY": key} if key else {})}
        servers = self._of(VECTOR_COMPONENT)
        return {"QDRANT_URL": servers[0].url} if servers else {}

    def _vector_rows(self) -> list[dict[str, Any]]:
        external = self._external_qdrant()
        if external is None:
            return [self._replica_row(r, None) for r in self._of(VECTOR_COMPONENT)]
        return [
            {
                "component": VECTOR_COMPONENT,
                "replica": None,
                "pid": None,
                "port": httpx.URL(external).port,
                "state": "external",
                "lb_status": "-",
                "rss_mb": None,
                "cpu_s": None,
                "requests": 0,
                "in_flight": 0,
            }
        ]

    def _replica_row(self, replica: Replica, lb_row: dict[str, Any] | None) -> dict[str, Any]:
        cpu, rss = procs.cpu_and_rss(replica.process) if replica.process else (None, None)
        alive = replica.process is not None and replica.process.is_alive()
        state_now = replica.state if (alive or replica.state != "serving") else "dead"
        return {
            "component": replica.component,
            "replica": replica.index,
            "pid": replica.process.pid if replica.process else None,
            "port": replica.port,
            "state": state_now,
            "lb_status": lb_row["status"] if lb_row else "-",
            "rss_mb": None if rss is None else round(rss, 1),
            "cpu_s": None if cpu is None else round(cpu, 2),
            "requests": int(lb_row["responses"]) if lb_row else 0,
            "in_flight": int(lb_row["scur"]) if lb_row else 0,
        }

    def _balancer_row(self, lb: Balancer, lb_rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
        cpu, rss = procs.cpu_and_rss(lb.process) if lb.process else (None, None)
        alive = lb.process is not None and lb.process.is_alive()
        return {
            "component": f"{lb.component}-lb",
            "replica": None,
            "pid": lb.process.pid if lb.process else None,
            "port": lb.port,
            "state": "serving" if alive else "dead",
            "lb_status": "-",
            "rss_mb": None if rss is None else round(rss, 1),
            "cpu_s": None if cpu is None else round(cpu, 2),
            "requests": sum(int(r["responses"]) for r in lb_rows.values()),
            "in_flight": sum(int(r["scur"]) for r in lb_rows.values()),
        }
