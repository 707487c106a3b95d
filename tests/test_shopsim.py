"""Tests of ShopSim: determinism, knob validation, calibration, the funnel, the catalog, the graph and the oracle."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from utils.config import SCALES
from utils.shopsim import (
    GROUND_TRUTH_COLUMNS,
    SCALE_PRESETS,
    ShopSimConfig,
    ShopSimData,
    feature_safe_columns,
    generate,
    oracle_metrics,
)

FRAMES = ("impressions", "users", "items", "categories", "brands", "shops", "kg")
CATALOG_FRAMES = ("users", "items", "categories", "brands", "shops", "kg")


@pytest.fixture(scope="module")
def tiny() -> ShopSimData:
    return generate(scale="tiny", seed=7)


@pytest.fixture(scope="module")
def large_tiny() -> ShopSimData:
    """The tiny catalog with more impressions and items, for statistics that need more rows."""
    return generate(scale="tiny", seed=3, n_items=5_000, n_impressions=200_000)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _gini(counts: np.ndarray) -> float:
    x = np.sort(counts.astype(np.float64))
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def _shown_affinity(data: ShopSimData) -> np.ndarray:
    imp = data.impressions
    u = data.user_taste[imp["user_id"].to_numpy()]
    v = data.item_taste[imp["item_id"].to_numpy()]
    return np.sqrt(data.config.latent_dim) * np.einsum("nd,nd->n", u, v)


# ------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------

def test_presets_cover_the_course_scales() -> None:
    assert tuple(SCALE_PRESETS) == SCALES
    sizes = [SCALE_PRESETS[scale]["n_impressions"] for scale in SCALES]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    for scale in SCALES:
        cfg = ShopSimConfig.from_scale(scale)
        assert cfg.scale == scale
        assert {k: getattr(cfg, k) for k in SCALE_PRESETS[scale]} == SCALE_PRESETS[scale]
    assert ShopSimConfig() == ShopSimConfig.from_scale("small")


def test_from_scale_applies_overrides() -> None:
    cfg = ShopSimConfig.from_scale("tiny", seed=5, task_correlation=-0.3, n_users=123)
    assert (cfg.seed, cfg.task_correlation, cfg.n_users) == (5, -0.3, 123)


def test_cart_rate_defaults_to_three_times_cvr_capped() -> None:
    assert ShopSimConfig.from_scale("tiny", cvr=0.05).target_cart_rate == pytest.approx(0.15)
    assert ShopSimConfig.from_scale("tiny", cvr=0.6).target_cart_rate == pytest.approx(0.8)
    assert ShopSimConfig.from_scale("tiny", cvr=0.05, cart_rate=0.05).target_cart_rate == 0.05


BAD_KNOBS = [
    ("task_correlation", 1.5, "[-1, 1]"),
    ("task_correlation", -1.01, "[-1, 1]"),
    ("task_correlation", "high", "[-1, 1]"),
    ("ctr", 0.0, "(0, 1)"),
    ("ctr", 1.0, "(0, 1)"),
    ("ctr", math.nan, "(0, 1)"),
    ("ctr", True, "(0, 1)"),
    ("cvr", 0.0, "(0, 1)"),
    ("cvr", 1.0, "(0, 1)"),
    ("cvr", -0.2, "(0, 1)"),
    ("cart_rate", 0.01, "[cvr, 1)"),
    ("cart_rate", 1.0, "(0, 1)"),
    ("position_bias", -0.1, "[0, 10]"),
    ("popularity_skew", -1.0, "[0, 5]"),
    ("activity_skew", -1.0, "[0, 5]"),
    ("price_sensitivity", -0.5, "[0, 10]"),
    ("profile_fill_rate", 1.2, "[0, 1]"),
    ("attribute_fill_rate", -0.1, "[0, 1]"),
    ("kg_signal", 1.1, "[0, 1]"),
    ("target_share", 1.0, "[0, 1)"),
    ("domain_shift", -0.5, "[0, 1]"),
    ("user_overlap", 2.0, "[0, 1]"),
    ("new_item_share", 1.0, "[0, 1)"),
    ("taste_drift", 1.5, "[0, 1]"),
    ("rating_noise", -1.0, "[0, 10]"),
    ("rating_noise", "loud", "[0, 10]"),
    ("n_users", 0, "[1, 2147483647]"),
    ("n_users", "many", "[1, 2147483647]"),
    ("n_items", -5, "[1, 2147483647]"),
    ("n_impressions", 10.5, "[1, 2147483647]"),
    ("n_impressions", 1000.0, "[1, 2147483647]"),
    ("n_days", 0, "[1, 3650]"),
    ("n_positions", 0, "[1, 100]"),
    ("latent_dim", 0, "[1, 512]"),
    ("n_candidates", 0, "[1, 100]"),
    ("n_top_categories", 0, "[1, 10000]"),
    ("n_brands", 3, "[n_top_categories, inf)"),
    ("n_shops", 2, "[n_top_categories, inf)"),
    ("n_leaf_categories", 4, "[n_top_categories, inf)"),
    ("seed", -1, "[0, inf)"),
]


@pytest.mark.parametrize(("knob", "value", "allowed"), BAD_KNOBS, ids=[f"{k}={v!r}" for k, v, _ in BAD_KNOBS])
def test_bad_knob_names_knob_value_and_range(knob: str, value: object, allowed: str) -> None:
    with pytest.raises(ValueError) as info:
        ShopSimConfig.from_scale("tiny", **{knob: value})
    message = str(info.value)
    assert message.startswith(f"{knob} must be")
    assert allowed in message
    assert f"got {value!r}" in message


def test_unreachable_ctr_is_explained() -> None:
    with pytest.raises(ValueError, match=r"ctr must be in \(0, 0\.35.*position_bias=0\.8.*got 0\.5"):
        ShopSimConfig.from_scale("tiny", ctr=0.5)
    assert ShopSimConfig.from_scale("tiny", ctr=0.5, position_bias=0.0).ctr == 0.5


def test_replace_validates_again() -> None:
    with pytest.raises(ValueError, match="kg_signal"):
        dataclasses.replace(ShopSimConfig.from_scale("tiny"), kg_signal=2.0)


def test_unknown_knob_lists_the_valid_ones() -> None:
    with pytest.raises(TypeError, match=r"unknown ShopSim knob\(s\) task_corr;.*task_correlation"):
        generate(scale="tiny", task_corr=0.3)
    with pytest.raises(TypeError, match="valid knobs"):
        ShopSimConfig.from_scale("tiny", colour="red")


def test_unknown_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        generate(scale="huge")
    with pytest.raises(ValueError, match="unknown scale"):
        ShopSimConfig(scale="medium")


def test_config_is_frozen() -> None:
    cfg = ShopSimConfig.from_scale("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ctr = 0.1  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# Determinism and seed streams
# ------------------------------------------------------------------------------------------------

def test_same_seed_gives_identical_data(tiny: ShopSimData) -> None:
    again = generate(scale="tiny", seed=7)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(tiny, name), getattr(again, name))
    for name, array in tiny.latent.items():
        np.testing.assert_array_equal(array, again.latent[name])


def test_different_seed_gives_different_data(tiny: ShopSimData) -> None:
    other = generate(scale="tiny", seed=8)
    for name in ("impressions", "users", "items"):
        assert not getattr(tiny, name).equals(getattr(other, name))
    assert not np.array_equal(tiny.item_taste, other.item_taste)


def test_generate_from_config_matches_keywords() -> None:
    cfg = ShopSimConfig.from_scale("tiny", seed=11, task_correlation=0.1, ctr=0.06)
    a = generate(config=cfg)
    b = generate(scale="tiny", seed=11, task_correlation=0.1, ctr=0.06)
    c = generate(config=ShopSimConfig.from_scale("tiny"), seed=11, task_correlation=0.1, ctr=0.06)
    assert a.config == b.config == c.config == cfg
    pd.testing.assert_frame_equal(a.impressions, b.impressions)
    pd.testing.assert_frame_equal(a.impressions, c.impressions)


@pytest.mark.parametrize("knob", [{"task_correlation": -0.8}, {"cvr": 0.01}, {"ctr": 0.08}, {"rating_noise": 1.5},
                                  {"position_bias": 0.3}, {"cart_rate": 0.3}])
def test_behaviour_knob_keeps_catalog_users_and_exposure(tiny: ShopSimData, knob: dict) -> None:
    other = generate(scale="tiny", seed=7, **knob)
    for name in CATALOG_FRAMES:
        pd.testing.assert_frame_equal(getattr(tiny, name), getattr(other, name))
    np.testing.assert_array_equal(tiny.item_taste, other.item_taste)
    np.testing.assert_array_equal(tiny.user_taste, other.user_taste)
    cols = ["user_id", "item_id", "timestamp", "position"]
    pd.testing.assert_frame_equal(tiny.impressions[cols], other.impressions[cols])
    assert not tiny.impressions.equals(other.impressions)


def test_kg_signal_changes_only_item_tastes(tiny: ShopSimData) -> None:
    other = generate(scale="tiny", seed=7, kg_signal=0.2)
    for name in CATALOG_FRAMES:
        pd.testing.assert_frame_equal(getattr(tiny, name), getattr(other, name))
    np.testing.assert_array_equal(tiny.latent["item_entity_click"], other.latent["item_entity_click"])
    assert not np.array_equal(tiny.item_taste, other.item_taste)


# ------------------------------------------------------------------------------------------------
# Schema
# ------------------------------------------------------------------------------------------------

IMPRESSION_DTYPES = {
    "impression_id": "int32", "user_id": "int32", "item_id": "int32", "timestamp": "int32", "day": "int16",
    "position": "int8", "domain": "category", "click": "int8", "cart": "int8", "purchase": "int8",
    "rating": "float32", "p_examine": "float32", "p_click": "float32", "p_cart": "float32",
    "p_purchase": "float32", "p_ctcvr": "float32", "would_purchase": "int8", "true_rating": "float32",
}


def test_impression_schema(tiny: ShopSimData) -> None:
    imp = tiny.impressions
    assert {c: str(t) for c, t in imp.dtypes.items()} == IMPRESSION_DTYPES
    assert list(imp["domain"].cat.categories) == ["source", "target"]
    assert len(imp) == tiny.config.n_impressions


def test_catalog_and_user_schema(tiny: ShopSimData) -> None:
    assert str(tiny.users["age_band"].dtype) == "Int8"
    assert str(tiny.items["price_band"].dtype) == "Int8"
    assert tiny.items["price"].dtype == np.float32
    for frame, key in [(tiny.users, "user_id"), (tiny.items, "item_id"), (tiny.categories, "category_id"),
                       (tiny.brands, "brand_id"), (tiny.shops, "shop_id")]:
        assert frame[key].dtype == np.int32
        np.testing.assert_array_equal(frame[key], np.arange(len(frame)))
    assert list(tiny.kg.columns) == ["head", "relation", "tail"]
    assert tiny.user_taste.shape == (tiny.config.n_users, tiny.config.latent_dim)
    assert tiny.item_taste.shape == (tiny.config.n_items, tiny.config.latent_dim)


def test_feature_safe_columns_drop_every_ground_truth_column(tiny: ShopSimData) -> None:
    for name in FRAMES:
        frame = getattr(tiny, name)
        truth = [c for c in frame.columns if c.startswith(("p_", "true_", "would_"))]
        assert set(truth) <= GROUND_TRUTH_COLUMNS, name
        safe = feature_safe_columns(frame)
        assert not set(safe) & GROUND_TRUTH_COLUMNS
        assert safe == [c for c in frame.columns if c not in truth]
    assert {"click", "purchase", "rating", "position"} <= set(feature_safe_columns(tiny.impressions))
    assert "price" in feature_safe_columns(tiny.items)


def test_summary_and_repr(tiny: ShopSimData) -> None:
    s = tiny.summary()
    imp = tiny.impressions
    assert s["impressions"] == len(imp) and s["users"] == len(tiny.users) and s["items"] == len(tiny.items)
    assert s["ctr"] == pytest.approx(imp["click"].mean())
    assert s["cvr"] == pytest.approx(imp["purchase"].sum() / imp["click"].sum())
    assert s["cart_rate"] == pytest.approx(imp["cart"].sum() / imp["click"].sum())
    assert s["ctcvr"] == pytest.approx(imp["purchase"].mean())
    assert 1 <= s["rating_mean"] <= 5 and s["generation_s"] > 0
    assert "impressions=20,000" in repr(tiny)


# ------------------------------------------------------------------------------------------------
# The funnel and calibration
# ------------------------------------------------------------------------------------------------

def test_funnel_is_nested_and_entire_space_label_is_consistent(tiny: ShopSimData) -> None:
    imp = tiny.impressions
    click, cart, purchase = imp["click"], imp["cart"], imp["purchase"]
    assert set(click.unique()) == {0, 1}
    assert (cart <= click).all() and (purchase <= cart).all()
    assert (purchase == click * imp["would_purchase"]).all()
    assert imp["would_purchase"].sum() > purchase.sum()  # known for unclicked impressions too
    assert (imp["p_cart"] >= imp["p_purchase"]).all()
    assert (imp["p_click"] <= imp["p_examine"]).all()
    np.testing.assert_allclose(imp["p_ctcvr"], imp["p_click"] * imp["p_purchase"], rtol=1e-6)
    for col in ("p_click", "p_cart", "p_purchase", "p_ctcvr"):
        assert imp[col].between(0, 1).all()


@pytest.mark.parametrize(("ctr", "cvr", "cart_rate"), [(0.05, 0.02, 0.06), (0.04, 0.005, None), (0.1, 0.3, 0.5)])
def test_rates_are_calibrated_to_the_knobs(ctr: float, cvr: float, cart_rate: float | None) -> None:
    data = generate(scale="tiny", seed=1, n_impressions=200_000, ctr=ctr, cvr=cvr, cart_rate=cart_rate)
    imp = data.impressions
    p_click = imp["p_click"].to_numpy(np.float64)
    assert p_click.mean() == pytest.approx(ctr, rel=1e-3)
    assert np.average(imp["p_purchase"], weights=p_click) == pytest.approx(cvr, rel=1e-3)
    assert np.average(imp["p_cart"], weights=p_click) == pytest.approx(data.config.target_cart_rate, rel=1e-3)
    n, clicks = len(imp), imp["click"].sum()
    assert abs(imp["click"].mean() - ctr) < 4 * math.sqrt(ctr * (1 - ctr) / n)
    assert abs(imp["purchase"].sum() / clicks - cvr) < 4 * math.sqrt(cvr * (1 - cvr) / clicks)


def test_exposure_is_personalised_only_when_asked_and_clicks_select_anyway() -> None:
    personal = generate(scale="tiny", seed=2, n_candidates=5, personalisation=1.0)
    appeal = generate(scale="tiny", seed=2, n_candidates=5)
    uniform = generate(scale="tiny", seed=2, n_candidates=1)
    assert _shown_affinity(personal).mean() > 0.4
    assert abs(_shown_affinity(appeal).mean()) < 0.15  # the default recommender ranks by item appeal only
    assert abs(_shown_affinity(uniform).mean()) < 0.15
    shown_quality = appeal.items["true_quality"].to_numpy()[appeal.impressions["item_id"]]
    assert shown_quality.mean() > uniform.items["true_quality"].to_numpy()[uniform.impressions["item_id"]].mean()
    for data in (personal, appeal):  # users click what suits them: the sample-selection bias of ESMM
        imp = data.impressions
        assert imp.loc[imp["click"] == 1, "p_purchase"].mean() > 1.2 * imp["p_purchase"].mean()


def test_logging_policy_confounds_slots_with_relevance(large_tiny: ShopSimData) -> None:
    random_slots = generate(config=large_tiny.config, position_confounding=0.0)
    counts = large_tiny.impressions.groupby(["day", "position"]).size().unstack()
    assert (counts.max(axis=1) - counts.min(axis=1)).max() <= 1  # every slot a tenth of each day's traffic

    def relevance(data: ShopSimData) -> pd.Series:
        imp = data.impressions
        return (imp["p_click"] / imp["p_examine"]).groupby(imp["position"]).mean()

    confounded, flat = relevance(large_tiny), relevance(random_slots)
    assert confounded[1] > 1.15 * confounded[10]
    assert flat[1] == pytest.approx(flat[10], rel=0.08)
    same = ["user_id", "item_id", "timestamp", "day"]
    pd.testing.assert_frame_equal(large_tiny.impressions[same], random_slots.impressions[same])


def test_no_confounding_keeps_the_uniform_random_slots() -> None:
    data = generate(scale="tiny", seed=4, position_confounding=0.0)
    counts = data.impressions["position"].value_counts()
    assert counts.min() > 0.8 * counts.max()
    by_item = data.impressions.groupby("item_id")["position"].mean()
    quality = data.items.set_index("item_id")["true_quality"].reindex(by_item.index)
    assert abs(np.corrcoef(by_item, quality)[0, 1]) < 0.15


def test_truth_holds_the_calibrated_intercepts(tiny: ShopSimData) -> None:
    imp = tiny.impressions
    assert set(tiny.truth) == {"click_intercept", "purchase_intercept", "cart_shift", "price_term"}
    assert tiny.truth["price_term"].shape == (len(tiny.items),)
    assert tiny.truth["cart_shift"] >= 0
    # the click logit rebuilt from the truth matches p_click
    u = tiny.user_taste[imp["user_id"]]
    v = tiny.item_taste[imp["item_id"]]
    users, items = tiny.users, tiny.items
    logit = (np.sqrt(tiny.config.latent_dim) * np.einsum("nd,nd->n", u, v)
             + 0.3 * items["true_quality"].to_numpy()[imp["item_id"]] + users["true_bias"].to_numpy()[imp["user_id"]]
             - 0.7 * users["true_price_sensitivity"].to_numpy()[imp["user_id"]] * tiny.truth["price_term"][imp["item_id"]]
             + tiny.truth["click_intercept"])
    np.testing.assert_allclose(imp["p_examine"] / (1 + np.exp(-logit)), imp["p_click"], rtol=1e-4, atol=1e-6)


def test_position_effect(large_tiny: ShopSimData) -> None:
    imp = large_tiny.impressions
    assert imp["position"].between(1, large_tiny.config.n_positions).all()
    np.testing.assert_allclose(imp["p_examine"], imp["position"].astype(float) ** -0.8, rtol=1e-5)
    by_position = imp.groupby("position")["click"].mean()
    assert by_position[1] > 2 * by_position[large_tiny.config.n_positions]


def test_task_correlation_moves_click_purchase_correlation() -> None:
    corr = {}
    for rho in (-0.9, 0.0, 0.9):
        imp = generate(scale="tiny", seed=4, task_correlation=rho).impressions
        click_logit = _logit(imp["p_click"] / imp["p_examine"])
        corr[rho] = np.corrcoef(click_logit, _logit(imp["p_purchase"]))[0, 1]
    # Shared quality and price terms add a positive baseline; the knob moves the rest.
    assert corr[-0.9] < 0.0 < corr[0.0] < corr[0.9]
    assert corr[0.9] - corr[-0.9] > 0.7


# ------------------------------------------------------------------------------------------------
# Ratings, time and launches
# ------------------------------------------------------------------------------------------------

def test_rating_is_present_exactly_for_purchases(tiny: ShopSimData) -> None:
    imp = tiny.impressions
    assert (imp["rating"].notna() == (imp["purchase"] == 1)).all()
    assert set(imp["rating"].dropna().unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert imp["true_rating"].between(1, 5).all()
    bought = imp[imp["purchase"] == 1]
    assert np.corrcoef(bought["rating"], bought["true_rating"])[0, 1] > 0.3


def test_time_is_sorted_and_consistent(tiny: ShopSimData) -> None:
    imp = tiny.impressions
    assert imp["timestamp"].is_monotonic_increasing
    np.testing.assert_array_equal(imp["impression_id"], np.arange(len(imp)))
    np.testing.assert_array_equal(imp["day"], imp["timestamp"] // 86_400)
    assert imp["day"].min() == 0 and imp["day"].max() == tiny.config.n_days - 1


def test_no_item_is_shown_before_its_launch(large_tiny: ShopSimData) -> None:
    imp = large_tiny.impressions.merge(large_tiny.items[["item_id", "launch_day"]], on="item_id")
    assert (imp["day"] >= imp["launch_day"]).all()
    new = large_tiny.items["launch_day"] > 0
    assert new.mean() == pytest.approx(large_tiny.config.new_item_share, abs=1e-3)
    late = imp[imp["day"] >= 20]
    assert (late["launch_day"] > 0).mean() > 0.05  # a temporal split meets cold-start items


# ------------------------------------------------------------------------------------------------
# Catalog, users and long tails
# ------------------------------------------------------------------------------------------------

def test_long_tails(large_tiny: ShopSimData) -> None:
    imp = large_tiny.impressions
    item_counts = np.sort(imp["item_id"].value_counts().reindex(range(large_tiny.config.n_items), fill_value=0))[::-1]
    assert item_counts[: len(item_counts) // 10].sum() > 0.4 * item_counts.sum()
    user_counts = imp["user_id"].value_counts().reindex(range(large_tiny.config.n_users), fill_value=0).to_numpy()
    assert _gini(user_counts) > 0.4
    flat = generate(scale="tiny", seed=3, n_items=5_000, n_impressions=200_000, activity_skew=0.0).impressions
    flat_counts = flat["user_id"].value_counts().reindex(range(large_tiny.config.n_users), fill_value=0).to_numpy()
    assert _gini(flat_counts) < 0.25


def test_prices_are_log_normal_per_leaf_with_brand_premium(large_tiny: ShopSimData) -> None:
    items = large_tiny.items.merge(large_tiny.categories[["category_id", "true_log_price_mean"]], on="category_id")
    premium = large_tiny.brands["true_premium"].to_numpy()[items["brand_id"]]
    residual = np.log(items["price"]) - items["true_log_price_mean"] - premium
    assert abs(residual.mean()) < 0.02
    assert 0.25 < residual.std() < 0.45
    assert abs(pd.Series(residual).skew()) < 0.2
    relative = np.log(items["price"]) - items["true_log_price_mean"]
    by_brand = relative.groupby(items["brand_id"]).mean()
    assert np.corrcoef(by_brand, large_tiny.brands["true_premium"].to_numpy()[by_brand.index])[0, 1] > 0.7
    by_top = large_tiny.items.groupby("top_category_id")["price"].median()
    assert by_top[0] > by_top[7]  # Electronics costs more than Grocery


def test_price_bands_are_quintiles_within_leaf(large_tiny: ShopSimData) -> None:
    items = large_tiny.items
    assert set(items["true_price_band"].unique()) == set(range(5))
    by_price = items.sort_values(["category_id", "price"])
    assert (by_price.groupby("category_id")["true_price_band"].diff().dropna() >= 0).all()
    assert (by_price.groupby(["category_id", "price"])["true_price_band"].nunique() == 1).all()
    assert items["true_price_band"].value_counts(normalize=True).between(0.15, 0.25).all()


def test_fill_rates_and_observed_values() -> None:
    data = generate(scale="tiny", seed=5, n_users=2_000, profile_fill_rate=0.3, attribute_fill_rate=0.7)
    for field in ("age_band", "city_tier", "purchasing_power"):
        observed = data.users[field].notna()
        assert observed.mean() == pytest.approx(0.3, abs=0.04)
        shown = data.users.loc[observed]
        np.testing.assert_array_equal(shown[field].astype(int), shown[f"true_{field}"])
    observed = data.items["price_band"].notna()
    assert observed.mean() == pytest.approx(0.7, abs=0.06)
    labelled = data.items.loc[observed]
    np.testing.assert_array_equal(labelled["price_band"].astype(int), labelled["true_price_band"])
    assert generate(scale="tiny", seed=5, profile_fill_rate=0.0).users["age_band"].isna().all()
    fuller = generate(scale="tiny", seed=5, n_users=2_000, profile_fill_rate=0.6)
    assert (fuller.users.loc[data.users["city_tier"].notna(), "city_tier"].notna()).all()


def test_catalog_hierarchy_is_consistent(tiny: ShopSimData) -> None:
    cats = tiny.categories.set_index("category_id")
    n_top = tiny.config.n_top_categories
    assert list(cats["level"]) == ["top"] * n_top + ["leaf"] * tiny.config.n_leaf_categories
    assert {"Electronics", "Fashion", "Grocery"} <= set(cats["name"])
    items = tiny.items
    np.testing.assert_array_equal(cats.loc[items["category_id"], "parent_id"].astype(int), items["top_category_id"])
    np.testing.assert_array_equal(tiny.shops["top_category_id"].to_numpy()[items["shop_id"]], items["top_category_id"])
    active = tiny.kg[tiny.kg["relation"] == "active_in"]
    pairs = set(zip(active["head"], active["tail"]))
    assert all((f"brand:{b}", f"category:{t}") in pairs for b, t in zip(items["brand_id"], items["top_category_id"]))
    assert tiny.brands["n_top_categories"].between(1, 3).all() and tiny.brands["n_top_categories"].max() > 1
    assert tiny.brands["name"].is_unique and tiny.shops["name"].is_unique


def test_purchasing_power_is_inferable_from_behaviour(large_tiny: ShopSimData) -> None:
    imp = large_tiny.impressions.merge(large_tiny.items[["item_id", "price", "category_id"]], on="item_id")
    leaf_mean = large_tiny.categories.set_index("category_id")["true_log_price_mean"]
    imp["relative_price"] = np.log(imp["price"]) - leaf_mean.loc[imp["category_id"]].to_numpy()
    clicked = imp[imp["click"] == 1]  # what a user clicks (not what the shop shows) reveals their level
    per_user = clicked.groupby("user_id")["relative_price"].mean()
    power = large_tiny.users["true_purchasing_power"].to_numpy()[per_user.index]
    assert np.corrcoef(per_user, power)[0, 1] > 0.1
    by_level = per_user.groupby(power).mean()
    assert by_level[4] > by_level[0]
    sensitivity = large_tiny.users.groupby("true_purchasing_power")["true_price_sensitivity"].mean()
    assert sensitivity.is_monotonic_decreasing


# ------------------------------------------------------------------------------------------------
# Knowledge graph
# ------------------------------------------------------------------------------------------------

def test_kg_triples_match_the_catalog(tiny: ShopSimData) -> None:
    kg, items = tiny.kg, tiny.items
    assert set(kg["relation"]) == {"belongs_to", "subcategory_of", "made_by", "active_in", "sold_by", "complements"}
    for relation, column, prefix in [("belongs_to", "category_id", "category:"), ("made_by", "brand_id", "brand:"),
                                     ("sold_by", "shop_id", "shop:")]:
        edges = kg[kg["relation"] == relation]
        assert list(edges["head"]) == [f"item:{i}" for i in items["item_id"]]
        assert list(edges["tail"]) == [f"{prefix}{v}" for v in items[column]]
    sub = kg[kg["relation"] == "subcategory_of"]
    leaves = tiny.categories[tiny.categories["level"] == "leaf"]
    assert list(sub["tail"]) == [f"category:{p}" for p in leaves["parent_id"]]


def test_complements_join_complementary_leaves_and_keep_brands(large_tiny: ShopSimData) -> None:
    kg, items, cats = large_tiny.kg, large_tiny.items, large_tiny.categories.set_index("category_id")
    comp = kg[kg["relation"] == "complements"]
    assert len(comp) > 100
    head = items.loc[comp["head"].str.removeprefix("item:").astype(int).to_numpy()]
    tail = items.loc[comp["tail"].str.removeprefix("item:").astype(int).to_numpy()]
    np.testing.assert_array_equal(cats.loc[head["category_id"], "complement_id"].astype(int), tail["category_id"])
    assert (head["brand_id"].to_numpy() == tail["brand_id"].to_numpy()).mean() > 0.5
    phones = cats.index[cats["name"] == "Phones"][0]
    assert cats.loc[cats.loc[phones, "complement_id"], "name"] == "Phone cases"


def _entity_r2(data: ShopSimData) -> float:
    items = data.items
    onehots = [pd.get_dummies(items[c].astype(str), prefix=c, dtype=float)
               for c in ("top_category_id", "category_id", "brand_id", "shop_id")]
    x = np.column_stack([np.ones(len(items))] + [o.to_numpy() for o in onehots])
    y = data.item_taste.astype(np.float64)
    fitted = x @ np.linalg.lstsq(x, y, rcond=None)[0]
    return 1 - ((y - fitted) ** 2).sum() / ((y - y.mean(axis=0)) ** 2).sum()


def test_kg_signal_is_the_share_of_item_taste_explained_by_entities() -> None:
    r2 = {s: _entity_r2(generate(scale="tiny", seed=6, n_items=5_000, n_impressions=1_000, kg_signal=s))
          for s in (0.1, 0.5, 0.9)}
    assert r2[0.1] < r2[0.5] < r2[0.9]
    for share, value in r2.items():
        assert value == pytest.approx(share, abs=0.1)


# ------------------------------------------------------------------------------------------------
# Markets and drift
# ------------------------------------------------------------------------------------------------

def test_target_market_share_and_user_labels() -> None:
    data = generate(scale="tiny", seed=9, target_share=0.3, user_overlap=0.25)
    imp, users = data.impressions, data.users
    assert (imp["domain"] == "target").mean() == pytest.approx(0.3, abs=1e-4)
    user_domain = users["domain"].to_numpy()[imp["user_id"]]
    assert set(user_domain[(imp["domain"] == "target").to_numpy()]) <= {"target", "both"}
    assert set(user_domain[(imp["domain"] == "source").to_numpy()]) <= {"source", "both"}
    in_target = users["domain"].isin(["target", "both"])
    assert (users.loc[in_target, "domain"] == "both").mean() == pytest.approx(0.25, abs=0.02)
    assert in_target.mean() == pytest.approx(0.3, abs=0.01)
    assert set(generate(scale="tiny", seed=9).users["domain"]) == {"source"}


def test_domain_shift_rotates_target_tastes() -> None:
    # with a personalised recommender, the tastes also decide what each market's users are shown
    same = generate(scale="tiny", seed=9, target_share=0.3, domain_shift=0.0, personalisation=1.0)
    apart = generate(scale="tiny", seed=9, target_share=0.3, domain_shift=1.0, personalisation=1.0)
    np.testing.assert_allclose(same.latent["user_taste_click_target"], same.user_taste, rtol=1e-6)
    np.testing.assert_array_equal(same.user_taste, apart.user_taste)
    source, target = apart.user_taste.ravel(), apart.latent["user_taste_click_target"].ravel()
    assert abs(np.corrcoef(source, target)[0, 1]) < 0.1
    target_rows = (same.impressions["domain"] == "target").to_numpy()
    assert not np.array_equal(same.impressions["item_id"][target_rows], apart.impressions["item_id"][target_rows])
    np.testing.assert_array_equal(same.impressions["item_id"][~target_rows], apart.impressions["item_id"][~target_rows])


def test_taste_drift_moves_later_days_only() -> None:
    still = generate(scale="tiny", seed=10, personalisation=1.0)
    drifting = generate(scale="tiny", seed=10, taste_drift=1.0, personalisation=1.0)
    day = still.impressions["day"].to_numpy()
    items_still, items_drift = still.impressions["item_id"].to_numpy(), drifting.impressions["item_id"].to_numpy()
    np.testing.assert_array_equal(items_still[day == 0], items_drift[day == 0])
    assert (items_still[day == day.max()] != items_drift[day == day.max()]).mean() > 0.2


# ------------------------------------------------------------------------------------------------
# Oracle
# ------------------------------------------------------------------------------------------------

def test_oracle_metrics_agree_with_sklearn(large_tiny: ShopSimData) -> None:
    imp = large_tiny.impressions
    m = oracle_metrics(imp)
    for key in ("ctr_auc", "cvr_auc_clicked", "cvr_auc_entire", "ctcvr_auc"):
        assert 0.6 < m[key] < 1.0, key
    assert m["ctr_auc"] == pytest.approx(roc_auc_score(imp["click"], imp["p_click"]))
    assert m["cvr_auc_entire"] == pytest.approx(roc_auc_score(imp["would_purchase"], imp["p_purchase"]))
    clicked = imp[imp["click"] == 1]
    assert m["cvr_auc_clicked"] == pytest.approx(roc_auc_score(clicked["purchase"], clicked["p_purchase"]))
    p = imp["p_click"].to_numpy(np.float64)
    manual = -np.mean(imp["click"] * np.log(p) + (1 - imp["click"]) * np.log(1 - p))
    assert m["ctr_logloss"] == pytest.approx(manual, rel=1e-6)
    bought = imp[imp["purchase"] == 1]
    rmse = np.sqrt(((bought["rating"] - bought["true_rating"]) ** 2).mean())
    assert m["rating_rmse"] == pytest.approx(rmse, rel=1e-5)
    assert m["n_impressions"] == len(imp)


def test_oracle_metrics_on_a_mask_and_on_one_class(tiny: ShopSimData) -> None:
    imp = tiny.impressions
    late = imp["day"] >= 20
    m = oracle_metrics(imp, mask=late)
    assert m["n_impressions"] == late.sum()
    assert m["ctr_auc"] == pytest.approx(roc_auc_score(imp.loc[late, "click"], imp.loc[late, "p_click"]))
    unclicked = oracle_metrics(imp, mask=(imp["click"] == 0).to_numpy())
    assert math.isnan(unclicked["ctr_auc"]) and math.isnan(unclicked["cvr_auc_clicked"])
    assert math.isnan(unclicked["rating_rmse"]) and math.isnan(unclicked["cvr_logloss_clicked"])
    assert unclicked["ctr_logloss"] > 0


def test_with_features_joins_observable_columns_only() -> None:
    data = generate(scale="tiny", seed=3)
    joined = data.with_features()
    row = joined.iloc[123]
    item = data.items.iloc[int(row["item_id"])]
    user = data.users.iloc[int(row["user_id"])]
    assert row["brand_id"] == item["brand_id"] and row["price"] == item["price"]
    assert (pd.isna(row["purchasing_power"]) and pd.isna(user["purchasing_power"])) or row["purchasing_power"] == user["purchasing_power"]
    assert joined["purchasing_power"].isna().mean() == pytest.approx(
        data.users["purchasing_power"].isna().to_numpy()[data.impressions["user_id"]].mean())
    assert len(joined) == len(data.impressions) and "true_price_band" not in joined
    with pytest.raises(ValueError, match="ground truth"):
        data.with_features(item_columns=("true_quality",))
    with pytest.raises(KeyError, match="no column"):
        data.with_features(user_columns=("income",))
