"""Prometheus text for ``/metrics``: request counters, collection sizes, index builds."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from magicaf_nb.vector.store import VectorStore


def _labels(**labels: object) -> str:
    inner = ",".join(f'{k}="{str(v).replace(chr(34), chr(39))}"' for k, v in labels.items())
    return "{" + inner + "}"


@dataclass
class Metrics:
    """Counters updated by the server and the index scheduler."""

    requests: dict[tuple[str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))
    index_builds: int = 0
    index_failures: int = 0
    index_seconds: float = 0.0
    index_replayed: int = 0
    max_copy_pause_s: float = 0.0
    max_swap_pause_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(method, endpoint, status)] += 1
            self.seconds[(method, endpoint)] += seconds

    def render(self, store: VectorStore) -> str:
        lines = [
            "# HELP app_info information about the vector server",
            "# TYPE app_info gauge",
            f"app_info{_labels(name='magicaf-nb-vector', engine='qdrant-edge')} 1",
            "# HELP collections_total number of collections",
            "# TYPE collections_total gauge",
            f"collections_total {len(store.names())}",
            "# HELP collection_points points per collection",
            "# TYPE collection_points gauge",
        ]
        shard_lines = [
            "# HELP shard_points points per local shard",
            "# TYPE shard_points gauge",
        ]
        indexed_lines = [
            "# HELP collection_indexed_vectors vectors covered by an HNSW index",
            "# TYPE collection_indexed_vectors gauge",
        ]
        for name in store.names():
            try:
                infos = store.get(name).shard_infos()
            except Exception:
                continue
            lines.append(
                f"collection_points{_labels(collection=name)} {sum(i.points_count for i in infos)}"
            )
            indexed = sum(i.indexed_vectors_count for i in infos)
            indexed_lines.append(f"collection_indexed_vectors{_labels(collection=name)} {indexed}")
            for shard_id, info in enumerate(infos):
                label = _labels(collection=name, shard=shard_id)
                shard_lines.append(f"shard_points{label} {info.points_count}")
        lines += indexed_lines + shard_lines
        with self.lock:
            max_pause = max(self.max_copy_pause_s, self.max_swap_pause_s)
            lines += [
                "# HELP rest_responses_total REST responses by endpoint and status",
                "# TYPE rest_responses_total counter",
            ]
            for (method, endpoint, status), count in sorted(self.requests.items()):
                label = _labels(method=method, endpoint=endpoint, status=status)
                lines.append(f"rest_responses_total{label} {count}")
            lines += [
                "# HELP rest_responses_duration_seconds_sum time spent answering, by endpoint",
                "# TYPE rest_responses_duration_seconds_sum counter",
            ]
            for (method, endpoint), secs in sorted(self.seconds.items()):
                label = _labels(method=method, endpoint=endpoint)
                lines.append(f"rest_responses_duration_seconds_sum{label} {secs:.6f}")
            lines += [
                "# HELP index_builds_total HNSW index builds swapped in",
                "# TYPE index_builds_total counter",
                f"index_builds_total {self.index_builds}",
                "# HELP index_build_failures_total HNSW index builds that failed",
                "# TYPE index_build_failures_total counter",
                f"index_build_failures_total {self.index_failures}",
                "# HELP index_build_seconds_total wall time of index builds",
                "# TYPE index_build_seconds_total counter",
                f"index_build_seconds_total {self.index_seconds:.3f}",
                "# HELP index_replayed_updates_total writes replayed onto rebuilt shards",
                "# TYPE index_replayed_updates_total counter",
                f"index_replayed_updates_total {self.index_replayed}",
                "# HELP index_max_write_pause_seconds longest time writes waited on a build",
                "# TYPE index_max_write_pause_seconds gauge",
                f"index_max_write_pause_seconds {max_pause:.4f}",
            ]
        running = sum(1 for n in store.names() for s in store.get(n).shards if s.building)
        lines += [
            "# HELP index_builds_running HNSW index builds in progress",
            "# TYPE index_builds_running gauge",
            f"index_builds_running {running}",
        ]
        return "\n".join(lines) + "\n"
