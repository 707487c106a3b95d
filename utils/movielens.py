"""MovieLens-100k as tidy pandas frames, from its publisher or from an offline mirror.

The publisher (GroupLens) serves ``ml-100k.zip`` with the original files (``u.data``, ``u.user``,
``u.item``, ``u.genre``, ``u.occupation``). The mirror is the ``recbole==1.2.1`` wheel on the
package index, which carries the same data as RecBole "atomic files" plus a Freebase knowledge
graph (KB4Rec). Both formats are read into the same frames; see ``datasets/movielens-100k.md``.

    >>> from utils.movielens import load_movielens_100k
    >>> ml = load_movielens_100k(kg=True)          # doctest: +SKIP
    >>> ml.ratings.shape, ml.kg.triples.shape      # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from utils.download import DownloadError, fetch

# --------------------------------------------------------------------------------------------
# Manifest: where the data comes from and what it must hash to.

#: The publisher's archive and its SHA-256 (4,924,029 bytes).
PUBLISHER_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
PUBLISHER_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"
#: The files read out of the publisher's archive (all under ``ml-100k/``).
PUBLISHER_FILES = ("u.data", "u.user", "u.item", "u.genre", "u.occupation", "README")

_MIRROR_PREFIX = "recbole/dataset_example/ml-100k/"
#: The offline mirror: a wheel on the package index that carries ml-100k and its KG.
MIRROR_SOURCE = {
    "kind": "pip-wheel",
    "requirement": "recbole==1.2.1",
    "sha256": "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    "members": {
        _MIRROR_PREFIX
        + "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
        _MIRROR_PREFIX
        + "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
        _MIRROR_PREFIX
        + "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
        _MIRROR_PREFIX
        + "ml-100k.kg": "200a0636fa07c218119a42e5bac7aa3e26e3665a6f919c1b22909bd412b14779",
        _MIRROR_PREFIX
        + "ml-100k.link": "524dca2c3d62619688ab99b3ec53ea2acb9b64d38eafec3e02bdd0dc6bb7d948",
    },
}
#: Source names accepted by :func:`load_movielens_100k`, in the order "auto" tries them.
SOURCES = ("publisher", "mirror")
#: The sizes of the full data set; a load that finds others reports a damaged cache.
EXPECTED_COUNTS = {"ratings": 100_000, "users": 943, "items": 1_682}

# --------------------------------------------------------------------------------------------
# Vocabularies and derived columns.

#: The 19 genres, in the order of ``u.genre`` and of the flag columns of ``u.item``.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

#: The 21 occupations of ``u.occupation``.
OCCUPATIONS: tuple[str, ...] = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip

#: A coarse grouping of the occupations (8 groups), for features with enough users per value.
OCCUPATION_GROUPS: dict[str, str] = {
    "student": "student",
    "engineer": "tech & science", "programmer": "tech & science",
    "technician": "tech & science", "scientist": "tech & science",
    "educator": "education", "librarian": "education",
    "administrator": "business & law", "executive": "business & law",
    "marketing": "business & law", "salesman": "business & law", "lawyer": "business & law",
    "doctor": "health", "healthcare": "health",
    "artist": "arts & media", "entertainment": "arts & media", "writer": "arts & media",
    "retired": "not working", "homemaker": "not working", "none": "not working",
    "other": "other",
}  # fmt: skip
_GROUP_ORDER = (
    "student", "tech & science", "education", "business & law", "health", "arts & media",
    "not working", "other",
)  # fmt: skip

#: Age bands as in MovieLens-1M: (label, lowest age in the band).
AGE_BANDS: tuple[tuple[str, int], ...] = (
    ("<18", 0), ("18-24", 18), ("25-34", 25), ("35-44", 35), ("45-49", 45), ("50-55", 50),
    ("56+", 56),
)  # fmt: skip

#: RecBole's copy misspells the placeholder title of item 267 ("unknown" in the original).
_MIRROR_TITLE_FIXES = {"unkonwn": "unknown"}
_TITLE_YEAR = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})\)(?:\s*\(V\))?\s*$")


class MovieLensFormatError(ValueError):
    """A MovieLens file is missing, malformed, or lacks a column; the message names file and column."""


@dataclass(frozen=True)
class KnowledgeGraph:
    """Freebase triples about the movies (KB4Rec, as distributed by RecBole) and the item links.

    ``triples`` has columns head, relation, tail (Freebase ids such as ``m.0bln8`` and relation
    names such as ``film.film.directed_by``); ``item_entity`` maps item_id to the movie's entity.
    """

    triples: pd.DataFrame
    item_entity: pd.Series

    @property
    def relations(self) -> list[str]:
        """The relation names, sorted."""
        return sorted(self.triples["relation"].unique())


@dataclass(frozen=True)
class MovieLens100K:
    """MovieLens-100k as tidy frames; ``kg`` is set only when the source carried the KG.

    ``source`` is "publisher" or "mirror" (or "files" when read from a folder by hand) and
    ``folder`` is where the files were read from.
    """

    ratings: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame
    kg: KnowledgeGraph | None
    source: str
    folder: Path

    def genre_matrix(self) -> pd.DataFrame:
        """The items' genres as a multi-hot int8 block (one column per genre, index item_id)."""
        return genre_matrix(self.items)


