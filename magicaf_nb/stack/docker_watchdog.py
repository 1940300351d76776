"""Removes a ``DockerStack``'s containers when the process that owns them dies.

Run as ``python -m magicaf_nb.stack.docker_watchdog DOCKER_HOST NAME OWNER_TOKEN`` in its
own session: a SIGKILLed kernel then leaves no container running. ``down()`` ends it.
"""

from __future__ import annotations

import sys
import time

from magicaf_nb.stack import docker_engine

POLL_S = 0.5


def main(argv: list[str]) -> int:
    docker_host, name, owner = argv[0], argv[1], argv[2]
    while docker_engine.owner_alive(owner):
        time.sleep(POLL_S)
    client = docker_engine.connect(docker_host)
    removed = docker_engine.remove_containers(
        docker_engine.stack_containers(client, name, owner=owner)
    )
    print(f"owner {owner} died: removed {removed} container(s) of stack {name!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
