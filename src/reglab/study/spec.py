"""Study specs: a base run, named arms of overrides, seeds and a baseline — validated before anything runs.

    name = "quickstart"
    seeds = 3                      # or [0, 1, 7]
    baseline = "baseline"
    log = ["tensorboard"]          # optional experiment tracking (reglab.study.tracking)
    [base]                         # a RunConfig table
    model.name = "mlp"
    [arms.baseline]                # an empty arm is the base itself
    [arms.dropout]                 # overrides, deep-merged into the base
    regularize.dropout.p = 0.2
    [statistics]                   # how the report compares (changing it re-runs nothing)
    correction = "holm"            # or "bh"
    target = { test_acc = 0.9 }    # time-to-target
    [analysis]                     # optional end-of-training analyses per run (reglab.study.analysis)
    hessian = ["top", "trace"]

Every arm's resolved `RunConfig` is built and validated at load time; errors name the field,
e.g. ``arms.dropout.regularize.dropout.p: Input should be less than 1 (got 1.5)``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from reglab.config import (
    SEED_LIMIT,
    ConfigError,
    RunConfig,
    apply_overrides,
    deep_merge,
    identity_changes,
    read_config_file,
    run_identity,
    validate,
)
from reglab.study.analysis import DEFAULT_ANALYSIS, AnalysisSpec
from reglab.study.tracking import parse_sinks

EPOCH_METRICS = ("train_loss", "train_acc", "train_eval_loss", "train_eval_acc", "val_loss", "val_acc",
                 "test_loss", "test_acc")  # every run's per-epoch loss and accuracy (val_*: with a validation split)
MAX_SEEDS = 10_000  # seeds of one study: enough for any comparison, and a typo of a few digits is refused


def check_logged(metric: str, configs: dict[str, RunConfig], what: str) -> None:
    """`metric` (one of `EPOCH_METRICS`) must be logged by every arm's runs: val_* needs a validation split."""
    if metric.startswith("val_") and (without := [arm for arm, cfg in configs.items() if not cfg.data.val_split]):
        raise ConfigError(f"{what}: {metric} needs a validation split, which arm {without[0]!r} has not "
                         "(set data.val_split > 0)")


