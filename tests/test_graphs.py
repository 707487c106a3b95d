"""utils.graphs: triples to integer ids, the networkx view, splits and filtered link-prediction ranks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from utils import graphs


def _frame() -> pd.DataFrame:
    """Four items in two categories, two brands, one complement; one duplicate triple."""
    return pd.DataFrame({
        "head": ["item:1", "item:2", "item:3", "item:4", "item:1", "item:2", "item:3", "item:4", "item:1",
                 "category:b", "item:1"],
        "relation": ["belongs_to"] * 4 + ["made_by"] * 4 + ["complements", "subcategory_of", "belongs_to"],
        "tail": ["category:a", "category:a", "category:b", "category:b", "brand:x", "brand:x", "brand:y",
                 "brand:y", "item:3", "category:a", "category:a"],
    })


def test_index_numbers_sorted_names_and_drops_duplicates() -> None:
    index = graphs.TripleIndex.from_frame(_frame())
    assert list(index.entities) == sorted(index.entities)
    assert list(index.relations) == ["belongs_to", "complements", "made_by", "subcategory_of"]
    assert index.triples.shape == (10, 3) and index.triples.dtype == np.int64
    assert index.n_entities == 8 and index.n_relations == 4
    decoded = index.decode(index.triples)
    assert set(map(tuple, decoded.to_numpy())) == set(map(tuple, _frame().drop_duplicates().to_numpy()))
    np.testing.assert_array_equal(index.encode(decoded), index.triples)


def test_index_lookups_and_errors() -> None:
    index = graphs.TripleIndex.from_frame(_frame())
    assert index.entities[index.entity_ids(["brand:y"])[0]] == "brand:y"
    with pytest.raises(KeyError, match="unknown entity name.*'item:9'"):
        index.entity_ids(["item:1", "item:9"])
    with pytest.raises(KeyError, match="unknown relation"):
        index.relation_ids("sold_by")
    with pytest.raises(KeyError, match="no column"):
        graphs.TripleIndex.from_frame(_frame().rename(columns={"tail": "object"}))
    with pytest.raises(ValueError, match="missing values"):
        graphs.TripleIndex.from_frame(_frame().assign(tail=lambda f: f["tail"].where(f.index != 2)))
    with pytest.raises(ValueError, match="empty"):
        graphs.TripleIndex.from_frame(_frame().iloc[:0])
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        index.decode(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="only 8"):
        index.decode(np.array([[8, 0, 0]]))


def test_entity_types() -> None:
    assert list(graphs.entity_type(["item:1", "m.0bln8", "brand:x:y"])) == ["item", "entity", "brand"]


def test_relation_and_degree_tables() -> None:
    index = graphs.TripleIndex.from_frame(_frame())
    table = graphs.relation_table(index)
    assert table.loc["belongs_to", "triples"] == 4
    assert table.loc["belongs_to", "heads per tail"] == 2.0 and table.loc["belongs_to", "shape"] == "N-to-1"
    assert table.loc["complements", "shape"] == "1-to-1"
    assert table.loc["made_by", "head type"] == "item" and table.loc["made_by", "tail type"] == "brand"
    degrees = graphs.degree_table(index)
    assert degrees.loc["item", "entities"] == 4
    assert degrees.loc["category", "max_degree"] == 3  # category:a: two items and one subcategory
    assert degrees["entities"].sum() == index.n_entities


def test_networkx_view_and_neighbourhood() -> None:
    graph = graphs.to_networkx(_frame().drop_duplicates())
    assert graph.number_of_nodes() == 8 and graph.number_of_edges() == 10
    assert graph.nodes["brand:x"]["kind"] == "brand"
    near = graphs.neighbourhood(graph, "item:1", radius=1)
    assert set(near.nodes) == {"item:1", "category:a", "brand:x", "item:3"}
    two = graphs.neighbourhood(graph, "item:1", radius=2, max_nodes=6)
    assert len(two) == 6 and set(near.nodes) <= set(two.nodes)  # the first ring kept whole
    with pytest.raises(KeyError, match="not a node"):
        graphs.neighbourhood(graph, "item:99")
    ax = graphs.draw_neighbourhood(graph, "item:1", labels={"category:a": "Phones"})
    assert "Phones" in [text.get_text() for text in ax.texts]
    assert graphs.to_networkx(graphs.TripleIndex.from_frame(_frame())).number_of_edges() == 10


@pytest.mark.parametrize("by", graphs.SPLIT_UNITS)
def test_split_keeps_every_entity_in_training(by) -> None:
    rng = np.random.default_rng(0)
    triples = np.stack([rng.integers(0, 300, 2000), rng.integers(0, 5, 2000), rng.integers(0, 300, 2000)], axis=1)
    split = graphs.split_triples(triples, valid_fraction=0.1, test_fraction=0.2, seed=3, by=by)
    assert sum(split.sizes().values()) == len(triples)
    seen = set(split.train[:, 0]) | set(split.train[:, 2])
    for part in (split.valid, split.test):
        assert set(part[:, 0]) <= seen and set(part[:, 2]) <= seen
    assert 0.15 < len(split.test) / len(triples) < 0.25
    again = graphs.split_triples(triples, valid_fraction=0.1, test_fraction=0.2, seed=3, by=by)
    np.testing.assert_array_equal(split.test, again.test)
    with pytest.raises(ValueError, match="test_fraction"):
        graphs.split_triples(triples, test_fraction=0.0)


class _TableScorer:
    """Scores from a fixed (head or tail) x entity table, for hand-checkable ranks."""

    def __init__(self, tail_scores: np.ndarray, head_scores: np.ndarray) -> None:
        self.tail_scores, self.head_scores = tail_scores, head_scores

    def score_tails(self, heads, relations):
        return self.tail_scores[np.asarray(heads)]

    def score_heads(self, relations, tails):
        return self.head_scores[np.asarray(tails)]


def test_filtered_ranks_by_hand() -> None:
    # 5 entities, one relation. Known: (0,0,1), (0,0,2), (3,0,2). Test triple (0,0,2).
    known = np.array([[0, 0, 1], [0, 0, 2], [3, 0, 2]])
    test = np.array([[0, 0, 2]])
    tails = np.zeros((5, 5))
    tails[0] = [0.9, 0.8, 0.5, 0.5, 0.1]  # tail 2 scores 0.5: entity 0 above, 1 filtered, 3 tied
    heads = np.zeros((5, 5))
    heads[2] = [0.2, 0.7, 0.0, 0.9, 0.3]  # head 0 scores 0.2: 1 and 4 above, 3 filtered
    ranks = graphs.filtered_ranks(_TableScorer(tails, heads), test, known, 5)
    by_side = ranks.set_index("side")["rank"]
    assert by_side["tail"] == 1 + 1 + 0.5  # one higher (entity 0), one tie (entity 3) counts half
    assert by_side["head"] == 1 + 2
    unfiltered = graphs.filtered_ranks(_TableScorer(tails, heads), test, test, 5, side="tail")
    assert unfiltered["rank"].iloc[0] == 1 + 2 + 0.5  # entity 1 now competes


def test_constant_model_gets_the_middle_rank() -> None:
    known = np.array([[0, 0, 1], [0, 0, 2], [3, 0, 2]])
    ranks = graphs.random_ranks(np.array([[0, 0, 2]]), known, 10)
    # tail: 10 entities, entity 1 filtered -> 9 candidates -> middle rank 5; head: 3 filtered -> 5
    assert list(ranks["rank"]) == [5.0, 5.0]


def test_filtered_ranks_batches_agree_and_check_shapes() -> None:
    rng = np.random.default_rng(1)
    triples = np.stack([rng.integers(0, 30, 200), rng.integers(0, 3, 200), rng.integers(0, 30, 200)], axis=1)
    scorer = _TableScorer(rng.random((30, 30)), rng.random((30, 30)))
    one = graphs.filtered_ranks(scorer, triples[:50], triples, 30, batch_size=7)
    two = graphs.filtered_ranks(scorer, triples[:50], triples, 30, batch_size=500)
    np.testing.assert_array_equal(one["rank"], two["rank"])
    with pytest.raises(ValueError, match="scored shape"):
        graphs.filtered_ranks(scorer, triples[:5], triples, 31)
    with pytest.raises(ValueError, match="side"):
        graphs.filtered_ranks(scorer, triples[:5], triples, 30, side="both ways")


def test_link_prediction_metrics_by_hand() -> None:
    out = graphs.link_prediction_metrics(np.array([1.0, 2.0, 4.0, 20.0]))
    assert out["mrr"] == pytest.approx((1 + 0.5 + 0.25 + 0.05) / 4)
    assert out["hits@1"] == 0.25 and out["hits@3"] == 0.5 and out["hits@10"] == 0.75
    assert out["mean_rank"] == pytest.approx(6.75)
    with pytest.raises(ValueError, match="start at 1"):
        graphs.link_prediction_metrics([0.5])
    frame = pd.DataFrame({"head": 0, "relation": [0, 0, 1, 1], "tail": 1, "side": "tail", "rank": [1.0, 3.0, 2.0, 2.0]})
    table = graphs.link_prediction_table(frame, ["a", "b"], by="relation")
    assert table.loc["a", "mrr"] == pytest.approx((1 + 1 / 3) / 2) and table.loc["b", "queries"] == 2


def test_filtered_rank_of_one_query() -> None:
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    assert graphs.filtered_rank(scores, 1, [1]) == 1 + 1 + 0.5  # entity 3 above, entity 2 tied
    assert graphs.filtered_rank(scores, 1, [1, 3]) == 1.5  # entity 3 is another true answer: filtered
    assert graphs.filtered_rank(np.zeros(5), 0, [0]) == 3.0  # a constant model: the middle of 5
    with pytest.raises(ValueError, match="not an entity id"):
        graphs.filtered_rank(scores, 4, [])


def test_link_prediction_table_by_several_columns() -> None:
    frame = pd.DataFrame({"head": 0, "relation": [0, 0, 1], "tail": 1, "side": ["head", "tail", "tail"],
                          "rank": [1.0, 2.0, 4.0]})
    table = graphs.link_prediction_table(frame, ["a", "b"], by=["relation", "side"])
    assert table.loc[("a", "tail"), "mrr"] == 0.5 and table.loc[("b", "tail"), "hits@3"] == 0.0


# --------------------------------------------------------------------------------------------------
# Splits by pair, leaks through twin and inverse relations
# --------------------------------------------------------------------------------------------------


def _twin_graph(seed: int, n_entities: int = 200, n_pairs: int = 600) -> np.ndarray:
    """Relation 0 on random pairs, 1 its inverse on every pair, 2 a twin of 0 on half of them, 3 random."""
    rng = np.random.default_rng(seed)
    pairs = np.unique(rng.integers(0, n_entities, (n_pairs, 2)), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    h, t = pairs[:, 0], pairs[:, 1]
    twin = rng.random(len(pairs)) < 0.5
    other = rng.integers(0, n_entities, (n_pairs // 2, 2))
    parts = [np.stack([h, np.zeros_like(h), t], 1), np.stack([t, np.ones_like(h), h], 1),
             np.stack([h[twin], np.full(twin.sum(), 2), t[twin]], 1),
             np.stack([other[:, 0], np.full(len(other), 3), other[:, 1]], 1)]
    return np.unique(np.concatenate(parts), axis=0)


def _pairs(triples: np.ndarray) -> set[frozenset]:
    return {frozenset((int(h), int(t))) for h, _, t in triples}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pair_split_holds_out_every_pair(seed) -> None:
    triples = _twin_graph(seed)
    split = graphs.split_triples(triples, valid_fraction=0.1, test_fraction=0.2, seed=seed)
    assert sum(split.sizes().values()) == len(triples)
    train_pairs, valid_pairs, test_pairs = _pairs(split.train), _pairs(split.valid), _pairs(split.test)
    assert not (train_pairs & valid_pairs) and not (train_pairs & test_pairs) and not (valid_pairs & test_pairs)
    seen = set(split.train[:, 0]) | set(split.train[:, 2])
    for part in (split.valid, split.test):
        assert set(part[:, 0]) <= seen and set(part[:, 2]) <= seen and set(part[:, 1]) <= set(split.train[:, 1])
    assert 0.15 < len(split.test) / len(triples) < 0.21 and 0.05 < len(split.valid) / len(triples) < 0.11
    table = graphs.leakage_table(split)
    assert (table["any"] == 0).all() and list(table.index) == ["valid", "test"]
    again = graphs.split_triples(triples, valid_fraction=0.1, test_fraction=0.2, seed=seed)
    np.testing.assert_array_equal(split.test, again.test)
    other = graphs.split_triples(triples, valid_fraction=0.1, test_fraction=0.2, seed=seed + 10)
    assert not np.array_equal(split.test, other.test)


def test_triple_split_leaks_on_inverse_twins_and_the_report_says_so() -> None:
    triples = _twin_graph(0)
    split = graphs.split_triples(triples, valid_fraction=0.1, test_fraction=0.2, seed=0, by="triple")
    test = graphs.pair_leakage(split.train, split.test)
    assert test["triples"] == len(split.test)
    # Relations 0 to 2 (five sixths of the triples) have an inverse twin, left in training 70 % of the time.
    assert test["any"] > 0.5
    assert test["another relation reversed"] > 0.4 and test["same relation reversed"] < 0.05
    assert np.mean(graphs.leaked(split.train, split.test)) == pytest.approx(test["any"])


def test_pair_leakage_shares_by_hand() -> None:
    train = np.array([[0, 0, 1], [2, 0, 3], [6, 0, 5], [5, 2, 6], [7, 1, 8], [9, 0, 9]])
    test = np.array([
        [1, 0, 0],  # (0, 0, 1) in training: same relation reversed
        [7, 0, 8],  # (7, 1, 8): another relation, same direction
        [3, 1, 2],  # (2, 0, 3): another relation, reversed
        [5, 0, 6],  # (6, 0, 5) and (5, 2, 6): same relation reversed and another relation same direction
        [4, 0, 5],  # clean: training never links 4 and 5
    ])
    out = graphs.pair_leakage(train, test)
    assert out == {"triples": 5.0, "same relation reversed": 0.4, "another relation same direction": 0.4,
                   "another relation reversed": 0.2, "any": 0.8}
    assert list(graphs.leaked(train, test)) == [True, True, True, True, False]
    with pytest.raises(ValueError, match="no held-out"):
        graphs.pair_leakage(train, test[:0])


def test_mark_leaked_splits_the_metrics() -> None:
    train = np.array([[0, 0, 1], [2, 1, 3]])
    ranks = pd.DataFrame({"head": [1, 4, 1, 4], "relation": 0, "tail": [0, 5, 0, 5],
                          "side": ["tail", "tail", "head", "head"], "rank": [1.0, 4.0, 1.0, 2.0]})
    marked = graphs.mark_leaked(ranks, train)
    assert list(marked["leaked"]) == [True, False, True, False] and "leaked" not in ranks
    table = graphs.link_prediction_table(marked, by="leaked")
    assert table.loc[True, "mrr"] == 1.0 and table.loc[False, "mrr"] == pytest.approx((0.25 + 0.5) / 2)
    with pytest.raises(KeyError, match="filtered_ranks"):
        graphs.mark_leaked(ranks.drop(columns="tail"), train)


def test_relation_overlap_finds_the_planted_inverse_and_twin() -> None:
    triples = _twin_graph(0)
    table = graphs.relation_overlap(triples, relations=["acts_in", "has_actor", "performs_in", "random"])
    row = table.set_index(["relation", "other"])
    assert row.loc[("acts_in", "has_actor"), "reversed"] == 1.0
    assert row.loc[("acts_in", "has_actor"), "same direction"] < 0.05  # only where a random pair came both ways
    assert row.loc[("has_actor", "acts_in"), "reversed"] == 1.0
    assert row.loc[("performs_in", "acts_in"), "same direction"] == 1.0  # every twin pair is an acts_in pair
    assert 0.4 < row.loc[("acts_in", "performs_in"), "same direction"] < 0.6  # on half of them
    assert row.loc[("acts_in", "has_actor"), "pairs"] == (triples[:, 1] == 0).sum()
    assert set(table.head(4)["other"]) <= {"acts_in", "has_actor", "performs_in"}  # twins and inverses first
    random_rows = table[table["relation"] == "random"]
    assert (random_rows[["same direction", "reversed"]] < 0.1).all().all()
    assert graphs.relation_overlap(triples, min_share=0.3)[["same direction", "reversed"]].max(axis=1).min() > 0.3


def test_split_arguments_are_checked() -> None:
    triples = _twin_graph(0)
    with pytest.raises(ValueError, match="by must be one of"):
        graphs.split_triples(triples, by="relation")
    for valid, test in ((-0.1, 0.1), (0.1, 0.0), (0.5, 0.5), (0.1, float("nan"))):
        with pytest.raises(ValueError, match="test_fraction"):
            graphs.split_triples(triples, valid_fraction=valid, test_fraction=test)
    with pytest.raises(ValueError, match="no triples"):
        graphs.split_triples(np.zeros((0, 3), dtype=int))
    with pytest.raises(TypeError, match="integer"):
        graphs.split_triples(triples.astype(float))
