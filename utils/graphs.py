"""Knowledge graphs as integer triples: indexing, a networkx view for exploring, and link-prediction evaluation.

A knowledge graph is a set of typed ``(head, relation, tail)`` triples such as ``(item:12, made_by,
brand:7)``. Embedding models (``utils.kge``) need integers, so :class:`TripleIndex` numbers the entities
and relations; a ``networkx`` multigraph shows a small neighbourhood; and :func:`filtered_ranks` scores
a model the way the link-prediction literature does (filtered MRR and Hits@K, Bordes et al., 2013).

    >>> index = TripleIndex.from_frame(shop.kg)                   # doctest: +SKIP
    >>> split = split_triples(index.triples, test_fraction=0.1)   # doctest: +SKIP
    >>> ranks = filtered_ranks(model, split.test, index.triples, index.n_entities)   # doctest: +SKIP
    >>> link_prediction_metrics(ranks)                            # doctest: +SKIP

:func:`split_triples` holds out whole entity pairs, so that no test pair is linked in training under a twin or
an inverse relation (the leak that made FB15k easy); :func:`pair_leakage` and :func:`relation_overlap` measure
that leak on any split and graph, and :func:`mark_leaked` scores leaked and clean test triples apart.

Entity names may carry a type as a prefix, ``type:id`` (ShopSim's ``item:12``, ``brand:7``); names
without a colon (Freebase's ``m.0bln8``) have the type ``"entity"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx
import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_TYPE",
    "LEAK_KINDS",
    "LinkScorer",
    "SPLIT_UNITS",
    "TripleIndex",
    "TripleSplit",
    "degree_table",
    "draw_neighbourhood",
    "entity_type",
    "filtered_rank",
    "filtered_ranks",
    "leakage_table",
    "leaked",
    "link_prediction_metrics",
    "link_prediction_table",
    "mark_leaked",
    "neighbourhood",
    "pair_leakage",
    "random_ranks",
    "relation_overlap",
    "relation_table",
    "split_triples",
    "to_networkx",
]

#: The type of an entity whose name has no ``type:`` prefix.
DEFAULT_TYPE = "entity"
_COLUMNS = ("head", "relation", "tail")


def entity_type(names: Any) -> np.ndarray:
    """The type of each entity name: the part before the first ``:``, else :data:`DEFAULT_TYPE`."""
    names = pd.Series(np.asarray(names, dtype=object)).astype(str)
    parts = names.str.split(":", n=1)
    return np.where(parts.str.len() > 1, parts.str[0], DEFAULT_TYPE).astype(object)


# --------------------------------------------------------------------------------------------------
# Integer index
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TripleIndex:
    """Triples as an ``(n, 3)`` int64 array of ``[head, relation, tail]``, with the entity and relation names.

    Entity ``i`` is ``entities[i]``, relation ``j`` is ``relations[j]``; both are sorted, so the same
    triples always give the same numbering. Build one with :meth:`from_frame`.
    """

    entities: np.ndarray
    relations: np.ndarray
    triples: np.ndarray

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, head: str = "head", relation: str = "relation",
                   tail: str = "tail") -> TripleIndex:
        """Number the entities and relations of a frame of triples (duplicate triples are dropped)."""
        missing = [c for c in (head, relation, tail) if c not in frame.columns]
        if missing:
            raise KeyError(f"the triples frame has no column(s) {missing}; it has {list(frame.columns)}")
        if len(frame) == 0:
            raise ValueError("the triples frame is empty: a graph needs at least one triple")
        raw = frame[[head, relation, tail]]
        if raw.isna().any().any():
            column = raw.columns[raw.isna().any().to_numpy()][0]
            raise ValueError(f"column {column!r} has missing values: every triple needs a head, relation and tail")
        raw = raw.astype(str).drop_duplicates()
        entities = np.unique(np.concatenate([raw[head].to_numpy(), raw[tail].to_numpy()])).astype(object)
        relations = np.unique(raw[relation].to_numpy()).astype(object)
        entity_ids = pd.Index(entities)
        relation_ids = pd.Index(relations)
        triples = np.stack([entity_ids.get_indexer(raw[head]), relation_ids.get_indexer(raw[relation]),
                            entity_ids.get_indexer(raw[tail])], axis=1).astype(np.int64)
        return cls(entities, relations, triples)

    @property
    def n_entities(self) -> int:
        """How many distinct entities."""
        return len(self.entities)

    @property
    def n_relations(self) -> int:
        """How many distinct relations."""
        return len(self.relations)

    def entity_ids(self, names: Any) -> np.ndarray:
        """The integer id of each entity name; an unknown name raises ``KeyError`` naming it."""
        return self._lookup(self.entities, names, "entity")

    def relation_ids(self, names: Any) -> np.ndarray:
        """The integer id of each relation name; an unknown name raises ``KeyError`` naming it."""
        return self._lookup(self.relations, names, "relation")

    @staticmethod
    def _lookup(vocabulary: np.ndarray, names: Any, what: str) -> np.ndarray:
        names = np.atleast_1d(np.asarray(names, dtype=object)).astype(str)
        ids = pd.Index(vocabulary).get_indexer(names)
        if (ids < 0).any():
            unknown = names[ids < 0]
            raise KeyError(f"{len(unknown)} unknown {what} name(s), e.g. {unknown[0]!r}: the graph has "
                           f"{len(vocabulary)} {what}s such as {vocabulary[0]!r}")
        return ids.astype(np.int64)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Triples of another frame (columns head, relation, tail) in this index's numbering."""
        missing = [c for c in _COLUMNS if c not in frame.columns]
        if missing:
            raise KeyError(f"the triples frame has no column(s) {missing}; it has {list(frame.columns)}")
        return np.stack([self.entity_ids(frame["head"]), self.relation_ids(frame["relation"]),
                         self.entity_ids(frame["tail"])], axis=1)

    def decode(self, triples: np.ndarray) -> pd.DataFrame:
        """Integer triples back to a frame of names."""
        triples = _check_triples(triples, self.n_entities, self.n_relations)
        return pd.DataFrame({"head": self.entities[triples[:, 0]], "relation": self.relations[triples[:, 1]],
                             "tail": self.entities[triples[:, 2]]})

    @property
    def entity_types(self) -> np.ndarray:
        """The type of every entity (see :func:`entity_type`)."""
        return entity_type(self.entities)