class StatisticsSpec(BaseModel):
    """How a study is compared; not part of any run, so changing it never re-runs anything."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    correction: Literal["holm", "bh"] = Field(
        "holm", description="multiple-comparison correction across the arms vs the baseline")
    target: dict[str, float] = Field(
        default_factory=dict, description="time-to-target: an epoch metric and its target, e.g. test_acc = 0.9")

    @field_validator("target")
    @classmethod
    def _one_target(cls, target: dict[str, float]) -> dict[str, float]:
        if len(target) > 1:
            raise ValueError(f"one metric at a time (got {', '.join(target)})")
        if unknown := [m for m in target if m not in EPOCH_METRICS]:
            raise ValueError(f"{unknown[0]!r} is not an epoch metric ({', '.join(EPOCH_METRICS)})")
        return target


class StudySpec(BaseModel):
    """A study: `base` run config, `arms` of overrides deep-merged into it, `seeds`, `baseline` arm."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="study name (default output directory studies/<name>)")
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="a RunConfig table shared by every arm")
    arms: dict[str, dict[str, Any]] = Field(min_length=1, description="arm name -> overrides of `base`")
    seeds: int | list[int] = Field(3, description="N (seeds 0..N-1) or an explicit list")
    baseline: str | None = Field(None, description="the arm the others are compared with (default: first)")
    statistics: StatisticsSpec = Field(default_factory=StatisticsSpec, description="how the report compares; "
                                   "not part of the spec hash")
    log: list[str] = Field(default_factory=list, description="experiment-tracking sinks, e.g. "
                           '["tensorboard", "mlflow"] (reglab.study.tracking); not part of the spec hash')
    analysis: AnalysisSpec | None = Field(None, description="end-of-training analyses of every run")

    _configs: dict[str, RunConfig] = PrivateAttr(default_factory=dict)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_integers(cls, seeds: Any) -> Any:
        if isinstance(seeds, bool | str) or (isinstance(seeds, list) and any(isinstance(s, bool | str) for s in seeds)):
            raise ValueError(f"expected N or a list of integers (got {seeds!r})")
        return seeds

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, seeds: int | list[int]) -> int | list[int]:
        count = seeds if isinstance(seeds, int) else len(seeds)
        if count < 1:
            raise ValueError(f"needs at least one seed (got {seeds})")
        if count > MAX_SEEDS:
            raise ValueError(f"at most {MAX_SEEDS} seeds (got {count})")
        if isinstance(seeds, list) and (len(set(seeds)) != len(seeds) or min(seeds) < 0):
            raise ValueError(f"must be distinct non-negative integers (got {seeds})")
        if isinstance(seeds, list) and max(seeds) >= SEED_LIMIT:
            raise ValueError(f"seed {max(seeds)} is too large (seeds are below 2**63, the study index's integers)")
        return seeds

    @field_validator("log")
    @classmethod
    def _check_log(cls, log: list[str]) -> list[str]:
        parse_sinks(log)
        return log

    @model_validator(mode="after")
    def _resolve(self) -> StudySpec:
        if self.baseline is None:
            self.baseline = next(iter(self.arms))
        elif self.baseline not in self.arms:
            raise ValueError(f"baseline: {self.baseline!r} is not an arm (arms: {', '.join(self.arms)})")
        for where, table in (("base", self.base), *((f"arms.{a}", t) for a, t in self.arms.items())):
            if "seed" in table:
                raise ValueError(f"{where}.seed: a study sets seeds with `seeds`, not in a run config")
        slugs: dict[str, str] = {}
        for arm in self.arms:
            if (other := slugs.setdefault(arm_slug(arm), arm)) != arm:
                raise ValueError(f"arms: {arm!r} and {other!r} map to the same run directory name")
        validate(RunConfig, self.base, prefix="base")
        self._configs = {arm: validate(RunConfig, deep_merge(self.base, table), prefix=f"arms.{arm}")
                         for arm, table in self.arms.items()}
        for arm, cfg in self._configs.items():
            check_buildable(cfg, prefix=f"arms.{arm}")
        for metric in self.statistics.target:
            check_logged(metric, self._configs, "statistics.target")
        return self

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        """Validate a spec, raising a one-line `ConfigError` that names the field."""
        return validate(cls, data)

    @classmethod
    def from_toml(cls, path: str | Path) -> StudySpec:
        return cls.from_dict(read_config_file(path))

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        if data["analysis"] is None:  # specs without analyses keep the form (and hash) they had
            del data["analysis"]
        return data

    # ---------------------------------------------------------------------------------- queries
    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def arm_config(self, arm: str, seed: int) -> RunConfig:
        """The resolved, validated run config of one arm and seed."""
        return self._configs[arm].model_copy(update={"seed": seed}, deep=True)

    @property
    def spec_hash(self) -> str:
        """Hash of what is trained (`trained_part`)."""
        return content_hash(trained_part(self.to_dict()))

    # -------------------------------------------------------------------------------- changes
    def with_seeds(self, seeds: int | list[int]) -> StudySpec:
        return StudySpec.from_dict({**self.to_dict(), "seeds": seeds})

    def with_statistics(self, *, correction: str | None = None, target: dict[str, float] | None = None,
                        baseline: str | None = None) -> StudySpec:
        """The spec with how it is compared replaced where given: its `statistics` settings and its baseline
        arm (none of them changes a run)."""
        statistics = self.statistics.model_dump()
        statistics.update({k: v for k, v in (("correction", correction), ("target", target)) if v is not None})
        return StudySpec.from_dict({**self.to_dict(), "statistics": statistics,
                                    "baseline": self.baseline if baseline is None else baseline})

    def with_analysis(self) -> StudySpec:
        """This spec with its [analysis], or the default analyses when it has none (`--analyze`)."""
        if self.analysis is not None:
            return self
        return StudySpec.from_dict({**self.to_dict(), "analysis": DEFAULT_ANALYSIS})

    def override(self, overrides: dict[str, Any]) -> StudySpec:
        """Apply dotted run-config overrides (e.g. ``{"train.epochs": 1}``) to the base and every arm."""
        data = self.to_dict()
        data["base"] = apply_overrides(data["base"], overrides)
        for arm, table in data["arms"].items():
            for dotted, value in overrides.items():
                if _has_path(table, dotted):
                    data["arms"][arm] = apply_overrides(data["arms"][arm], {dotted: value})
        return StudySpec.from_dict(data)


