"""Users as tasks, the adaptable head, the inner loop and MAML's meta-gradient (utils.meta)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from utils import meta, metrics
from utils.models import Task, compile_model, feature_arrays, feature_spec, make_multitask_dataset
from utils.runtime import set_seed
from utils.shopsim import generate

# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------

CLICKS = {10: [0, 1, 0, 0, 1, 0, 1, 1, 0, 0],
          11: [1, 0, 1, 1, 0, 0, 0, 1, 0, 0],
          12: [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]}


def _frame() -> pd.DataFrame:
    """Three users, ten impressions each in time order, shuffled rows; item_id = 100 * user + time."""
    rows = [{"user_id": u, "timestamp": 1000 + 10 * i, "click": c, "item_id": 100 * u + i, "price": float(i)}
            for u, clicks in CLICKS.items() for i, c in enumerate(clicks)]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame["click"] = frame["click"].astype(np.int8)
    return frame


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, meta.UserHistories]:
    frame = _frame()
    spec = feature_spec(frame, categorical=["item_id"], numeric=["price"])
    return frame, meta.UserHistories(frame, spec)


def _times(episodes: meta.Episodes, part: str, slot: int) -> list[int]:
    mask = getattr(episodes, f"{part}_mask")[slot] > 0
    return [int(i) % 100 for i in getattr(episodes, part)["item_id"][slot][mask]]


def test_support_is_up_to_the_kth_click_and_query_after_k_max(small) -> None:
    frame, histories = small
    ep = histories.episodes([10, 11], k=2, query_size=2, query_after=3)
    assert _times(ep, "support", 0) == [0, 1, 2, 3, 4]  # user 10: clicks at times 1 and 4
    assert _times(ep, "support", 1) == [0, 1, 2]  # user 11: clicks at times 0 and 2
    assert _times(ep, "query", 0) == [7, 8]  # after user 10's 3rd click (time 6)
    assert _times(ep, "query", 1) == [4, 5]  # after user 11's 3rd click (time 3)
    assert ep.support_y[0, :5].tolist() == [0, 1, 0, 0, 1] and ep.support_mask[0].sum() == 5
    assert ep.support_mask[1, 3:].sum() == 0 and (ep.support["item_id"][1, 3:] == -1).all()
    # rows point back into the frame: the same item ids on the grid
    grid = ep.on_grid(frame["item_id"].to_numpy(), "query")
    np.testing.assert_array_equal(grid[ep.query_mask > 0], ep.query["item_id"][ep.query_mask > 0])
    assert (ep.query_rows[ep.query_mask == 0] == -1).all()


def test_max_support_drops_the_oldest_skips_and_keeps_every_click(small) -> None:
    _, histories = small
    ep = histories.episodes([10], k=2, query_size=2, query_after=3, max_support=3)
    assert ep.support_y.shape == (1, 3)
    assert _times(ep, "support", 0) == [1, 3, 4]  # clicks 1 and 4, plus the newest skip (3)


def test_skip_clicks_moves_the_window(small) -> None:
    _, histories = small
    ep = histories.episodes([10, 11], k=1, query_size=3, skip_clicks=2)
    assert _times(ep, "support", 0) == [5, 6]  # after user 10's 2nd click (4) up to the 3rd (6)
    assert _times(ep, "query", 0) == [7, 8, 9]  # right after the support
    assert _times(ep, "support", 1) == [3]


def test_eligible_needs_k_max_clicks_and_both_classes_in_the_query(small) -> None:
    _, histories = small
    assert histories.eligible(k_max=2, query_size=3).tolist() == [10, 11]  # 12 clicked once
    assert histories.eligible(k_max=3, query_size=2).tolist() == [10]  # user 11's next two are skips
    assert histories.eligible(k_max=3, query_size=4).tolist() == [10, 11]
    assert histories.eligible(k_max=4, query_size=2).tolist() == []  # both users' queries after 4 clicks: all skips


def test_episode_errors_say_what_to_do(small) -> None:
    frame, histories = small
    with pytest.raises(ValueError, match="no impression after their 2-th click"):
        histories.episodes([10, 12], k=1, query_size=2, query_after=2)
    with pytest.raises(ValueError, match="have no impressions here"):
        histories.episodes([99], k=1, query_size=2)
    with pytest.raises(ValueError, match="k must be an int"):
        histories.episodes([10], k=4, query_size=2, query_after=3)
    with pytest.raises(ValueError, match="max_support"):
        histories.episodes([10], k=2, query_size=2, query_after=3, max_support=1)
    with pytest.raises(ValueError, match="query_size"):
        histories.episodes([10], k=1, query_size=1)
    with pytest.raises(ValueError, match="no users"):
        histories.episodes([], k=1, query_size=2)
    with pytest.raises(KeyError, match="timestamp"):
        meta.UserHistories(frame.drop(columns="timestamp"), histories.spec)


def test_take_concat_and_summary(small) -> None:
    _, histories = small
    a = histories.episodes([10, 11], k=1, query_size=2, max_support=4)
    b = histories.episodes([10], k=1, query_size=2, max_support=4, skip_clicks=1)
    both = meta.Episodes.concat([a, b])
    assert len(both) == 3 and both.users.tolist() == [10, 11, 10]
    np.testing.assert_array_equal(both.take([2]).support["item_id"], b.support["item_id"])
    assert both.summary()["users"] == 3 and 0 < both.summary()["support CTR"] <= 1
    with pytest.raises(ValueError, match="same k"):
        meta.Episodes.concat([a, histories.episodes([10], k=2, query_size=2, max_support=4)])


def test_split_users_is_a_seeded_partition() -> None:
    parts = meta.split_users(np.arange(100), (0.6, 0.2, 0.2), seed=3)
    assert [len(p) for p in parts] == [60, 20, 20]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    assert all((a == b).all() for a, b in zip(parts, meta.split_users(np.arange(100), (0.6, 0.2, 0.2), seed=3)))
    with pytest.raises(ValueError, match="sum to 1"):
        meta.split_users(np.arange(10), (0.5, 0.2))


# --------------------------------------------------------------------------------------------------
# Model, inner loop and meta-gradients on a tiny ShopSim
# --------------------------------------------------------------------------------------------------

CATEGORICAL = ["item_id", "category_id", "brand_id", "position", "age_band"]
TASTE = ["category_id", "brand_id"]


@pytest.fixture(scope="module")
def shop():
    data = generate("tiny", seed=5, n_users=100, ctr=0.12, n_candidates=1, latent_dim=4)
    log = data.with_features()
    spec = feature_spec(log, categorical=CATEGORICAL, log_numeric=["price"], embedding_dim=4)
    histories = meta.UserHistories(log, spec)
    users = histories.eligible(k_max=5, query_size=10)
    return data, log, spec, histories, users


def _model(spec, seed: int = 0) -> keras.Model:
    set_seed(seed)
    model = meta.cold_start_model(spec, TASTE, hidden=(8,), taste_dim=3)
    rng = np.random.default_rng(seed)  # a non-zero head, so that every path carries gradient
    model.get_layer("head").taste.assign(rng.normal(0, 0.3, 3).astype("float32"))
    return model


def test_cold_start_model_round_trip(shop, tmp_path: Path) -> None:
    _, log, spec, _, _ = shop
    model = _model(spec)
    x = feature_arrays(log.head(64), spec)
    path = tmp_path / "cold_start.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["click"], model.predict(x, verbose=0)["click"], rtol=1e-6)
    assert isinstance(loaded.get_layer("head"), meta.AdaptiveHead)


def test_user_vector_model_round_trip_and_mean_start(shop, tmp_path: Path) -> None:
    _, log, spec, _, _ = shop
    model = _model(spec)
    users = np.unique(log["user_id"])
    trained = meta.with_user_vectors(model, users)
    uspec = feature_spec(log, categorical=CATEGORICAL + ["user_id"], log_numeric=["price"])
    x = feature_arrays(log.head(64), uspec)
    path = tmp_path / "user_vectors.keras"
    trained.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["click"], trained.predict(x, verbose=0)["click"], rtol=1e-6)
    meta.head_from_user_vectors(model, trained)
    vectors = trained.get_layer("user_vectors").embeddings.numpy()[1:]
    np.testing.assert_allclose(model.get_layer("head").taste.numpy(), vectors[:, :-1].mean(0),
                               rtol=1e-5)


def test_cold_start_model_refuses_bad_specs(shop) -> None:
    _, log, spec, _, _ = shop
    with pytest.raises(ValueError, match="user_id"):
        meta.cold_start_model(feature_spec(log, categorical=["user_id", "item_id"]), ["item_id"])
    with pytest.raises(ValueError, match="taste_features"):
        meta.cold_start_model(spec, ["price"])
    with pytest.raises(ValueError, match="no layer 'head'"):
        meta.split_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))


def test_head_forward_per_task_matches_shared_weights() -> None:
    head = meta.AdaptiveHead()
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")
    head.build(x.shape)
    w = np.array([[0.1, -0.2, 0.3], [0.5, 0.0, -0.1]], dtype="float32")
    b = np.array([0.2, -0.4], dtype="float32")
    per_task = keras.ops.convert_to_numpy(head.forward([w, b], x, per_task=True))
    for i in range(2):
        shared = keras.ops.convert_to_numpy(head.forward([w[i], b[i]], x[i]))
        np.testing.assert_allclose(per_task[i], shared, rtol=1e-6)
        np.testing.assert_allclose(shared, x[i, :, 0] + x[i, :, 1:] @ w[i] + b[i], rtol=1e-5)


def test_task_losses_mask_and_reduce() -> None:
    logits = np.array([[0.0, 2.0, -1.0]], dtype="float32")
    y = np.array([[1.0, 0.0, 1.0]], dtype="float32")
    mask = np.array([[1.0, 1.0, 0.0]], dtype="float32")
    bce = np.array([np.log(2.0), np.log1p(np.exp(2.0))])
    summed = keras.ops.convert_to_numpy(meta.task_losses(logits, y, mask, "sum"))
    np.testing.assert_allclose(summed, [bce.sum()], rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(meta.task_losses(logits, y, mask)), [bce.mean()], rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        meta.task_losses(logits, y, mask, "average")


def _head_inputs(model, episodes, part):
    encoder, _ = meta.split_model(model)
    x = keras.ops.convert_to_numpy(meta.encode_episodes(encoder, getattr(episodes, part))).astype(np.float64)
    return x[..., 1:], x[..., 0]


def test_inner_loop_adapts_each_user_on_their_own_support(shop) -> None:
    _, _, spec, histories, users = shop
    model = _model(spec)
    episodes = histories.episodes(users[:4], k=3, query_size=10, query_after=5, max_support=30)
    encoder, head = meta.split_model(model)
    x = meta.encode_episodes(encoder, episodes.support)
    fast = meta.adapt(head, head.params, x, episodes.support_y, episodes.support_mask, 0.05, 3, order="first")
    t, g = _head_inputs(model, episodes, "support")
    w0, b0 = (p.numpy().astype(np.float64) for p in head.params)
    for i in range(len(episodes)):
        w, b = meta.adapt_logistic(w0, b0, t[i], g[i], episodes.support_y[i], episodes.support_mask[i], 0.05, 3)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fast[0])[i], w, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fast[1])[i], b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("order", ["second", "first"])
def test_meta_gradient_matches_the_closed_forms(shop, order: str) -> None:
    """Nested tapes give (I - lr H) g_q for one inner step; stopping the inner gradient gives g_q."""
    _, _, spec, histories, users = shop
    model = _model(spec)
    frozen = [layer.name for layer in model.layers if layer.name != "head"]
    learner = meta.MetaLearner(model, inner_lr=0.2, inner_steps=1, order=order, frozen=frozen)
    assert [v.path for v in learner.variables] == [v.path for v in model.get_layer("head").params]
    episodes = histories.episodes(users[:1], k=5, query_size=10, max_support=40)
    grads = [keras.ops.convert_to_numpy(g) for g in learner.meta_gradient(episodes)]
    ts, gs = _head_inputs(model, episodes, "support")
    tq, gq = _head_inputs(model, episodes, "query")
    w0, b0 = (p.numpy().astype(np.float64) for p in model.get_layer("head").params)
    support = (ts[0], gs[0], episodes.support_y[0], episodes.support_mask[0])
    query = (tq[0], gq[0], episodes.query_y[0], episodes.query_mask[0])
    want = meta.maml_gradient_logistic(w0, b0, support, query, 0.2) if order == "second" else \
        meta.fomaml_gradient_logistic(w0, b0, support, query, 0.2, 1)
    np.testing.assert_allclose(grads[0], want[0], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(grads[1], want[1], rtol=2e-4, atol=1e-6)


def test_meta_step_leaves_frozen_layers_alone(shop) -> None:
    _, _, spec, histories, users = shop
    model = _model(spec)
    frozen = meta.global_layers(model)
    assert "global_logit" in frozen and "head" not in frozen and not any(n.startswith("taste_") for n in frozen)
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    learner = meta.MetaLearner(model, frozen=frozen)
    history = learner.fit({3: histories.episodes(users, k=3, query_size=10, max_support=30)}, steps=2,
                          tasks_per_step=8)
    assert list(history.columns) == ["step", "k", "query_loss", "seconds"] and len(history) == 2
    frozen_paths = {v.path for name in frozen for v in model.get_layer(name).trainable_variables}
    for v in model.trainable_variables:
        moved = not np.array_equal(before[v.path], v.numpy())
        assert moved == (v.path not in frozen_paths), v.path
    with pytest.raises(ValueError, match="does not have"):
        meta.MetaLearner(model, frozen=["nope"])
    with pytest.raises(ValueError, match="order"):
        meta.MetaLearner(model, order="third")


def test_restart_gives_fresh_weights_and_optimizer_state(shop) -> None:
    _, log, spec, histories, users = shop
    model = compile_model(_model(spec), [Task("click", "binary")], 0.01)
    model.fit(make_multitask_dataset(log, spec, [Task("click", "binary")], 512), epochs=1, verbose=0, shuffle=False)
    fresh = _model(spec, seed=3).get_weights()
    meta.restart(model, fresh)
    for got, want in zip(model.get_weights(), fresh):
        np.testing.assert_array_equal(got, want)
    assert int(model.optimizer.iterations) == 0
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    other = _model(spec)
    learner = meta.MetaLearner(other, meta_lr=0.02, frozen=meta.global_layers(other))
    learner.fit({2: histories.episodes(users, k=2, query_size=10, max_support=20)}, steps=1, tasks_per_step=4)
    learner.restart(fresh)
    assert int(learner.optimizer.iterations) == 0
    assert float(learner.optimizer.learning_rate.numpy()) == pytest.approx(0.02)
    np.testing.assert_array_equal(learner.model.get_weights()[0], fresh[0])


def test_zero_steps_is_the_model_as_it_is(shop) -> None:
    _, log, spec, histories, users = shop
    model = _model(spec)
    episodes = histories.episodes(users[:5], k=2, query_size=10, query_after=5, max_support=20)
    probs = meta.adapt_and_predict(model, episodes, lr=0.1, steps=0)
    real = episodes.query_mask > 0
    rows = log.iloc[episodes.query_rows[real]]
    direct = model.predict(feature_arrays(rows, spec), verbose=0)["click"].ravel()
    np.testing.assert_allclose(probs[real], direct, rtol=1e-5)
    adapted = meta.adapt_and_predict(model, episodes, lr=0.1, steps=2)
    assert adapted.shape == probs.shape and not np.allclose(adapted[real], probs[real])
    scores = meta.kshot_scores(episodes, probs)
    assert set(scores) == {"gauc", "auc", "logloss"}
    with pytest.raises(ValueError, match="query shape"):
        meta.kshot_scores(episodes, probs[:, :3])


def _two_taste_frame(n_users: int = 60, n: int = 60, seed: int = 0) -> pd.DataFrame:
    """Users who like one of two categories: clicks at 50 % on it, 5 % on the other. No user feature says which."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        liked = u % 2
        cats = rng.integers(0, 2, n)
        clicks = rng.random(n) < np.where(cats == liked, 0.5, 0.05)
        rows.append(pd.DataFrame({"user_id": u, "timestamp": np.arange(n), "category_id": cats,
                                  "brand_id": cats * 3 + rng.integers(0, 3, n), "click": clicks.astype(np.int8)}))
    return pd.concat(rows, ignore_index=True)