def _check_triples(triples: Any, n_entities: int | None = None, n_relations: int | None = None) -> np.ndarray:
    """``triples`` as an ``(n, 3)`` int64 array with ids in range, or an error that says what is wrong."""
    array = np.asarray(triples)
    if array.ndim != 2 or array.shape[1] != 3:
        raise ValueError(f"triples must have shape (n, 3) as [head, relation, tail] ids, got {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"triples must hold integer ids, got dtype {array.dtype}: encode names with TripleIndex")
    array = array.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError("triples hold a negative id")
    for column, limit, what in ((0, n_entities, "head"), (2, n_entities, "tail"), (1, n_relations, "relation")):
        if limit is not None and array.size and array[:, column].max() >= limit:
            raise ValueError(f"a {what} id is {array[:, column].max()}, but there are only {limit} of them")
    return array


# --------------------------------------------------------------------------------------------------
# Description
# --------------------------------------------------------------------------------------------------


def relation_table(index: TripleIndex) -> pd.DataFrame:
    """Per relation: triples, distinct heads and tails, the head and tail types, and the mean number of
    tails per head and heads per tail (1-to-1, 1-to-N, N-to-1 or N-to-N, the shape that makes link
    prediction easy or hard)."""
    frame = pd.DataFrame(index.triples, columns=list(_COLUMNS))
    types = index.entity_types
    rows = []
    for rel, group in frame.groupby("relation", sort=True):
        heads, tails = group["head"].nunique(), group["tail"].nunique()
        tails_per_head, heads_per_tail = len(group) / heads, len(group) / tails
        shape = ("1" if heads_per_tail < 1.5 else "N") + "-to-" + ("1" if tails_per_head < 1.5 else "N")
        rows.append({
            "relation": index.relations[rel], "triples": len(group),
            "head type": "/".join(sorted(set(types[group["head"]]))),
            "tail type": "/".join(sorted(set(types[group["tail"]]))),
            "heads": heads, "tails": tails,
            "tails per head": round(tails_per_head, 2), "heads per tail": round(heads_per_tail, 2),
            "shape": shape,
        })
    return pd.DataFrame(rows).set_index("relation").sort_values("triples", ascending=False)


def degree_table(index: TripleIndex) -> pd.DataFrame:
    """Per entity type: how many entities, and the mean, median and largest degree (in + out triples)."""
    degree = np.bincount(index.triples[:, 0], minlength=index.n_entities) + np.bincount(
        index.triples[:, 2], minlength=index.n_entities)
    frame = pd.DataFrame({"type": index.entity_types, "degree": degree})
    table = frame.groupby("type")["degree"].agg(entities="size", mean_degree="mean", median_degree="median",
                                                max_degree="max")
    return table.sort_values("entities", ascending=False).round(2)


# --------------------------------------------------------------------------------------------------
# networkx view
# --------------------------------------------------------------------------------------------------


def to_networkx(triples: pd.DataFrame | TripleIndex) -> nx.MultiDiGraph:
    """A directed multigraph of the triples: nodes are entity names with a ``kind`` attribute (the type),
    edges carry their ``relation``. For exploring and drawing; the models use :class:`TripleIndex`."""
    if isinstance(triples, TripleIndex):
        triples = triples.decode(triples.triples)
    missing = [c for c in _COLUMNS if c not in triples.columns]
    if missing:
        raise KeyError(f"the triples frame has no column(s) {missing}; it has {list(triples.columns)}")
    graph = nx.MultiDiGraph()
    names = pd.unique(np.concatenate([triples["head"].to_numpy(), triples["tail"].to_numpy()]))
    graph.add_nodes_from((name, {"kind": kind}) for name, kind in zip(names, entity_type(names), strict=True))
    graph.add_edges_from((h, t, {"relation": r}) for h, r, t in triples[list(_COLUMNS)].itertuples(index=False))
    return graph


def neighbourhood(graph: nx.MultiDiGraph, center: str, radius: int = 1, max_nodes: int = 30,
                  seed: int = 0) -> nx.MultiDiGraph:
    """The ego graph of ``center`` (edges followed in both directions) up to ``radius`` hops, with at most
    ``max_nodes`` nodes: the nearest rings are kept whole where they fit, the outermost one is sampled."""
    if center not in graph:
        raise KeyError(f"{center!r} is not a node of the graph (nodes look like {next(iter(graph.nodes))!r})")
    if radius < 1 or max_nodes < 2:
        raise ValueError(f"need radius >= 1 and max_nodes >= 2, got {radius} and {max_nodes}")
    undirected = graph.to_undirected(as_view=True)
    hops = nx.single_source_shortest_path_length(undirected, center, cutoff=radius)
    rng = np.random.default_rng(seed)
    keep: list[str] = []
    for hop in range(radius + 1):
        ring = sorted(n for n, d in hops.items() if d == hop)
        room = max_nodes - len(keep)
        if room <= 0:
            break
        if len(ring) > room:
            ring = list(rng.choice(np.array(ring, dtype=object), size=room, replace=False))
        keep.extend(ring)
    return graph.subgraph(keep).copy()


def draw_neighbourhood(graph: nx.MultiDiGraph, center: str, radius: int = 1, max_nodes: int = 30,
                       labels: Mapping[str, str] | None = None, ax: Any = None, seed: int = 0) -> Any:
    """Draw :func:`neighbourhood` of ``center``: nodes coloured by type, edges labelled with their relation.

    ``labels`` maps entity names to display names (a category's name instead of ``category:12``).
    Returns the matplotlib axes.
    """
    import matplotlib.pyplot as plt

    sub = neighbourhood(graph, center, radius=radius, max_nodes=max_nodes, seed=seed)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.5), dpi=80)
    kinds = sorted({data["kind"] for _, data in sub.nodes(data=True)})
    palette = plt.get_cmap("tab10")
    colour = {kind: palette(i % 10) for i, kind in enumerate(kinds)}
    position = nx.spring_layout(nx.Graph(sub), seed=seed, k=1.2 / np.sqrt(max(len(sub), 1)))
    nx.draw_networkx_edges(sub, position, ax=ax, alpha=0.4, arrows=True, arrowsize=8)
    for kind in kinds:
        nodes = [n for n, data in sub.nodes(data=True) if data["kind"] == kind]
        nx.draw_networkx_nodes(sub, position, nodelist=nodes, ax=ax, node_color=[colour[kind]],
                               node_size=[420 if n == center else 160 for n in nodes], label=kind)
    names = {n: (labels or {}).get(n, n) for n in sub.nodes}
    nx.draw_networkx_labels(sub, position, labels=names, ax=ax, font_size=7)
    edge_labels = {(h, t): data["relation"] for h, t, data in sub.edges(data=True) if center in (h, t)}
    nx.draw_networkx_edge_labels(sub, position, edge_labels=edge_labels, ax=ax, font_size=6, alpha=0.8)
    ax.legend(loc="upper left", fontsize=7, markerscale=0.6, frameon=False)
    ax.set_title(f"{names[center]}: {len(sub)} entities within {radius} hop(s)", fontsize=9)
    ax.set_axis_off()
    return ax