def check_buildable(cfg: RunConfig, *, prefix: str) -> None:
    """What can be checked without loading data: data-set and model names, model option names,
    norm, and whether stochastic depth / DropBlock have blocks / feature maps to act on."""
    import inspect

    from reglab.data import get_dataset_info
    from reglab.models import get_model_info
    from reglab.models.registry import RESERVED

    try:
        get_dataset_info(cfg.data.name)
        info = get_model_info(cfg.model.name)
    except ConfigError as err:
        raise ConfigError(f"{prefix}.{err}") from None
    accepted = [k for k in inspect.signature(info.builder).parameters if k not in RESERVED]
    unknown = [k for k in cfg.model.options if k not in accepted]
    problems = [
        (bool(unknown), f"model.options.{unknown[0] if unknown else ''}: unknown option for {info.name!r} "
                        f"(accepted: {', '.join(accepted) or 'none'})"),
        (cfg.model.norm is not None and cfg.model.norm not in info.norms,
         f"model.norm: {cfg.model.norm!r} is not supported by {info.name!r} "
         f"(supported: {', '.join(info.norms)})"),
        (cfg.regularize.stochastic_depth.rate > 0 and not info.residual,
         f"regularize.stochastic_depth.rate: model {info.name!r} has no residual blocks (rate must be 0)"),
        (cfg.regularize.dropblock.p > 0 and not info.dropblock,
         f"regularize.dropblock.p: model {info.name!r} has no convolutional feature maps (p must be 0)"),
    ]
    for bad, message in problems:
        if bad:
            raise ConfigError(f"{prefix}.{message}")
    build_on_meta(cfg, prefix=prefix)


def build_on_meta(cfg: RunConfig, *, prefix: str) -> None:
    """Build the run's model on the meta device (no data, no initialisation), give it zeroed CPU memory
    and pass two samples through it, so that options no signature can check (negative widths, too
    many poolings) fail at load time. Each distinct (model, data, regularize) section is built once
    per process (and registration)."""
    from reglab.data import get_dataset_info
    from reglab.models import get_model_info

    sections = tuple(getattr(cfg, name).model_dump_json() for name in ("model", "data", "regularize"))
    dataset = get_dataset_info(cfg.data.name)
    registered = (get_model_info(cfg.model.name).builder, dataset.loader, dataset.shape)
    problem = _meta_build_problem(sections, registered)
    if problem is not None:
        raise ConfigError(f"{prefix}.{problem}")


CPU_CHECK_BYTES = 2**28  # parameters and buffers up to 256 MiB get their load-time forward on the CPU


@functools.lru_cache(maxsize=256)
def _meta_build_problem(sections: tuple[str, str, str], registered: tuple) -> str | None:
    """Why a model of these (model, data, regularize) sections, as JSON, cannot be built; None if it can.
    `registered` (the model's builder, the data set's loader and shape functions) only keys the cache."""
    import torch

    from reglab.config import DataConfig, ModelConfig, RegularizeConfig
    from reglab.data.registry import dataset_shape
    from reglab.models import build_model

    model_cfg, data, reg = (kind.model_validate_json(text) for kind, text in
                            zip((ModelConfig, DataConfig, RegularizeConfig), sections, strict=True))
    try:
        shape = dataset_shape(data.name, data.options)
    except ConfigError as err:
        return str(err)
    if shape is None:
        return None
    input_shape, num_outputs = shape
    try:
        with torch.device("meta"):
            model = build_model(model_cfg, input_shape=input_shape, num_outputs=num_outputs, reg=reg)
        # The forward on zeroed CPU memory (zeros: valid values for any index buffer), as meta kernels
        # would first import torch's Python decompositions (≈ 1 s a process); on meta only for a model
        # too large to allocate lightly.
        nbytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
        device = "cpu" if nbytes <= CPU_CHECK_BYTES else "meta"
        with torch.no_grad():
            if device == "cpu":  # zeros assigned: `to_empty`'s first meta-to-CPU copy takes 0.25–0.4 s in torch's refs
                model.load_state_dict({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in model.state_dict().items()},
                                      assign=True)
                if any(t.is_meta for t in (*model.parameters(), *model.buffers())):  # a non-persistent buffer
                    model.to_empty(device="cpu")
                    for tensor in (*model.parameters(), *model.buffers()):
                        tensor.zero_()
            model.eval()(torch.zeros(2, *input_shape, device=device))
    except ConfigError as err:
        return str(err)
    except Exception as err:
        text = " ".join(str(err).split())
        return (f"model: {model_cfg.name!r} with options {model_cfg.options} cannot be built "
                f"for {data.name} inputs {input_shape} ({type(err).__name__}: {text})")
    return None


