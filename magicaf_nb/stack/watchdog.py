"""A tiny guardian process: when the stack's owner dies, it reaps the stack.

Run as ``python -m magicaf_nb.stack.watchdog NAME OWNER_PID OWNER_CREATE_TIME``
in its own session, so that a SIGKILL of the owner (a crashed or killed kernel)
leaves no server running. It exits by itself when the state file goes away.
"""

from __future__ import annotations

import os
import sys
import time

import psutil

from magicaf_nb.stack import state

POLL_S = 0.25


def _owner_alive(pid: int, create_time: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.5 and proc.status() != "zombie"
    except psutil.Error:
        return False


def main(argv: list[str]) -> int:
    name, owner_pid, owner_created = argv[0], int(argv[1]), float(argv[2])
    while True:
        data = state.read(name)
        if data is None or data.get("owner_pid") != owner_pid:
            return 0
        if not _owner_alive(owner_pid, owner_created):
            state.reap(data, skip_pid=os.getpid())
            state.remove(name)
            return 0
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
