"""ShopSim: a seeded, vectorised simulator of a marketplace with known ground truth.

Every lesson's default dataset. It generates a catalog (categories, brands, shops, items), users with
partly filled-in profiles, a knowledge graph, and an impression log with clicks, add-to-carts,
purchases and ratings, together with the true probabilities behind every label, so that any model's
score can be set next to the best score any model could reach (see :func:`oracle_metrics`).

    >>> from utils.shopsim import generate, oracle_metrics
    >>> data = generate(scale="tiny", seed=0, task_correlation=0.2)
    >>> round(data.summary()["ctr"], 2)
    0.04

The generative story, every column and every knob are described in ``datasets/shopsim.md``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
from utils.config import check_scale

__all__ = [
    "AGE_BANDS",
    "CITY_TIERS",
    "GROUND_TRUTH_COLUMNS",
    "PURCHASING_POWER_LEVELS",
    "SCALE_PRESETS",
    "ShopSimConfig",
    "ShopSimData",
    "feature_safe_columns",
    "generate",
    "oracle_metrics",
]

# --------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------

#: Labels of the profile codes: ``age_band`` 0..5, ``city_tier`` 0..3, ``purchasing_power`` 0..4.
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
CITY_TIERS = ("tier 1 (largest cities)", "tier 2", "tier 3", "tier 4 (towns and rural)")
PURCHASING_POWER_LEVELS = ("very low", "low", "medium", "high", "very high")

# Top categories with their typical log price and leaf names. Leaves 0-1, 2-3 and 4-5 of each list
# are complementary pairs (a phone and its case); they give the knowledge graph's `complements`.
_TOP_CATEGORIES: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("Electronics", 5.0, ("Phones", "Phone cases", "Laptops", "Laptop bags", "Cameras",
                          "Memory cards", "Headphones", "Tablets", "Smartwatches", "Speakers")),
    ("Fashion", 3.7, ("Suits", "Ties", "Dresses", "Handbags", "Sneakers", "Socks", "Jeans",
                      "Jackets", "Scarves", "Sunglasses")),
    ("Home", 4.3, ("Coffee machines", "Coffee mugs", "Bed frames", "Mattresses", "Lamps",
                   "Light bulbs", "Sofas", "Rugs", "Curtains", "Towels")),
    ("Beauty", 3.0, ("Razors", "Shaving foam", "Shampoo", "Conditioner", "Nail polish",
                     "Nail polish remover", "Perfume", "Lipstick", "Face cream", "Sunscreen")),
    ("Sports", 3.9, ("Tennis rackets", "Tennis balls", "Bicycles", "Bike helmets", "Running shoes",
                     "Sports socks", "Yoga mats", "Dumbbells", "Water bottles", "Gym bags")),
    ("Books", 2.8, ("Textbooks", "Study guides", "Novels", "Bookmarks", "Travel guides", "Maps",
                    "Comics", "Biographies", "Poetry", "Children's books")),
    ("Toys", 3.2, ("Toy trains", "Train tracks", "Dolls", "Doll houses", "Remote-control cars",
                   "Batteries", "Puzzles", "Building blocks", "Plush toys", "Kites")),
    ("Grocery", 1.9, ("Pasta", "Pasta sauce", "Coffee beans", "Coffee filters", "Tea", "Honey",
                      "Cereal", "Snacks", "Rice", "Spices")),
    ("Health", 2.9, ("Toothbrushes", "Toothpaste", "Blood-pressure monitors", "Monitor cuffs",
                     "Vitamins", "Pill organisers", "Thermometers", "First aid", "Hand sanitiser",
                     "Face masks")),
    ("Automotive", 3.8, ("Motor oil", "Oil filters", "Tyres", "Tyre gauges", "Car seats",
                         "Seat covers", "Wiper blades", "Car wax", "Dash cams", "Jump starters")),
    ("Garden", 3.6, ("Lawn mowers", "Grass seed", "Hoses", "Hose nozzles", "Plant pots",
                     "Potting soil", "Garden tools", "Seeds", "Bird feeders", "Outdoor lights")),
    ("Pets", 2.9, ("Dog food", "Dog bowls", "Cat litter", "Litter boxes", "Aquariums", "Fish food",
                   "Leashes", "Pet beds", "Cat toys", "Bird cages")),
)
_N_COMPLEMENT_LEAVES = 6  # leaves 0..5 of each top category form three complementary pairs
_SYLLABLES = ("ka", "lo", "mi", "ve", "ra", "no", "tu", "si", "be", "da",
              "fo", "ze", "lu", "pa", "ri", "xo", "ne", "ga", "ho", "ty")
_SHOP_SUFFIXES = ("Store", "Market", "Outlet", "Corner", "Depot")

# --------------------------------------------------------------------------------------------------
# Fixed parameters of the generative story (the knobs are in ShopSimConfig)
# --------------------------------------------------------------------------------------------------

_SECONDS_PER_DAY = 86_400
_WEEKLY_AMPLITUDE = 0.15  # traffic varies by +-15 % over the week
_LEAF_PRICE_SD = 0.5  # sd of a leaf's mean log price around its top category's
_ITEM_PRICE_SD = (0.25, 0.45)  # within-leaf sd of log price, drawn per leaf in this range
_BRAND_PREMIUM_SD = 0.25  # sd of a brand's log-price premium
_MIN_PRICE = 0.5
_N_PRICE_BANDS = 5
# Shares of squared norm of an item's entity part: top category, leaf category, brand, shop.
_ENTITY_WEIGHTS = np.sqrt(np.array([0.20, 0.35, 0.30, 0.15]))
# Shares of squared norm of a user's profile part: age band, city tier, purchasing power.
_PROFILE_WEIGHTS = np.sqrt(np.array([0.35, 0.25, 0.40]))
_PROFILE_TASTE_SHARE = 0.3  # share of a user's taste explained by the profile
_AGE_PROBS = np.array([0.12, 0.26, 0.24, 0.18, 0.12, 0.08])
_CITY_PROBS = np.array([0.15, 0.30, 0.30, 0.25])
_POWER_CUTS = np.array([-1.036, -0.253, 0.524, 1.282])  # standard-normal cuts: 15/25/30/20/10 %
_USER_BIAS_SD = 0.5
_SENSITIVITY_SD = 0.25  # log-sd of a user's price sensitivity around their level's
_EXPOSURE_NOISE = 1.0  # sd of the recommender's error on a candidate's personal click logit
_CLICK_AFFINITY = 1.0
_CLICK_QUALITY = 0.3
_CLICK_PRICE = 0.7  # price weighs on clicks at this fraction of its weight on purchases
_BUY_AFFINITY = 1.0
_BUY_QUALITY = 0.4
_BUY_POWER = 0.2  # purchase logit per purchasing-power level above the middle one
_PRICE_LEVEL = 0.25  # weight of the leaf's price level next to the item's relative price
_RATING_BASE = 0.0
_RATING_AFFINITY = 0.8
_RATING_QUALITY = 0.6
_CALIBRATION_ROWS = 250_000
_CHUNK = 1 << 18
_STREAMS = ("catalog", "item_taste", "users", "user_taste", "domains", "exposure", "labels")
_INT32_MAX = np.iinfo(np.int32).max

# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------

#: Sizes of the three scales; any of them can be overridden as a knob.
SCALE_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(n_users=400, n_items=300, n_impressions=20_000, n_top_categories=8,
                 n_leaf_categories=40, n_brands=60, n_shops=40, n_days=30, n_positions=10,
                 latent_dim=16),
    "small": dict(n_users=5_000, n_items=3_000, n_impressions=1_000_000, n_top_categories=10,
                  n_leaf_categories=100, n_brands=400, n_shops=300, n_days=30, n_positions=10,
                  latent_dim=16),
    "full": dict(n_users=30_000, n_items=20_000, n_impressions=10_000_000, n_top_categories=12,
                 n_leaf_categories=240, n_brands=2_000, n_shops=1_500, n_days=30, n_positions=10,
                 latent_dim=16),
}

# name: (low, high, low inclusive, high inclusive); high None means unbounded.
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "seed": (0, None),
    "n_users": (1, _INT32_MAX),
    "n_items": (1, _INT32_MAX),
    "n_impressions": (1, _INT32_MAX),
    "n_top_categories": (1, 10_000),
    "n_leaf_categories": (1, 1_000_000),
    "n_brands": (1, 1_000_000),
    "n_shops": (1, 1_000_000),
    "n_days": (1, 3_650),
    "n_positions": (1, 100),
    "latent_dim": (1, 512),
    "n_candidates": (1, 100),
}
_FLOAT_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "ctr": (0.0, 1.0, False, False),
    "cvr": (0.0, 1.0, False, False),
    "cart_rate": (0.0, 1.0, False, False),
    "task_correlation": (-1.0, 1.0, True, True),
    "position_bias": (0.0, 10.0, True, True),
    "popularity_skew": (0.0, 5.0, True, True),
    "activity_skew": (0.0, 5.0, True, True),
    "price_sensitivity": (0.0, 10.0, True, True),
    "position_confounding": (0.0, 1.0, True, True),
    "personalisation": (0.0, 1.0, True, True),
    "profile_fill_rate": (0.0, 1.0, True, True),
    "attribute_fill_rate": (0.0, 1.0, True, True),
    "kg_signal": (0.0, 1.0, True, True),
    "target_share": (0.0, 1.0, True, False),
    "domain_shift": (0.0, 1.0, True, True),
    "user_overlap": (0.0, 1.0, True, True),
    "new_item_share": (0.0, 1.0, True, False),
    "taste_drift": (0.0, 1.0, True, True),
    "rating_noise": (0.0, 10.0, True, True),
}


def _interval(low: float, high: float | None, low_closed: bool = True, high_closed: bool = True) -> str:
    """Interval notation for error messages, e.g. ``[0, 1)``, ``[1, 100]`` or ``[0, inf)``."""
    def show(x: float) -> str:
        return f"{x:g}" if isinstance(x, float) else str(x)

    upper = "inf)" if high is None else show(high) + ("]" if high_closed else ")")
    return f"{'[' if low_closed else '('}{show(low)}, {upper}"


def _is_number(value: Any) -> bool:
    """True for real numbers other than booleans."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class ShopSimConfig:
    """Every knob of ShopSim: sizes (defaults are the ``small`` scale) and behaviour, validated on creation.

    Build one with :meth:`from_scale`; change one with :func:`dataclasses.replace` (which validates again).
    """

    scale: str = "small"
    seed: int = 42
    # sizes
    n_users: int = 5_000
    n_items: int = 3_000
    n_impressions: int = 1_000_000
    n_top_categories: int = 10
    n_leaf_categories: int = 100
    n_brands: int = 400
    n_shops: int = 300
    n_days: int = 30
    n_positions: int = 10
    latent_dim: int = 16
    # funnel
    ctr: float = 0.04
    cvr: float = 0.05
    cart_rate: float | None = None
    task_correlation: float = 0.5
    # exposure and behaviour
    position_bias: float = 0.8
    popularity_skew: float = 1.0
    activity_skew: float = 1.0
    n_candidates: int = 5
    personalisation: float = 0.0
    position_confounding: float = 0.5
    price_sensitivity: float = 1.0
    # observability
    profile_fill_rate: float = 0.4
    attribute_fill_rate: float = 0.6
    # knowledge graph
    kg_signal: float = 0.7
    # markets and time
    target_share: float = 0.0
    domain_shift: float = 0.5
    user_overlap: float = 0.2
    new_item_share: float = 0.2
    taste_drift: float = 0.0
    rating_noise: float = 0.7

    def __post_init__(self) -> None:
        check_scale(self.scale)
        for name, (low, high) in _INT_RANGES.items():
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not (
                low <= value and (high is None or value <= high)
            ):
                raise ValueError(f"{name} must be an integer in {_interval(low, high)}, got {value!r}")
        for name, (low, high, low_closed, high_closed) in _FLOAT_RANGES.items():
            value = getattr(self, name)
            if name == "cart_rate" and value is None:
                continue
            inside = _is_number(value) and (low <= value if low_closed else low < value) and (
                value <= high if high_closed else value < high
            )
            if not inside:
                raise ValueError(
                    f"{name} must be a number in {_interval(low, high, low_closed, high_closed)}, got {value!r}"
                )
        if self.cart_rate is not None and self.cart_rate < self.cvr:
            raise ValueError(
                f"cart_rate must be in [cvr, 1) = [{self.cvr:g}, 1): a purchase needs a cart, got {self.cart_rate!r}"
            )
        for name in ("n_leaf_categories", "n_brands", "n_shops"):
            if getattr(self, name) < self.n_top_categories:
                raise ValueError(
                    f"{name} must be in [n_top_categories, inf) = [{self.n_top_categories}, inf) so that "
                    f"every top category has one, got {getattr(self, name)!r}"
                )
        highest = self.mean_examination
        if self.ctr >= highest:
            raise ValueError(
                f"ctr must be in (0, {highest:.4g}): with position_bias={self.position_bias:g} and "
                f"n_positions={self.n_positions} only that share of impressions is even looked at, "
                f"got {self.ctr!r}"
            )

    @classmethod
    def from_scale(cls, scale: str = "small", **knobs: Any) -> ShopSimConfig:
        """The configuration of a scale preset (``tiny``, ``small``, ``full``), with knobs as overrides."""
        check_scale(scale)
        _check_knob_names(knobs)
        return cls(scale=scale, **{**SCALE_PRESETS[scale], **knobs})

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        """Names of every knob (every field except ``scale``)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "scale")

    @property
    def target_cart_rate(self) -> float:
        """The add-to-cart rate per click the generator calibrates to: ``cart_rate``, else 3 x cvr, capped."""
        if self.cart_rate is not None:
            return float(self.cart_rate)
        return float(min(3.0 * self.cvr, self.cvr + 0.5 * (1.0 - self.cvr)))

    @property
    def mean_examination(self) -> float:
        """Mean examination probability over positions, the ceiling of any reachable click rate."""
        positions = np.arange(1, self.n_positions + 1, dtype=np.float64)
        return float(np.mean(positions ** -self.position_bias))


def _check_knob_names(knobs: dict[str, Any]) -> None:
    """Raise a ``TypeError`` that lists the valid knobs if any name in ``knobs`` is not one."""
    valid = ShopSimConfig.knob_names()
    unknown = sorted(set(knobs) - set(valid))
    if unknown:
        raise TypeError(f"unknown ShopSim knob(s) {', '.join(unknown)}; valid knobs: {', '.join(valid)}")


# --------------------------------------------------------------------------------------------------
# Ground truth and the result
# --------------------------------------------------------------------------------------------------

#: Columns (in any frame) that are ground truth: never model features, only for oracles and checks.
GROUND_TRUTH_COLUMNS: frozenset[str] = frozenset({
    # impressions
    "p_examine", "p_click", "p_cart", "p_purchase", "p_ctcvr", "would_purchase", "true_rating",
    # users
    "true_age_band", "true_city_tier", "true_purchasing_power", "true_activity",
    "true_price_sensitivity", "true_bias",
    # items
    "true_price_band", "true_quality", "true_popularity_rank",
    # categories and brands
    "true_log_price_mean", "true_premium",
})


def feature_safe_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of ``frame`` that a model may use: all but :data:`GROUND_TRUTH_COLUMNS`, in order."""
    return [c for c in frame.columns if c not in GROUND_TRUTH_COLUMNS]