def _two_taste_tasks(**frame_args):
    """The two-taste frame, its spec, its histories, and its users with 3 clicks split into < 40 and >= 40."""
    frame = _two_taste_frame(**frame_args)
    spec = feature_spec(frame, categorical=["category_id", "brand_id"], embedding_dim=2)
    histories = meta.UserHistories(frame, spec)
    users = histories.eligible(k_max=3, query_size=20)
    return frame, spec, histories, users[users < 40], users[users >= 40]


def test_maml_learns_a_taste_that_no_feature_shows() -> None:
    _, spec, histories, train, new = _two_taste_tasks()
    model = _model(spec)
    model.get_layer("head").taste.assign(np.zeros(3, dtype="float32"))
    pool = {3: histories.episodes(train, k=3, query_size=20, max_support=12)}
    test = histories.episodes(new, k=3, query_size=20, query_after=3, max_support=12)
    before = meta.kshot_scores(test, meta.adapt_and_predict(model, test, lr=0.3, steps=3))["gauc"]
    learner = meta.MetaLearner(model, inner_lr=0.3, inner_steps=3, order="second", meta_lr=0.05)
    learner.fit(pool, steps=40, tasks_per_step=16)
    after = meta.kshot_scores(test, meta.adapt_and_predict(model, test, lr=0.3, steps=3))["gauc"]
    unadapted = meta.kshot_scores(test, meta.adapt_and_predict(model, test, lr=0.3, steps=0))["gauc"]
    assert after > 0.75 and after > before + 0.1 and after > unadapted + 0.1, (before, after, unadapted)


