"""Launchers for the MagicAF stack. ``LocalStack`` is the embedded default; ``DockerStack``
runs the same topology as containers."""

from typing import Any

from magicaf_nb.config import ConfigError, StackSpec
from magicaf_nb.stack.docker import DockerStack
from magicaf_nb.stack.docker_images import ContainerSpec, DockerImages
from magicaf_nb.stack.local import LocalStack, ScaleEvent, StackError
from magicaf_nb.stack.ports import PortInUseError


def make_stack(
    spec: StackSpec | None = None, backend: str = "local", **options: Any
) -> LocalStack | DockerStack:
    """The stack on the chosen backend: ``"local"`` (processes on this machine, the
    default) or ``"docker"`` (containers through the docker SDK; ``options`` such as
    ``images=DockerImages(...)`` go to ``DockerStack``). Both have the same interface."""
    if backend == "local":
        return LocalStack(spec, **options)
    if backend == "docker":
        return DockerStack(spec, **options)
    raise ConfigError(f"backend={backend!r}: use 'local' or 'docker'.")


__all__ = [
    "ContainerSpec",
    "DockerImages",
    "DockerStack",
    "LocalStack",
    "PortInUseError",
    "ScaleEvent",
    "StackError",
    "make_stack",
]
