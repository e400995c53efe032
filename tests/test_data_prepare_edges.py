"""Subsets, validation split and standardisation at their boundaries (found by mutation testing)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from reglab.config import ConfigError, DataConfig
from reglab.data import TensorData, load_dataset
from reglab.data.prepare import standardize

BASE = {"name": "teacher-student", "options": {"d": 2, "n_train": 40, "n_test": 10}}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("REGLAB_DATA", raising=False)


def test_a_subset_of_every_sample_is_allowed():
    raw = load_dataset(DataConfig(**BASE))
    data = load_dataset(DataConfig(**BASE, train_subset=40, test_subset=10))
    assert torch.equal(data.x_train, raw.x_train) and torch.equal(data.x_test, raw.x_test)
    with pytest.raises(ConfigError, match=r"data\.test_subset: 11 exceeds the 10 test samples"):
        load_dataset(DataConfig(**BASE, test_subset=11))


def test_a_tiny_validation_fraction_still_holds_out_one_sample():
    data = load_dataset(DataConfig(**BASE, val_split=0.001))
    assert (len(data.x_train), len(data.x_val)) == (39, 1)


def test_a_validation_split_that_takes_every_sample_is_refused():
    with pytest.raises(ConfigError, match=r"data\.val_split: 0\.99 of 40 training samples leaves none"):
        load_dataset(DataConfig(**BASE, val_split=0.99))  # round(39.6) = 40


def test_both_parts_of_the_split_keep_the_original_order():
    raw = load_dataset(DataConfig(**BASE))
    data = load_dataset(DataConfig(**BASE, val_split=0.3, split_seed=1))
    position = {tuple(row): i for i, row in enumerate(raw.x_train.tolist())}
    for part in (data.x_train, data.x_val):
        index = [position[tuple(row)] for row in part.tolist()]
        assert index == sorted(index) and len(index) == len(part)


def test_a_constant_feature_is_centred_not_divided_by_zero():
    x = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])  # feature 0: mean 3, population std √(8/3)
    y = torch.zeros(3, dtype=torch.int64)
    data = standardize(TensorData("t", x, y, torch.tensor([[3.0, 7.0]]), y[:1], num_classes=2))
    std0 = (8 / 3) ** 0.5
    torch.testing.assert_close(data.x_train, torch.tensor([[-2 / std0, 0.0], [0.0, 0.0], [2 / std0, 0.0]]))
    torch.testing.assert_close(data.x_test, torch.tensor([[0.0, 2.0]]))  # test: minus 5, over 1


def test_crop_padding_up_to_the_image_size_is_accepted(tmp_path):
    for stem, shape, magic in (("train-images-idx3-ubyte", (2, 28, 28), 2051), ("train-labels-idx1-ubyte", (2,), 2049),
                               ("t10k-images-idx3-ubyte", (1, 28, 28), 2051), ("t10k-labels-idx1-ubyte", (1,), 2049)):
        (tmp_path / stem).write_bytes(struct.pack(f">I{len(shape)}I", magic, *shape) + bytes(int(np.prod(shape))))
    cfg = {"name": "mnist", "data_dir": tmp_path}
    assert load_dataset(DataConfig(**cfg, augment={"crop_padding": 28})).x_train.shape == (2, 1, 28, 28)
    with pytest.raises(ConfigError, match=r"data\.augment\.crop_padding: 29 exceeds the 28×28 images"):
        load_dataset(DataConfig(**cfg, augment={"crop_padding": 29}))