@dataclass
class ShopSimData:
    """One generated marketplace: the frames, the latent vectors (ground truth) and the config behind them."""

    config: ShopSimConfig
    impressions: pd.DataFrame = field(repr=False)
    users: pd.DataFrame = field(repr=False)
    items: pd.DataFrame = field(repr=False)
    categories: pd.DataFrame = field(repr=False)
    brands: pd.DataFrame = field(repr=False)
    shops: pd.DataFrame = field(repr=False)
    kg: pd.DataFrame = field(repr=False)
    #: Users' click-space taste in the source market on day 0, shape (n_users, latent_dim).
    user_taste: np.ndarray = field(repr=False)
    #: Items' click-space taste, shape (n_items, latent_dim).
    item_taste: np.ndarray = field(repr=False)
    #: Every latent array by name (click and purchase spaces, target market, drift, entity parts).
    latent: dict[str, np.ndarray] = field(repr=False)
    #: Parameters of the generative model that no frame holds: the calibrated intercepts (``click_intercept``,
    #: ``purchase_intercept``, ``cart_shift``) and each item's ``price_term``. Ground truth, for the ceilings.
    truth: dict[str, Any] = field(default_factory=dict, repr=False)
    generation_s: float = 0.0

    def with_features(
        self,
        item_columns: tuple[str, ...] = ("category_id", "top_category_id", "brand_id", "shop_id", "price"),
        user_columns: tuple[str, ...] = ("age_band", "city_tier", "purchasing_power"),
    ) -> pd.DataFrame:
        """The impressions with observable item and user attributes joined on, ready for feature specs.

        Only observable columns may be joined (ground truth raises), so no truth leaks in by a join.
        """
        leaked = sorted((set(item_columns) | set(user_columns)) & GROUND_TRUTH_COLUMNS)
        if leaked:
            raise ValueError(f"{leaked} are ground truth: models must not see them as features")
        for frame, columns, what in ((self.items, item_columns, "items"), (self.users, user_columns, "users")):
            missing = sorted(set(columns) - set(frame.columns))
            if missing:
                raise KeyError(f"the {what} frame has no column(s) {missing}")
        out = self.impressions.copy()
        item_index = out["item_id"].to_numpy()
        user_index = out["user_id"].to_numpy()
        for column in item_columns:  # ids are positions in the items and users frames
            out[column] = self.items[column].to_numpy()[item_index]
        for column in user_columns:
            out[column] = self.users[column].array.take(user_index)
        return out

    def summary(self) -> dict[str, Any]:
        """Headline numbers of the log: sizes, funnel rates, rating mean, markets, graph and timing."""
        imp = self.impressions
        clicks = int(imp["click"].sum())
        carts = int(imp["cart"].sum())
        purchases = int(imp["purchase"].sum())
        n = len(imp)
        return {
            "scale": self.config.scale,
            "seed": self.config.seed,
            "impressions": n,
            "users": len(self.users),
            "items": len(self.items),
            "active_users": int(imp["user_id"].nunique()),
            "items_shown": int(imp["item_id"].nunique()),
            "clicks": clicks,
            "carts": carts,
            "purchases": purchases,
            "ctr": clicks / n,
            "cart_rate": carts / clicks if clicks else math.nan,
            "cvr": purchases / clicks if clicks else math.nan,
            "ctcvr": purchases / n,
            "rating_mean": float(imp["rating"].mean()) if purchases else math.nan,
            "target_share": float((imp["domain"] == "target").mean()),
            "new_item_share": float((self.items["launch_day"] > 0).mean()),
            "kg_triples": len(self.kg),
            "days": self.config.n_days,
            "generation_s": round(self.generation_s, 3),
        }

    def __repr__(self) -> str:
        c = self.config
        return (f"ShopSimData(scale={c.scale!r}, seed={c.seed}, impressions={len(self.impressions):,}, "
                f"users={len(self.users):,}, items={len(self.items):,}, kg_triples={len(self.kg):,})")


