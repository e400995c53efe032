"""`mnist1d`: MNIST-1D (Greydanus 2020), generated locally with the ``mnist1d`` package.

Generated with ``mnist1d.data.make_dataset`` from the package's default arguments
(``get_dataset_args``) with `num_samples`, `seed` and `shuffle_seq` replaced — never its
download/pickle path. The defaults give the reference set: 5,000 sequences of length 40, split 80/20
into 4,000 train / 1,000 test, 10 classes; the package already centres and scales x globally.
Generation (about a second) seeds NumPy's and Python's global generators; their states are restored.
The arrays are cached as ``.npz`` (loaded with ``allow_pickle=False``) in
``${XDG_CACHE_HOME:-~/.cache}/reglab/mnist1d/``, keyed by the package version and the options.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import random
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from reglab.data.base import CorruptDataError, TensorData
from reglab.data.paths import atomic_file, cache_dir
from reglab.data.registry import Found, register_dataset

KEYS = ("x_train", "y_train", "x_test", "y_test")
DEFAULTS = {"num_samples": 5000, "seed": 42, "shuffle_seq": False}


def cache_path(num_samples: int, seed: int, shuffle_seq: bool) -> Path:
    version = importlib.metadata.version("mnist1d")
    shuffled = "-shuffled" if shuffle_seq else ""
    return cache_dir("mnist1d") / f"mnist1d-{version}-n{num_samples}-seed{seed}{shuffled}.npz"


def generate(num_samples: int, seed: int, shuffle_seq: bool) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset  # imports matplotlib: only when generating

    args = get_dataset_args()
    args.num_samples, args.seed, args.shuffle_seq = num_samples, seed, shuffle_seq
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x_train": data["x"].astype(np.float32), "y_train": data["y"].astype(np.int64),
            "x_test": data["x_test"].astype(np.float32), "y_test": data["y_test"].astype(np.int64)}


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in KEYS}
    except Exception as err:  # zipfile, KeyError, ValueError, OSError: the file is unusable
        raise CorruptDataError(f"{path}: unreadable mnist1d cache ({err}); delete it to regenerate") from None


def _probe(data_dir: Path | None) -> Found | None:
    if importlib.util.find_spec("mnist1d") is None:
        return None
    cached = cache_path(**DEFAULTS)
    where = str(cached) if cached.is_file() else "generated (mnist1d package), cached on first use"
    return Found(where, "4000 train / 1000 test (default options)")


@register_dataset("mnist1d", description="MNIST-1D: 10-class sequences of length 40, 4000/1000, generated "
                  "locally", probe=_probe, shape=lambda **_: ((40,), 10))
def load_mnist1d(*, data_dir: Path | None, download: bool, num_samples: Annotated[int, Field(ge=10)] = 5000,
                 seed: Annotated[int, Field(ge=0, lt=2**32)] = 42, shuffle_seq: bool = False) -> TensorData:
    """`num_samples` (rounded down to a multiple of 10) split 80/20; `seed` of the generator;
    `shuffle_seq` permutes the 40 positions (one fixed permutation). `data_dir`/`download` are unused.
    `seed` < 2**32: NumPy's global generator, which the package seeds, takes no larger one."""
    path = cache_path(num_samples, seed, shuffle_seq)
    if path.is_file():
        arrays = _read_cache(path)
    else:
        arrays = generate(num_samples, seed, shuffle_seq)
        with atomic_file(path) as out:
            np.savez(out, **arrays)
    tensors = [torch.from_numpy(arrays[k]) for k in KEYS]
    return TensorData("mnist1d", *tensors, num_classes=10)
