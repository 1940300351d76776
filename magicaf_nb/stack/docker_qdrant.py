"""Qdrant's cluster API as ``DockerStack`` uses it: roles, shard placement, draining a peer.

A Qdrant cluster scales by peers; a collection's shards (``shard_number``) and their
copies (``replication_factor``) are placed on peers. Before a peer leaves, its shard
replicas move to the others (``move_shard``), then the peer is removed from consensus.
The embedded vector server answers the same ``/collections/{name}/cluster`` call for
its local shards, so ``shard_table`` works on it too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pandas as pd

SHARD_COLUMNS = ["collection", "shard_id", "peer_id", "replica", "state", "points"]


class QdrantClusterError(RuntimeError):
    """The Qdrant cluster refused or did not finish an operation."""


def _get(http: httpx.Client, url: str) -> dict[str, Any]:
    response = http.get(url)
    response.raise_for_status()
    return response.json().get("result") or {}


def cluster_info(url: str, timeout_s: float = 5.0) -> dict[str, Any] | None:
    """``GET /cluster`` of one peer (peer id, raft role, peers), or None if it has no cluster."""
    with contextlib.suppress(httpx.HTTPError, ValueError), httpx.Client(timeout=timeout_s) as http:
        info = _get(http, f"{url}/cluster")
        return info if info.get("status") == "enabled" else None
    return None


def role(url: str) -> str:
    info = cluster_info(url)
    if info is None:
        return "-"
    return str((info.get("raft_info") or {}).get("role") or "peer")


def collections(url: str, timeout_s: float = 5.0) -> list[str]:
    with httpx.Client(timeout=timeout_s) as http:
        return [c["name"] for c in _get(http, f"{url}/collections").get("collections", [])]


def shard_table(peers: Sequence[tuple[int, str]], collection: str | None = None) -> pd.DataFrame:
    """One row per shard replica: collection, shard id, peer id, our replica index, state, points.

    ``peers`` are ``(replica index, url)`` of the serving peers; each reports its local shards.
    """
    rows: list[dict[str, Any]] = []
    with httpx.Client(timeout=5.0) as http:
        for index, url in peers:
            info = cluster_info(url)
            peer_id = info.get("peer_id") if info else None
            try:
                names = [collection] if collection else collections(url)
            except httpx.HTTPError:
                continue
            for name in names:
                try:
                    placement = _get(http, f"{url}/collections/{name}/cluster")
                except httpx.HTTPError:
                    continue
                for shard in placement.get("local_shards", []):
                    rows.append(
                        {
                            "collection": name,
                            "shard_id": shard.get("shard_id"),
                            "peer_id": placement.get("peer_id", peer_id),
                            "replica": index,
                            "state": shard.get("state", "Active"),
                            "points": shard.get("points_count"),
                        }
                    )
    table = pd.DataFrame(rows, columns=SHARD_COLUMNS)
    return table.sort_values(["collection", "shard_id", "replica"]).reset_index(drop=True)


def _wait_transfers_done(http: httpx.Client, url: str, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _get(http, f"{url}/collections/{name}/cluster").get("shard_transfers"):
            return
        time.sleep(0.2)
    raise QdrantClusterError(
        f"Shard transfers of collection {name!r} did not finish within {timeout_s:.0f} s."
    )


def drain_peer(
    leaving: tuple[int, str], staying: Sequence[tuple[int, str]], timeout_s: float = 300.0
) -> None:
    """Move every shard replica off the ``leaving`` peer, then remove it from the cluster."""
    if not staying:
        raise QdrantClusterError("A Qdrant cluster needs at least one peer to stay.")
    leaving_info = cluster_info(leaving[1])
    if leaving_info is None:
        raise QdrantClusterError(f"{leaving[1]} is not a Qdrant cluster peer.")
    leaving_id = leaving_info["peer_id"]
    base = staying[0][1]
    ids = {}
    for index, url in staying:
        info = cluster_info(url)
        if info is not None:
            ids[index] = info["peer_id"]
    with httpx.Client(timeout=30.0) as http:
        for name in collections(base):
            table = shard_table([leaving, *staying], name)
            for shard_id in table.loc[table["replica"] == leaving[0], "shard_id"]:
                holders = set(table.loc[table["shard_id"] == shard_id, "replica"])
                load = table.groupby("replica").size().to_dict()
                targets = sorted((i for i in ids if i not in holders), key=lambda i: load.get(i, 0))
                op: dict[str, Any]
                if targets:
                    op = {
                        "move_shard": {
                            "shard_id": int(shard_id),
                            "from_peer_id": leaving_id,
                            "to_peer_id": ids[targets[0]],
                        }
                    }
                elif len(holders) > 1:  # the other peers already hold a copy: drop this one
                    op = {"drop_replica": {"shard_id": int(shard_id), "peer_id": leaving_id}}
                else:
                    raise QdrantClusterError(
                        f"Shard {shard_id} of {name!r} has nowhere to go from peer {leaving[0]}."
                    )
                response = http.post(f"{base}/collections/{name}/cluster", json=op)
                if response.status_code >= 400:
                    raise QdrantClusterError(
                        f"Qdrant refused {op} on {name!r}: {response.status_code} {response.text}"
                    )
                _wait_transfers_done(http, base, name, timeout_s)
        response = http.delete(f"{base}/cluster/peer/{leaving_id}")
        if response.status_code >= 400:
            raise QdrantClusterError(
                f"Qdrant refused to remove peer {leaving_id}: {response.status_code} "
                f"{response.text}"
            )
