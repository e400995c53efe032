"""Building a RunConfig from command-line options: `--config`, named flags, then `--set` overrides."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

import typer

from reglab.config import ConfigError, RunConfig, apply_overrides, parse_value, read_config_file


def non_empty_path(text: str) -> Path:
    """Parser of every path option and argument: `Path("")` is the current directory, so an empty string
    (a variable left unset, say) is refused rather than read as '.'."""
    if text == "":
        raise typer.BadParameter("'' is an empty path; write . for the current directory")
    return Path(text)


PathOpt = functools.partial(typer.Option, parser=non_empty_path, metavar="<path>")
PathArg = functools.partial(typer.Argument, parser=non_empty_path)

# flag name -> dotted config path
FLAG_PATHS = {
    "dataset": "data.name", "data_dir": "data.data_dir", "train_subset": "data.train_subset",
    "model": "model.name", "norm": "model.norm",
    "optimizer": "optim.name", "lr": "optim.lr", "weight_decay": "optim.weight_decay",
    "schedule": "optim.schedule.name", "warmup": "optim.schedule.warmup_epochs",
    "l1": "regularize.l1", "l2": "regularize.l2", "dropout": "regularize.dropout.p",
    "stochastic_depth": "regularize.stochastic_depth.rate", "ema": "regularize.ema",
    "swa": "regularize.swa.epochs", "label_smoothing": "regularize.label_smoothing",
    "input_noise": "regularize.input_noise", "mixup": "regularize.mixup",
    "cutmix": "regularize.cutmix", "sam": "regularize.sam_rho", "grad_clip": "regularize.grad_clip",
    "max_norm": "regularize.max_norm", "patience": "regularize.early_stopping.patience",
    "val_split": "data.val_split",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "loss": "train.loss",
    "objective": "train.objective", "device": "train.device", "amp": "train.amp",
    "compile": "train.compile", "seed": "seed",
}


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``["optim.lr=0.1", "model.options.widths=[64, 64]"]`` -> ``{"optim.lr": 0.1, ...}``."""
    out = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=0.01")
        out[key] = parse_value(value.strip())
    return out


def build_run_config(config: Path | None, flags: dict[str, Any], assignments: list[str],
                     base: dict | None = None) -> RunConfig:
    """The run config of `reglab train`: `config` (TOML) or `base` (e.g. a run directory's stored
    config), then the flags given, then the ``--set`` assignments."""
    base = read_config_file(config) if config else (base or {})
    overrides = {FLAG_PATHS[name]: value for name, value in flags.items() if value is not None}
    overrides.update(parse_assignments(assignments))
    cfg = RunConfig.from_dict(apply_overrides(base, overrides))
    check_paths(cfg)
    return cfg


def check_device(device: str | None, *, here: bool = True) -> None:
    """A `--device` override this machine cannot run is refused before any run starts, not once per run;
    `here`: whether the runs train on this machine (else, e.g. on a Ray cluster's GPU nodes, only the
    value is checked)."""
    if device is not None:
        from reglab.config import TrainConfig, validate
        from reglab.train.loop import resolve_device

        device = validate(TrainConfig, {"device": device}, prefix="train").device
        if here:
            resolve_device(device)


def check_data(cfg: RunConfig, prefix: str = "") -> None:
    """The data set a study's runs use must be on this machine (its registry probe finds it) unless they
    may download it, and its subsets, validation split and augmentation must fit it (`fits_data`): refused
    once, before any run starts, rather than failing every run alike."""
    from reglab.data import CorruptDataError, get_dataset_info
    from reglab.data.fetch import fetch_command

    name = cfg.data.name
    if cfg.data.download:
        return
    try:
        found = get_dataset_info(name).probe(cfg.data.data_dir)
    except (CorruptDataError, OSError):  # a damaged file: the loader names it, run by run
        return
    if found is None:
        how = fetch_command(name)
        raise ConfigError(f"{prefix}data.name: {name!r} is not on this machine; "
                          + (f"`{how}` gets it (or set data.download=true)" if how else
                             "`reglab datasets` says what it needs"))
    try:
        fits_data(cfg.data.model_dump_json())
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}") from None


@functools.cache
def fits_data(data_json: str) -> None:
    """Load the data set a `DataConfig` (as JSON) describes once, on the CPU, so that its own checks run
    (subsets within the set, a split that leaves training samples, augmentation of images that fit)."""
    from reglab.config import DataConfig
    from reglab.data import CorruptDataError, load_dataset

    with contextlib.suppress(CorruptDataError):  # a damaged file: the loader names it, run by run
        load_dataset(DataConfig.model_validate_json(data_json))


def check_paths(cfg: RunConfig, prefix: str = "") -> None:
    """Paths a config names must exist on this machine (checked where the run is launched)."""
    data_dir = cfg.data.data_dir
    if data_dir is not None and not data_dir.is_dir():
        raise ConfigError(f"{prefix}data.data_dir: {str(data_dir)!r} is not a directory")
