"""The MMoE paper's synthetic data: the construction's invariants (orthogonality, norms, cosine p), the label
formula, seeding, and clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest

from utils.synthetic import (
    SyntheticData,
    TaskFamily,
    cosine_similarity,
    label_correlation,
    orthogonal_unit_vectors,
    synthetic_tasks,
    task_weight_vectors,
)


def test_orthogonal_unit_vectors() -> None:
    u1, u2 = orthogonal_unit_vectors(100, np.random.default_rng(0))
    assert u1.shape == u2.shape == (100,)
    assert np.isclose(np.linalg.norm(u1), 1.0) and np.isclose(np.linalg.norm(u2), 1.0)
    assert abs(u1 @ u2) < 1e-12


@pytest.mark.parametrize("p", [-1.0, -0.3, 0.0, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("c", [0.3, 1.0, 2.5])
def test_weight_vectors_have_cosine_p_and_norm_c(p: float, c: float) -> None:
    u1, u2 = orthogonal_unit_vectors(20, np.random.default_rng(1))
    w1, w2 = task_weight_vectors(u1, u2, p, c)
    assert np.isclose(cosine_similarity(w1, w2), p, atol=1e-12)
    assert np.isclose(np.linalg.norm(w1), c) and np.isclose(np.linalg.norm(w2), c)
    assert np.allclose(w1, c * u1)


def test_labels_follow_the_formula() -> None:
    family = TaskFamily.draw(d=7, m=3, c=1.5, noise_var=0.0, seed=4)
    data = family.sample(50, p=0.6, seed=5)
    z = data.x.astype(np.float64) @ family.weights(0.6).T
    want = z.copy()
    for a, b in zip(family.alpha, family.beta):
        want += np.sin(a * z + b)
    assert np.allclose(data.y, want, atol=1e-5)
    assert data.x.dtype == data.y.dtype == np.float32
    assert data.w.shape == (2, 7) and data.p == 0.6


def test_noise_has_the_stated_variance() -> None:
    family = TaskFamily.draw(d=5, m=2, noise_var=0.01, seed=0)
    data = family.sample(40_000, p=0.5, seed=1)
    residual = data.y - family.clean_labels(data.x, 0.5)
    assert np.allclose(residual.var(axis=0), 0.01, rtol=0.05)
    assert abs(np.corrcoef(residual.T)[0, 1]) < 0.03  # the two tasks' noises are independent


def test_p_one_gives_identical_tasks_up_to_noise() -> None:
    data = TaskFamily.draw(d=10, noise_var=0.0, seed=2).sample(200, p=1.0, seed=3)
    assert np.allclose(data.y[:, 0], data.y[:, 1], atol=1e-5)
    assert label_correlation(data) > 0.999


def test_label_correlation_falls_with_p() -> None:
    family = TaskFamily.draw(seed=0)
    x = np.random.default_rng(9).standard_normal((20_000, family.d))
    corr = [label_correlation(family.sample(0, p, seed=1, x=x)) for p in (1.0, 0.9, 0.5, 0.0)]
    assert corr == sorted(corr, reverse=True)
    assert corr[0] > 0.99 and abs(corr[-1]) < 0.05


def test_seeding_and_shared_sines() -> None:
    a, b = synthetic_tasks(100, 0.5, seed=3), synthetic_tasks(100, 0.5, seed=3)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.y, synthetic_tasks(100, 0.5, seed=4).y)
    f1, f2 = TaskFamily.draw(seed=1, sine_seed=7), TaskFamily.draw(seed=2, sine_seed=7)
    assert np.array_equal(f1.alpha, f2.alpha) and np.array_equal(f1.beta, f2.beta)
    assert not np.allclose(f1.u1, f2.u1)
    assert not np.array_equal(TaskFamily.draw(seed=1).alpha, TaskFamily.draw(seed=2).alpha)


def test_given_x_is_used_and_split_keeps_order() -> None:
    family = TaskFamily.draw(d=4, m=1, seed=0)
    x = np.arange(40, dtype=float).reshape(10, 4) / 40
    data = family.sample(0, 0.2, x=x)
    assert np.allclose(data.x, x) and len(data) == 10
    train, test = data.split(3)
    assert len(train) == 7 and len(test) == 3 and np.array_equal(test.y, data.y[7:])
    labels = data.labels()
    assert labels["y1"].shape == (10, 1) and np.array_equal(labels["y2"][:, 0], data.y[:, 1])
    assert isinstance(train, SyntheticData) and train.p == 0.2


@pytest.mark.parametrize("call, words", [
    (lambda: task_weight_vectors(np.ones(3), np.ones(3), 1.5), r"in \[-1, 1\]"),
    (lambda: task_weight_vectors(np.ones(3), np.ones(4), 0.5), "one length"),
    (lambda: orthogonal_unit_vectors(1, np.random.default_rng(0)), "d >= 2"),
    (lambda: TaskFamily.draw(m=-1), "m must be"),
    (lambda: TaskFamily.draw(c=0.0), "scale c"),
    (lambda: TaskFamily.draw(noise_var=-0.1), "variance"),
    (lambda: TaskFamily.draw(d=5).sample(0, 0.5), "n must be"),
    (lambda: TaskFamily.draw(d=5).clean_labels(np.zeros((3, 4)), 0.5), r"shape \(n, 5\)"),
    (lambda: synthetic_tasks(10, 0.5).split(10), "n_test"),
])
def test_bad_input_is_refused_with_a_clear_message(call, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        call()
