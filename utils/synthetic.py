"""The synthetic two-task regression data of Ma et al. (KDD 2018, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts", section 3.2), where the relatedness of the tasks is one number.

Two orthogonal unit vectors ``u1, u2`` in ``R^d`` give the task weights ``w1 = c u1`` and
``w2 = c (p u1 + sqrt(1 - p^2) u2)``, whose cosine similarity is exactly ``p``. Each example
``x ~ N(0, I_d)`` gets the labels

    y_t = w_t^T x + sum_{k=1..m} sin(alpha_k w_t^T x + beta_k) + eps_t,    eps_t ~ N(0, noise_var),

with the same ``alpha_k, beta_k`` for both tasks, so at ``p = 1`` the tasks differ only by their noise.

    >>> family = TaskFamily.draw(seed=0)
    >>> data = family.sample(1000, p=0.5, seed=1)
    >>> data.x.shape, data.y.shape
    ((1000, 100), (1000, 2))

The paper fixes the construction; it leaves the distribution of ``alpha_k`` and ``beta_k`` open ("given
parameters"). The defaults here are this course's choices: ``d = 100``, ``c = 1``, ``m = 10``,
``alpha_k, beta_k ~ N(0, 1)``, and ``noise_var = 0.01`` read as a variance (noise std 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "SyntheticData",
    "TaskFamily",
    "cosine_similarity",
    "label_correlation",
    "orthogonal_unit_vectors",
    "synthetic_tasks",
    "task_weight_vectors",
]


def _check_p(p: float) -> float:
    if not (isinstance(p, (int, float, np.floating, np.integer)) and not isinstance(p, bool)) or not -1.0 <= p <= 1.0:
        raise ValueError(f"the task correlation p must be a number in [-1, 1], got {p!r}")
    return float(p)


def orthogonal_unit_vectors(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random unit vectors in ``R^d`` with ``u1 . u2 = 0`` (Gram-Schmidt on two Gaussian draws)."""
    if not isinstance(d, (int, np.integer)) or isinstance(d, bool) or d < 2:
        raise ValueError(f"two orthogonal vectors need a dimension d >= 2, got {d!r}")
    a, b = rng.standard_normal((2, int(d)))
    u1 = a / np.linalg.norm(a)
    b = b - (b @ u1) * u1
    return u1, b / np.linalg.norm(b)


