"""Self-checks for lesson 08 (knowledge-graph features): the TransE margin loss, negative sampling that never
returns the true triple, and the filtered rank of a link-prediction query."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from utils import graphs, kge
from utils.checks import RTOL, CheckResult, expect, run_check

#: Relative tolerance of the numeric comparisons: an answer computed in float32 (Keras's default) passes.
# --------------------------------------------------------------------------------------------------
# Exercise 08.1: the TransE score and the margin ranking loss
# --------------------------------------------------------------------------------------------------


def _loss_fixture() -> tuple[np.ndarray, ...]:
    """6 true triples' vectors and 3 corruptions each (heads or tails replaced), in 4 dimensions; scaled so
    that most terms of the loss are active (neither zero nor far beyond the margin)."""
    rng = np.random.default_rng(8)
    n, k, d = 6, 3, 4
    h, r = rng.normal(scale=0.4, size=(n, d)), rng.normal(scale=0.3, size=(n, d))
    t = h + r + rng.normal(scale=0.25, size=(n, d))  # true triples: h + r close to t
    h_neg = np.repeat(h[:, None], k, axis=1)
    t_neg = np.repeat(t[:, None], k, axis=1)
    swap = rng.random((n, k)) < 0.5
    h_neg[swap] = rng.normal(scale=0.4, size=(int(swap.sum()), d))
    t_neg[~swap] = rng.normal(scale=0.4, size=(int((~swap).sum()), d))
    return h, r, t, h_neg, t_neg


def _loss_variant(h, r, t, h_neg, t_neg, margin, score, combine) -> float:
    pos, neg = score(h, r, t), score(h_neg, r[:, None, :], t_neg)
    return combine(pos[:, None], neg, margin)


def _check_loss(fn: Callable[..., float]) -> str:
    h, r, t, h_neg, t_neg = _loss_fixture()
    margin = 1.0
    want = kge.transe_margin_loss_numpy(h, r, t, h_neg, t_neg, margin)
    got = float(fn(h, r, t, h_neg, t_neg, margin))
    expect(np.isfinite(got), f"got {got}: the loss of finite vectors is a finite number")
    l2 = lambda a, b, c: -np.sqrt(np.sum((a + b - c) ** 2, axis=-1))  # noqa: E731
    hinge_mean = lambda p, n, m: float(np.mean(np.maximum(0.0, m - p + n)))  # noqa: E731
    mistakes = [
        (lambda a, b, c: -np.sum((a + b - c) ** 2, axis=-1), hinge_mean,
         "that is the squared distance: TransE's score is minus the Euclidean norm, -sqrt(sum((h + r - t)^2))"),
        (lambda a, b, c: -np.sum(np.abs(a + b - c), axis=-1), hinge_mean,
         "that is the L1 distance (sum of absolute values): here use the L2 norm, sqrt(sum((h + r - t)^2))"),
        (lambda a, b, c: np.sqrt(np.sum((a + b - c) ** 2, axis=-1)), hinge_mean,
         "a sign is flipped: a plausible triple must score HIGH, so the score is -||h + r - t||, and the loss is "
         "max(0, margin - s(true) + s(corrupted))"),
        (lambda a, b, c: -np.sqrt(np.sum((a - b - c) ** 2, axis=-1)), hinge_mean,
         "the relation translates the head towards the tail: use h + r - t, not h - r - t"),
        (l2, lambda p, n, m: float(np.mean(m - p + n)),
         "the max(0, ...) is missing: a corruption that already scores margin below the truth costs nothing"),
        (l2, lambda p, n, m: float(np.sum(np.maximum(0.0, m - p + n))),
         "you summed: take the mean over the triples and their corruptions"),
        (l2, lambda p, n, m: float(np.mean(np.maximum(0.0, - p + n))),
         "the margin is missing: max(0, margin - s(true) + s(corrupted))"),
    ]
    for score, combine, message in mistakes:
        expect(not np.isclose(got, _loss_variant(h, r, t, h_neg, t_neg, margin, score, combine), rtol=RTOL,
                              atol=1e-7), message)
    expect(np.isclose(got, want, rtol=RTOL, atol=1e-7),
           f"got {got:.6f}, the margin loss is {want:.6f} (compared to a relative tolerance of {RTOL:g}): "
           "the mean over triples and corruptions of max(0, margin - s(h, r, t) + s(h', r, t'))")
    return f"correct: {got:.6f}, as utils.kge.MarginRankingLoss computes on TransE's scores"


def transe_margin_loss(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 08.1: TransE's score and the margin ranking loss."""
    return run_check("Exercise 08.1 (TransE score and margin loss)", _check_loss, fn,
                     "utils.kge.transe_margin_loss_numpy")


# --------------------------------------------------------------------------------------------------
# Exercise 08.2: negative sampling that never returns the true triple
# --------------------------------------------------------------------------------------------------


