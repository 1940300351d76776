"""The stack's state file: which processes it started, so that leftovers can be reaped.

The file is rewritten atomically after every change. A stack whose owner died (or a
detached stack that ``magicaf-nb down`` stops) is reaped from this file alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from magicaf_nb import paths
from magicaf_nb.stack.procs import ProcessRecord


def run_dir(name: str) -> Path:
    path = paths.stacks_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_path(name: str) -> Path:
    return paths.stacks_dir() / f"{name}.json"


def socket_dir(name: str) -> Path:
    """A short folder for UNIX sockets (their paths are limited to 107 bytes)."""
    digest = hashlib.sha1(str(run_dir(name)).encode()).hexdigest()[:10]
    path = Path(tempfile.gettempdir()) / f"magicaf_nb-{os.getuid()}" / f"{name[:20]}-{digest}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write(name: str, data: dict[str, Any]) -> None:
    target = state_path(name)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(target)


def read(name: str) -> dict[str, Any] | None:
    try:
        return json.loads(state_path(name).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        return {"corrupt": True}


def remove(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(name).unlink()


def recorded_processes(data: dict[str, Any]) -> list[ProcessRecord]:
    """Every process a state file names (replicas, balancers, the watchdog)."""
    records = []
    for item in data.get("replicas", []) + data.get("balancers", []):
        if item.get("process"):
            records.append(ProcessRecord(**item["process"]))
    if data.get("watchdog"):
        records.append(ProcessRecord(**data["watchdog"]))
    return records


def owner_alive(data: dict[str, Any]) -> bool:
    pid, created = data.get("owner_pid"), data.get("owner_create_time")
    if not pid:
        return False
    try:
        return abs(psutil.Process(pid).create_time() - created) < 0.5
    except psutil.Error:
        return False


def reap(data: dict[str, Any], *, skip_pid: int | None = None) -> int:
    """SIGKILL the process group of every live recorded process; return how many."""
    killed = 0
    for record in recorded_processes(data):
        if record.pid == skip_pid or not record.is_alive():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
            killed += 1
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(
        r.is_alive() for r in recorded_processes(data) if r.pid != skip_pid
    ):
        time.sleep(0.05)
    return killed
