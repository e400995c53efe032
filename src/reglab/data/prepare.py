"""`load_dataset`: a `DataConfig` to tensors on a device.

Steps, in order: load on the CPU (the registered loader, with ``data.options``); keep the first
``train_subset`` / ``test_subset`` samples; hold out ``round(val_split · N)`` training samples (at least
one) drawn with a CPU ``torch.Generator`` seeded by ``split_seed`` — the same split for every run seed,
both parts kept in their original order; standardise inputs with the statistics of the final training
split when ``normalize`` (and the data set allows it); move to the device.

Standardisation is per channel for images (mean and population std over N, H, W) and per feature for
vectors (over N), generally over every dimension but dim 1; a std below 1e-8 counts as 1. The same
statistics are applied to train, validation and test.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from reglab.config import ConfigError, DataConfig
from reglab.data.base import CorruptDataError, TensorData
from reglab.data.fetch import fetch_command
from reglab.data.registry import get_dataset_info, validated_options


def take_subsets(data: TensorData, train: int | None, test: int | None) -> TensorData:
    """The first `train` training and first `test` test samples (None: all), copied so the rest is freed."""
    for field, n in (("train", train), ("test", test)):
        available = getattr(data, f"x_{field}").shape[0]
        if n is not None and n > available:
            raise ConfigError(f"data.{field}_subset: {n} exceeds the {available} {field} samples "
                              f"of {data.name}")

    def head(t: Tensor, n: int | None) -> Tensor:
        return t if n is None else t[:n].clone()

    return dataclasses.replace(data, x_train=head(data.x_train, train), y_train=head(data.y_train, train),
                               x_test=head(data.x_test, test), y_test=head(data.y_test, test))


def split_validation(data: TensorData, fraction: float, seed: int) -> TensorData:
    """Hold out ``max(1, round(fraction · N))`` random training samples (generator seeded by `seed`)."""
    if fraction == 0:
        return data
    n = data.x_train.shape[0]
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise ConfigError(f"data.val_split: {fraction} of {n} training samples leaves none for training")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values
    return dataclasses.replace(data, x_train=data.x_train[train], y_train=data.y_train[train],
                               x_val=data.x_train[val], y_val=data.y_train[val])


def standardize(data: TensorData) -> TensorData:
    """Inputs minus the training mean, over the training std, per channel / feature (dim 1)."""
    x = data.x_train
    dims = [d for d in range(x.dim()) if d != 1]
    var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
    std = var.sqrt()
    std = torch.where(std < 1e-8, torch.ones_like(std), std)

    def apply(t: Tensor | None) -> Tensor | None:
        return None if t is None else (t - mean) / std

    return dataclasses.replace(data, x_train=apply(x), x_val=apply(data.x_val), x_test=apply(data.x_test))


def load_dataset(cfg: DataConfig, *, device: str | torch.device = "cpu") -> TensorData:
    """The data set `cfg` describes, subset, split and standardised, on `device` (see the module doc)."""
    info = get_dataset_info(cfg.name)
    options = validated_options(info, cfg.options)
    try:
        data = info.loader(data_dir=cfg.data_dir, download=cfg.download, **options)
    except CorruptDataError as err:
        if (command := fetch_command(cfg.name)) is None:
            raise
        raise CorruptDataError(f"{err}; replace the file, or delete it and run `{command}` (a verified copy "
                               "in reglab's cache)") from None
    used = [name for name, value in cfg.augment if value]  # the options switched on, in field order
    if used and data.x_train.dim() != 4:
        raise ConfigError(f"data.augment.{used[0]}: needs images (N, C, H, W); {cfg.name} has inputs of shape "
                          f"{data.input_shape}")
    sizes = data.x_train.shape[2:]
    images = f"{'×'.join(map(str, sizes))} images of {cfg.name}"
    if cfg.augment.crop_padding > min(sizes, default=0):  # a wider pad crops only padding
        raise ConfigError(f"data.augment.crop_padding: {cfg.augment.crop_padding} exceeds the {images}")
    if cfg.augment.cutout > max(sizes, default=0):  # a larger square blanks more and more whole images
        raise ConfigError(f"data.augment.cutout: {cfg.augment.cutout} exceeds the {images}")
    data = take_subsets(data, cfg.train_subset, cfg.test_subset)
    data = split_validation(data, cfg.val_split, cfg.split_seed)
    if cfg.normalize and info.normalize:
        data = standardize(data)
    return data.to(device)