# --------------------------------------------------------------------------------------------------
# Splits and link-prediction evaluation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TripleSplit:
    """Training, validation and test triples (each ``(n, 3)`` int64)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        """How many triples each part holds."""
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


#: The ways :func:`split_triples` can hold triples out.
SPLIT_UNITS = ("pair", "triple")


def _pair_keys(triples: np.ndarray, n_entities: int) -> np.ndarray:
    """One int64 key per triple for its unordered entity pair ``{head, tail}``."""
    low, high = np.minimum(triples[:, 0], triples[:, 2]), np.maximum(triples[:, 0], triples[:, 2])
    return low * n_entities + high


def split_triples(triples: Any, valid_fraction: float = 0.05, test_fraction: float = 0.1, seed: int = 0,
                  by: str = "pair") -> TripleSplit:
    """Split triples at random for link prediction, keeping every entity and relation in training.

    ``by="pair"`` (the default) keeps all the triples that link the same unordered pair ``{h, t}``, under any
    relation and in either direction, in the same part: no held-out pair is seen in training as a twin
    (``film.actor.film`` and ``film.performance.film``) or an inverse (``directed`` and ``directed_by``), the rule
    FB15k-237 was built on (Toutanova and Chen, 2015). Pairs are shuffled and dealt out until each part holds its
    fraction of the triples. ``by="triple"`` draws each triple on its own (the FB15k way; it leaks, see
    :func:`pair_leakage`). Either way, a held-out triple (with ``"pair"``, its whole pair) whose head, tail or
    relation would appear nowhere in training goes back to training: an embedding model cannot rank an entity it
    has never seen (the transductive setting of the link-prediction benchmarks).
    """
    triples = _check_triples(triples)
    if by not in SPLIT_UNITS:
        raise ValueError(f"by must be one of {SPLIT_UNITS}, got {by!r}")
    if len(triples) == 0:
        raise ValueError("no triples to split")
    if not (0 <= valid_fraction and 0 < test_fraction and valid_fraction + test_fraction < 1):
        raise ValueError(f"need 0 <= valid_fraction, 0 < test_fraction and a sum below 1, got "
                         f"{valid_fraction} and {test_fraction}")
    rng = np.random.default_rng(seed)
    n_entities = int(triples[:, [0, 2]].max()) + 1
    if by == "triple":
        group = np.arange(len(triples))
        u = rng.random(len(triples))
        part = np.where(u < test_fraction, 2, np.where(u < test_fraction + valid_fraction, 1, 0))
    else:
        _, group = np.unique(_pair_keys(triples, n_entities), return_inverse=True)
        sizes = np.bincount(group)
        order = rng.permutation(len(sizes))
        before = np.empty(len(sizes))  # triples dealt out before each pair, in the shuffled order
        before[order] = (np.cumsum(sizes[order]) - sizes[order]) / len(triples)
        pair_part = np.where(before < test_fraction, 2, np.where(before < test_fraction + valid_fraction, 1, 0))
        part = pair_part[group]
    seen_entities = np.zeros(n_entities, dtype=bool)
    seen_relations = np.zeros(int(triples[:, 1].max()) + 1, dtype=bool)
    train = triples[part == 0]
    seen_entities[train[:, 0]] = seen_entities[train[:, 2]] = True
    seen_relations[train[:, 1]] = True
    held = np.flatnonzero(part > 0)
    members = np.split(held[np.argsort(group[held], kind="stable")],
                       np.flatnonzero(np.diff(np.sort(group[held]))) + 1) if len(held) else []
    for g in rng.permutation(len(members)):  # in a random order, so no part is favoured
        rows = triples[members[g]]
        if not (seen_entities[rows[:, [0, 2]]].all() and seen_relations[rows[:, 1]].all()):
            part[members[g]] = 0
            seen_entities[rows[:, 0]] = seen_entities[rows[:, 2]] = seen_relations[rows[:, 1]] = True
    return TripleSplit(triples[part == 0], triples[part == 1], triples[part == 2])


# --------------------------------------------------------------------------------------------------
# Leaks through twin and inverse relations
# --------------------------------------------------------------------------------------------------

#: The ways a held-out triple ``(h, r, t)`` can have its pair linked in training (not exclusive).
LEAK_KINDS = ("same relation reversed", "another relation same direction", "another relation reversed")


def _leak_flags(train: np.ndarray, held: np.ndarray) -> dict[str, np.ndarray]:
    """Per held-out triple, whether training holds ``(t, r, h)``, some ``(h, r', t)``, some ``(t, r', h)``."""
    n_entities = int(max(train[:, [0, 2]].max(initial=0), held[:, [0, 2]].max(initial=0))) + 1
    n_relations = int(max(train[:, 1].max(initial=0), held[:, 1].max(initial=0))) + 1
    triple_key = lambda h, r, t: (h * n_relations + r) * n_entities + t  # noqa: E731
    pair_key = lambda h, t: h * n_entities + t  # noqa: E731
    train_triples = np.unique(triple_key(train[:, 0], train[:, 1], train[:, 2]))
    # Relations per directed pair in training: a pair linked by r' != r is linked by "another relation".
    pairs = pd.DataFrame({"pair": pair_key(train[:, 0], train[:, 2]), "relation": train[:, 1]}).drop_duplicates()
    count = pairs.groupby("pair")["relation"].size()
    h, r, t = held[:, 0], held[:, 1], held[:, 2]
    same_forward = np.isin(triple_key(h, r, t), train_triples)
    same_reversed = np.isin(triple_key(t, r, h), train_triples)
    forward = count.reindex(pair_key(h, t), fill_value=0).to_numpy()
    backward = count.reindex(pair_key(t, h), fill_value=0).to_numpy()
    return {"same relation reversed": same_reversed,
            "another relation same direction": forward - same_forward > 0,
            "another relation reversed": backward - same_reversed > 0,
            "same triple": same_forward}


def leaked(train: Any, triples: Any) -> np.ndarray:
    """Per triple of ``triples``, whether training links its unordered pair ``{h, t}`` (any relation, either way)."""
    train, triples = _check_triples(train), _check_triples(triples)
    n_entities = int(max(train[:, [0, 2]].max(initial=0), triples[:, [0, 2]].max(initial=0))) + 1
    return np.isin(_pair_keys(triples, n_entities), _pair_keys(train, n_entities))


def pair_leakage(train: Any, held: Any) -> dict[str, float]:
    """The share of ``held`` triples whose unordered pair is linked in ``train``, by way (:data:`LEAK_KINDS`).

    The ways overlap (a pair can be linked by an inverse and a twin); ``"any"`` is their union (plus the triple
    itself, were it in training too); ``"triples"`` counts ``held``. A model can answer a leaked test triple by
    looking its pair up, without any reasoning: FB15k's MRR was mostly that.
    """
    train, held = _check_triples(train), _check_triples(held)
    if len(held) == 0:
        raise ValueError("no held-out triples to check")
    flags = _leak_flags(train, held)
    out: dict[str, float] = {"triples": float(len(held))}
    out.update({kind: float(flags[kind].mean()) for kind in LEAK_KINDS})
    out["any"] = float(leaked(train, held).mean())
    return out


def leakage_table(split: TripleSplit) -> pd.DataFrame:
    """:func:`pair_leakage` of the validation and the test triples of a split, one row each."""
    rows = {name: pair_leakage(split.train, part) for name, part in (("valid", split.valid), ("test", split.test))
            if len(part)}
    table = pd.DataFrame(rows).T
    table["triples"] = table["triples"].astype(int)
    return table


def mark_leaked(ranks: pd.DataFrame, train: Any) -> pd.DataFrame:
    """A copy of a :func:`filtered_ranks` frame with a boolean ``leaked`` column (:func:`leaked` against
    ``train``), so ``link_prediction_table(marked, by="leaked")`` reports leaked and clean test triples apart."""
    missing = [c for c in _COLUMNS if c not in ranks.columns]
    if missing:
        raise KeyError(f"the ranks frame has no column(s) {missing}; pass the output of filtered_ranks")
    triples = ranks[list(_COLUMNS)].to_numpy()
    return ranks.assign(leaked=leaked(train, triples.astype(np.int64)))


def relation_overlap(triples: Any, relations: Sequence[str] | None = None, min_share: float = 0.0) -> pd.DataFrame:
    """For each ordered pair of relations ``(r1, r2)``: the share of r1's entity pairs ``(h, t)`` that r2 also
    links as ``(h, t)`` (``same direction``: a twin) or as ``(t, h)`` (``reversed``: an inverse; with r2 = r1, a
    symmetric relation). FB15k-237 dropped one of each pair whose shares both ways were above 0.97.

    Rows with both shares at most ``min_share`` are left out; ``relations`` names the relation ids.
    """
    triples = _check_triples(triples)
    frame = pd.DataFrame(triples, columns=list(_COLUMNS)).drop_duplicates()
    pairs = frame.groupby("relation").size().rename("pairs")
    same = frame.merge(frame, on=["head", "tail"], suffixes=("", "_other"))
    same = same[same["relation"] != same["relation_other"]]
    flipped = frame.rename(columns={"head": "tail", "tail": "head"})
    back = frame.merge(flipped, on=["head", "tail"], suffixes=("", "_other"))
    counts = pd.concat([
        same.groupby(["relation", "relation_other"]).size().rename("same direction"),
        back.groupby(["relation", "relation_other"]).size().rename("reversed"),
    ], axis=1).fillna(0)
    counts.index.names = ["relation", "other"]
    table = counts.reset_index().join(pairs, on="relation")
    for column in ("same direction", "reversed"):
        table[column] = table[column] / table["pairs"]
    table = table[(table["same direction"] > min_share) | (table["reversed"] > min_share)]
    if relations is not None:
        names = np.asarray(relations, dtype=object)
        table = table.assign(relation=names[table["relation"].to_numpy()], other=names[table["other"].to_numpy()])
    table = table.assign(top=table[["same direction", "reversed"]].max(axis=1)).sort_values(
        ["top", "pairs"], ascending=False).drop(columns="top")
    return table[["relation", "other", "pairs", "same direction", "reversed"]].reset_index(drop=True)


class LinkScorer(Protocol):
    """What :func:`filtered_ranks` needs from a model: scores of every entity as a tail or as a head."""

    def score_tails(self, heads: np.ndarray, relations: np.ndarray) -> Any:
        """Scores ``(batch, n_entities)`` of every entity as the tail of ``(head, relation, ?)``."""

    def score_heads(self, relations: np.ndarray, tails: np.ndarray) -> Any:
        """Scores ``(batch, n_entities)`` of every entity as the head of ``(?, relation, tail)``."""


def filtered_rank(scores: Any, target: int, known: Any) -> float:
    """The filtered rank of one query's answer ``target`` among the entities scored by ``scores``.

    1 + the entities that score higher and are not ``known`` answers (other true triples), + half of the
    ties. :func:`filtered_ranks` does the same for many queries at once.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not 0 <= int(target) < scores.size:
        raise ValueError(f"target {target} is not an entity id in [0, {scores.size})")
    keep = np.ones(scores.size, dtype=bool)
    keep[np.asarray(known, dtype=np.int64)] = False
    keep[int(target)] = False
    competitors = scores[keep]
    return 1.0 + float(np.sum(competitors > scores[target])) + 0.5 * float(np.sum(competitors == scores[target]))


