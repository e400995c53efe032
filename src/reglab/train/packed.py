"""Packed training: K runs of one architecture trained together, one vmapped forward/backward per step.

Each run keeps its own `Trainer` — built exactly as when trained alone, so its initialisation
(``torch.manual_seed(seed)`` then `build_model`), data generator, optimizer, schedule, penalties,
gradient clipping, EMA and criterion are its own. Per step the runs' parameters are stacked
(``torch.stack``, differentiable, so gradients land on each run's own leaves), their BatchNorm
buffers are kept stacked ``(K, …)``, and one ``torch.func.vmap(functional_call, randomness="different")``
evaluates all K models on a ``(K, B, …)`` batch gathered by each run's own index permutation. The
summed loss is backpropagated once; then every run takes its own optimizer and schedule step.

What is the same as a solo run: the data order, augmentation draws and every parameter update
rule — so without randomness from torch's global generator a packed run equals its solo run up to
floating-point rounding (vmapped kernels batch the matrix products differently). What is the same
only in distribution: dropout, DropBlock and stochastic-depth masks and the mixup/CutMix ``lam``
(the global generator, drawn once for the whole pack). A run whose loss becomes non-finite is
finished as diverged at the end of that epoch and the pack goes on without it (the runs do not
interact: vmap keeps every computation inside its own slice).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, vmap

from reglab.config import RunConfig
from reglab.data import augment_images, batch_indices
from reglab.regularize.mixing import cutmix, mixup
from reglab.train import rundir
from reglab.train.loop import RunResult, Trainer, best_epoch
from reglab.train.losses import correct

PER_RUN_OPTIONS = ("l1", "l2", "penalize", "ema", "label_smoothing", "mixup", "cutmix", "grad_clip")
"""`regularize` fields that may differ inside a pack (besides `seed` and the whole `optim` section)."""


def pack_key(cfg: RunConfig) -> str:
    """Runs with equal keys can share a pack: same data, architecture, model regularizers and budget."""
    shared = cfg.to_dict()
    del shared["seed"], shared["optim"]
    for name in PER_RUN_OPTIONS:
        del shared["regularize"][name]
    return json.dumps(shared, sort_keys=True)


def packing_blocker(cfg: RunConfig) -> str | None:
    """Why a run cannot be trained packed (None: it can)."""
    reg, train = cfg.regularize, cfg.train
    blockers = {
        "regularize.sam_rho": reg.sam_rho > 0,  # a second, perturbed gradient per run
        "regularize.early_stopping": reg.early_stopping.patience > 0,  # runs would stop at different epochs
        "train.objective": train.objective != "drop",  # the theory objectives differentiate through the model
        "train.compile": train.compile,
        "train.track_condensation": train.track_condensation,
    }
    return next((name for name, blocked in blockers.items() if blocked), None)


class PackedTrainer:
    """Train `trainers` (fresh, equal `pack_key`) together; see the module docstring."""

    def __init__(self, trainers: Sequence[Trainer]):
        if not trainers:
            raise ValueError("PackedTrainer: needs at least one trainer")
        blocked = [(t.cfg.seed, b) for t in trainers if (b := packing_blocker(t.cfg))]
        if blocked:
            raise ValueError(f"{blocked[0][1]}: run with seed {blocked[0][0]} cannot be trained packed")
        if len({pack_key(t.cfg) for t in trainers}) > 1:
            raise ValueError("PackedTrainer: runs differ in data, model or training budget; pack them separately")
        if any(t.epoch for t in trainers):
            raise ValueError("PackedTrainer: trainers must be fresh (a resumed run trains alone)")
        self.trainers = list(trainers)
        self.active = list(range(len(trainers)))
        self.module = trainers[0].model  # the code every run executes; weights come from functional_call
        self.param_names = [name for name, _ in self.module.named_parameters()]
        self.buffer_names = [name for name, _ in self.module.named_buffers()]
        self.buffers = self._stack_buffers()
        self.forward = vmap(self._functional, randomness="different")

    # -------------------------------------------------------------------------------- stacking
    def _functional(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (params, buffers), (x,))

    def _stack_buffers(self) -> dict[str, torch.Tensor]:
        runs = [dict(self.trainers[i].model.named_buffers()) for i in self.active]
        return {name: torch.stack([r[name] for r in runs]) for name in self.buffer_names}

    @torch.no_grad()
    def _sync_buffers(self) -> None:
        """Copy the stacked buffers (BatchNorm statistics) back into each run's own model."""
        for slot, i in enumerate(self.active):
            for name, buf in self.trainers[i].model.named_buffers():
                buf.copy_(self.buffers[name][slot])

    # -------------------------------------------------------------------------------- training
    def _batch(self, trainer: Trainer, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """The run's batch, augmented and mixed from its own generator exactly as `Trainer` does."""
        cfg, data = trainer.cfg, trainer.data
        x, y = data.x_train[idx], data.y_train[idx]
        if cfg.data.augment.crop_padding or cfg.data.augment.flip:
            x = augment_images(x, cfg.data.augment, trainer.generator)
        reg = cfg.regularize
        if reg.mixup or reg.cutmix:
            x, y_partner, lam = (mixup if reg.mixup else cutmix)(x, y, reg.mixup or reg.cutmix, trainer.generator)
            return x, y, (y_partner, lam)
        return x, y, None

    def _train_epoch(self) -> list[dict[str, float]]:
        """One lockstep epoch of the active runs; returns each one's training metrics."""
        runs = [self.trainers[i] for i in self.active]
        first, k = runs[0], len(runs)
        n, device = first.data.x_train.shape[0], first.device
        for t in runs:
            t.model.train()
        loss_sum = torch.zeros(k, device=device)
        correct_sum = torch.zeros(k, device=device, dtype=torch.long)
        grad_norm_sum = torch.zeros(k, device=device)
        seen = steps = 0
        run_params = [[p for _, p in t.model.named_parameters()] for t in runs]
        ema = any(t.ema is not None for t in runs)
        for idxs in zip(*(batch_indices(n, first.batch_size, t.generator) for t in runs), strict=True):
            batches = [self._batch(t, idx) for t, idx in zip(runs, idxs, strict=True)]
            stacked = [torch.stack(ps) for ps in zip(*run_params, strict=True)]
            params = dict(zip(self.param_names, stacked, strict=True))
            with first.autocast():
                out = self.forward(params, self.buffers, torch.stack([x for x, _, _ in batches]))
            totals, losses = [], []
            for slot, (t, out_i, (_, y, mixed)) in enumerate(zip(runs, out.float(), batches, strict=True)):
                if mixed is None:
                    loss = t.train_criterion(out_i, y)
                    if t.data.num_classes is not None:
                        correct_sum[slot] += correct(out_i.detach(), y)
                else:
                    y_partner, lam = mixed
                    loss = lam * t.train_criterion(out_i, y) + (1 - lam) * t.train_criterion(out_i, y_partner)
                losses.append(loss)
                totals.append(loss + t.penalty() if t.penalty.active else loss)
                t.optimizer.zero_grad(set_to_none=True)
            torch.stack(totals).sum().backward()
            if ema:
                self._sync_buffers()
            norms = []
            for t in runs:
                if t.cfg.regularize.grad_clip:
                    norms.append(nn.utils.clip_grad_norm_(t.params, t.cfg.regularize.grad_clip))
                else:
                    norms.append(nn.utils.get_total_norm([p.grad for p in t.params if p.grad is not None]))
                t.optimizer.step()
                t.schedule.step()
                if t.ema is not None:
                    t.ema.update_parameters(t.model)
                t.step += 1
            batch = idxs[0].shape[0]
            loss_sum += torch.stack(losses).detach() * batch
            grad_norm_sum += torch.stack(norms)
            seen += batch
            steps += 1
            max_steps = first.cfg.train.max_steps
            if max_steps and first.step >= max_steps:
                break
        self._sync_buffers()
        records = []
        for t, loss, grad_norm, right in zip(runs, (loss_sum / seen).tolist(), (grad_norm_sum / steps).tolist(),
                                             correct_sum.tolist(), strict=True):
            record = {"train_loss": loss, "grad_norm": grad_norm}
            reg = t.cfg.regularize
            if t.data.num_classes is not None and not (reg.mixup or reg.cutmix):
                record["train_acc"] = right / seen
            records.append(record)
        return records

    # ------------------------------------------------------------------------------------- fit
    def fit(self, run_dirs: Sequence[str | Path | None] | None = None, *,
            on_epoch: Callable[[int, dict], None] = lambda i, metrics: None,
            on_result: Callable[[int, RunResult], None] = lambda i, result: None) -> list[RunResult]:
        """Train every run for its budget, writing each run directory as `Trainer.fit` does.

        `on_epoch(i, metrics)` after each epoch of run i; `on_result(i, result)` as soon as run i ends
        (a diverged run ends early, the others go on). Returns the results in trainer order.
        """
        dirs = [Path(d) if d is not None else None for d in (run_dirs or [None] * len(self.trainers))]
        if len(dirs) != len(self.trainers):
            raise ValueError(f"run_dirs: expected {len(self.trainers)} directories (got {len(dirs)})")
        logs = [RunLog(t, d) for t, d in zip(self.trainers, dirs, strict=True)]
        results: list[RunResult | None] = [None] * len(self.trainers)
        train = self.trainers[0].cfg.train
        while self.active and self.trainers[self.active[0]].epoch < train.epochs and not (
                train.max_steps and self.trainers[self.active[0]].step >= train.max_steps):
            lrs = []
            for i in self.active:
                lrs.append(self.trainers[i].optimizer.param_groups[0]["lr"])
                self.trainers[i].epoch += 1
            start = time.perf_counter()
            records = self._train_epoch()
            share = (time.perf_counter() - start) / len(self.active)  # each run's share of the pack's time
            diverged = []
            for i, record, lr in zip(list(self.active), records, lrs, strict=True):
                metrics = self.trainers[i].close_epoch(record, lr=lr, start=time.perf_counter() - share)
                on_epoch(i, metrics)
                if not logs[i].record(metrics):
                    diverged.append(i)
            for i in diverged:
                self.active.remove(i)
                results[i] = logs[i].finish()
                on_result(i, results[i])
            if diverged and self.active:
                self.buffers = self._stack_buffers()
        for i in list(self.active):
            results[i] = logs[i].finish()
            on_result(i, results[i])
        self.active = []
        return results


class RunLog:
    """One packed run's epochs and directory, kept exactly as `Trainer.fit` keeps them."""

    def __init__(self, trainer: Trainer, run_dir: Path | None):
        self.trainer, self.run_dir = trainer, run_dir
        self.epochs: list[dict] = []
        self.status, self.diverged_epoch = "done", None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            rundir.write_json_atomic(run_dir / "config.json", trainer.cfg.to_dict())
            rundir.rewrite_metrics(run_dir / "metrics.jsonl", [])

    def record(self, metrics: dict) -> bool:
        """Log an epoch and checkpoint on schedule; False when the run diverged."""
        t = self.trainer
        self.epochs.append(metrics)
        if self.run_dir is not None:
            rundir.append_metrics(self.run_dir / "metrics.jsonl", metrics)
        if not (math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["test_loss"])):
            self.status, self.diverged_epoch = "diverged", t.epoch
            return False
        every = t.cfg.train.checkpoint_every
        if self.run_dir is not None and every and t.epoch % every == 0:
            rundir.save_atomic(t.state_dict(), self.run_dir / "checkpoint.pt")
        return True

    def finish(self) -> RunResult:
        t = self.trainer
        result = RunResult(
            status=self.status, epochs=self.epochs, final=dict(self.epochs[-1]), best=best_epoch(self.epochs),
            seconds=sum(e["seconds"] for e in self.epochs), num_params=sum(p.numel() for p in t.params),
            device=str(t.device), diverged_epoch=self.diverged_epoch, stopped_epoch=None, config=t.cfg.to_dict(),
        )
        if self.run_dir is not None:
            if self.status == "done":
                rundir.save_atomic(t.evaluated_model.state_dict(), self.run_dir / "model.pt")
            rundir.write_json_atomic(self.run_dir / "summary.json", result.to_dict() | {"epochs": None})
        return result
