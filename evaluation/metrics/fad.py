"""Fréchet distance between Gaussian fits of embeddings (FAD), and a mergeable statistics accumulator.

FAD fits a Gaussian N(mu, Sigma) to the per-window embeddings of each audio set and reports

    d^2 = ||mu1 - mu2||^2 + tr(Sigma1) + tr(Sigma2) - 2 tr((Sigma1 Sigma2)^(1/2)),

with Sigma the unbiased (ddof = 1) sample covariance, as frechet-audio-distance and fadtk do. The matrix
square root follows their recipe: ``scipy.linalg.sqrtm``; if the result is not finite (near-singular
product) the diagonals are offset by ``eps``; a complex result is accepted only when its diagonal's
imaginary part is negligible, and then its real part is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

log = logging.getLogger(__name__)


class FrechetDistanceError(ValueError):
    """The statistics cannot give a Fréchet distance (shape mismatch, non-finite, complex square root)."""


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2); mu: (E,), sigma: (E, E)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape:
        raise FrechetDistanceError(f"mean shapes differ: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0], mu1.shape[0]):
        raise FrechetDistanceError(
            f"covariance shapes {sigma1.shape}, {sigma2.shape} do not match mean {mu1.shape}"
        )
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise FrechetDistanceError(f"{name} has non-finite entries")

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        log.warning(
            "sqrtm(sigma1 @ sigma2) is not finite (near-singular product); adding %g to the diagonals", eps
        )
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        worst = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if worst > 1e-3:
            raise FrechetDistanceError(f"matrix square root has an imaginary component of {worst:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


@dataclass
class EmbeddingStats:
    """Running count, sum and sum of outer products of embeddings, in float64; merge-able across shards.

    ``add(emb (W, E))`` accumulates W embeddings; ``merge`` combines two accumulators exactly as one
    accumulator fed both sets would be; ``mean`` (E,) and ``cov`` (E, E, ddof = 1) give the Gaussian fit.
    """

    dim: int
    count: int = 0
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    outer: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.total is None:
            self.total = np.zeros(self.dim, np.float64)
        if self.outer is None:
            self.outer = np.zeros((self.dim, self.dim), np.float64)
        if self.total.shape != (self.dim,) or self.outer.shape != (self.dim, self.dim):
            raise ValueError(f"EmbeddingStats: arrays do not match dim {self.dim}")

    def add(self, embeddings: np.ndarray) -> EmbeddingStats:
        """Accumulate embeddings (W, E) (or one (E,) vector). Returns self."""
        emb = np.atleast_2d(np.asarray(embeddings, np.float64))
        if emb.shape[1] != self.dim:
            raise ValueError(f"embedding dim {emb.shape[1]} != accumulator dim {self.dim}")
        if not np.isfinite(emb).all():
            raise ValueError("refusing to accumulate non-finite embeddings")
        self.count += emb.shape[0]
        self.total += emb.sum(axis=0)
        self.outer += emb.T @ emb
        return self

    def merge(self, other: EmbeddingStats) -> EmbeddingStats:
        """A new accumulator holding both sets."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge stats of dim {self.dim} and {other.dim}")
        return EmbeddingStats(
            self.dim, self.count + other.count, self.total + other.total, self.outer + other.outer
        )

    @property
    def mean(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("EmbeddingStats is empty: no embeddings were added")
        return self.total / self.count

    @property
    def cov(self) -> np.ndarray:
        """Unbiased covariance (ddof = 1), as ``np.cov(emb, rowvar=False)``."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 embeddings, have {self.count}")
        mu = self.mean
        cov = (self.outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return (cov + cov.T) / 2.0

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray) -> EmbeddingStats:
        emb = np.atleast_2d(np.asarray(embeddings, np.float64))
        return cls(emb.shape[1]).add(emb)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"count": np.asarray(self.count, np.int64), "total": self.total, "outer": self.outer}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> EmbeddingStats:
        total = np.asarray(arrays["total"], np.float64)
        return cls(total.shape[0], int(arrays["count"]), total, np.asarray(arrays["outer"], np.float64))


def fad_between(stats_a: EmbeddingStats, stats_b: EmbeddingStats, eps: float = 1e-6) -> float:
    """FAD between two accumulated embedding sets."""
    return frechet_distance(stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov, eps=eps)


def mahalanobis_to_reference(
    embeddings: np.ndarray, reference: EmbeddingStats, ridge: float = 1e-3
) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``embeddings`` (B, E) to the reference Gaussian -> (B,).

    The covariance is ridge-regularised by ``ridge`` times its mean diagonal, so a reference set with
    fewer windows than dimensions still gives finite, comparable distances.
    """
    emb = np.atleast_2d(np.asarray(embeddings, np.float64))
    cov = reference.cov
    cov = cov + np.eye(cov.shape[0]) * ridge * max(float(np.trace(cov)) / cov.shape[0], 1e-12)
    centred = emb - reference.mean
    solved = linalg.solve(cov, centred.T, assume_a="pos")
    return np.einsum("be,eb->b", centred, solved)
