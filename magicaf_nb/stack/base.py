"""``StackBase``: the stack logic ``LocalStack`` and ``DockerStack`` share.

Both backends run each replicated service as N replicas behind one HAProxy, add a
replica to it through the runtime API only once healthy and drain it before it leaves;
the vector store (``qdrant``) sits behind no load balancer. This class holds that flow
(up, scale, kill, restart, status, endpoints). A backend supplies the primitives: what
to check and start before and during ``up()``, how to start, stop and SIGKILL a replica,
how to see whether it runs and what it uses, and where its logs are.
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
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, NamedTuple, Self, TypeVar

import httpx
import pandas as pd

from magicaf_nb import models
from magicaf_nb.config import (
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
MODEL_NAMES = {"embedding": models.EMBEDDING_MODEL_NAME, "llm": models.CHAT_MODEL_NAME}


class StackError(RuntimeError):
    """The stack could not do what was asked; the message quotes the cause and the fix."""


@dataclass
class ScaleEvent:
    """What one ``scale`` call did and how long the new replicas took to serve."""

    component: str
    before: int
    after: int
    seconds: float
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)


class ReplicaRecord:
    """What every backend's replica record has; its dataclass declares the fields."""

    component: str
    index: int
    port: int
    state: str  # starting | serving | killed | stopped
    in_lb: bool

    @property
    def server_name(self) -> str:
        return f"r{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class BalancerRecord:
    """What every backend's load-balancer record has; its dataclass declares the fields."""

    component: str
    port: int
    socket_path: str

    @property
    def api(self) -> haproxy.RuntimeApi:
        return haproxy.RuntimeApi(Path(self.socket_path))


class Usage(NamedTuple):
    """A replica's or load balancer's process as ``status()`` shows it."""

    pid: int | None
    running: bool
    cpu_s: float | None
    rss_mb: float | None


R = TypeVar("R", bound=ReplicaRecord)
B = TypeVar("B", bound=BalancerRecord)
P = TypeVar("P")  # what a backend's _prepare() found for its _launch()

# Stacks this process has up, by backend and name: re-running a notebook's launch cell
# replaces the previous stack of the same name instead of failing on it.
_LIVE: weakref.WeakValueDictionary[tuple[type, str], StackBase[Any, Any, Any]] = (
    weakref.WeakValueDictionary()
)


