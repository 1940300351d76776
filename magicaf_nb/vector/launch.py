"""Start the embedded vector server as its own process on 127.0.0.1.

``LocalStack`` starts it as the stack's ``qdrant`` component; tests, notebooks and the
benchmark use ``VectorServer`` directly when they need only the vector store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx


class VectorServerError(RuntimeError):
    """The vector server did not start; the message quotes its log."""


def server_command(
    port: int, storage: Path, *, parent_pid: int | None = None, log_level: str = "info"
) -> list[str]:
    """The command line that serves ``storage`` on 127.0.0.1:``port``."""
    cmd = [
        sys.executable,
        "-m",
        "magicaf_nb.vector",
        "--port",
        str(port),
        "--storage",
        str(storage),
        "--log-level",
        log_level,
    ]
    if parent_pid is not None:
        cmd += ["--parent-pid", str(parent_pid)]
    return cmd


def server_env(api_key: str | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    if api_key:
        env["MAGICAF_NB_VECTOR_API_KEY"] = api_key
    return env


def wait_ready(url: str, is_alive: object, log_path: Path, timeout_s: float) -> None:
    """Poll ``/readyz`` until it answers 200; raise with the log if the process died."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=1.0) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            if not is_alive():  # type: ignore[operator]
                raise VectorServerError(
                    f"The vector server for {url} exited during start. Log ({log_path}):\n"
                    f"{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise VectorServerError(
                    f"The vector server for {url} did not answer /readyz within {timeout_s:.0f} s. "
                    f"Log ({log_path}):\n{_tail(log_path)}"
                )
            time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


class VectorServer:
    """One vector server process; a context manager that stops it on exit.

    ``storage=None`` uses a temporary folder removed on ``stop()``. The server exits by
    itself if this Python process dies, so a crashed kernel leaves nothing running.
    """

    def __init__(
        self,
        storage: Path | str | None = None,
        port: int | None = None,
        *,
        api_key: str | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self._temporary = storage is None
        self.storage = Path(storage or tempfile.mkdtemp(prefix="magicaf-vector-"))
        self.port = port
        self.api_key = api_key
        self.startup_timeout_s = startup_timeout_s
        self.log_path = self.storage.parent / f"{self.storage.name}-server.log"
        self.process = None  # a magicaf_nb.stack.procs.ProcessRecord once started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VectorServer:
        from magicaf_nb.stack import procs
        from magicaf_nb.stack.ports import pick_free_port

        self.port = self.port or pick_free_port()
        self.storage.mkdir(parents=True, exist_ok=True)
        cmd = server_command(self.port, self.storage, parent_pid=os.getpid())
        self.process = procs.spawn(cmd, self.log_path, env=server_env(self.api_key))
        try:
            wait_ready(self.url, self.process.is_alive, self.log_path, self.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the server and everything it started (a crash, for durability tests)."""
        from magicaf_nb.stack import procs

        if self.process is not None:
            procs.kill_group(self.process, signal.SIGKILL)

    def stop(self, *, keep_storage: bool | None = None) -> None:
        from magicaf_nb.stack import procs

        if self.process is not None:
            procs.stop(self.process, grace_s=10.0)
            self.process = None
        keep = (not self._temporary) if keep_storage is None else keep_storage
        if not keep:
            shutil.rmtree(self.storage, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.log_path.unlink()

    def __enter__(self) -> VectorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