def test_user_vectors_train_with_fit() -> None:
    frame = _two_taste_frame(n_users=20, n=40)
    spec = feature_spec(frame, categorical=["category_id", "brand_id"], embedding_dim=2)
    model = _model(spec)
    trained = compile_model(meta.with_user_vectors(model, frame["user_id"].unique()), [Task("click", "binary")], 0.05)
    uspec = feature_spec(frame, categorical=["category_id", "brand_id", "user_id"])
    trained.fit(make_multitask_dataset(frame, uspec, [Task("click", "binary")], 64, shuffle=True), epochs=6,
                verbose=0, shuffle=False)
    p = trained.predict(feature_arrays(frame, uspec), verbose=0)["click"].ravel()
    assert metrics.group_auc(frame["click"], p, frame["user_id"]) > 0.7


# --------------------------------------------------------------------------------------------------
# The ideal few-shot learner
# --------------------------------------------------------------------------------------------------


def test_shopsim_taste_truth_rebuilds_the_click_probability(shop) -> None:
    data, _, _, _, _ = shop
    truth = meta.shopsim_taste_truth(data)
    imp = data.impressions
    user_taste = data.latent["user_taste_click"][imp["user_id"].to_numpy()]
    logit = truth["rest"] + np.einsum("nd,nd->n", truth["taste"], user_taste)
    np.testing.assert_allclose(truth["examine"] / (1 + np.exp(-logit)), imp["p_click"], rtol=1e-4, atol=1e-7)