# --------------------------------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------------------------------

def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN when ``labels`` hold a single class (or nothing)."""
    # scikit-learn is imported on first use: it takes seconds to import and generation does not need it.
    from sklearn.metrics import roc_auc_score

    if labels.size == 0 or labels.min() == labels.max():
        return math.nan
    return float(roc_auc_score(labels, scores))


def _logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary log loss, or NaN on an empty subset."""
    from sklearn.metrics import log_loss

    if labels.size == 0:
        return math.nan
    return float(log_loss(labels, probs.astype(np.float64), labels=[0, 1]))


def oracle_metrics(impressions: pd.DataFrame, mask: Any = None) -> dict[str, float]:
    """Scores of the TRUE probabilities on ``impressions`` (or the rows a boolean ``mask`` keeps, by position).

    They are the best any model can reach on those rows. CVR is scored both on clicked rows (the observable
    ``purchase``) and on the entire space (``would_purchase``, known for every impression only in a
    simulator). NaN where a subset has one class.
    """
    frame = impressions if mask is None else impressions[np.asarray(mask, dtype=bool)]
    click = frame["click"].to_numpy()
    purchase = frame["purchase"].to_numpy()
    would = frame["would_purchase"].to_numpy()
    p_click = frame["p_click"].to_numpy()
    p_purchase = frame["p_purchase"].to_numpy()
    p_ctcvr = frame["p_ctcvr"].to_numpy()
    clicked = click == 1
    bought = purchase == 1
    rating_error = frame["true_rating"].to_numpy()[bought] - frame["rating"].to_numpy()[bought]
    return {
        "n_impressions": int(len(frame)),
        "ctr_auc": _auc(click, p_click),
        "ctr_logloss": _logloss(click, p_click),
        "cvr_auc_clicked": _auc(purchase[clicked], p_purchase[clicked]),
        "cvr_logloss_clicked": _logloss(purchase[clicked], p_purchase[clicked]),
        "cvr_auc_entire": _auc(would, p_purchase),
        "cvr_logloss_entire": _logloss(would, p_purchase),
        "ctcvr_auc": _auc(purchase, p_ctcvr),
        "ctcvr_logloss": _logloss(purchase, p_ctcvr),
        "rating_rmse": float(np.sqrt(np.mean(rating_error.astype(np.float64) ** 2))) if bought.any() else math.nan,
    }


