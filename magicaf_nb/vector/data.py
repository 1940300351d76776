"""Embedding-like vectors for benchmarks and lessons, and exact neighbours in numpy.

Real sentence embeddings are not uniform on the sphere: they crowd into topics and
live near a low-dimensional subspace. Recall measured on uniform random vectors says
little (every neighbour is about as far as every other), so ``embedding_like`` draws
clustered points from a low-rank latent space, projects them to ``dim`` and normalises.
"""

from __future__ import annotations

import numpy as np


def embedding_like(
    n: int,
    dim: int = 384,
    *,
    clusters: int | None = None,
    latent_dim: int = 48,
    spread: float = 0.35,
    noise: float = 0.02,
    seed: int = 0,
) -> np.ndarray:
    """``n`` unit vectors of ``dim`` floats (float32) grouped in ``clusters`` topics."""
    if n < 1 or dim < 2:
        raise ValueError(f"embedding_like(n={n}, dim={dim}): use n >= 1 and dim >= 2")
    rng = np.random.default_rng(seed)
    clusters = clusters or max(8, n // 100)
    latent_dim = min(latent_dim, dim)
    basis = np.linalg.qr(rng.standard_normal((dim, latent_dim)))[0].T  # latent -> dim
    # The projection and the centres depend on the seed only; points vary per call.
    centres = rng.standard_normal((clusters, latent_dim))
    sizes = rng.dirichlet(np.full(clusters, 2.0))  # topics of unequal size
    which = rng.choice(clusters, size=n, p=sizes)
    scales = rng.uniform(0.5, 1.5, size=clusters)[which, None] * spread
    latent = centres[which] + rng.standard_normal((n, latent_dim)) * scales
    vectors = latent @ basis + rng.standard_normal((n, dim)) * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def split_queries(
    vectors: np.ndarray, n_queries: int, seed: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``n_queries`` rows as queries; return (corpus, queries)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(vectors))
    return vectors[idx[n_queries:]], vectors[idx[:n_queries]]


def exact_top_k(
    corpus: np.ndarray, queries: np.ndarray, k: int, distance: str = "Cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of the ``k`` best corpus rows per query, scored as Qdrant scores.

    Cosine: dot product of normalised vectors (higher first); Dot: dot product;
    Euclid: L2 distance (lower first). Computed in float64 in blocks.
    """
    data = corpus.astype(np.float64)
    q = queries.astype(np.float64)
    if distance == "Cosine":
        data = data / np.linalg.norm(data, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    out_idx = np.empty((len(q), k), dtype=np.int64)
    out_score = np.empty((len(q), k))
    for start in range(0, len(q), 256):
        block = q[start : start + 256]
        if distance == "Euclid":
            scores = -np.sqrt(
                np.maximum(
                    (block**2).sum(1)[:, None] - 2 * block @ data.T + (data**2).sum(1)[None], 0
                )
            )
        else:
            scores = block @ data.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        idx = np.take_along_axis(top, order, 1)
        out_idx[start : start + 256] = idx
        best = np.take_along_axis(scores, idx, 1)
        out_score[start : start + 256] = -best if distance == "Euclid" else best
    return out_idx, out_score


def recall_at_k(found: list[list[int]], truth: np.ndarray) -> float:
    """Mean fraction of the true top-k ids found."""
    k = truth.shape[1]
    hits = [len(set(f[:k]) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))
