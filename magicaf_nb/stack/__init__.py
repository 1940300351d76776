"""Launchers for the MagicAF stack. ``LocalStack`` is the embedded default."""

from magicaf_nb.stack.local import LocalStack, ScaleEvent, StackError
from magicaf_nb.stack.ports import PortInUseError

__all__ = ["LocalStack", "PortInUseError", "ScaleEvent", "StackError"]