# --------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------

def generate(scale: str = "small", seed: int | None = None, *, config: ShopSimConfig | None = None,
             **knobs: Any) -> ShopSimData:
    """Generate a marketplace at a ``scale`` (or from a ``config``, then ``scale`` is ignored), knobs as overrides.

    The same configuration always gives identical frames; each component draws from its own seeded stream.
    """
    start = time.perf_counter()
    _check_knob_names(knobs)
    if seed is not None:
        knobs["seed"] = seed
    cfg = dataclasses.replace(config, **knobs) if config is not None else ShopSimConfig.from_scale(scale, **knobs)
    rngs = {name: np.random.default_rng(s)
            for name, s in zip(_STREAMS, np.random.SeedSequence(cfg.seed).spawn(len(_STREAMS)))}

    catalog = _make_catalog(cfg, rngs["catalog"])
    item_tastes = _make_item_tastes(cfg, catalog, rngs["item_taste"])
    users = _make_users(cfg, rngs["users"])
    user_tastes = _make_user_tastes(cfg, users, rngs["user_taste"])
    domain = _assign_user_domains(cfg, rngs["domains"])
    impressions, truth = _make_impressions(cfg, catalog, users, domain, item_tastes, user_tastes,
                                    rngs["exposure"], rngs["labels"])
    latent = {**item_tastes, **user_tastes}
    return ShopSimData(
        config=cfg,
        impressions=impressions,
        users=_users_frame(cfg, users, domain),
        items=_items_frame(catalog),
        categories=_categories_frame(cfg, catalog),
        brands=_brands_frame(catalog),
        shops=_shops_frame(catalog),
        kg=_make_kg(cfg, catalog),
        user_taste=latent["user_taste_click"],
        item_taste=latent["item_taste_click"],
        latent=latent,
        truth={**truth, "price_term": catalog.price_term},
        generation_s=time.perf_counter() - start,
    )