def task_weight_vectors(u1: np.ndarray, u2: np.ndarray, p: float, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``w1 = c u1`` and ``w2 = c (p u1 + sqrt(1 - p^2) u2)``: both of norm ``c``, with cosine similarity ``p``."""
    p = _check_p(p)
    u1, u2 = np.asarray(u1, dtype=np.float64), np.asarray(u2, dtype=np.float64)
    if u1.shape != u2.shape or u1.ndim != 1:
        raise ValueError(f"u1 and u2 must be vectors of one length, got shapes {u1.shape} and {u2.shape}")
    return c * u1, c * (p * u1 + np.sqrt(1.0 - p * p) * u2)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b / (|a| |b|)``: how aligned two weight vectors are (1 = same direction)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@dataclass(frozen=True)
class SyntheticData:
    """Examples ``x`` (n, d) and the labels of the two tasks ``y`` (n, 2), with the weights behind them."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray  # (2, d): the task weight vectors w1, w2
    p: float

    def __len__(self) -> int:
        return len(self.x)

    def labels(self) -> dict[str, np.ndarray]:
        """The labels keyed by task name, each (n, 1) float32, as a Keras model with outputs y1, y2 wants."""
        return {"y1": self.y[:, :1], "y2": self.y[:, 1:]}

    def split(self, n_test: int) -> tuple[SyntheticData, SyntheticData]:
        """The first ``n - n_test`` examples for training and the last ``n_test`` for testing (i.i.d. rows)."""
        if not 0 < n_test < len(self):
            raise ValueError(f"n_test must be in (0, {len(self)}), got {n_test}")
        cut = len(self) - n_test
        return (SyntheticData(self.x[:cut], self.y[:cut], self.w, self.p),
                SyntheticData(self.x[cut:], self.y[cut:], self.w, self.p))


@dataclass(frozen=True)
class TaskFamily:
    """What two tasks share for every ``p``: the directions ``u1, u2``, the scale ``c``, the sine terms."""

    u1: np.ndarray
    u2: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    c: float = 1.0
    noise_var: float = 0.01

    @classmethod
    def draw(cls, d: int = 100, m: int = 10, c: float = 1.0, noise_var: float = 0.01,
             alpha_std: float = 1.0, beta_std: float = 1.0, seed: int | None = 0,
             sine_seed: int | None = None) -> TaskFamily:
        """Draw ``u1, u2`` (orthogonal, unit) and ``alpha_k ~ N(0, alpha_std^2)``, ``beta_k ~ N(0, beta_std^2)``.

        The sine parameters come from ``sine_seed`` when given (else from ``seed``): fix it to keep the
        shape of the label function across repeated runs while the directions change with ``seed``.
        """
        if not isinstance(m, (int, np.integer)) or isinstance(m, bool) or m < 0:
            raise ValueError(f"the number of sine terms m must be an integer >= 0, got {m!r}")
        if not c > 0 or not np.isfinite(c):
            raise ValueError(f"the scale c must be a positive number, got {c!r}")
        if not noise_var >= 0 or not np.isfinite(noise_var):
            raise ValueError(f"noise_var must be a variance >= 0, got {noise_var!r}")
        rng = np.random.default_rng(seed)
        u1, u2 = orthogonal_unit_vectors(d, rng)
        sine_rng = rng if sine_seed is None else np.random.default_rng([sine_seed, 1])
        alpha = sine_rng.normal(0.0, alpha_std, int(m))
        beta = sine_rng.normal(0.0, beta_std, int(m))
        return cls(u1, u2, alpha, beta, float(c), float(noise_var))

    @property
    def d(self) -> int:
        """The input dimension."""
        return len(self.u1)

    def weights(self, p: float) -> np.ndarray:
        """The (2, d) task weight vectors at correlation ``p``."""
        return np.stack(task_weight_vectors(self.u1, self.u2, p, self.c))

    def clean_labels(self, x: np.ndarray, p: float) -> np.ndarray:
        """The noise-free labels (n, 2): ``w_t^T x + sum_k sin(alpha_k w_t^T x + beta_k)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, {self.d}), got {x.shape}")
        z = x @ self.weights(p).T  # (n, 2)
        return z + np.sin(z[..., None] * self.alpha + self.beta).sum(axis=-1)

    def sample(self, n: int, p: float, seed: int | None = 0, x: np.ndarray | None = None) -> SyntheticData:
        """``n`` examples ``x ~ N(0, I)`` (or the given ``x``) with noisy labels at correlation ``p``, float32."""
        rng = np.random.default_rng(seed)
        if x is None:
            if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
                raise ValueError(f"n must be an integer >= 1, got {n!r}")
            x = rng.standard_normal((int(n), self.d))
        y = self.clean_labels(x, p) + rng.normal(0.0, np.sqrt(self.noise_var), (len(x), 2))
        return SyntheticData(np.asarray(x, dtype=np.float32), y.astype(np.float32), self.weights(p), _check_p(p))


def synthetic_tasks(n: int, p: float, d: int = 100, m: int = 10, c: float = 1.0, noise_var: float = 0.01,
                    seed: int = 0) -> SyntheticData:
    """One data set of the paper's construction in one call: a new task family and ``n`` examples from ``seed``."""
    family = TaskFamily.draw(d=d, m=m, c=c, noise_var=noise_var, seed=seed)
    return family.sample(n, p, seed=seed + 1)


def label_correlation(data: SyntheticData) -> float:
    """The Pearson correlation of the two tasks' labels, lower than ``p`` because of the sine terms."""
    return float(np.corrcoef(data.y[:, 0], data.y[:, 1])[0, 1])
