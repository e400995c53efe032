"""TensorBoard sink (`torch.utils.tensorboard`): one event directory per run, ``<dir>/<arm>/s<seed>``.

Every epoch metric of the store (``test_acc``, ``train_loss``, ``train_eval_acc``, ``lr``, ``seconds``, …)
is a scalar under its own name at step = epoch, so TensorBoard overlays all arms and seeds on one chart
per metric (filter runs by arm with the regex ``^dropout/``). Each run also gets an hparams-plugin
entry: its arm, seed and the study's varied config keys as hyper-parameters, its final metrics under
``hparam/<metric>``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from reglab.study.spec import arm_slug, run_id
from reglab.study.tracking import LoggedRun, Tracker, flatten, scalars, varied_keys


def run_subdir(run: LoggedRun) -> str:
    return f"{arm_slug(run.arm)}/s{run.seed}"


class TensorBoardTracker(Tracker):
    def __init__(self, spec: dict, out_dir: Path, target: str | None = None):
        self.root = Path(target) if target else out_dir / "tensorboard"
        self.hparams = varied_keys(spec)

    def logged(self) -> set[str]:
        return {run_id(d.parent.name, int(d.name[1:])) for d in self.root.glob("*/s*")
                if d.name[1:].isdigit() and any(d.glob("events.out.tfevents.*"))}

    def log_run(self, run: LoggedRun) -> None:
        log_dir = self.root / run_subdir(run)
        shutil.rmtree(log_dir, ignore_errors=True)  # a re-run replaces the earlier record
        config = flatten(run.config)
        hparams = {"arm": run.arm, "seed": run.seed,
                   **{k: _hparam(config.get(k)) for k in self.hparams if k in config}}
        with SummaryWriter(log_dir=str(log_dir)) as writer:
            for record in run.epochs:
                for key, value in scalars(record).items():
                    writer.add_scalar(key, value, global_step=record["epoch"])
            final = {f"hparam/{k}": v for k, v in scalars(run.final).items()}
            writer.add_hparams(hparams, final, run_name=".")


def _hparam(value: object) -> bool | int | float | str:
    """The hparams plugin takes numbers, strings and booleans; anything else is shown as text."""
    return value if isinstance(value, bool | int | float | str) else str(value)