def genre_matrix(items: pd.DataFrame) -> pd.DataFrame:
    """A multi-hot int8 frame with one column per genre in :data:`GENRES`, indexed by item_id."""
    matrix = np.zeros((len(items), len(GENRES)), dtype=np.int8)
    position = {genre: j for j, genre in enumerate(GENRES)}
    for i, genres in enumerate(items["genres"]):
        for genre in genres:
            matrix[i, position[genre]] = 1
    return pd.DataFrame(
        matrix, columns=list(GENRES), index=pd.Index(items["item_id"], name="item_id")
    )


def age_band(age: pd.Series) -> pd.Series:
    """Map ages in years to the ordered MovieLens-1M bands of :data:`AGE_BANDS`."""
    labels = [label for label, _ in AGE_BANDS]
    edges = [low for _, low in AGE_BANDS[1:]]
    codes = np.searchsorted(edges, age.to_numpy(), side="right")
    return pd.Series(
        pd.Categorical.from_codes(codes, categories=labels, ordered=True), index=age.index
    )


# --------------------------------------------------------------------------------------------
# Low-level reading with clear errors.


def _require(path: Path) -> Path:
    """Return ``path`` if it is a file, else raise MovieLensFormatError naming it."""
    if not path.is_file():
        raise MovieLensFormatError(f"{path.name}: file not found in {path.parent}")
    return path


def _split_lines(path: Path, sep: str, width: int | None, encoding: str) -> list[list[str]]:
    """Split a delimited file into rows, checking each has ``width`` fields (blank lines skipped)."""
    try:
        text = _require(path).read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise MovieLensFormatError(f"{path.name}: not {encoding} text ({exc})") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(sep)
        if width is not None and len(fields) != width:
            raise MovieLensFormatError(
                f"{path.name} line {number}: expected {width} fields separated by {sep!r}, "
                f"found {len(fields)}"
            )
        rows.append(fields)
    return rows


def _read_original(
    path: Path, sep: str, columns: Sequence[str], encoding: str = "utf-8"
) -> pd.DataFrame:
    """Read a header-less original file into a frame of strings with the given column names."""
    rows = _split_lines(path, sep, len(columns), encoding)
    if not rows:
        raise MovieLensFormatError(f"{path.name}: the file is empty")
    frame = pd.DataFrame(rows, columns=list(columns), dtype=object)
    frame.attrs["file"] = path.name
    frame.attrs["first_line"] = 1
    return frame


