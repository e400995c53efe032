"""Run configuration: typed, validated at the boundary, saved with every result.

A `RunConfig` is pure data. It has five sections — `data`, `model`, `optim`, `regularize`,
`train` — plus the one integer `seed` that fixes data order, initialisation and every random mask.
Unknown keys fail loudly (``extra="forbid"``) and every error names the dotted field that is wrong:

    >>> RunConfig.from_dict({"regularize": {"dropout": {"p": 1.5}}})
    Traceback (most recent call last):
    reglab.config.ConfigError: regularize.dropout.p: Input should be less than 1 (got 1.5)

Conventions (see docs/regularizers.md):
  * dropout ``p`` is the probability of *dropping* a unit (PyTorch's meaning);
  * ``l2 = λ`` adds ``(λ/2)·Σw²`` to the loss (gradient ``λ·w``), so SGD with ``l2=λ`` equals SGD
    with ``weight_decay=λ``, and so does Adam (its ``weight_decay`` is coupled, as torch's); AdamW's
    decoupled decay takes different steps;
  * stochastic depth ``rate`` is the drop probability of the *last* block, ``1 − p_L``;
  * ``input_noise = σ`` trains on ``x + σ·ε``, ε ~ N(0, I), in the standardised units the model sees.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field (one line)."""


SEED_LIMIT = 2**63
"""Run seeds lie in [0, 2**63): torch's generators take [0, 2**64), a study's index stores the seed as
SQLite's signed 64-bit INTEGER."""
GENERATOR_SEED_LIMIT = 2**64
"""Seeds only a torch generator takes (`torch.Generator.manual_seed`) lie in [0, 2**64)."""
MAX_THREADS = 1024
"""torch's thread pools take more, but fail to start (or crash) where the system refuses the threads."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic's lax mode reads true as 1: `optim.lr = true` would train at lr 1."""
        annotation = cls.model_fields[info.field_name].annotation
        kinds = set(get_args(annotation)) or {annotation}
        if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
            raise ValueError(f"expected a number (got {value!r})")
        return value


# --------------------------------------------------------------------------------------------- data
class AugmentConfig(_Section):
    """Batched on-device augmentation of image batches."""

    crop_padding: int = Field(0, ge=0, description="random crop after zero-padding by this many pixels (0: off)")
    flip: bool = Field(False, description="random horizontal flip with probability 1/2")
    rotate: float = Field(0.0, ge=0.0, le=180.0, description="random rotation by an angle uniform in "
                          "[-rotate, rotate] degrees, bilinear, about the image centre (0: off)")
    cutout: int = Field(0, ge=0, description="zero one random square of this side per image, its centre "
                        "uniform over the pixels (DeVries & Taylor 2017; 0: off)")


class DataConfig(_Section):
    """Which data set, which part of it, and how it is prepared."""

    name: str = Field("mnist1d", description="registered data set name (`reglab datasets` lists them)")
    data_dir: Path | None = Field(None, description="directory searched first for data files")
    download: bool = Field(False, description="fetch official files when absent (needs network)")
    train_subset: int | None = Field(None, gt=0, description="keep the first N training samples (a validation "
                                     "split is carved from these N)")
    test_subset: int | None = Field(None, gt=0, description="keep the first N test samples (smoke runs: the first N "
                                    "need not be a representative sample)")
    val_split: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of training samples held out")
    split_seed: int = Field(0, ge=0, lt=GENERATOR_SEED_LIMIT,
                            description="seed of the validation split (fixed across run seeds)")
    normalize: bool = Field(True, description="standardise inputs with training-split statistics")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    options: dict[str, Any] = Field(default_factory=dict, description="data-set specific options")

    @field_validator("data_dir", mode="before")
    @classmethod
    def _non_empty(cls, value: Any) -> Any:
        """`Path("")` is the current directory: an empty string is a mistake, not a way to write '.'."""
        if value == "":
            raise ValueError("'' is an empty path; write . for the current directory")
        return value


# -------------------------------------------------------------------------------------------- model
class ModelConfig(_Section):
    """Which architecture; `options` are passed to its registered builder (see `reglab models`)."""

    name: str = Field("mlp", description="registered model name")
    norm: Literal["none", "batch", "layer"] | None = Field(
        None, description="normalisation layers; None = the model's default"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="builder keyword arguments")


