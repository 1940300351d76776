"""Where the workbench keeps its files: converted models, stack state and logs."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The workbench's data folder (``MAGICAF_NB_HOME``, default ``~/.cache/magicaf_nb``)."""
    root = Path(os.environ.get("MAGICAF_NB_HOME", Path.home() / ".cache" / "magicaf_nb"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def models_dir() -> Path:
    path = home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stacks_dir() -> Path:
    path = home() / "stacks"
    path.mkdir(parents=True, exist_ok=True)
    return path
