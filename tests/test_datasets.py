"""Tests of the dataset registry in utils.datasets."""

from __future__ import annotations

import sys
import types

import pytest

import utils
from utils import movielens
from utils.datasets import cache_dir, dataset_card, list_datasets, load_dataset


def test_registry_names_and_descriptions():
    datasets = list_datasets()
    assert set(datasets) == {"shopsim", "movielens-100k"}
    for description in datasets.values():
        assert description.strip() and "\n" not in description
    datasets["extra"] = "changing the copy does not change the registry"
    assert "extra" not in list_datasets()


@pytest.mark.parametrize(
    ("name", "closest"), [("movielens100k", "movielens-100k"), ("shop-sim", "shopsim")]
)
def test_unknown_name_lists_known_ones_and_suggests(name, closest):
    with pytest.raises(ValueError) as info:
        load_dataset(name)
    message = str(info.value)
    assert f"unknown dataset {name!r}" in message
    assert f"Did you mean {closest!r}?" in message
    assert "'movielens-100k', 'shopsim'" in message


def test_unknown_name_without_a_close_match():
    with pytest.raises(ValueError, match="Known datasets") as info:
        dataset_card("imagenet")
    assert "Did you mean" not in str(info.value)


def test_dataset_card():
    card = dataset_card("movielens-100k")
    for needle in ("Harper", "KB4Rec", "SHA-256", "licen", movielens.PUBLISHER_SHA256):
        assert needle in card


def test_cache_dir_honours_course_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "data"))
    folder = cache_dir("movielens-100k")
    assert folder == tmp_path / "data" / "movielens-100k" and folder.is_dir()


def test_shopsim_is_delegated_with_kwargs(monkeypatch):
    calls = []
    fake = types.ModuleType("utils.shopsim")
    fake.generate = lambda **kwargs: calls.append(kwargs) or "shop"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "utils.shopsim", fake)
    monkeypatch.setattr(utils, "shopsim", fake, raising=False)
    assert load_dataset("shopsim", scale="tiny", seed=3, sparsity=0.5) == "shop"
    assert calls == [{"scale": "tiny", "seed": 3, "sparsity": 0.5}]


def test_movielens_is_delegated_with_kwargs(monkeypatch):
    calls = []
    monkeypatch.setattr(
        movielens, "load_movielens_100k", lambda **kwargs: calls.append(kwargs) or "ml"
    )
    assert load_dataset("movielens-100k", source="mirror", kg=True) == "ml"
    assert calls == [{"source": "mirror", "kg": True}]
