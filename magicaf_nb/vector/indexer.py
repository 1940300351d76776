"""Build a shard's HNSW index in its own process: ``python -m magicaf_nb.vector.indexer DIR``.

qdrant-edge's ``optimize()`` holds the GIL for the whole build, so it never runs in the
serving process: the server copies the shard, this process optimizes the copy at a lower
CPU priority, and the server swaps the copy in (see ``shard.py``). Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str]) -> int:
    path = argv[0]
    nice = int(argv[1]) if len(argv) > 1 else 10
    if nice:
        os.nice(nice)  # searches and writes in the server keep the CPU first
    import qdrant_edge as qe

    start = time.monotonic()
    shard = qe.EdgeShard.load(path)
    changed = shard.optimize()
    info = shard.info()
    shard.flush()
    shard.close()
    print(
        json.dumps(
            {
                "optimized": bool(changed),
                "seconds": round(time.monotonic() - start, 3),
                "points": info.points_count,
                "indexed": info.indexed_vectors_count,
                "segments": info.segments_count,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