# -------------------------------------------------------------------------------------------- optim
class ScheduleConfig(_Section):
    """Learning-rate schedule; warm-up is linear over the first `warmup_epochs` epochs."""

    name: Literal["constant", "step", "cosine", "linear", "plateau"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0.0)
    step_size: int = Field(10, gt=0, description="step: epochs between decays")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="step/plateau: decay factor")
    patience: int = Field(3, ge=0, description="plateau: epochs without improvement before decay")
    min_lr: float = Field(0.0, ge=0.0, description="cosine/linear/plateau: floor of the learning rate")


class OptimConfig(_Section):
    """Optimiser from `torch.optim`; `weight_decay` is coupled for SGD/RMSProp/Adam, decoupled for AdamW."""

    name: Literal["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="momentum/nesterov: the momentum coefficient "
                            "(unused by the others: rmsprop runs without momentum)")
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="rmsprop smoothing constant")
    weight_decay: float = Field(0.0, ge=0.0, description="optimizer weight decay (decoupled only for adamw)")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    @model_validator(mode="after")
    def _betas_in_range(self) -> OptimConfig:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1) (got {self.betas})")
        return self


# --------------------------------------------------------------------------------------- regularize
class DropoutConfig(_Section):
    """Dropout with drop probability `p` and inverted scaling, at the model's dropout sites."""

    p: float = Field(0.0, ge=0.0, lt=1.0, description="probability of dropping a unit")
    layers: list[int] | None = Field(None, description="indices of the dropout sites to use; None = all")


class StochasticDepthConfig(_Section):
    """Stochastic depth (Huang et al. 2016): residual blocks skipped at random while training.

    Survival of block l of L under the linear rule: p_l = 1 − (l/L)(1 − p_L), with `rate` = 1 − p_L.
    """

    rate: float = Field(0.0, ge=0.0, lt=1.0, description="drop probability of the last block, 1 − p_L")
    rule: Literal["linear", "constant"] = "linear"
    mode: Literal["row", "batch"] = Field("row", description="row: per sample; batch: whole batch")
    scaling: Literal["inverted", "test"] = Field(
        "inverted", description="inverted: divide by p_l in training; test: multiply by p_l at test time"
    )
    blocks: list[int] | None = Field(None, description="0-based indices of droppable blocks; None = all")


class DropBlockConfig(_Section):
    """DropBlock (Ghiasi et al. 2018) for conv feature maps."""

    p: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of activations dropped")
    block_size: int = Field(3, gt=0)


class EarlyStoppingConfig(_Section):
    patience: int = Field(0, ge=0, description="epochs without improvement before stopping (0: off)")
    monitor: Literal["val_loss", "val_acc", "test_loss", "test_acc"] = "val_loss"
    restore_best: bool = True


class SWAConfig(_Section):
    """Stochastic weight averaging (Izmailov et al. 2018): the weights at the end of each of the last
    `epochs` epochs are averaged, and the average (its BatchNorm statistics recomputed) is evaluated."""

    epochs: int = Field(0, ge=0, description="average the weights of the last N epochs (0: off)")
    lr: float | None = Field(None, gt=0.0, description="learning rate during those epochs (None: the "
                             "schedule goes on), reached after `anneal_epochs` as torch's SWALR does")
    anneal_epochs: int = Field(0, ge=0, description="epochs over which the lr moves from the schedule's to `lr`")
    anneal: Literal["cos", "linear"] = "cos"


class RegularizeConfig(_Section):
    """Every regularizer of a run, in one declarative place."""

    l1: float = Field(0.0, ge=0.0, description="adds l1·Σ|w| to the loss")
    l2: float = Field(0.0, ge=0.0, description="adds (l2/2)·Σw² to the loss (gradient l2·w)")
    penalize: Literal["weights", "all"] = Field(
        "weights", description="weights: Linear/Conv weights only; all: every parameter"
    )
    dropout: DropoutConfig = Field(default_factory=DropoutConfig)
    stochastic_depth: StochasticDepthConfig = Field(default_factory=StochasticDepthConfig)
    dropblock: DropBlockConfig = Field(default_factory=DropBlockConfig)
    ema: float | None = Field(None, gt=0.0, lt=1.0, description="decay of a weight EMA used for evaluation")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    input_noise: float = Field(0.0, ge=0.0, description="σ of Gaussian noise added to training inputs, x + σ·ε "
                               "(Bishop 1995), in the units the model sees: training-set standard deviations "
                               "where the data are standardised (0: off)")
    mixup: float = Field(0.0, ge=0.0, description="Beta(α, α) of mixup (0: off)")
    cutmix: float = Field(0.0, ge=0.0, description="Beta(α, α) of cutmix (0: off)")
    grad_clip: float | None = Field(None, gt=0.0, description="clip the global gradient norm to this value")
    max_norm: float | None = Field(None, gt=0.0, description="after every step, rescale each unit's incoming weights "
                                   "(a Linear row, a Conv filter) to L2 norm ≤ max_norm (Srivastava et al. 2014)")
    sam_rho: float = Field(0.0, ge=0.0, description="sharpness-aware minimisation radius ρ (0: off)")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    swa: SWAConfig = Field(default_factory=SWAConfig)