def _check_corrupt(fn: Callable[..., np.ndarray]) -> str:
    rng = np.random.default_rng(3)
    n, n_entities = 4000, 3  # with 3 entities, a draw among all of them hits the original a third of the time
    triples = np.stack([rng.integers(0, n_entities, n), rng.integers(0, 5, n), rng.integers(0, n_entities, n)],
                       axis=1)
    original = triples.copy()
    got = np.asarray(fn(triples, n_entities, np.random.default_rng(0)))
    expect(np.array_equal(triples, original), "you changed the input array: copy it before replacing entities")
    expect(got.shape == triples.shape, f"return one corruption per triple, shape {triples.shape}, got {got.shape}")
    expect(np.issubdtype(got.dtype, np.integer), f"return integer ids, got dtype {got.dtype}")
    expect(np.array_equal(got[:, 1], triples[:, 1]), "the relation must stay: corrupt the head or the tail only")
    same = np.all(got == triples, axis=1)
    expect(not same.any(), f"{int(same.sum())} of {n} corruptions are the true triple itself: draw the new entity "
                           "among the other n_entities - 1, e.g. draw in [0, n - 1) and add 1 when >= the original")
    head_changed, tail_changed = got[:, 0] != triples[:, 0], got[:, 2] != triples[:, 2]
    expect(not (head_changed & tail_changed).any(), "change one side per corruption, the head or the tail, not both")
    share = float(tail_changed.mean())
    expect(share > 0.05, "only heads are corrupted: replace the tail half of the time")
    expect(share < 0.95, "only tails are corrupted: replace the head half of the time (Bordes et al. corrupt both)")
    expect(0.4 < share < 0.6, f"the tail is replaced in {share:.0%} of triples: choose the side with probability 1/2")
    expect(got[:, [0, 2]].min() >= 0 and got[:, [0, 2]].max() < n_entities, f"entity ids must be in [0, {n_entities})")
    new = np.where(head_changed, got[:, 0], got[:, 2])
    old = np.where(head_changed, triples[:, 0], triples[:, 2])
    for value in range(n_entities):
        counts = np.bincount(new[old == value], minlength=n_entities) / max(int((old == value).sum()), 1)
        others = np.delete(counts, value)
        expect(np.all(np.abs(others - 1 / (n_entities - 1)) < 0.06),
               "the new entities are not uniform over the other entities: draw each of them equally often")
    return "correct: one side replaced per triple, never by the same entity, uniformly among the others"


def corrupt(fn: Callable[..., np.ndarray]) -> CheckResult:
    """Check Exercise 08.2: one corruption per triple that is never the triple itself."""
    return run_check("Exercise 08.2 (negative sampling)", _check_corrupt, fn, "utils.kge.corrupt_triples")


# --------------------------------------------------------------------------------------------------
# Exercise 08.3: the filtered rank
# --------------------------------------------------------------------------------------------------


def _rank_fixture() -> tuple[np.ndarray, int, np.ndarray]:
    """12 entities; the target (2, score 0.7) is one of the known answers, as in the test set. Entity 0 (0.9) beats
    it; 5 and 9 are other known answers, both above it (filtered); 4, 7 and 8 tie with it; 1, 3, 6, 10 and 11 score
    below it. The filtered rank is 1 + 1 + 3 / 2 = 3.5; unfiltered it would be 5.5, and with the order reversed
    (lower scores first) 7.5, so each mistake gives its own number."""
    scores = np.array([0.9, 0.2, 0.7, 0.5, 0.7, 0.95, 0.1, 0.7, 0.7, 0.8, 0.3, 0.05])
    return scores, 2, np.array([2, 5, 9])


def _rank_variant(scores: np.ndarray, target: int, known: np.ndarray, filtered: bool = True,
                  higher_first: bool = True, tie_weight: float = 0.5, count_target: bool = False) -> float:
    keep = np.ones(scores.size, dtype=bool)
    if filtered:
        keep[known] = False
    keep[target] = count_target
    sign = 1.0 if higher_first else -1.0
    better = np.sum(sign * scores[keep] > sign * scores[target])
    return 1.0 + float(better) + tie_weight * float(np.sum(scores[keep] == scores[target]))


def _check_rank(fn: Callable[..., float]) -> str:
    scores, target, known = _rank_fixture()
    want = graphs.filtered_rank(scores, target, known)
    got = float(fn(scores.copy(), target, known.copy()))
    expect(np.isfinite(got), f"got {got}: a rank is a finite number, 1 or more")

    def same(value: float) -> bool:
        return bool(np.isclose(got, value, rtol=0.0, atol=1e-6))

    expect(not (same(_rank_variant(scores, target, known, higher_first=False))
                or same(_rank_variant(scores, target, known, filtered=False, higher_first=False))),
           "you ranked lower scores first: a higher score means a more plausible triple (TransE's score is minus a "
           "distance), so count the unfiltered entities that score ABOVE the target")
    mistakes = [
        (_rank_variant(scores, target, known, filtered=False),
         "nothing is filtered: the other known answers (true triples) must not count against the target"),
        (want - 1, "ranks start at 1: the best entity has rank 1, so add 1 to the count of those above"),
        (_rank_variant(scores, target, known, tie_weight=0.0),
         "ties are ignored: a model that scores every entity the same must not rank first; count each tie as half"),
        (_rank_variant(scores, target, known, tie_weight=1.0),
         "ties count fully: count each entity with the same score as half, so a constant model lands in the middle"),
        (_rank_variant(scores, target, known, count_target=True),
         "the target is counted as a tie with itself: it does not compete with itself, leave it out of the ties"),
    ]
    for value, message in mistakes:
        expect(not same(value), message)
    expect(same(want), f"got {got}, the filtered rank is {want}: 1 + unfiltered entities above + half the ties")
    constant = float(fn(np.zeros(10), 4, np.array([4, 6])))
    expect(np.isclose(constant, graphs.filtered_rank(np.zeros(10), 4, np.array([4, 6])), rtol=0.0, atol=1e-6),
           f"with every score equal the rank should be the middle of the 9 candidates (5.0), got {constant}")
    return f"correct: rank {got:g} (one entity above, three ties counted as half, two known answers filtered out)"


def filtered_rank(fn: Callable[..., float]) -> CheckResult:
    """Check Exercise 08.3: the filtered rank of one query's true answer."""
    return run_check("Exercise 08.3 (filtered rank)", _check_rank, fn, "utils.graphs.filtered_rank")
