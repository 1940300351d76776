"""No process outlives down(), a failed up(), or a SIGKILL of the caller."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from magicaf_nb.config import StackSpec
from magicaf_nb.stack import LocalStack, StackError, state

from .conftest import alive, stack_pids, unique_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_dead(pids: set[int], timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def test_down_leaves_no_process_and_no_state() -> None:
    stack = LocalStack(StackSpec(name=unique_name("down"))).up()
    pids = stack_pids(stack)
    # embedding, llm and app replicas, their 3 balancers, the vector server, the watchdog
    assert len(pids) == 8
    assert alive(pids) == pids
    stack.down()
    assert _wait_dead(pids) == set()
    assert state.read(stack.spec.name) is None


OWNER = textwrap.dedent("""
    import json, sys, time
    from magicaf_nb.config import StackSpec
    from magicaf_nb.stack import LocalStack
    stack = LocalStack(StackSpec(name=sys.argv[1])).up()
    pids = [r.process.pid for r in stack.replicas] + [
        b.process.pid for b in stack.balancers.values()]
    print(json.dumps({"pids": pids, "watchdog": stack._watchdog.pid}), flush=True)
    time.sleep(600)
""")


def _start_owner(name: str) -> tuple[subprocess.Popen[str], dict[str, list[int] | int]]:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, name], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert line, "the owner process died before the stack was up"
    return owner, json.loads(line)


def test_sigkilled_caller_leaves_no_server_running() -> None:
    name = unique_name("orphan")
    owner, info = _start_owner(name)
    pids = set(info["pids"]) | {info["watchdog"]}
    assert alive(pids) == pids
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _wait_dead(pids) == set(), "servers outlived their SIGKILLed owner"
    assert state.read(name) is None


def test_next_up_reaps_leftovers_when_even_the_watchdog_died() -> None:
    name = unique_name("reap")
    owner, info = _start_owner(name)
    os.kill(info["watchdog"], signal.SIGKILL)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    # SIGKILL is delivered asynchronously: count the reaped servers once the watchdog is gone
    assert _wait_dead({info["watchdog"]}) == set()
    leftovers = set(info["pids"])
    assert alive(leftovers) == leftovers  # nobody reaped them yet
    with pytest.warns(UserWarning, match="Reaped 7 leftover"):
        stack = LocalStack(StackSpec(name=name)).up()
    try:
        assert _wait_dead(leftovers) == set()
    finally:
        stack.down()


def test_cli_stack_persists_between_calls_and_down_reaps_it(tmp_path: object) -> None:
    name = unique_name("cli")
    cli = [sys.executable, "-m", "magicaf_nb.cli", "--name", name]
    up = subprocess.run(
        [*cli, "up", "--embedding", "2"], capture_output=True, text=True, cwd=ROOT, timeout=180
    )
    assert up.returncode == 0, up.stderr
    assert "export EMBEDDING_URL=http://127.0.0.1:" in up.stdout
    try:
        status = subprocess.run([*cli, "status"], capture_output=True, text=True, cwd=ROOT)
        assert status.returncode == 0 and status.stdout.count("serving") == 8
        embed = subprocess.run(
            [*cli, "embed", "hello world"], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert embed.returncode == 0 and "384 dims" in embed.stdout, embed.stderr
        chat = subprocess.run(
            [*cli, "chat", "Say hello.", "--max-tokens", "8"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr
        scale = subprocess.run(
            [*cli, "scale", "embedding", "1"], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert scale.returncode == 0 and "2 -> 1" in scale.stdout, scale.stderr
        kill = subprocess.run([*cli, "kill", "llm", "0"], capture_output=True, text=True, cwd=ROOT)
        assert kill.returncode == 0, kill.stderr
        with pytest.raises(StackError, match="already running"):
            LocalStack(StackSpec(name=name)).up()
    finally:
        data = state.read(name) or {}
        pids = {r.pid for r in state.recorded_processes(data)}
        down = subprocess.run([*cli, "down"], capture_output=True, text=True, cwd=ROOT)
    assert down.returncode == 0, down.stderr
    assert _wait_dead(pids) == set()
    assert state.read(name) is None
