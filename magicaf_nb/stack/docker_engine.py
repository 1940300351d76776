"""The Docker engine as ``DockerStack`` uses it: connect, find images, label and reap containers.

Every container a stack starts carries labels (``magicaf_nb.stack`` = the stack's name,
``magicaf_nb.owner`` = the process that owns it, component, role, replica index, port),
so ``down()``, a later ``up()`` and the watchdog find all of them from the engine alone.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import psutil

LABEL_STACK = "magicaf_nb.stack"
LABEL_OWNER = "magicaf_nb.owner"
LABEL_COMPONENT = "magicaf_nb.component"
LABEL_ROLE = "magicaf_nb.role"
LABEL_INDEX = "magicaf_nb.replica"
LABEL_PORT = "magicaf_nb.port"
LABEL_SPEC = "magicaf_nb.spec"
LABEL_IMAGES = "magicaf_nb.images"
LABEL_EXTRA = "magicaf_nb.extra"

DETACHED = "detached"


class DockerUnavailableError(RuntimeError):
    """No Docker engine answers, or it is not one this machine can drive."""


class ImageMissingError(RuntimeError):
    """An image the stack needs is not on the engine and may not be pulled."""


def connect(docker_host: str | None = None, timeout_s: float = 60.0) -> docker.DockerClient:
    """A client for ``docker_host`` (default: ``DOCKER_HOST`` or the local socket) that answers."""
    url = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not is_local(url):  # checked before any connection: nothing is sent to a remote host
        raise DockerUnavailableError(
            f"DOCKER_HOST={url} is a remote engine. DockerStack runs containers with host "
            "networking on 127.0.0.1 and drives HAProxy through a bind-mounted socket, so it "
            "needs the engine on this machine. Fix: run the notebook on the Docker host, or "
            "deploy there with stack/docker-compose.yml."
        )
    try:
        client = docker.DockerClient(base_url=url, timeout=int(timeout_s))
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise DockerUnavailableError(
            f"No Docker engine answers at {url} ({exc}). Fix: start one (on this workbench: "
            '`eval "$(bash scripts/dockerd.sh start)"`; elsewhere `sudo systemctl start '
            "docker`), or point DOCKER_HOST at a running engine."
        ) from None
    return client


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("unix", "npipe", "http+unix", ""):
        return True
    return parsed.hostname in ("127.0.0.1", "localhost", "::1")


def ensure_images(
    client: docker.DockerClient,
    refs: Iterable[str],
    *,
    pull: bool,
    hints: dict[str, str] | None = None,
) -> None:
    """Check that every image is on the engine; pull missing ones only when ``pull``.

    ``hints`` maps an image to how to get it (for images no registry has).
    """
    hints = hints or {}
    missing = []
    for ref in dict.fromkeys(refs):
        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            missing.append(ref)
    if pull:
        for ref in [r for r in missing if r not in hints]:
            try:
                client.images.pull(ref)
                missing.remove(ref)
            except docker.errors.APIError as exc:
                raise ImageMissingError(
                    f"Image {ref} is not on the Docker engine and pulling it failed: "
                    f"{exc.explanation or exc}. Fix: make a registry reachable, or `docker load` "
                    "the image, or choose another image in DockerImages."
                ) from None
    if not missing:
        return
    lines = [f"  {ref}: {hints[ref]}" for ref in missing if ref in hints]
    pullable = [ref for ref in missing if ref not in hints]
    if pullable:
        lines.append(
            f"  {', '.join(pullable)}: pulls are off (DockerImages.pull=False). Fix: `docker "
            "pull` them where a registry is reachable (or `docker load` a saved copy), pass "
            "DockerImages(..., pull=True), or use images this engine has "
            "(DockerImages.host_binaries(build_host_runtime_image(client)) runs the "
            "workbench's own servers)."
        )
    raise ImageMissingError("Image(s) not on the Docker engine:\n" + "\n".join(lines))


def owner_token(detach: bool) -> str:
    """``host/pid/start-time`` of this process, or ``detached``."""
    if detach:
        return DETACHED
    me = psutil.Process()
    return f"{socket.gethostname()}/{me.pid}/{me.create_time():.3f}"


def owner_alive(token: str) -> bool:
    """Whether the process a container's owner label names still runs (detached: always)."""
    if token == DETACHED:
        return True
    try:
        host, pid, created = token.split("/")
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another machine's process: never reap it from here
    try:
        return abs(psutil.Process(int(pid)).create_time() - float(created)) < 0.5
    except (psutil.Error, ValueError):
        return False


def stack_containers(client: docker.DockerClient, name: str, owner: str | None = None) -> list[Any]:
    labels = [f"{LABEL_STACK}={name}"]
    if owner is not None:
        labels.append(f"{LABEL_OWNER}={owner}")
    return client.containers.list(all=True, filters={"label": labels})


def remove_containers(containers: Iterable[Any]) -> int:
    """Force-remove containers (and their anonymous volumes); return how many went."""
    removed = 0
    for container in containers:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
            removed += 1
    return removed


def container_pid(container: Any) -> int | None:
    pid = (container.attrs.get("State") or {}).get("Pid") or 0
    return int(pid) or None


def cpu_and_rss(pid: int | None) -> tuple[float | None, float | None]:
    """(CPU seconds, RSS in MB) of a container's process tree, seen from the host."""
    if pid is None:
        return None, None
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        rss = sum(p.memory_info().rss for p in procs) / 2**20
        return cpu, rss
    except psutil.Error:
        return None, None


def log_tail(container: Any, lines: int) -> str:
    try:
        raw = container.logs(tail=lines, stdout=True, stderr=True)
    except docker.errors.APIError as exc:
        return f"(no log: {exc.explanation or exc})"
    return raw.decode(errors="replace").rstrip()
