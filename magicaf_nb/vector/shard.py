"""One shard: a qdrant-edge ``EdgeShard`` whose HNSW index is built off the serving path.

On disk a shard is a folder of generations (``gen-000001``, ...) and a ``CURRENT`` file
naming the live one. ``optimize()`` holds the GIL for the whole build, so building an index
inside the server would stall every search and write. Instead ``build_index``:

1. flushes the live shard and copies it to the next generation (writes wait for the copy),
2. optimizes the copy in a separate, lower-priority process while the live shard keeps
   serving searches and taking writes, which are also remembered,
3. replays the remembered writes onto the optimized copy in the background, then, with
   writes held for the last few, flushes it and switches ``CURRENT`` atomically.

Every acknowledged write is in the WAL of whichever generation ``CURRENT`` names, so a
kill -9 at any step loses nothing; on open, generations other than ``CURRENT`` are deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from magicaf_nb.vector.rwlock import RWLock

CURRENT = "CURRENT"
# Replay remembered writes outside the write lock until at most this many are left.
CATCH_UP_TAIL = 64


class IndexBuildError(RuntimeError):
    """The index builder process failed; the message quotes its output."""


@dataclass
class IndexRun:
    """What one index build did."""

    shard_id: int
    seconds: float
    optimize_seconds: float
    copy_pause_s: float
    swap_pause_s: float
    replayed: int
    optimized: bool


def _gen_name(gen: int) -> str:
    return f"gen-{gen:06d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_current(root: Path, gen: int) -> None:
    tmp = root / f"{CURRENT}.tmp"
    with open(tmp, "w") as handle:
        handle.write(_gen_name(gen))
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(root / CURRENT)
    _fsync_dir(root)


def _load(path: Path, wait_s: float = 15.0) -> qe.EdgeShard:
    """Open a shard, waiting while a previous owner (a server still exiting) holds its WAL."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return qe.EdgeShard.load(str(path))
        except Exception as exc:
            if "WouldBlock" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class ShardHandle:
    """A live EdgeShard plus what it takes to swap in a re-indexed copy of it."""

    def __init__(self, root: Path, shard_id: int, gen: int, shard: qe.EdgeShard) -> None:
        self.root = root
        self.shard_id = shard_id
        self._gen = gen
        self._shard = shard
        self._rw = RWLock()  # readers: searches; writer: the pointer swap and close
        self._write = threading.Lock()  # one update at a time, and the copy/switch steps
        self._pending: list[Any] | None = None  # writes made while an index builds
        self._indexer: subprocess.Popen[str] | None = None
        self._closed = False
        self.dirty_since: float | None = None  # first write not yet covered by an index build
        self.last_write: float = 0.0
        self.building = False
        self.last_error: str | None = None

    # ------------------------------------------------------------------ open and create

    @classmethod
    def create(cls, root: Path, shard_id: int, config: qe.EdgeConfig) -> ShardHandle:
        root.mkdir(parents=True, exist_ok=True)
        shard = qe.EdgeShard.create(str(root / _gen_name(1)), config)
        _write_current(root, 1)
        return cls(root, shard_id, 1, shard)

    @classmethod
    def open(cls, root: Path, shard_id: int) -> ShardHandle:
        name = (root / CURRENT).read_text().strip()
        gen = int(name.split("-")[1])
        for stale in root.glob("gen-*"):  # an index build that never got switched in
            if stale.name != name:
                shutil.rmtree(stale, ignore_errors=True)
        handle = cls(root, shard_id, gen, _load(root / name))
        handle.dirty_since = time.monotonic()  # let the scheduler look at it once
        return handle

    @property
    def path(self) -> Path:
        return self.root / _gen_name(self._gen)

    # ------------------------------------------------------------------ reads and writes

    @contextlib.contextmanager
    def reading(self) -> Iterator[qe.EdgeShard]:
        """The live shard, held so that a swap waits for this read to finish."""
        with self._rw.read():
            if self._closed:
                raise RuntimeError(f"shard {self.shard_id} is closed")
            yield self._shard

    def update(self, operation: Any) -> None:
        """Apply one update; on return it is in the WAL (it survives a kill -9)."""
        with self._write:
            if self._closed:
                raise RuntimeError(f"shard {self.shard_id} is closed")
            self._shard.update(operation)
            if self._pending is not None:
                self._pending.append(operation)
            now = time.monotonic()
            self.last_write = now
            if self.dirty_since is None:
                self.dirty_since = now

    def info(self) -> qe.ShardInfo:
        with self.reading() as shard:
            return shard.info()

    # ------------------------------------------------------------------ index builds

    def build_index(self, *, nice: int = 10, log_path: Path | None = None) -> IndexRun:
        """Build the HNSW index off the serving path and swap it in (see the module doc)."""
        start = time.monotonic()
        target_gen = self._gen + 1
        target = self.root / _gen_name(target_gen)
        shutil.rmtree(target, ignore_errors=True)
        self.building = True
        try:
            with self._write:
                if self._closed:
                    raise IndexBuildError(f"shard {self.shard_id} closed before the build")
                pause_start = time.monotonic()
                self._shard.flush()
                shutil.copytree(self.path, target)
                self._pending = []
                self.dirty_since = None
                copy_pause = time.monotonic() - pause_start
            opt_start = time.monotonic()
            report = self._run_indexer(target, nice, log_path)
            optimize_seconds = time.monotonic() - opt_start
            fresh = qe.EdgeShard.load(str(target))
            replayed, swap_pause = self._catch_up_and_switch(fresh, target_gen)
        except BaseException:
            with self._write:
                self._pending = None
            shutil.rmtree(target, ignore_errors=True)
            raise
        finally:
            self.building = False
            self._indexer = None
        return IndexRun(
            shard_id=self.shard_id,
            seconds=time.monotonic() - start,
            optimize_seconds=optimize_seconds,
            copy_pause_s=copy_pause,
            swap_pause_s=swap_pause,
            replayed=replayed,
            optimized=bool(report.get("optimized")),
        )

    def _run_indexer(self, target: Path, nice: int, log_path: Path | None) -> dict[str, Any]:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "magicaf_nb.vector.indexer", str(target), str(nice)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self._indexer = proc
        output, _ = proc.communicate()
        if log_path is not None:
            with open(log_path, "a") as log:
                log.write(f"shard {self.shard_id} -> {target.name}: {output.strip()}\n")
        if proc.returncode != 0 or self._closed:
            raise IndexBuildError(
                f"building the index of shard {self.shard_id} failed (exit {proc.returncode}): "
                f"{output.strip()[-2000:]}"
            )
        lines = [line for line in output.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    def _catch_up_and_switch(self, fresh: qe.EdgeShard, target_gen: int) -> tuple[int, float]:
        replayed = 0
        try:
            while True:
                with self._write:
                    if self._closed:
                        raise IndexBuildError(f"shard {self.shard_id} closed during the build")
                    assert self._pending is not None
                    batch, self._pending = self._pending, []
                    if len(batch) <= CATCH_UP_TAIL:
                        pause_start = time.monotonic()
                        for operation in batch:
                            fresh.update(operation)
                        fresh.flush()
                        _write_current(self.root, target_gen)
                        old, old_path = self._shard, self.path
                        with self._rw.write():
                            self._shard, self._gen = fresh, target_gen
                        self._pending = None
                        swap_pause = time.monotonic() - pause_start
                        replayed += len(batch)
                        break
                for operation in batch:  # writes keep flowing to the live shard meanwhile
                    fresh.update(operation)
                replayed += len(batch)
        except BaseException:
            fresh.close()
            raise
        old.close()
        shutil.rmtree(old_path, ignore_errors=True)
        return replayed, swap_pause

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Stop any index build, flush and close the shard."""
        self._closed = True
        proc = self._indexer
        if proc is not None and proc.poll() is None:
            proc.kill()
        with self._write, self._rw.write():
            with contextlib.suppress(Exception):
                self._shard.flush()
            with contextlib.suppress(Exception):
                self._shard.close()