def _answers(known: np.ndarray, query: np.ndarray, answer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query key, the known answers as (row in batch, entity) pairs (``known`` sorted by key)."""
    lo = np.searchsorted(known, query, "left")
    hi = np.searchsorted(known, query, "right")
    counts = hi - lo
    rows = np.repeat(np.arange(len(query)), counts)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return rows, answer[starts + np.arange(counts.sum())]


def filtered_ranks(model: LinkScorer, test: Any, known: Any, n_entities: int, side: str = "both",
                   batch_size: int = 512) -> pd.DataFrame:
    """The filtered rank of every test triple's true head and tail among all entities.

    For ``(h, r, t)``, every entity is scored as the tail of ``(h, r, ?)`` in one batched call; the other
    tails known to be true (any triple of ``known``: train, validation and test together) are removed
    from the competition, and the rank is 1 + the number of entities that score higher (+ half of the
    ties, so a constant model gets the middle rank, not the best). The same for heads. Returns one row
    per triple and side: ``head, relation, tail, side, rank``.
    """
    test = _check_triples(test, n_entities)
    known = _check_triples(known, n_entities)
    if side not in ("head", "tail", "both"):
        raise ValueError(f"side must be 'head', 'tail' or 'both', got {side!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_rel = int(max(test[:, 1].max(initial=0), known[:, 1].max(initial=0))) + 1
    out = []
    for which in (("tail", "head") if side == "both" else (side,)):
        # Key of a query: (h, r) when predicting tails, (r, t) when predicting heads.
        if which == "tail":
            key_of = lambda x: x[:, 0] * n_rel + x[:, 1]  # noqa: E731
            answer_column = 2
        else:
            key_of = lambda x: x[:, 2] * n_rel + x[:, 1]  # noqa: E731
            answer_column = 0
        known_keys = key_of(known)
        order = np.argsort(known_keys, kind="stable")
        sorted_keys, sorted_answers = known_keys[order], known[order, answer_column]
        ranks = np.empty(len(test), dtype=np.float64)
        for lo in range(0, len(test), batch_size):
            batch = test[lo:lo + batch_size]
            if which == "tail":
                scores = np.array(model.score_tails(batch[:, 0], batch[:, 1]), dtype=np.float64)
            else:
                scores = np.array(model.score_heads(batch[:, 1], batch[:, 2]), dtype=np.float64)
            if scores.shape != (len(batch), n_entities):
                raise ValueError(f"the model scored shape {scores.shape}, expected {(len(batch), n_entities)}")
            rows = np.arange(len(batch))
            target = batch[:, answer_column]
            true_score = scores[rows, target].copy()
            r, e = _answers(sorted_keys, key_of(batch), sorted_answers)
            scores[r, e] = -np.inf  # filter every known answer ...
            scores[rows, target] = true_score  # ... except the one being ranked
            higher = (scores > true_score[:, None]).sum(axis=1)
            ties = (scores == true_score[:, None]).sum(axis=1) - 1
            ranks[lo:lo + batch_size] = 1 + higher + 0.5 * ties
        out.append(pd.DataFrame({"head": test[:, 0], "relation": test[:, 1], "tail": test[:, 2],
                                 "side": which, "rank": ranks}))
    return pd.concat(out, ignore_index=True)


def random_ranks(test: Any, known: Any, n_entities: int, side: str = "both") -> pd.DataFrame:
    """The expected filtered rank of a model that scores at random: the middle of the unfiltered candidates."""
    class _Constant:
        def score_tails(self, heads: np.ndarray, relations: np.ndarray) -> np.ndarray:
            return np.zeros((len(heads), n_entities))

        def score_heads(self, relations: np.ndarray, tails: np.ndarray) -> np.ndarray:
            return np.zeros((len(tails), n_entities))

    return filtered_ranks(_Constant(), test, known, n_entities, side=side)


def link_prediction_metrics(ranks: pd.DataFrame | Any, hits_at: Sequence[int] = (1, 3, 10)) -> dict[str, float]:
    """MRR (mean of 1 / rank), Hits@K (share of ranks <= K) and the mean rank of a set of ranks."""
    values = ranks["rank"].to_numpy() if isinstance(ranks, pd.DataFrame) else np.asarray(ranks, dtype=float)
    if values.size == 0:
        raise ValueError("no ranks to summarise")
    if (values < 1).any():
        raise ValueError("ranks start at 1; got a smaller one")
    out = {"mrr": float(np.mean(1.0 / values))}
    for k in hits_at:
        out[f"hits@{k}"] = float(np.mean(values <= k))
    out["mean_rank"] = float(np.mean(values))
    return out


def link_prediction_table(ranks: pd.DataFrame, relations: Sequence[str] | None = None,
                          by: Callable[[pd.DataFrame], Any] | str | Sequence[str] = "side") -> pd.DataFrame:
    """:func:`link_prediction_metrics` per group of ranks (``by``: a column such as ``"side"`` or
    ``"relation"``, a list of columns, or a function of the frame), relation ids replaced by ``relations``."""
    frame = ranks.copy()
    if relations is not None:
        frame["relation"] = np.asarray(relations, dtype=object)[frame["relation"].to_numpy()]
    groups = frame.groupby(by(frame) if callable(by) else (by if isinstance(by, str) else list(by)), sort=True)
    table = pd.DataFrame({name: {"queries": len(group), **link_prediction_metrics(group)}
                          for name, group in groups}).T
    table["queries"] = table["queries"].astype(int)
    return table