def test_taste_posterior_recovers_a_known_taste() -> None:
    rng = np.random.default_rng(1)
    n_users, n, d = 40, 80, 2
    taste = rng.normal(0, 1.5, (n_users * n, d))
    u = rng.normal(0, 1, (n_users, d))
    user = np.repeat(np.arange(n_users), n)
    rest = np.full(n_users * n, -1.0)
    p = 1 / (1 + np.exp(-(rest + np.einsum("nd,nd->n", taste, u[user]))))
    frame = pd.DataFrame({"user_id": user, "timestamp": np.tile(np.arange(n), n_users),
                          "click": (rng.random(n_users * n) < p).astype(np.int8), "x": 0.0})
    histories = meta.UserHistories(frame, feature_spec(frame, numeric=["x"]))
    users = histories.eligible(k_max=8, query_size=30)
    truth = {"taste": taste, "rest": rest, "examine": np.ones(len(frame))}
    episodes = histories.episodes(users, k=8, query_size=30)
    posterior = meta.kshot_scores(episodes, meta.taste_posterior_scores(episodes, truth, prior_precision=1.0))
    prior = meta.kshot_scores(episodes, meta.taste_posterior_scores(episodes, truth, 1.0, newton_steps=0))
    oracle = meta.kshot_scores(episodes, episodes.on_grid(p, "query"))
    assert abs(prior["gauc"] - 0.5) < 1e-9  # u = 0: every query impression scores the same
    assert posterior["gauc"] > 0.7 and posterior["gauc"] <= oracle["gauc"] + 0.02, (posterior, oracle)