def arm_slug(arm: str) -> str:
    """A file-system-safe form of an arm name, used in run ids and directory names."""
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", arm).strip("_.")
    return slug or "arm"


def run_id(arm: str, seed: int) -> str:
    return f"{arm_slug(arm)}__s{seed}"


def trained_part(data: dict[str, Any]) -> dict[str, Any]:
    """A spec as `StudySpec.to_dict` gives it, reduced to what is trained: without how it is compared (its
    statistics settings and baseline arm), its description, tracking sinks and analyses, so changing them
    resumes the study (finished runs are analysed, not retrained), and without the execution settings of
    its base and arms (`EXECUTION_FIELDS`), which are not part of a run's identity either (`same_run`)."""
    kept = {k: v for k, v in data.items() if k not in ("statistics", "baseline", "description", "log", "analysis")}
    kept["base"] = _without_execution(kept.get("base", {}))
    kept["arms"] = {arm: _without_execution(table) for arm, table in kept.get("arms", {}).items()}
    return kept


def _without_execution(table: dict[str, Any]) -> dict[str, Any]:
    """A base or arm table without its `EXECUTION_FIELDS` (and without a `train` table they alone filled)."""
    if "train" not in table:
        return table
    train = run_identity(table)["train"]
    return {**table, "train": train} if train else {k: v for k, v in table.items() if k != "train"}


def content_hash(data: Any) -> str:
    """A short stable hash of JSON-serialisable data (keys sorted)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def same_run(stored: dict, config: dict) -> bool:
    """Whether a stored run config and `config` describe the same run (`reglab.config.identity_changes`)."""
    return not identity_changes(stored, config)


def _has_path(table: dict[str, Any], dotted: str) -> bool:
    node: Any = table
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def load_spec(source: str | Path | StudySpec, *, seeds: int | list[int] | None = None,
              epochs: int | None = None) -> StudySpec:
    """A spec from a preset name, a TOML file or a `StudySpec`, with optional `seeds`/`epochs` overrides.

    Every arm's run config is resolved and validated here, before anything runs:

        >>> spec = load_spec("quickstart", seeds=2, epochs=1)
        >>> list(spec.arms), spec.baseline, spec.seed_list
        (['baseline', 'weight_decay', 'dropout', 'stochastic_depth', 'ema'], 'baseline', [0, 1])
        >>> spec.arm_config("dropout", seed=1).regularize.dropout.p
        0.3
        >>> spec.override({"optim.lr": 0.01}).arm_config("ema", seed=0).optim.lr
        0.01
        >>> load_spec("no-such-study")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        reglab.config.ConfigError: 'no-such-study' is neither a TOML file nor a preset (presets: ...)
    """
    if isinstance(source, StudySpec):
        spec = source
    elif str(source).endswith(".toml") or Path(source).is_file():
        spec = StudySpec.from_toml(source)
    else:
        from reglab.presets import preset_names, read_preset

        if str(source) not in preset_names():
            raise ConfigError(f"{source!r} is neither a TOML file nor a preset "
                              f"(presets: {', '.join(preset_names())})")
        spec = StudySpec.from_dict(read_preset(str(source)))
    if seeds is not None:
        spec = spec.with_seeds(seeds)
    if epochs is not None:
        spec = spec.override({"train.epochs": epochs})
    return spec