class StackBase(ABC, Generic[R, B, P]):
    """Launch, scale and tear down a stack; subclasses say how replicas run."""

    _kind: ClassVar[str] = "stack"  # how warnings name this backend's stacks
    # When _wait_healthy first checks that starting replicas still run, then how often
    # (0: on every poll; asking a Docker engine costs more than asking the kernel).
    _exit_check_first_s: ClassVar[float] = 0.0
    _exit_check_every_s: ClassVar[float] = 0.0

    def __init__(self, spec: StackSpec | None, *, detach: bool) -> None:
        self.spec = (spec or StackSpec()).validate()
        self.detach = detach
        self.replicas: list[R] = []
        self.balancers: dict[str, B] = {}
        self._watchdog: ProcessRecord | None = None
        self._lock = threading.RLock()
        self._up = False
        # An external Qdrant (spec.qdrant.url, else QDRANT_URL), fixed when the stack starts.
        self._qdrant_external = self._external_qdrant_url()

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> Self:
        """Start every load balancer and replica; wait until all serve through the LBs."""
        with self._lock:
            if self._up:
                return self
            self._qdrant_external = self._external_qdrant_url()
            plan = self._prepare()
            self._replace_previous()
            self._check_ports_free()
            self._reap_previous()
            self._warn_if_oversubscribed()
            self._save()
            try:
                self._start_watchdog()
                self._launch(plan)
            except BaseException:
                self._teardown()
                raise
            self._up = True
            _LIVE[(type(self), self.spec.name)] = self
            self._save()
            return self

    def down(self) -> None:
        """Stop everything this stack started and forget it."""
        with self._lock:
            self._teardown()
            self._up = False

    def __enter__(self) -> Self:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def __del__(self) -> None:  # a dropped notebook variable should not leak servers
        if getattr(self, "_up", False) and not self.detach:
            with contextlib.suppress(Exception):
                self.down()

    @property
    def is_up(self) -> bool:
        return self._up

    # ------------------------------------------------------------------ scaling and faults

    def scale(self, component: str, n: int) -> ScaleEvent:
        """Bring ``component`` to ``n`` serving replicas, live and without failed requests.

        Dead (killed) replicas are removed first; new replicas join the load balancer
        only once healthy; removed ones are drained of in-flight requests first.
        """
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
            self._check_scalable(component, n)
            if n > before:
                first = max((r.index for r in current), default=-1) + 1
                new = self._start_new(component, list(range(first, first + n - before)))
                try:
                    self._wait_healthy(new)
                except BaseException:
                    for replica in new:
                        self._remove(replica)
                    self._save()
                    raise
                self._join_all(new)
                added = [r.index for r in new]
            elif n < before:
                leaving = sorted(current, key=lambda r: r.index)[n:]
                for replica in leaving:
                    self._before_leaving(replica, leaving)
                    self._remove(replica)
                    removed.append(replica.index)
            self._set_target(component, n)
            self._save()
            return ScaleEvent(component, before, n, time.monotonic() - start, added, removed)

    def kill(self, component: str, index: int) -> None:
        """SIGKILL one replica (fault injection). The LB routes around it."""
        with self._lock:
            replica = self._replica(component, index)
            if replica.state != "serving" or not self._has_server(replica):
                raise StackError(
                    f"{component} replica {index} is {replica.state}, not serving: nothing to "
                    f"kill. Fix: restart('{component}', {index}) first."
                )
            self._sigkill(replica)
            replica.state = "killed"
            self._save()

    def restart(self, component: str, index: int) -> float:
        """Restart one replica on its port; return seconds until it serves again."""
        with self._lock:
            replica = self._replica(component, index)
            start = time.monotonic()
            if component not in self.balancers:  # the vector store: it holds data, stop slowly
                self._relaunch(replica, grace_s=10)
                replica.state = "starting"
                self._save()
                self._wait_healthy([replica])
                self._save()
                return time.monotonic() - start
            lb = self.balancers[component].api
            if replica.in_lb:
                if replica.state == "serving":
                    lb.set_state(replica.server_name, "drain")
                    self._wait_drained(replica)
                lb.set_state(replica.server_name, "maint")
            self._relaunch(replica, grace_s=3)
            replica.state = "starting"
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
        return self._endpoints()

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
        """One row per replica and load balancer, with live counters."""
        rows: list[dict[str, Any]] = []
        for comp in self._row_components():
            lb = self.balancers.get(comp)
            lb_rows: dict[str, dict[str, Any]] = {}
            if lb is not None and self._balancer_alive(lb):
                with contextlib.suppress(OSError, KeyError):
                    lb_rows = {
                        row["server"]: row for row in lb.api.server_stats().to_dict("records")
                    }
            for replica in self._of(comp):
                rows.append(self._replica_row(replica, self._lb_row(replica, lb_rows)))
            if lb is not None:
                rows.append(self._balancer_row(lb, lb_rows))
            if comp == VECTOR_COMPONENT and self._qdrant_external:
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

    @abstractmethod
    def logs(self, component: str, index: int | None = None, lines: int = 40) -> str:
        """The last ``lines`` of a replica's log, or of the component's LB if no index."""

    # ------------------------------------------------------------------ backend primitives

    @abstractmethod
    def _known_components(self) -> Sequence[str]:
        """The components ``scale``, ``replica_urls`` and ``lb_stats`` accept."""

    @abstractmethod
    def _balanced(self) -> Sequence[str]:
        """The components served by replicas behind a load balancer, in start order."""

    @abstractmethod
    def _row_components(self) -> Sequence[str]:
        """The components ``status()`` lists, in its row order."""

    @abstractmethod
    def _runs_vector_store(self) -> bool:
        """Whether ``up()`` starts the vector store (no external Qdrant replaces it)."""

    @abstractmethod
    def _prepare(self) -> P:
        """Check and find what ``up()`` needs before anything starts."""

    @abstractmethod
    def _launch(self, plan: P) -> None:
        """Start the load balancers and replicas; return once they serve."""

    @abstractmethod
    def _reap_previous(self) -> None:
        """Remove what a dead owner left of a stack of this name, or refuse a live one."""

    @abstractmethod
    def _teardown(self) -> None:
        """Stop everything this stack started, running or not."""

    @abstractmethod
    def _watchdog_command(self) -> tuple[str, list[str], str]:
        """The watchdog's module, its arguments and its log file's name."""

    @abstractmethod
    def _start_new(self, component: str, indices: list[int]) -> list[R]:
        """Register and start new replicas of ``component`` (not yet healthy)."""

    @abstractmethod
    def _relaunch(self, replica: R, grace_s: int) -> None:
        """Stop ``replica`` (SIGTERM, SIGKILL after ``grace_s``) and start it again."""

    @abstractmethod
    def _destroy(self, replica: R) -> None:
        """Stop ``replica`` and release what it holds."""

    @abstractmethod
    def _has_server(self, replica: R) -> bool:
        """Whether ``replica`` has a process or container to act on."""

    @abstractmethod
    def _sigkill(self, replica: R) -> None:
        """SIGKILL ``replica`` and wait until it is gone."""

    @abstractmethod
    def _raise_if_exited(self, replica: R) -> None:
        """Raise ``StackError`` with its last log lines if ``replica`` exited."""

    @abstractmethod
    def _health_path(self, replica: R) -> str:
        """The path that answers 200 once ``replica`` serves."""

    @abstractmethod
    def _display_name(self, replica: R) -> str:
        """How messages name ``replica``."""

    @abstractmethod
    def _startup_log_hint(self, replica: R) -> str:
        """What follows "check the " when ``replica`` timed out: its log and last lines."""

    @abstractmethod
    def _replica_usage(self, replica: R) -> Usage:
        """The replica's process as ``status()`` shows it."""

    @abstractmethod
    def _balancer_usage(self, lb: B) -> Usage:
        """The load balancer's process as ``status()`` shows it."""

    def _balancer_alive(self, lb: B) -> bool:
        """Whether to talk to ``lb``'s runtime API at all."""
        return True

    def _save(self) -> None:
        """Record the stack's state where a later process can find it (if it keeps any)."""

    def _warn_if_oversubscribed(self) -> None:
        """Warn before ``up()`` starts more than the machine can run well (if it can tell)."""

    def _check_replica_component(self, component: str) -> None:
        """Refuse a component ``kill``, ``restart`` and ``logs`` cannot act on."""
        self._check_component(component)

    def _check_scalable(self, component: str, n: int) -> None:
        """Refuse to scale ``component`` to ``n`` (after its dead replicas are removed)."""

    def _before_leaving(self, replica: R, leaving: list[R]) -> None:
        """Prepare ``replica`` (one of ``leaving``) for ``scale`` to remove it."""

    def _set_target(self, component: str, n: int) -> None:
        getattr(self.spec, component).replicas = n

    def _model_name(self, component: str) -> str:
        return MODEL_NAMES.get(component, component)

    # ------------------------------------------------------------------ internals

    def _external_qdrant_url(self) -> str | None:
        part = getattr(self.spec, VECTOR_COMPONENT, None)
        external = getattr(part, "external_url", None)
        return external() if callable(external) else None

    def _lb_port_setting(self, component: str) -> int | None:
        part = getattr(self.spec, component, None)
        return getattr(part, "lb_port", None)

    def _check_component(self, component: str) -> None:
        known = self._known_components()
        if component not in known:
            raise ConfigError(f"Unknown component {component!r}: use one of {', '.join(known)}.")

    def _require_up(self) -> None:
        if not self._up:
            raise StackError("The stack is not up. Fix: call up() first (or use `with stack:`).")

    def _of(self, component: str) -> list[R]:
        return [r for r in self.replicas if r.component == component]

    def _replica(self, component: str, index: int) -> R:
        self._check_replica_component(component)
        self._require_up()
        if component == VECTOR_COMPONENT and self._qdrant_external:
            self._refuse_external_qdrant()
        for replica in self._of(component):
            if replica.index == index:
                return replica
        known = ", ".join(str(r.index) for r in self._of(component)) or "none"
        raise StackError(f"No {component} replica {index!r}; the replicas are: {known}.")

    def _refuse_external_qdrant(self) -> None:
        raise StackError(
            f"The vector store is the external Qdrant at {self._qdrant_external}; this stack "
            "does not manage its processes. Fix: kill or restart it where it runs."
        )

    def _replace_previous(self) -> None:
        previous = _LIVE.get((type(self), self.spec.name))
        if previous is not None and previous is not self and previous.is_up:
            warnings.warn(
                f"Replacing the {self._kind} {self.spec.name!r} this process started earlier.",
                stacklevel=3,
            )
            previous.down()

    def _check_ports_free(self) -> None:
        for comp in self._balanced():
            port = self._lb_port_setting(comp)
            if port is not None:
                ensure_port_free(port, f"{comp} load balancer")
        vector_port = getattr(getattr(self.spec, VECTOR_COMPONENT, None), "port", None)
        if vector_port is not None and self._runs_vector_store():
            ensure_port_free(vector_port, "vector server (qdrant)")

    def _start_watchdog(self) -> None:
        if self.detach:
            return
        module, args, log_name = self._watchdog_command()
        self._watchdog = procs.spawn(
            [sys.executable, "-m", module, *args],
            state.run_dir(self.spec.name) / log_name,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self._save()

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            procs.kill_group(self._watchdog, signal.SIGKILL)
        self._watchdog = None

    def _write_lb_config(
        self, component: str, folder: Path, sock: Path, bind_host: str
    ) -> tuple[int, Path]:
        """Write the component's HAProxy configuration; return its port and the file."""
        port = self._lb_port_setting(component) or pick_free_port()
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        cfg = folder / f"{component}-haproxy.cfg"
        cfg.write_text(
            haproxy.render_config(
                service=component, bind_host=bind_host, bind_port=port, socket_path=sock
            )
        )
        return port, cfg

    def _endpoints(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if "embedding" in self.balancers:
            out["EMBEDDING_URL"] = f"http://127.0.0.1:{self.balancers['embedding'].port}"
            out["EMBEDDING_MODEL"] = self._model_name("embedding")
        if "llm" in self.balancers:
            out["LLM_URL"] = f"http://127.0.0.1:{self.balancers['llm'].port}/v1"
            out["LLM_MODEL"] = self._model_name("llm")
        if self._qdrant_external:
            out["QDRANT_URL"] = self._qdrant_external
            key = os.environ.get("QDRANT_API_KEY")
            if key and not getattr(self.spec.qdrant, "url", None):
                out["QDRANT_API_KEY"] = key
        else:
            servers = self._of(VECTOR_COMPONENT)
            peers = [r for r in servers if r.state == "serving"] or servers
            if peers:
                out["QDRANT_URL"] = min(peers, key=lambda r: r.index).url
        app = getattr(self.spec, "app", None)
        if getattr(app, "collection", None):
            out["QDRANT_COLLECTION"] = app.collection
        if "app" in self.balancers:
            out["APP_URL"] = f"http://127.0.0.1:{self.balancers['app'].port}"
        return out

    def _wait_healthy(self, pending: list[R]) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout_s
        waiting = list(pending)
        next_check = time.monotonic() + self._exit_check_first_s
        with httpx.Client(timeout=2.0) as http:
            while waiting:
                check_exits = time.monotonic() >= next_check
                if check_exits:
                    next_check = time.monotonic() + self._exit_check_every_s
                for replica in list(waiting):
                    if check_exits:
                        self._raise_if_exited(replica)
                    path = self._health_path(replica)
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{replica.url}{path}").status_code == 200:
                            replica.state = "serving"
                            waiting.remove(replica)
                if waiting and time.monotonic() > deadline:
                    names = ", ".join(self._display_name(r) for r in waiting)
                    raise StackError(
                        f"Timed out after {self.spec.startup_timeout_s:.0f} s waiting for "
                        f"{names} to become healthy. Fix: raise StackSpec.startup_timeout_s or "
                        f"check the {self._startup_log_hint(waiting[0])}"
                    )
                if waiting:
                    time.sleep(0.05)

    def _start_failure(
        self, replica: R, where: str, code: int | None, tail: str, log: str = ""
    ) -> StackError:
        """Mark ``replica`` stopped; return the error saying it exited while starting."""
        replica.state = "stopped"
        source = f" ({log})" if log else ""
        return StackError(
            f"{replica.component} replica {replica.index} ({where}) exited with code {code} "
            f"during start. Last log lines{source}:\n{tail}"
        )

    def _join_lb(self, replica: R) -> None:
        self.balancers[replica.component].api.add_server(
            replica.server_name, "127.0.0.1", replica.port
        )
        replica.in_lb = True
        self._save()

    def _join_all(self, replicas: list[R]) -> None:
        """Add the replicas that have a load balancer to it; wait until it sees them UP."""
        balanced = [r for r in replicas if r.component in self.balancers]
        for replica in balanced:
            self._join_lb(replica)
        self._wait_lb_up(balanced)

    def _wait_lb_up(self, replicas: list[R], timeout_s: float = 15.0) -> None:
        """Wait until HAProxy's health checks see every given replica UP."""
        for component in {r.component for r in replicas}:
            names = {r.server_name for r in replicas if r.component == component}
            try:
                self.balancers[component].api.wait_up(names, timeout_s)
            except haproxy.HaproxyError as exc:
                raise StackError(f"{component}: {exc}") from exc

    def _wait_drained(self, replica: R, timeout_s: float = 60.0) -> None:
        self.balancers[replica.component].api.wait_drained(replica.server_name, timeout_s)

    def _leave_lb(self, replica: R) -> None:
        balancer = self.balancers[replica.component]
        if self._balancer_alive(balancer):
            balancer.api.remove_server(replica.server_name)

    def _remove(self, replica: R) -> None:
        """Drain and delete a replica from its LB, then stop it and forget it."""
        if replica.in_lb:
            self._leave_lb(replica)
            replica.in_lb = False
        self._destroy(replica)
        replica.state = "stopped"
        if replica in self.replicas:
            self.replicas.remove(replica)
        self._save()

    # ------------------------------------------------------------------ status rows

    def _lb_row(self, replica: R, lb_rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """What the status row of ``replica`` shows in its LB columns."""
        return lb_rows.get(replica.server_name)

    def _replica_row(self, replica: R, lb_row: dict[str, Any] | None) -> dict[str, Any]:
        usage = self._replica_usage(replica)
        state_now = replica.state if (usage.running or replica.state != "serving") else "dead"
        return _row(
            replica.component,
            replica.index,
            usage,
            replica.port,
            state_now,
            lb_status=lb_row["status"] if lb_row else "-",
            requests=int(lb_row["responses"]) if lb_row else 0,
            in_flight=int(lb_row["scur"]) if lb_row else 0,
        )

    def _balancer_row(self, lb: B, lb_rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
        usage = self._balancer_usage(lb)
        return _row(
            f"{lb.component}-lb",
            None,
            usage,
            lb.port,
            "serving" if usage.running else "dead",
            lb_status="-",
            requests=sum(int(r["responses"]) for r in lb_rows.values()),
            in_flight=sum(int(r["scur"]) for r in lb_rows.values()),
        )

    def _external_row(self) -> dict[str, Any]:
        return _row(
            VECTOR_COMPONENT,
            None,
            Usage(None, False, None, None),
            httpx.URL(self._qdrant_external or "").port,
            "external",
            lb_status="-",
            requests=0,
            in_flight=0,
        )


def _row(
    component: str,
    replica: int | None,
    usage: Usage,
    port: int | None,
    state_now: str,
    *,
    lb_status: str,
    requests: int,
    in_flight: int,
) -> dict[str, Any]:
    return {
        "component": component,
        "replica": replica,
        "pid": usage.pid,
        "port": port,
        "state": state_now,
        "lb_status": lb_status,
        "rss_mb": None if usage.rss_mb is None else round(usage.rss_mb, 1),
        "cpu_s": None if usage.cpu_s is None else round(usage.cpu_s, 2),
        "requests": requests,
        "in_flight": in_flight,
    }