# --------------------------------------------------------------------------------------------------
# Early-stopped meta-training, the base-rate head, the ideal K-shot curve
# --------------------------------------------------------------------------------------------------


def test_meta_fit_with_validation_ends_on_the_best_scored_weights() -> None:
    _, spec, histories, train, valid = _two_taste_tasks()
    model = _model(spec)
    pool = {3: histories.episodes(train, k=3, query_size=20, max_support=12)}
    check = histories.episodes(valid, k=3, query_size=20, query_after=3, max_support=12)
    scores: list[tuple[float, list[np.ndarray]]] = []

    def validate() -> float:
        # A score that peaks early and then falls: the learner must end on the peak's weights, not the last ones.
        value = [0.5, 0.9, 0.7, 0.6, 0.55, 0.5][len(scores)]
        scores.append((value, model.get_weights()))
        return value

    learner = meta.MetaLearner(model, inner_lr=0.3, inner_steps=3, order="first", meta_lr=0.05)
    history = learner.fit(pool, steps=100, tasks_per_step=8, validate=validate, every=5, patience=3)
    assert learner.best_step == 5
    assert len(history) == 20  # stopped after three scores without a gain: steps 10, 15, 20
    assert history["valid"].notna().sum() == 4
    for got, want in zip(model.get_weights(), scores[1][1]):
        np.testing.assert_array_equal(got, want)
    assert np.isfinite(meta.kshot_scores(check, meta.adapt_and_predict(model, check, 0.3, 3))["gauc"])
    with pytest.raises(ValueError, match="every and patience"):
        learner.fit(pool, steps=5, validate=validate, every=0)