def _read_atomic(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a RecBole atomic file (header ``name:type`` fields) into a frame of strings."""
    _require(path)
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n")
    names = [field.split(":", 1)[0] for field in header.split("\t")]
    missing = [name for name in required if name not in names]
    if missing:
        raise MovieLensFormatError(
            f"{path.name}: column {missing[0]!r} is missing (the header has "
            f"{', '.join(names) or 'nothing'}); expected {', '.join(required)}"
        )
    rows = _split_lines(path, "\t", len(names), "utf-8")[1:]
    if not rows:
        raise MovieLensFormatError(f"{path.name}: the file has a header but no rows")
    frame = pd.DataFrame(rows, columns=names, dtype=object)[list(required)]
    frame.attrs["file"] = path.name
    frame.attrs["first_line"] = 2
    return frame


def _integers(
    frame: pd.DataFrame, column: str, low: int | None = None, high: int | None = None
) -> pd.Series:
    """Column ``column`` as int64, or an error naming the file, column and first bad line."""
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
    bad = values.isna() | (values != np.floor(values))
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        allowed = f" between {low} and {high}" if low is not None and high is not None else ""
        raise MovieLensFormatError(
            f"{frame.attrs['file']}: column {column!r} must hold whole numbers{allowed}, found "
            f"{frame[column].iloc[row]!r} (data row {row + 1})"
        )
    return values.astype("int64")


def _vocabulary(frame: pd.DataFrame, column: str, allowed: Sequence[str]) -> pd.Series:
    """Column ``column`` as a categorical over ``allowed``, or an error naming an unknown value."""
    values = frame[column].str.strip()
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise MovieLensFormatError(
            f"{frame.attrs['file']}: column {column!r} has unknown value(s) "
            f"{', '.join(repr(u) for u in unknown[:5])}; expected one of {', '.join(allowed)}"
        )
    return pd.Series(pd.Categorical(values, categories=list(allowed)), index=frame.index)


# --------------------------------------------------------------------------------------------
# Tidy frames shared by both formats.


def _ratings_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """ratings: user_id, item_id, rating (1-5), timestamp (Unix seconds), datetime (UTC)."""
    timestamp = _integers(raw, "timestamp", 0)
    return pd.DataFrame(
        {
            "user_id": _integers(raw, "user_id", 1),
            "item_id": _integers(raw, "item_id", 1),
            "rating": _integers(raw, "rating", 1, 5),
            "timestamp": timestamp,
            "datetime": pd.to_datetime(timestamp, unit="s", utc=True),
        }
    )


def _users_frame(raw: pd.DataFrame, occupations: Sequence[str]) -> pd.DataFrame:
    """users: user_id, age, age_band, gender, occupation, occupation_group, zip_code."""
    age = _integers(raw, "age", 1, 120)
    occupation = _vocabulary(raw, "occupation", occupations)
    group = occupation.astype(str).map(OCCUPATION_GROUPS)
    if group.isna().any():
        unknown = sorted(set(occupation.astype(str)[group.isna()]))
        raise MovieLensFormatError(
            f"{raw.attrs['file']}: occupation(s) {', '.join(unknown)} have no group in "
            "OCCUPATION_GROUPS"
        )
    users = pd.DataFrame(
        {
            "user_id": _integers(raw, "user_id", 1),
            "age": age,
            "age_band": age_band(age),
            "gender": _vocabulary(raw, "gender", ("F", "M")),
            "occupation": occupation,
            "occupation_group": pd.Categorical(group, categories=list(_GROUP_ORDER)),
            "zip_code": raw["zip_code"].str.strip().astype("str"),
        }
    )
    _unique(users, "user_id", raw.attrs["file"])
    return users


def _items_frame(
    raw: pd.DataFrame, title: pd.Series, year: pd.Series, release_date: pd.Series, genres: pd.Series
) -> pd.DataFrame:
    """items: item_id, title (without the year), year, release_date, genres (list of str)."""
    items = pd.DataFrame(
        {
            "item_id": _integers(raw, "item_id", 1),
            "title": title.astype("str"),
            "year": year.astype("Int64"),
            "release_date": release_date.astype("datetime64[s]"),
            "genres": genres,
        }
    )
    _unique(items, "item_id", raw.attrs["file"])
    return items


def _split_title(title: str) -> tuple[str, float]:
    """Split "Toy Story (1995)" into ("Toy Story", 1995); a title without a year keeps NaN."""
    match = _TITLE_YEAR.match(title.strip())
    if match is None:
        return title.strip(), np.nan
    return match["title"], float(match["year"])


def _unique(frame: pd.DataFrame, column: str, file: str) -> None:
    """Raise if ``column`` has repeated values."""
    repeated = frame[column][frame[column].duplicated()]
    if len(repeated):
        raise MovieLensFormatError(f"{file}: column {column!r} repeats the id {repeated.iloc[0]}")


def _check_references(
    ratings: pd.DataFrame, users: pd.DataFrame, items: pd.DataFrame, file: str
) -> None:
    """Raise if a rating points at a user or an item that the user/item files lack."""
    for column, table in (("user_id", users), ("item_id", items)):
        unknown = ~ratings[column].isin(table[column])
        if unknown.any():
            raise MovieLensFormatError(
                f"{file}: column {column!r} refers to {int(unknown.sum())} rating(s) of unknown "
                f"id(s), e.g. {ratings[column][unknown].iloc[0]}"
            )


# --------------------------------------------------------------------------------------------
# The two formats.


def read_original(folder: str | os.PathLike[str]) -> MovieLens100K:
    """Read the publisher's files (``u.data``, ``u.user``, ``u.item``, ``u.genre``, ``u.occupation``)."""
    folder = Path(folder)
    genre_rows = _read_original(folder / "u.genre", "|", ("genre", "index"), "latin-1")
    genre_names = tuple(genre_rows["genre"].str.strip())
    if genre_names != GENRES:
        raise MovieLensFormatError(
            f"u.genre: column 'genre' lists {len(genre_names)} genres that differ from the 19 "
            f"expected ({', '.join(GENRES)})"
        )
    occupations = tuple(
        line.strip()
        for line in _require(folder / "u.occupation").read_text(encoding="latin-1").splitlines()
        if line.strip()
    )
    raw_ratings = _read_original(
        folder / "u.data", "\t", ("user_id", "item_id", "rating", "timestamp")
    )
    raw_users = _read_original(
        folder / "u.user", "|", ("user_id", "age", "gender", "occupation", "zip_code"), "latin-1"
    )
    item_columns = ("item_id", "title", "release_date", "video_release_date", "imdb_url") + GENRES
    raw_items = _read_original(folder / "u.item", "|", item_columns, "latin-1")

    split = raw_items["title"].map(_split_title)
    title = split.map(lambda pair: pair[0])
    release_date = pd.to_datetime(
        raw_items["release_date"].str.strip(), format="%d-%b-%Y", errors="coerce"
    )
    unparsed = release_date.isna() & (raw_items["release_date"].str.strip() != "")
    if unparsed.any():
        row = int(np.flatnonzero(unparsed.to_numpy())[0])
        raise MovieLensFormatError(
            f"u.item: column 'release_date' must look like 01-Jan-1995, found "
            f"{raw_items['release_date'].iloc[row]!r} (data row {row + 1})"
        )
    year = split.map(lambda pair: pair[1]).fillna(release_date.dt.year)
    flags = np.column_stack([_integers(raw_items, genre, 0, 1).to_numpy() for genre in GENRES])
    genres = pd.Series(
        [[g for g, on in zip(GENRES, row, strict=True) if on] for row in flags], dtype=object
    )

    ratings = _ratings_frame(raw_ratings)
    users = _users_frame(raw_users, occupations)
    items = _items_frame(raw_items, title, year, release_date, genres)
    _check_references(ratings, users, items, "u.data")
    return MovieLens100K(ratings, users, items, None, "files", folder)


def read_atomic(folder: str | os.PathLike[str], *, kg: bool = True) -> MovieLens100K:
    """Read RecBole atomic files (``ml-100k.inter``/``.user``/``.item``, and ``.kg``/``.link`` if ``kg``)."""
    folder = Path(folder)
    raw_ratings = _read_atomic(
        folder / "ml-100k.inter", ("user_id", "item_id", "rating", "timestamp")
    )
    raw_users = _read_atomic(
        folder / "ml-100k.user", ("user_id", "age", "gender", "occupation", "zip_code")
    )
    raw_items = _read_atomic(
        folder / "ml-100k.item", ("item_id", "movie_title", "release_year", "class")
    )

    titles, years = [], []
    for raw_title, raw_year in zip(
        raw_items["movie_title"], raw_items["release_year"], strict=True
    ):
        raw_title = _MIRROR_TITLE_FIXES.get(raw_title.strip(), raw_title.strip())
        if re.fullmatch(r"\d{4}", raw_year.strip()):
            titles.append(raw_title)
            years.append(float(raw_year))
        else:  # RecBole split "Title (1995) (V)" at the last parenthesis.
            title, year = _split_title(raw_title)
            titles.append(title)
            years.append(year)
    genres = []
    for row, classes in enumerate(raw_items["class"]):
        names = classes.split()
        unknown = [name for name in names if name not in GENRES]
        if unknown:
            raise MovieLensFormatError(
                f"ml-100k.item: column 'class' has unknown genre {unknown[0]!r} (data row {row + 1})"
            )
        genres.append([genre for genre in GENRES if genre in names])

    ratings = _ratings_frame(raw_ratings)
    users = _users_frame(raw_users, OCCUPATIONS)
    items = _items_frame(
        raw_items,
        pd.Series(titles),
        pd.Series(years, dtype="float64"),
        pd.Series(pd.NaT, index=raw_items.index, dtype="datetime64[s]"),
        pd.Series(genres, dtype=object),
    )
    _check_references(ratings, users, items, "ml-100k.inter")
    graph = _read_kg(folder, items) if kg else None
    return MovieLens100K(ratings, users, items, graph, "files", folder)


def _read_kg(folder: Path, items: pd.DataFrame) -> KnowledgeGraph:
    """Read ``ml-100k.kg`` (triples) and ``ml-100k.link`` (item_id to entity)."""
    raw = _read_atomic(folder / "ml-100k.kg", ("head_id", "relation_id", "tail_id"))
    triples = pd.DataFrame(
        {
            "head": raw["head_id"].str.strip().astype("str"),
            "relation": raw["relation_id"].str.strip().astype("str"),
            "tail": raw["tail_id"].str.strip().astype("str"),
        }
    )
    if (triples == "").any().any():
        column = ("head", "relation", "tail")[
            int(np.flatnonzero((triples == "").any().to_numpy())[0])
        ]
        raise MovieLensFormatError(f"ml-100k.kg: column {column + '_id'!r} has empty values")
    link = _read_atomic(folder / "ml-100k.link", ("item_id", "entity_id"))
    item_id = _integers(link, "item_id", 1)
    unknown = ~item_id.isin(items["item_id"])
    if unknown.any():
        raise MovieLensFormatError(
            f"ml-100k.link: column 'item_id' has id(s) not in ml-100k.item, e.g. {item_id[unknown].iloc[0]}"
        )
    entity = pd.Series(
        link["entity_id"].str.strip().to_numpy(),
        index=pd.Index(item_id.to_numpy(), name="item_id"),
        name="entity",
        dtype="str",
    ).sort_index()
    if entity.index.duplicated().any():
        raise MovieLensFormatError(
            f"ml-100k.link: column 'item_id' repeats the id {entity.index[entity.index.duplicated()][0]}"
        )
    return KnowledgeGraph(triples, entity)


# --------------------------------------------------------------------------------------------
# Fetching, caching and loading.


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The folder this dataset is cached in (``<data_dir>/movielens-100k`` unless given)."""
    if cache_dir is not None:
        return Path(cache_dir)
    from utils.datasets import cache_dir as dataset_cache_dir

    return dataset_cache_dir("movielens-100k")


def _publisher_folder(cache: Path) -> Path:
    """Where the publisher's files are extracted."""
    return cache / "ml-100k"


def _mirror_folder(cache: Path) -> Path:
    """Where the mirror's atomic files are extracted."""
    return cache / "recbole-1.2.1"


def _has_publisher_files(cache: Path) -> bool:
    """Whether the publisher's files were extracted before (extraction is atomic)."""
    return all((_publisher_folder(cache) / name).is_file() for name in PUBLISHER_FILES)


def _fetch_publisher(
    cache: Path, retries: int, timeout: float, backoff: float, progress: bool
) -> Path:
    """Download and verify ``ml-100k.zip``, extract its files atomically, return their folder."""
    folder = _publisher_folder(cache)
    if _has_publisher_files(cache):
        return folder
    archive = fetch(
        [PUBLISHER_URL], PUBLISHER_SHA256, cache / "ml-100k.zip",
        retries=retries, timeout=timeout, backoff=backoff, progress=progress,
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(dir=cache, prefix=".ml-100k.", suffix=".part"))
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in PUBLISHER_FILES:
                try:
                    with zf.open(f"ml-100k/{name}") as src, open(work / name, "wb") as out:
                        shutil.copyfileobj(src, out)
                except KeyError as exc:
                    raise MovieLensFormatError(
                        f"{archive.name}: member ml-100k/{name} is missing; delete {archive} "
                        "and load again"
                    ) from exc
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _fetch_mirror(
    cache: Path, retries: int, timeout: float, backoff: float, progress: bool
) -> Path:
    """Fetch the mirror's atomic files (verified, cached), return their folder."""
    return fetch(
        [MIRROR_SOURCE], None, _mirror_folder(cache),
        retries=retries, timeout=timeout, backoff=backoff, progress=progress,
    )  # fmt: skip


def _check_counts(data: MovieLens100K) -> None:
    """Raise if the full data set does not have its documented size (a damaged cache)."""
    for name, expected in EXPECTED_COUNTS.items():
        found = len(getattr(data, name))
        if found != expected:
            raise MovieLensFormatError(
                f"MovieLens-100k from {data.folder} has {found} {name}, expected {expected}: "
                f"the cached files are damaged; delete {data.folder} and load again"
            )


def load_movielens_100k(
    source: str = "auto",
    kg: bool = False,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    backoff: float = 0.5,
    progress: bool = True,
) -> MovieLens100K:
    """Load MovieLens-100k, downloading and caching it on first use.

    ``source`` is "auto" (a cached copy if any, else the publisher, else the mirror), "publisher"
    or "mirror". ``kg=True`` demands the Freebase knowledge graph, which only the mirror carries;
    the mirror's KG is loaded whenever the mirror is used. The cache is
    ``<utils.config.data_dir()>/movielens-100k`` unless ``cache_dir`` is given.
    """
    if source not in ("auto",) + SOURCES:
        raise ValueError(f"unknown source {source!r}: choose 'auto', 'publisher' or 'mirror'")
    if kg and source == "publisher":
        raise ValueError(
            "kg=True needs the knowledge graph, which the publisher's ml-100k.zip does not carry: "
            "use source='mirror' (or 'auto'), whose files include the Freebase KG"
        )
    cache = _cache_dir(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    candidates = ["mirror"] if kg else (list(SOURCES) if source == "auto" else [source])
    if source == "auto" and not kg:  # prefer whatever is already cached: no network at all
        if _has_publisher_files(cache):
            candidates = ["publisher"]
        elif _mirror_folder(cache).is_dir():
            candidates = ["mirror", "publisher"]
    fetchers = {"publisher": _fetch_publisher, "mirror": _fetch_mirror}
    errors: list[DownloadError] = []
    for name in candidates:
        try:
            folder = fetchers[name](cache, retries, timeout, backoff, progress)
        except DownloadError as exc:
            errors.append(exc)
            continue
        data = read_original(folder) if name == "publisher" else read_atomic(folder, kg=True)
        data = MovieLens100K(data.ratings, data.users, data.items, data.kg, name, folder)
        _check_counts(data)
        return data
    if len(errors) == 1:
        raise errors[0]
    failures = [failure for exc in errors for failure in exc.failures]
    raise DownloadError(
        "could not load MovieLens-100k from any source:\n\n" + "\n\n".join(str(e) for e in errors),
        failures,
    )