def _names(rng: np.random.Generator, n: int, syllables: int, suffixes: tuple[str, ...] = ("",)) -> np.ndarray:
    """``n`` distinct made-up names (``Kavelo``, ``Rito Market``) in a random order."""
    base = len(_SYLLABLES)
    capacity = base**syllables * len(suffixes)
    codes = rng.permutation(capacity)[np.arange(n) % capacity]
    parts = [np.array(_SYLLABLES)[(codes // base**k) % base] for k in range(syllables)]
    word = parts[0].astype(object)
    for part in parts[1:]:
        word = word + part
    word = np.array([w.capitalize() for w in word], dtype=object)
    suffix = np.array(suffixes, dtype=object)[codes // base**syllables]
    names = np.where(suffix == "", word, word + " " + suffix)
    repeat = np.arange(n) // capacity
    return np.where(repeat == 0, names, names + " " + (repeat + 1).astype(str).astype(object))


def _pick_in_groups(group_of_member: np.ndarray, n_groups: int, wanted_group: np.ndarray,
                    uniform: np.ndarray) -> np.ndarray:
    """For each ``wanted_group``, a uniformly chosen member (index into ``group_of_member``); every group non-empty."""
    order = np.argsort(group_of_member, kind="stable")
    counts = np.bincount(group_of_member, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    offset = np.minimum((uniform * counts[wanted_group]).astype(np.int64), counts[wanted_group] - 1)
    return order[starts[wanted_group] + offset]


@dataclass
class _Catalog:
    """Arrays of the catalog, by entity; ids of leaves are offset by ``n_top`` in the frames."""

    top_names: np.ndarray
    top_log_price: np.ndarray
    leaf_names: np.ndarray
    leaf_top: np.ndarray
    leaf_log_price: np.ndarray
    leaf_complement: np.ndarray  # partner leaf, -1 for none
    brand_names: np.ndarray
    brand_top: np.ndarray  # primary top category
    brand_pairs: np.ndarray  # (n, 2): brand, top category it is active in
    brand_premium: np.ndarray
    shop_names: np.ndarray
    shop_top: np.ndarray
    item_leaf: np.ndarray
    item_top: np.ndarray
    item_brand: np.ndarray
    item_shop: np.ndarray
    price: np.ndarray
    true_band: np.ndarray
    band_observed: np.ndarray
    quality: np.ndarray
    launch_day: np.ndarray
    popularity_rank: np.ndarray
    price_term: np.ndarray  # relative log price within the leaf plus the leaf's price level
    complements: np.ndarray  # (m, 2): item, complementary item


def _make_catalog(cfg: ShopSimConfig, rng: np.random.Generator) -> _Catalog:
    """Categories, brands, shops and items with prices, quality, launch days and popularity ranks."""
    n_top, n_leaf, n_items = cfg.n_top_categories, cfg.n_leaf_categories, cfg.n_items
    known = len(_TOP_CATEGORIES)
    top_idx = np.arange(n_top)
    top_names = np.array([_TOP_CATEGORIES[t][0] if t < known else f"Category {t + 1}" for t in top_idx], dtype=object)
    extra_price = rng.normal(3.5, 0.6, n_top)
    top_log_price = np.where(top_idx < known, [_TOP_CATEGORIES[t % known][1] for t in top_idx], extra_price)

    # Leaves: leaf l belongs to top l % n_top and is the (l // n_top)-th leaf of it.
    leaf = np.arange(n_leaf)
    leaf_top = leaf % n_top
    rank_in_top = leaf // n_top
    leaf_names = np.array([
        _TOP_CATEGORIES[t][2][k] if t < known and k < len(_TOP_CATEGORIES[t][2]) else f"{top_names[t]} {k + 1}"
        for t, k in zip(leaf_top, rank_in_top)
    ], dtype=object)
    partner = (rank_in_top ^ 1) * n_top + leaf_top
    leaf_complement = np.where((rank_in_top < _N_COMPLEMENT_LEAVES) & (partner < n_leaf), partner, -1)
    leaf_log_price = top_log_price[leaf_top] + rng.normal(0.0, _LEAF_PRICE_SD, n_leaf)
    leaf_price_sd = rng.uniform(*_ITEM_PRICE_SD, n_leaf)

    # Brands: a primary top category (every top has one) plus up to two more.
    n_brands = cfg.n_brands
    brand_top = np.where(np.arange(n_brands) < n_top, np.arange(n_brands) % n_top, rng.integers(0, n_top, n_brands))
    n_extra = np.minimum(rng.integers(0, 3, n_brands), n_top - 1)
    keys = rng.random((n_brands, max(n_top, 3)))
    keys[:, n_top:] = np.inf
    keys[np.arange(n_brands), brand_top] = np.inf
    extra_top = np.argsort(keys, axis=1)[:, :2]
    extra_mask = np.arange(2)[None, :] < n_extra[:, None]
    brand_ids = np.arange(n_brands)
    brand_pairs = np.concatenate([
        np.stack([brand_ids, brand_top], axis=1),
        np.stack([np.broadcast_to(brand_ids[:, None], extra_top.shape)[extra_mask], extra_top[extra_mask]], axis=1),
    ])
    brand_premium = rng.normal(0.0, _BRAND_PREMIUM_SD, n_brands)
    brand_names = _names(rng, n_brands, 3)

    n_shops = cfg.n_shops
    shop_top = np.where(np.arange(n_shops) < n_top, np.arange(n_shops) % n_top, rng.integers(0, n_top, n_shops))
    shop_names = _names(rng, n_shops, 2, _SHOP_SUFFIXES)

    # Items: a leaf (uneven sizes), its top, a brand active there, a shop of that top.
    leaf_weight = rng.gamma(2.0, 1.0, n_leaf)
    item_leaf = rng.choice(n_leaf, size=n_items, p=leaf_weight / leaf_weight.sum())
    item_top = leaf_top[item_leaf]
    item_brand = brand_pairs[_pick_in_groups(brand_pairs[:, 1], n_top, item_top, rng.random(n_items)), 0]
    item_shop = _pick_in_groups(shop_top, n_top, item_top, rng.random(n_items))
    log_price = (leaf_log_price[item_leaf] + brand_premium[item_brand]
                 + leaf_price_sd[item_leaf] * rng.standard_normal(n_items))
    price = np.maximum(np.round(np.exp(log_price), 2), _MIN_PRICE)
    band_draw = rng.random(n_items)
    quality = rng.standard_normal(n_items)
    popularity_noise = rng.standard_normal(n_items)
    launch_order = rng.permutation(n_items)
    launch_draw = rng.integers(1, max(cfg.n_days, 2), n_items)

    # Price bands: quintiles of price within the leaf (equal prices share the lower rank).
    order = np.lexsort((price, item_leaf))
    counts = np.bincount(item_leaf, minlength=n_leaf)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_leaf, sorted_price = item_leaf[order], price[order]
    new_run = np.ones(n_items, dtype=bool)
    new_run[1:] = (sorted_leaf[1:] != sorted_leaf[:-1]) | (sorted_price[1:] != sorted_price[:-1])
    first_of_run = np.maximum.accumulate(np.where(new_run, np.arange(n_items), 0))
    rank = np.empty(n_items, dtype=np.int64)
    rank[order] = first_of_run - starts[sorted_leaf]
    true_band = (rank * _N_PRICE_BANDS // counts[item_leaf]).astype(np.int8)

    n_new = min(round(cfg.new_item_share * n_items), n_items - 1) if cfg.n_days > 1 else 0
    launch_day = np.where(launch_order < n_new, launch_draw, 0).astype(np.int16)
    popularity_rank = np.empty(n_items, dtype=np.int32)
    popularity_rank[np.argsort(-(0.5 * quality + popularity_noise), kind="stable")] = np.arange(1, n_items + 1)
    price_level = leaf_log_price[item_leaf] - leaf_log_price.mean()
    price_term = np.log(price) - leaf_log_price[item_leaf] + _PRICE_LEVEL * price_level

    complements = _complement_pairs(item_leaf, item_brand, leaf_complement, n_leaf, cfg.n_brands, rng)
    return _Catalog(
        top_names=top_names, top_log_price=top_log_price, leaf_names=leaf_names, leaf_top=leaf_top,
        leaf_log_price=leaf_log_price, leaf_complement=leaf_complement, brand_names=brand_names,
        brand_top=brand_top, brand_pairs=brand_pairs, brand_premium=brand_premium, shop_names=shop_names,
        shop_top=shop_top, item_leaf=item_leaf, item_top=item_top, item_brand=item_brand, item_shop=item_shop,
        price=price.astype(np.float32), true_band=true_band, band_observed=band_draw < cfg.attribute_fill_rate,
        quality=quality.astype(np.float32), launch_day=launch_day, popularity_rank=popularity_rank,
        price_term=price_term.astype(np.float32), complements=complements,
    )


def _complement_pairs(item_leaf: np.ndarray, item_brand: np.ndarray, leaf_complement: np.ndarray,
                      n_leaf: int, n_brands: int, rng: np.random.Generator) -> np.ndarray:
    """One complementary item for each item of the first leaf of a complementary pair, same brand where possible."""
    key = item_leaf.astype(np.int64) * n_brands + item_brand
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    primary_leaf = (leaf_complement >= 0) & (np.arange(n_leaf) < leaf_complement)
    heads = np.flatnonzero(primary_leaf[item_leaf])
    if heads.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    draw = rng.random(heads.size)
    partner = leaf_complement[item_leaf[heads]].astype(np.int64)
    same = partner * n_brands + item_brand[heads]
    lo_brand = np.searchsorted(sorted_key, same, "left")
    hi_brand = np.searchsorted(sorted_key, same, "right")
    lo_leaf = np.searchsorted(sorted_key, partner * n_brands, "left")
    hi_leaf = np.searchsorted(sorted_key, (partner + 1) * n_brands, "left")
    use_brand = hi_brand > lo_brand
    lo = np.where(use_brand, lo_brand, lo_leaf)
    width = np.where(use_brand, hi_brand - lo_brand, hi_leaf - lo_leaf)
    found = width > 0
    lo, width = lo[found], width[found]
    tails = order[lo + np.minimum((draw[found] * width).astype(np.int64), width - 1)]
    return np.stack([heads[found], tails], axis=1)


def _entity_mixture(entity: np.ndarray, own: np.ndarray, share: float) -> np.ndarray:
    """``sqrt(share) * entity + sqrt(1 - share) * own``: the entity part carries ``share`` of the variance."""
    return (np.sqrt(share) * entity + np.sqrt(1.0 - share) * own).astype(np.float32)


def _make_item_tastes(cfg: ShopSimConfig, cat: _Catalog, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Item taste vectors in the click and purchase spaces, a ``kg_signal`` share built from graph entities."""
    d = cfg.latent_dim
    scale = 1.0 / np.sqrt(d)
    out: dict[str, np.ndarray] = {}
    for space in ("click", "purchase"):
        tables = [rng.normal(0.0, scale, (size, d)) for size in
                  (cfg.n_top_categories, cfg.n_leaf_categories, cfg.n_brands, cfg.n_shops)]
        own = rng.normal(0.0, scale, (cfg.n_items, d))
        ids = (cat.item_top, cat.item_leaf, cat.item_brand, cat.item_shop)
        entity = sum(w * table[i] for w, table, i in zip(_ENTITY_WEIGHTS, tables, ids))
        out[f"item_entity_{space}"] = entity.astype(np.float32)
        out[f"item_taste_{space}"] = _entity_mixture(entity, own, cfg.kg_signal)
    return out


@dataclass
class _Users:
    """Arrays of the users' true profile and behaviour parameters."""

    age: np.ndarray
    city: np.ndarray
    power: np.ndarray
    observed: np.ndarray  # (n, 3) bool: age, city, power filled in
    activity: np.ndarray
    sensitivity: np.ndarray
    bias: np.ndarray


def _standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (unchanged when constant)."""
    sd = x.std()
    return (x - x.mean()) / (sd if sd > 0 else 1.0)


def _make_users(cfg: ShopSimConfig, rng: np.random.Generator) -> _Users:
    """Profiles (age band, city tier, purchasing power tied to both), fill-in, activity, price sensitivity, bias."""
    n = cfg.n_users
    age = rng.choice(len(_AGE_PROBS), size=n, p=_AGE_PROBS)
    city = rng.choice(len(_CITY_PROBS), size=n, p=_CITY_PROBS)
    # Purchasing power: higher in big cities and in mid-career age bands.
    wealth = (-0.45 * _standardise(city.astype(float)) + 0.35 * _standardise(-np.abs(age - 2.5))
              + 0.82 * rng.standard_normal(n))
    power = np.searchsorted(_POWER_CUTS, _standardise(wealth)).astype(np.int8)
    observed = rng.random((n, 3)) < cfg.profile_fill_rate
    activity = np.exp(cfg.activity_skew * rng.standard_normal(n))
    # Lower purchasing power, higher price sensitivity: what a user buys reveals their level.
    sensitivity = cfg.price_sensitivity * (2.0 - 0.45 * power) * np.exp(_SENSITIVITY_SD * rng.standard_normal(n))
    bias = rng.normal(0.0, _USER_BIAS_SD, n)
    return _Users(age=age.astype(np.int8), city=city.astype(np.int8), power=power, observed=observed,
                  activity=(activity / activity.mean()).astype(np.float32),
                  sensitivity=sensitivity.astype(np.float32), bias=bias.astype(np.float32))


def _make_user_tastes(cfg: ShopSimConfig, users: _Users, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """User tastes per space: a profile part and an individual part; rotated in the target market and over time."""
    d, n = cfg.latent_dim, cfg.n_users
    scale = 1.0 / np.sqrt(d)
    theta = cfg.domain_shift * np.pi / 2

    def draw() -> np.ndarray:
        tables = [rng.normal(0.0, scale, (size, d)) for size in (len(AGE_BANDS), len(CITY_TIERS),
                                                                 len(PURCHASING_POWER_LEVELS))]
        profile = sum(w * table[i] for w, table, i in zip(_PROFILE_WEIGHTS, tables,
                                                          (users.age, users.city, users.power)))
        return _entity_mixture(profile, rng.normal(0.0, scale, (n, d)), _PROFILE_TASTE_SHARE)

    out: dict[str, np.ndarray] = {}
    for space in ("click", "purchase"):
        source, independent, drift = draw(), draw(), draw()
        out[f"user_taste_{space}"] = source
        out[f"user_taste_{space}_target"] = (np.cos(theta) * source + np.sin(theta) * independent).astype(np.float32)
        out[f"user_drift_{space}"] = drift
    return out


def _assign_user_domains(cfg: ShopSimConfig, rng: np.random.Generator) -> np.ndarray:
    """Market of each user: 0 source only, 1 target only, 2 both (``user_overlap`` of the target users)."""
    n = cfg.n_users
    order = rng.permutation(n)
    domain = np.zeros(n, dtype=np.int8)
    if cfg.target_share == 0:
        return domain
    n_target = min(max(round(cfg.target_share * n), 1), n)
    n_both = round(cfg.user_overlap * n_target)
    n_target_only = min(n_target - n_both, n - 1)
    domain[order[:n_target_only]] = 1
    domain[order[n_target_only:n_target_only + n_both]] = 2
    return domain


def _sample_weighted(uniform: np.ndarray, members: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Members drawn with probability proportional to their weight, one per uniform number."""
    cum = np.cumsum(weights[members], dtype=np.float64)
    return members[np.minimum(np.searchsorted(cum, uniform * cum[-1], "right"), members.size - 1)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function (inputs clipped to +-60 so that float32 never overflows)."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _bisect(mean_at: Callable[[float], float], target: float, low: float, high: float, steps: int = 60) -> float:
    """The ``x`` in [low, high] where the increasing function ``mean_at(x)`` equals ``target``."""
    for _ in range(steps):
        mid = 0.5 * (low + high)
        if mean_at(mid) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def _logged_positions(cfg: ShopSimConfig, random_position: np.ndarray, score: np.ndarray, day: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """Slots of a logging policy: within each day, impressions ranked by a noisy copy of the recommender's score.

    The ranking key is ``sqrt(c) * score + sqrt(1 - c) * noise`` (score standardised, c = ``position_confounding``),
    cut into ``n_positions`` equal groups, the highest keys in slot 1: every slot keeps a tenth of a day's traffic,
    and better matches sit higher, as in a real log. At c = 0 the slots stay the uniform random ones.
    """
    noise = rng.standard_normal(score.size, dtype=np.float32)  # drawn at every c: the stream's length is fixed
    c = cfg.position_confounding
    if c == 0 or score.size == 0:
        return random_position
    sd = float(score.std())
    key = np.sqrt(c) * (score - score.mean()) / (sd if sd > 0 else 1.0) + np.sqrt(1.0 - c) * noise
    order = np.lexsort((-key, day))  # by day, then best key first
    sorted_day = day[order]
    starts = np.searchsorted(sorted_day, sorted_day, "left")
    counts = np.searchsorted(sorted_day, sorted_day, "right") - starts
    rank = np.arange(score.size) - starts
    position = np.empty(score.size, dtype=np.int8)
    position[order] = (1 + rank * cfg.n_positions // counts).astype(np.int8)
    return position


def _make_impressions(cfg: ShopSimConfig, cat: _Catalog, users: _Users, user_domain: np.ndarray,
                      item_tastes: dict[str, np.ndarray], user_tastes: dict[str, np.ndarray],
                      rng: np.random.Generator, rng_labels: np.random.Generator
                      ) -> tuple[pd.DataFrame, dict[str, float]]:
    """The impression log (who saw what, when and where, the true probabilities and the drawn labels) and the
    calibrated intercepts."""
    n, n_users, d = cfg.n_impressions, cfg.n_users, cfg.latent_dim
    root_d = np.float32(np.sqrt(d))

    # When, where and in which market.
    days = np.arange(cfg.n_days)
    day_weight = 1.0 + _WEEKLY_AMPLITUDE * np.sin(2 * np.pi * days / 7)
    timestamp = np.sort(rng.choice(cfg.n_days, size=n, p=day_weight / day_weight.sum()) * _SECONDS_PER_DAY
                        + rng.integers(0, _SECONDS_PER_DAY, n)).astype(np.int32)
    day = (timestamp // _SECONDS_PER_DAY).astype(np.int16)
    position = rng.integers(1, cfg.n_positions + 1, n).astype(np.int8)
    is_target = np.zeros(n, dtype=bool)
    is_target[rng.choice(n, size=round(cfg.target_share * n), replace=False)] = True

    # Who: users by activity, among those active in the impression's market.
    user_draw = rng.random(n)
    user = np.empty(n, dtype=np.int32)
    all_users = np.arange(n_users)
    for flag, members in ((False, all_users[user_domain != 1]), (True, all_users[user_domain != 0])):
        rows = is_target == flag
        if rows.any():
            user[rows] = _sample_weighted(user_draw[rows], members, users.activity)

    # What: candidates from launched items by popularity; the recommender shows the one it scores best.
    by_launch = np.argsort(cat.launch_day, kind="stable")
    popularity = cat.popularity_rank.astype(np.float64) ** -cfg.popularity_skew
    cum_pop = np.cumsum(popularity[by_launch])
    launched = np.searchsorted(cat.launch_day[by_launch], days, "right")
    taste_rows = user.astype(np.int64) + n_users * is_target  # rows of the stacked source/target tables
    tables = {space: np.concatenate([user_tastes[f"user_taste_{space}"], user_tastes[f"user_taste_{space}_target"]])
              for space in ("click", "purchase")}
    phase = (cfg.taste_drift * np.pi / 2 * days / max(cfg.n_days - 1, 1)).astype(np.float32)
    item_click, item_purchase = item_tastes["item_taste_click"], item_tastes["item_taste_purchase"]
    k = cfg.n_candidates
    pi = np.float32(cfg.personalisation)
    mean_sensitivity = np.float32(users.sensitivity.mean())
    item = np.empty(n, dtype=np.int32)
    shown_score = np.empty(n, dtype=np.float32)
    z_click = np.empty(n, dtype=np.float32)
    z_other = np.empty(n, dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        sl = slice(lo, min(lo + _CHUNK, n))
        m = sl.stop - lo
        limit = cum_pop[launched[day[sl]] - 1]
        candidate = by_launch[np.minimum(np.searchsorted(cum_pop, rng.random((m, k)) * limit[:, None], "right"),
                                         launched[day[sl]][:, None] - 1)]
        noise = rng.standard_normal((m, k), dtype=np.float32) * np.float32(_EXPOSURE_NOISE)
        u_click = tables["click"][taste_rows[sl]]
        u_purchase = tables["purchase"][taste_rows[sl]]
        if cfg.taste_drift > 0:
            cos = np.cos(phase[day[sl]])[:, None]
            sin = np.sin(phase[day[sl]])[:, None]
            u_click = cos * u_click + sin * user_tastes["user_drift_click"][user[sl]]
            u_purchase = cos * u_purchase + sin * user_tastes["user_drift_purchase"][user[sl]]
        affinity = np.einsum("md,mkd->mk", u_click, item_click[candidate]) * root_d
        # The recommender's score: the item's appeal (quality, price for the average user) and, as far as it is
        # personalised, the user's own taste and price sensitivity; noise below is its error.
        sensitivity = (1.0 - pi) * mean_sensitivity + pi * users.sensitivity[user[sl], None]
        score = (pi * _CLICK_AFFINITY * affinity + _CLICK_QUALITY * cat.quality[candidate]
                 - _CLICK_PRICE * sensitivity * cat.price_term[candidate])
        noisy = score + noise
        best = np.argmax(noisy, axis=1)
        rows = np.arange(m)
        item[sl] = candidate[rows, best]
        shown_score[sl] = noisy[rows, best]
        z_click[sl] = affinity[rows, best]
        z_other[sl] = np.einsum("md,md->m", u_purchase, item_purchase[item[sl]]) * root_d

    # Where: the logging policy gives the best-scored impressions of a day the top slots, with noise.
    position = _logged_positions(cfg, position, shown_score, day, rng)

    # True probabilities, with intercepts calibrated to the target rates.
    rho = cfg.task_correlation
    z_purchase = (rho * z_click + np.sqrt(1.0 - rho**2) * z_other).astype(np.float32)
    quality = cat.quality[item]
    price_effect = users.sensitivity[user] * cat.price_term[item]
    click_logit = (_CLICK_AFFINITY * z_click + _CLICK_QUALITY * quality + users.bias[user]
                   - _CLICK_PRICE * price_effect)
    purchase_logit = (_BUY_AFFINITY * z_purchase + _BUY_QUALITY * quality - price_effect
                      + np.float32(_BUY_POWER) * (users.power[user] - 2).astype(np.float32))
    examine = (position.astype(np.float32) ** np.float32(-cfg.position_bias)).astype(np.float32)

    sub = np.linspace(0, n - 1, min(n, _CALIBRATION_ROWS)).astype(np.int64)
    c_logit, c_exam, b_logit = click_logit[sub].astype(np.float64), examine[sub], purchase_logit[sub].astype(np.float64)
    click_bias = _bisect(lambda b: np.mean(c_exam * _sigmoid(c_logit + b)), cfg.ctr, -40.0, 40.0)
    weight = c_exam * _sigmoid(c_logit + click_bias)
    buy_bias = _bisect(lambda b: np.average(_sigmoid(b_logit + b), weights=weight), cfg.cvr, -40.0, 40.0)
    cart_shift = _bisect(lambda s: np.average(_sigmoid(b_logit + buy_bias + s), weights=weight),
                         cfg.target_cart_rate, 0.0, 40.0)

    p_click = (examine * _sigmoid(click_logit + np.float32(click_bias))).astype(np.float32)
    p_purchase = _sigmoid(purchase_logit + np.float32(buy_bias)).astype(np.float32)
    p_cart = np.maximum(_sigmoid(purchase_logit + np.float32(buy_bias + cart_shift)).astype(np.float32), p_purchase)
    true_rating = (1.0 + 4.0 * _sigmoid(_RATING_BASE + _RATING_AFFINITY * z_purchase
                                        + _RATING_QUALITY * quality)).astype(np.float32)

    # Labels: one uniform for the click, one shared by cart and purchase so that purchase <= cart <= click.
    u_click_draw = rng_labels.random(n, dtype=np.float32)
    u_funnel = rng_labels.random(n, dtype=np.float32)
    rating_noise = rng_labels.standard_normal(n, dtype=np.float32)
    click = u_click_draw < p_click
    would_purchase = u_funnel < p_purchase
    cart = click & (u_funnel < p_cart)
    purchase = click & would_purchase
    rating = np.where(purchase, np.clip(np.round(true_rating + cfg.rating_noise * rating_noise), 1, 5),
                      np.nan).astype(np.float32)

    intercepts = {"click_intercept": float(click_bias), "purchase_intercept": float(buy_bias),
                  "cart_shift": float(cart_shift)}
    frame = pd.DataFrame({
        "impression_id": np.arange(n, dtype=np.int32),
        "user_id": user,
        "item_id": item,
        "timestamp": timestamp,
        "day": day,
        "position": position,
        "domain": pd.Categorical.from_codes(is_target.astype(np.int8), categories=["source", "target"]),
        "click": click.astype(np.int8),
        "cart": cart.astype(np.int8),
        "purchase": purchase.astype(np.int8),
        "rating": rating,
        "p_examine": examine,
        "p_click": p_click,
        "p_cart": p_cart,
        "p_purchase": p_purchase,
        "p_ctcvr": (p_click * p_purchase).astype(np.float32),
        "would_purchase": would_purchase.astype(np.int8),
        "true_rating": true_rating,
    })
    return frame, intercepts


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------

def _nullable(values: np.ndarray, observed: np.ndarray, dtype: str = "Int8") -> pd.arrays.IntegerArray:
    """A nullable integer array: ``values`` where ``observed``, ``<NA>`` elsewhere."""
    return pd.arrays.IntegerArray(values.astype(dtype.lower()), ~np.asarray(observed, dtype=bool))


def _users_frame(cfg: ShopSimConfig, users: _Users, domain: np.ndarray) -> pd.DataFrame:
    """The users frame: observable profile (partly ``<NA>``), market, and the true profile and parameters."""
    return pd.DataFrame({
        "user_id": np.arange(cfg.n_users, dtype=np.int32),
        "domain": pd.Categorical.from_codes(domain, categories=["source", "target", "both"]),
        "age_band": _nullable(users.age, users.observed[:, 0]),
        "city_tier": _nullable(users.city, users.observed[:, 1]),
        "purchasing_power": _nullable(users.power, users.observed[:, 2]),
        "true_age_band": users.age,
        "true_city_tier": users.city,
        "true_purchasing_power": users.power,
        "true_activity": users.activity,
        "true_price_sensitivity": users.sensitivity,
        "true_bias": users.bias,
    })


def _items_frame(cat: _Catalog) -> pd.DataFrame:
    """The items frame: catalog ids, price, labelled price band (partly ``<NA>``), launch day, true attributes."""
    n_top = len(cat.top_names)
    return pd.DataFrame({
        "item_id": np.arange(cat.item_leaf.size, dtype=np.int32),
        "category_id": (cat.item_leaf + n_top).astype(np.int32),
        "top_category_id": cat.item_top.astype(np.int32),
        "brand_id": cat.item_brand.astype(np.int32),
        "shop_id": cat.item_shop.astype(np.int32),
        "price": cat.price,
        "price_band": _nullable(cat.true_band, cat.band_observed),
        "launch_day": cat.launch_day,
        "true_price_band": cat.true_band,
        "true_quality": cat.quality,
        "true_popularity_rank": cat.popularity_rank,
    })


def _categories_frame(cfg: ShopSimConfig, cat: _Catalog) -> pd.DataFrame:
    """Top categories (ids 0..n_top-1) then leaf categories, with parent and complementary leaf."""
    n_top, n_leaf = cfg.n_top_categories, cfg.n_leaf_categories
    complement = np.where(cat.leaf_complement >= 0, cat.leaf_complement + n_top, 0)
    return pd.DataFrame({
        "category_id": np.arange(n_top + n_leaf, dtype=np.int32),
        "name": np.concatenate([cat.top_names, cat.leaf_names]).astype(str),
        "level": np.repeat(["top", "leaf"], [n_top, n_leaf]).astype(str),
        "parent_id": _nullable(np.concatenate([np.zeros(n_top, int), cat.leaf_top]),
                               np.arange(n_top + n_leaf) >= n_top, "Int32"),
        "complement_id": _nullable(np.concatenate([np.zeros(n_top, int), complement]),
                                   np.concatenate([np.zeros(n_top, bool), cat.leaf_complement >= 0]), "Int32"),
        "true_log_price_mean": np.concatenate([cat.top_log_price, cat.leaf_log_price]).astype(np.float32),
    })


def _brands_frame(cat: _Catalog) -> pd.DataFrame:
    """Brands: name, primary top category, how many top categories they are active in, true price premium."""
    n = cat.brand_names.size
    return pd.DataFrame({
        "brand_id": np.arange(n, dtype=np.int32),
        "name": cat.brand_names.astype(str),
        "top_category_id": cat.brand_top.astype(np.int32),
        "n_top_categories": np.bincount(cat.brand_pairs[:, 0], minlength=n).astype(np.int8),
        "true_premium": cat.brand_premium.astype(np.float32),
    })


def _shops_frame(cat: _Catalog) -> pd.DataFrame:
    """Shops: name and the top category they sell in."""
    return pd.DataFrame({
        "shop_id": np.arange(cat.shop_names.size, dtype=np.int32),
        "name": cat.shop_names.astype(str),
        "top_category_id": cat.shop_top.astype(np.int32),
    })


def _entities(prefix: str, ids: np.ndarray) -> np.ndarray:
    """Entity strings such as ``item:12`` for an array of ids."""
    return np.char.add(prefix, np.asarray(ids).astype(str)).astype(object)


def _make_kg(cfg: ShopSimConfig, cat: _Catalog) -> pd.DataFrame:
    """The product knowledge graph as typed ``head, relation, tail`` triples over item/category/brand/shop entities."""
    n_top = cfg.n_top_categories
    items = np.arange(cfg.n_items)
    leaves = np.arange(cfg.n_leaf_categories)
    parts = [
        ("belongs_to", _entities("item:", items), _entities("category:", cat.item_leaf + n_top)),
        ("subcategory_of", _entities("category:", leaves + n_top), _entities("category:", cat.leaf_top)),
        ("made_by", _entities("item:", items), _entities("brand:", cat.item_brand)),
        ("active_in", _entities("brand:", cat.brand_pairs[:, 0]), _entities("category:", cat.brand_pairs[:, 1])),
        ("sold_by", _entities("item:", items), _entities("shop:", cat.item_shop)),
        ("complements", _entities("item:", cat.complements[:, 0]), _entities("item:", cat.complements[:, 1])),
    ]
    return pd.DataFrame({
        "head": np.concatenate([h for _, h, _ in parts]).astype(str),
        "relation": np.concatenate([np.full(h.size, r, dtype=object) for r, h, _ in parts]).astype(str),
        "tail": np.concatenate([t for _, _, t in parts]).astype(str),
    })
