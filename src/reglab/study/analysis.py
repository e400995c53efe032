"""End-of-training analyses of a study's runs: flatness and condensation as metrics with error bars.

    [analysis]                      # in a study spec; or `reglab compare --analyze`
    hessian = ["top", "trace"]      # λ_max (Lanczos) and tr H (Hutchinson)
    landscape = "1d"                # mean loss rise at ±radius along random filter-normalized directions
    effective_ratio = true          # greedy cover ratio of the first Linear/Conv layer

Each finished run is analysed where it trained (same process and device, whatever the executor),
by `finish_analysis`, right after training. The values join the run's final metrics (store and
summary.json), so the study statistics apply to them; `<run>/analysis/analysis.json` records the
settings, mode, device and versions. A run whose analysis.json is missing or was made with other
settings is analysed again when the study is resumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reglab.config import SEED_LIMIT, ConfigError
from reglab.train.rundir import clean_json, write_json_atomic

if TYPE_CHECKING:
    from reglab.study.executors import RunTask
    from reglab.train.loop import RunResult

ANALYSIS_FILE = Path("analysis") / "analysis.json"

NOISE = {"hessian_top": "hessian_top_residual", "hessian_trace": "hessian_trace_se",
         "landscape_rise": "landscape_rise_se"}
"""Each metric's estimator noise column: Lanczos residual bound, Hutchinson and direction standard errors."""


class AnalysisSpec(BaseModel):
    """What to compute at the end of every run, on the first `samples` training samples, in `mode`."""

    model_config = ConfigDict(extra="forbid")

    hessian: list[Literal["top", "trace"]] = Field(default_factory=list, description="top and/or trace")
    landscape: Literal["1d"] | None = Field(None, description="1d: loss rise along random directions")
    effective_ratio: bool = Field(False, description="greedy effective ratio of the first Linear/Conv layer")
    per_layer: bool = Field(False, description="also the Hessian quantities of each module's block")
    mode: Literal["eval", "train"] = Field("eval", description="eval: dropout off, BatchNorm running statistics")
    samples: int = Field(1000, ge=1, description="first N training samples")
    batch_size: int | None = Field(None, ge=1, description="accumulate Hessian products over batches")
    trace_samples: int = Field(50, ge=2, description="Hutchinson probes")
    directions: int = Field(5, ge=2, description="random directions of the landscape rise")
    radius: float = Field(0.5, gt=0, description="α of the landscape rise, in filter-normalized units")
    threshold: float = Field(0.95, gt=-1, lt=1, description="cosine above which neurons share a direction")
    seed: int = Field(0, ge=0, lt=SEED_LIMIT,
                      description="added to each run's seed for directions, start vectors and probes")

    @model_validator(mode="after")
    def _asks_for_something(self) -> AnalysisSpec:
        if not (self.hessian or self.landscape or self.effective_ratio):
            raise ConfigError("asks for nothing: set hessian, landscape or effective_ratio")
        return self


DEFAULT_ANALYSIS = {"hessian": ["top", "trace"], "landscape": "1d", "effective_ratio": True}
"""What `reglab compare --analyze` asks for when the spec has no [analysis] section."""


def analyze_trained(run_dir: Path, spec: AnalysisSpec, *, seed: int, device: str) -> dict[str, float]:
    """The analysis values of a finished run directory (its model.pt), written to analysis.json."""
    import torch

    from reglab import __version__
    from reglab.theory.analyze import sharpness_metrics
    from reglab.train.loop import load_trained
    from reglab.train.losses import make_criterion

    cfg, model, data = load_trained(run_dir, device=device)
    loss_fn = make_criterion(cfg.train.loss, data.num_classes)
    x, y = data.x_train[:spec.samples], data.y_train[:spec.samples]
    values = sharpness_metrics(model, loss_fn, x, y, hessian=spec.hessian, landscape=spec.landscape,
                               effective_ratio=spec.effective_ratio, per_layer=spec.per_layer, mode=spec.mode,
                               trace_samples=spec.trace_samples, directions=spec.directions, radius=spec.radius,
                               threshold=spec.threshold, batch_size=spec.batch_size, seed=spec.seed + seed)
    record = {"settings": spec.model_dump(mode="json"), "mode": spec.mode, "samples": int(x.shape[0]),
              "seed": spec.seed + seed, "device": device, "reglab": __version__, "torch": torch.__version__,
              "values": values}
    (run_dir / ANALYSIS_FILE.parent).mkdir(exist_ok=True)
    write_json_atomic(run_dir / ANALYSIS_FILE, clean_json(record))
    return values


def finish_analysis(task: RunTask, result: RunResult) -> RunResult:
    """Analyse a run that trained to the end (`task.analysis` set, status done), with the run's own
    ``train.threads`` as its training had (a worker's default would oversubscribe the cores the other
    workers use); the values join `result.final` and the run's summary.json. Otherwise `result`
    unchanged."""
    if task.analysis is None or result.status != "done":
        return result
    from reglab.train.loop import torch_threads

    spec = AnalysisSpec.model_validate(task.analysis)
    with torch_threads(task.config.train.threads):
        result.final.update(analyze_trained(task.run_dir, spec, seed=task.seed, device=result.device))
    write_json_atomic(task.run_dir / "summary.json", result.to_dict() | {"epochs": None})
    return result


def analysis_current(run_dir: Path, analysis: dict | None) -> bool:
    """True when no analysis is asked for, or the run's analysis.json was made with these settings."""
    if analysis is None:
        return True
    path = run_dir / ANALYSIS_FILE
    if not path.exists():
        return False
    try:
        stored = json.loads(path.read_text()).get("settings")
    except (json.JSONDecodeError, AttributeError):
        return False
    return stored == AnalysisSpec.model_validate(analysis).model_dump(mode="json")
