"""Run the vector server: ``python -m magicaf_nb.vector --port 6333 --storage DIR``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil


def _watch_parent(pid: int) -> None:
    """Exit (gracefully, via SIGTERM) when the process that started this server dies."""
    try:
        parent = psutil.Process(pid)
        created = parent.create_time()
    except psutil.Error:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    while True:
        time.sleep(0.5)
        try:
            alive = parent.create_time() == created and parent.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            alive = False
        if not alive:
            os.kill(os.getpid(), signal.SIGTERM)
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m magicaf_nb.vector", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6333)
    parser.add_argument("--storage", type=Path, required=True, help="folder for collections")
    parser.add_argument("--api-key", default=os.environ.get("MAGICAF_NB_VECTOR_API_KEY"))
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when it dies")
    parser.add_argument("--index-idle-s", type=float, default=0.5)
    parser.add_argument("--index-max-delay-s", type=float, default=5.0)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error(f"--host {args.host}: the embedded server binds to loopback only")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    import uvicorn

    from magicaf_nb.vector.server import build_app
    from magicaf_nb.vector.store import VectorStore

    store = VectorStore(args.storage, idle_s=args.index_idle_s, max_delay_s=args.index_max_delay_s)
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    logging.getLogger("magicaf_nb.vector").info(
        "serving %d collection(s) from %s on http://%s:%d",
        len(store.names()),
        args.storage,
        args.host,
        args.port,
    )
    uvicorn.run(
        build_app(store, api_key=args.api_key),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
