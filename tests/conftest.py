"""Shared fixtures: one real stack per test module, and process-leak checks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psutil
import pytest

from magicaf_nb.config import StackSpec
from magicaf_nb.stack import LocalStack


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def server_pids() -> set[int]:
    """PIDs of every llama-server, haproxy, vector server and watchdog process here."""
    pids = set()
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if (
            "llama-server" in cmd
            or "haproxy" in (proc.info["name"] or "")
            or ("magicaf_nb.stack.watchdog" in cmd)
            or ("magicaf_nb.vector" in cmd)
        ):
            pids.add(proc.info["pid"])
    return pids


def stack_pids(stack: LocalStack) -> set[int]:
    pids = {r.process.pid for r in stack.replicas if r.process}
    pids |= {b.process.pid for b in stack.balancers.values() if b.process}
    if stack._watchdog:
        pids.add(stack._watchdog.pid)
    return pids


def alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.Error:
            pass
    return out


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(StackSpec(name=unique_name(f"test{os.getpid()}"))) as running:
        yield running
