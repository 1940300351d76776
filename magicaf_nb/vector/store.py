"""The server's storage: collections on disk, and the scheduler that builds their indexes.

Layout: ``STORAGE/collections/NAME/collection.json`` (the create request) and
``.../shards/I/`` (one ``ShardHandle`` each). Index builds run one at a time in a
background thread, each in its own process (see ``shard.py``), starting once a shard
holds ``indexing_threshold`` KB of unindexed vectors and its writes paused for
``idle_s`` (or ``max_delay_s`` after its first unindexed write, under a steady stream).
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import shutil
import threading
import time
import uuid
from pathlib import Path

from qdrant_client.http import models as m

from magicaf_nb.vector.collection import Collection
from magicaf_nb.vector.errors import already_exists, collection_not_found, validation_error
from magicaf_nb.vector.metrics import Metrics

log = logging.getLogger("magicaf_nb.vector")

NAME_RE = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,254}$")


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise validation_error(
            f"collection_name: {name!r} is not a valid collection name: use 1-255 letters, "
            "digits, '_', '-' and '.', not starting with '.'",
            where="path parameters",
        )


class VectorStore:
    """Collections by name, persisted under ``storage``."""

    def __init__(
        self,
        storage: Path,
        *,
        idle_s: float = 0.5,
        max_delay_s: float = 5.0,
        indexer_nice: int = 10,
    ) -> None:
        self.storage = Path(storage)
        self.root = self.storage / "collections"
        self.root.mkdir(parents=True, exist_ok=True)
        self.idle_s = idle_s
        self.max_delay_s = max_delay_s
        self.indexer_nice = indexer_nice
        self.metrics = Metrics()
        self.peer_id = self._peer_id()
        self._lock = threading.RLock()
        self._collections: dict[str, Collection] = {}
        self._stop = threading.Event()
        self._load()
        self._scheduler = threading.Thread(
            target=self._schedule, name="index-scheduler", daemon=True
        )
        self._scheduler.start()

    def _peer_id(self) -> int:
        path = self.storage / "peer_id"
        if not path.exists():
            path.write_text(str(secrets.randbits(52)))
        return int(path.read_text().strip())

    def _load(self) -> None:
        for entry in sorted(self.root.iterdir()):
            if entry.name.startswith("."):  # an unfinished create or delete
                shutil.rmtree(entry, ignore_errors=True)
                continue
            if entry.is_dir():
                collection = Collection.open(entry)
                self._collections[collection.name] = collection

    # ------------------------------------------------------------------ registry

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._collections)

    def get(self, name: str) -> Collection:
        with self._lock:
            collection = self._collections.get(name)
        if collection is None:
            raise collection_not_found(name)
        return collection

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._collections

    def create(self, name: str, request: m.CreateCollection) -> bool:
        check_name(name)
        with self._lock:
            if name in self._collections:
                raise already_exists(f"Collection `{name}` already exists!")
            self._collections[name] = Collection.create(self.root, name, request)
        return True

    def delete(self, name: str) -> bool:
        check_name(name)
        with self._lock:
            collection = self._collections.pop(name, None)
        if collection is None:
            return False
        collection.close()
        collection.wait_index_idle()
        grave = self.root / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
        collection.root.rename(grave)
        shutil.rmtree(grave, ignore_errors=True)
        return True

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            collections = list(self._collections.values())
            self._collections.clear()
        for collection in collections:
            collection.close()
        self._scheduler.join(timeout=10)

    # ------------------------------------------------------------------ index scheduler

    def _due(self) -> tuple[Collection, int] | None:
        now = time.monotonic()
        with self._lock:
            collections = list(self._collections.values())
        for collection in collections:
            for shard in collection.shards:
                if collection.closed or shard.building or shard.dirty_since is None:
                    continue
                quiet = now - shard.last_write >= self.idle_s
                overdue = now - shard.dirty_since >= self.max_delay_s
                if (quiet or overdue) and collection.index_pending(shard):
                    return collection, shard.shard_id
        return None

    def _schedule(self) -> None:
        while not self._stop.wait(0.1):
            try:
                due = self._due()
            except Exception:  # a collection closed under us; look again next tick
                continue
            if due is None:
                continue
            collection, shard_id = due
            shard = collection.shards[shard_id]
            try:
                run = shard.build_index(
                    nice=self.indexer_nice, log_path=self.storage / "indexer.log"
                )
            except Exception as exc:
                if collection.closed or self._stop.is_set():
                    continue
                collection.index_error = str(exc)
                self.metrics.index_failures += 1
                log.error("index build failed: %s", exc)
                with contextlib.suppress(Exception):
                    shard.dirty_since = None  # do not retry in a loop; the next write will
                continue
            collection.index_error = None
            with self.metrics.lock:
                self.metrics.index_builds += 1
                self.metrics.index_seconds += run.seconds
                self.metrics.index_replayed += run.replayed
                self.metrics.max_copy_pause_s = max(self.metrics.max_copy_pause_s, run.copy_pause_s)
                self.metrics.max_swap_pause_s = max(self.metrics.max_swap_pause_s, run.swap_pause_s)
            log.info(
                "collection %s shard %d indexed in %.2f s (optimize %.2f s, write pauses "
                "%.3f s + %.3f s, %d writes replayed)",
                collection.name,
                shard_id,
                run.seconds,
                run.optimize_seconds,
                run.copy_pause_s,
                run.swap_pause_s,
                run.replayed,
            )
