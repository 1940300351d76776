"""Server processes: spawn each in its own process group, log to a file, kill cleanly.

Every process the stack starts is recorded (pid, process-group id, start time) in the
stack's state file, so that a later ``up()`` or ``magicaf-nb down`` can reap leftovers
even if the Python process that started them was SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass
class ProcessRecord:
    """What is needed to find a process again and to be sure it is the same one."""

    pid: int
    create_time: float
    cmd: list[str]
    log_path: str

    def is_alive(self) -> bool:
        try:
            proc = psutil.Process(self.pid)
            return (
                abs(proc.create_time() - self.create_time) < 0.5
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False

    def process(self) -> psutil.Process | None:
        return psutil.Process(self.pid) if self.is_alive() else None


def spawn(cmd: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> ProcessRecord:
    """Start ``cmd`` as the leader of a new process group, stdout+stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            close_fds=True,
        )
    create_time = psutil.Process(proc.pid).create_time()
    _children[proc.pid] = proc
    return ProcessRecord(proc.pid, create_time, list(cmd), str(log_path))


# Popen objects of our own children, kept so that exited children are reaped (no zombies).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _reap_child(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def kill_group(record: ProcessRecord, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to the process group of ``record`` if it is still the same process."""
    if record.is_alive():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, sig)
    if sig == signal.SIGKILL:
        _reap_child(record.pid)


def stop(record: ProcessRecord, grace_s: float = 3.0) -> None:
    """SIGTERM the group, wait up to ``grace_s``, then SIGKILL whatever is left."""
    if not record.is_alive():
        _reap_child(record.pid)
        return
    kill_group(record, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        child = _children.get(record.pid)
        if child is not None and child.poll() is not None:
            break
        if child is None and not record.is_alive():
            break
        time.sleep(0.05)
    kill_group(record, signal.SIGKILL)
    _reap_child(record.pid)


def exit_code(record: ProcessRecord) -> int | None:
    """The exit code of one of our own children, or None if it runs (or is not ours)."""
    child = _children.get(record.pid)
    return None if child is None else child.poll()


def tail(log_path: str | Path, lines: int = 20) -> str:
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def cpu_and_rss(record: ProcessRecord) -> tuple[float | None, float | None]:
    """(CPU seconds, RSS in MB) of the process and its children, or (None, None) if gone."""
    proc = record.process()
    if proc is None:
        return None, None
    try:
        procs = [proc, *proc.children(recursive=True)]
        cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        rss = sum(p.memory_info().rss for p in procs) / 2**20
        return cpu, rss
    except psutil.Error:
        return None, None