def test_meta_fit_with_validation_keeps_the_start_when_nothing_helps() -> None:
    frame = _two_taste_frame(n_users=30, n=40)
    spec = feature_spec(frame, categorical=["category_id", "brand_id"], embedding_dim=2)
    histories = meta.UserHistories(frame, spec)
    model = _model(spec)
    start = model.get_weights()
    learner = meta.MetaLearner(model, meta_lr=0.05)
    pool = {3: histories.episodes(histories.eligible(3, 10), k=3, query_size=10, max_support=12)}
    learner.fit(pool, steps=6, tasks_per_step=4, validate=lambda: 0.5, every=2, patience=2)
    assert learner.best_step == 0
    for got, want in zip(model.get_weights(), start):
        np.testing.assert_array_equal(got, want)


def test_init_head_bias_starts_at_the_base_rate() -> None:
    frame = _two_taste_frame(n_users=20, n=40)
    spec = feature_spec(frame, categorical=["category_id", "brand_id"], embedding_dim=2)
    model = _model(spec)
    model.get_layer("global_logit").bias.assign(np.zeros(1, dtype="float32"))
    bias = meta.init_head_bias(model, frame)
    rate = frame["click"].mean()
    assert bias == pytest.approx(np.log(rate / (1 - rate)))
    assert float(model.get_layer("head").bias.numpy()) == pytest.approx(bias, rel=1e-6)
    with pytest.raises(KeyError, match="no column 'buy'"):
        meta.init_head_bias(model, frame, label="buy")
    with pytest.raises(ValueError, match="NaN"):
        meta.init_head_bias(model, frame.assign(click=np.nan))


def test_ideal_kshot_curve_climbs_from_no_taste_towards_the_oracle(shop) -> None:
    data, log, _, histories, users = shop
    episodes = {k: meta.UserHistories(data.impressions).episodes(users, k, 10, query_after=3, max_support=30)
                for k in (1, 3)}
    curve = meta.ideal_kshot_curve(data, episodes)
    assert list(curve.index) == ["K = 0 (no taste)", "K = 1", "K = 3", "oracle (knows u)"]
    assert curve["oracle (knows u)"] >= curve["K = 0 (no taste)"]
    assert curve.between(0.0, 1.0).all()
    with pytest.raises(ValueError, match="empty"):
        meta.ideal_kshot_curve(data, {})


def test_init_head_bias_of_a_user_vector_model_sets_the_global_logit() -> None:
    frame = _two_taste_frame(n_users=20, n=40)
    spec = feature_spec(frame, categorical=["category_id", "brand_id"], embedding_dim=2)
    trainer = meta.with_user_vectors(_model(spec), frame["user_id"].unique())
    bias = meta.init_head_bias(trainer, frame)
    assert float(trainer.get_layer("global_logit").bias.numpy()[0]) == pytest.approx(bias, rel=1e-6)