# -------------------------------------------------------------------------------------------- train
Objective = Literal["drop", "rs", "rs+r1", "rs+r2", "drop-r2", "drop-r1"]


class TrainConfig(_Section):
    """How long and how the loop runs."""

    epochs: int = Field(10, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    batch_size: int = Field(128, ge=0, description="0: full-batch gradient descent")
    loss: Literal["ce", "mse"] = Field(
        "ce", description="ce: cross-entropy; mse: ½‖f(x) − y‖² summed over outputs, averaged over samples"
    )
    objective: Objective = Field(
        "drop", description="drop: ordinary training; others: the dropout-theory objectives (reglab.theory)"
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    threads: int = Field(1, gt=0, le=MAX_THREADS, description="torch intra-op CPU threads; results on CPU depend "
                         "on it, so every execution path uses this value")
    amp: bool = Field(False, description="bf16 autocast on CUDA")
    compile: bool = Field(False, description="torch.compile the model on CUDA (in a pack: the pack's forward)")
    channels_last: bool = Field(True, description="channels-last memory format for conv nets on CUDA (on CPU "
                                "they always run channels-last, oneDNN's own layout)")
    cudnn_benchmark: bool = Field(
        True, description="cuDNN's autotuner on CUDA (torch.backends.cudnn.benchmark, process-wide, set when a "
                          "CUDA run is built): each convolution shape gets the fastest algorithm, timed on first "
                          "use; off: cuDNN's heuristic choice"
    )
    cuda_graphs: bool = Field(
        True, description="packed training on CUDA: capture the whole step as one CUDA graph (eager where "
                          "capture is impossible, with the reason)"
    )
    eval_batch_size: int = Field(2048, gt=0, description="samples per forward pass in evaluation (on CPU a "
                                 "network with 2-D convolutions uses at most 32, which stay in cache)")
    eval_train_samples: int | Literal["auto"] = Field(
        "auto", description="training samples evaluated (eval mode) per epoch for the generalization gap; "
        "auto: min(n_train, 10000, max(1000, n_train // 5)) (reglab.train.eval_budget); 0: off"
    )
    checkpoint_every: int = Field(1, ge=0, description="epochs between checkpoints (0: never)")
    track_condensation: bool = Field(
        False, description="log effective_ratio/<first Linear/Conv layer> each epoch (reglab.theory)"
    )

    @model_validator(mode="after")
    def _r1_needs_mse(self) -> TrainConfig:
        if self.objective in ("rs+r1", "drop-r1") and self.loss != "mse":
            raise ValueError(f"objective {self.objective!r} adds or subtracts R1, whose formula holds for "
                             f"the mse loss only (Zhang & Xu's lemma); set train.loss = 'mse'")
        return self

    @field_validator("eval_train_samples", mode="before")
    @classmethod
    def _eval_train_samples(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            return value
        raise ValueError(f"expected a non-negative integer or 'auto' (got {value!r})")

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
            raise ValueError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N, mps)")
        return device


class RunConfig(_Section):
    """One training run: everything needed to reproduce it bit for bit on CPU."""

    seed: int = Field(0, ge=0, lt=SEED_LIMIT)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    regularize: RegularizeConfig = Field(default_factory=RegularizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        es = self.regularize.early_stopping
        if es.patience and es.monitor.startswith("val") and self.data.val_split == 0:
            raise ValueError("regularize.early_stopping.monitor uses the validation split; set data.val_split > 0")
        if self.regularize.mixup and self.regularize.cutmix:
            raise ValueError("regularize.mixup and regularize.cutmix are exclusive; choose one")
        if (self.regularize.mixup or self.regularize.cutmix) and self.train.objective != "drop":
            mixing = "mixup" if self.regularize.mixup else "cutmix"
            raise ValueError(f"regularize.{mixing}: not with train.objective = {self.train.objective!r}, whose "
                             "loss of a batch is the theory's (mixing needs objective 'drop')")
        swa = self.regularize.swa
        if swa.epochs:
            if swa.epochs > self.train.epochs:
                raise ValueError(f"regularize.swa.epochs: averages the last {swa.epochs} epochs of "
                                 f"train.epochs = {self.train.epochs}; at most that many")
            if self.regularize.ema is not None:
                raise ValueError("regularize.swa and regularize.ema both average the weights; choose one")
            if es.patience:
                raise ValueError("regularize.swa: not with early stopping (the average needs its last epochs)")
            if self.train.max_steps:
                raise ValueError("regularize.swa: not with train.max_steps (the averaged epochs are the last "
                                 "of train.epochs; set the budget in epochs)")
            if swa.lr is not None and self.optim.schedule.name == "plateau":
                raise ValueError("regularize.swa.lr: not with the plateau schedule (set the lr of the "
                                 "averaged epochs with another schedule, or leave swa.lr unset)")
            if swa.anneal_epochs > swa.epochs:
                raise ValueError(f"regularize.swa.anneal_epochs: at most regularize.swa.epochs = {swa.epochs}")
        return self

    # ------------------------------------------------------------------ construction and export
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return validate(cls, data)

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(read_config_file(path))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def override(self, overrides: dict[str, Any]) -> RunConfig:
        """A new config with dotted-path overrides applied, e.g. ``{"optim.lr": 0.1}``."""
        return RunConfig.from_dict(apply_overrides(self.to_dict(), overrides))


EXECUTION_FIELDS = ("train.channels_last", "train.cudnn_benchmark", "train.cuda_graphs", "train.compile")
"""Settings that choose how a run's kernels execute on CUDA, not what the run is (a CPU run trains the
same with any of them): a run or study resumes when only these differ (`identity_changes`)."""


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A run config as data without its `EXECUTION_FIELDS` (what `identity_changes` compares)."""
    train = {k: v for k, v in config.get("train", {}).items() if f"train.{k}" not in EXECUTION_FIELDS}
    return {**config, "train": train}


def identity_changes(stored: dict[str, Any], config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (stored, new) for every field in which two run configs (as dicts) differ as runs:
    not in the `EXECUTION_FIELDS`, and a field one of them lacks — one added to reglab after that config
    was written — counts as its default, since a field is added with a default that trains as before.
    A default that changes is still a change: the stored config holds the old value."""
    old, new, defaults = flatten(run_identity(stored)), flatten(run_identity(config)), _default_fields()
    missing = object()
    changes = {}
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, defaults.get(key, missing)), new.get(key, defaults.get(key, missing))
        if a != b:
            changes[key] = (None if a is missing else a, None if b is missing else b)
    return changes


@functools.cache
def _default_fields() -> dict[str, Any]:
    """Every field of a default `RunConfig`, dotted (`flatten`)."""
    return flatten(RunConfig.model_validate({}).to_dict())


# ------------------------------------------------------------------------------------ helpers
def validate(model: type[BaseModel], data: dict[str, Any], prefix: str = ""):
    """Validate `data` as `model`, turning pydantic's report into a one-line `ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix)) from None


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in (*([prefix] if prefix else []), *first["loc"]))
    msg = first["msg"].removeprefix("Value error, ")
    got = "" if first["type"] in ("value_error", "missing") else f" (got {first.get('input')!r})"
    more = f" [+{err.error_count() - 1} more]" if err.error_count() > 1 else ""
    return f"{loc}: {msg}{got}{more}" if loc else f"{msg}{got}{more}"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A config file as a dict: TOML, or JSON for a ``.json`` file (a run's own config.json)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err.__class__.__name__}: {err})") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: invalid JSON: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object of config sections")
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None


def parse_value(text: str) -> Any:
    """Parse a command-line value as a TOML scalar/array, falling back to a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of `data` with ``{"a.b.c": value}`` overrides merged in."""
    out = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{dotted}: '{key}' is a value, not a section")
            node = child
        node[leaf] = value
    return out


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `update` into a copy of `base` (tables merge, values replace)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
