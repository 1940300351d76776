"""Launchers for the MagicAF stack. ``LocalStack`` is the embedded default; ``DockerStack``
runs the same topology as containers."""

from magicaf_nb.stack.docker import DockerStack
from magicaf_nb.stack.docker_images import ContainerSpec, DockerImages
from magicaf_nb.stack.local import LocalStack, ScaleEvent, StackError
from magicaf_nb.stack.ports import PortInUseError

__all__ = [
    "ContainerSpec",
    "DockerImages",
    "DockerStack",
    "LocalStack",
    "PortInUseError",
    "ScaleEvent",
    "StackError",
]
