"""The embedded vector store: Qdrant's engine (qdrant-edge) behind Qdrant's REST API.

``VectorServer`` runs it as a process; clients talk to it with ``QdrantClient(url=...)``
exactly as to a Qdrant server. Modules: ``server`` (HTTP), ``store`` (collections on disk,
index scheduler), ``collection`` (shards, routing, fan-out), ``shard`` (one EdgeShard and
its off-path index builds), ``convert`` (REST models to engine objects), ``launch``.
"""

from magicaf_nb.vector.launch import VectorServer, VectorServerError, server_command

__all__ = ["VectorServer", "VectorServerError", "server_command"]
