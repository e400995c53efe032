"""The one training loop every reglab run goes through, so that the regularizer is the only difference.

Read top to bottom: `Trainer.__init__` builds data, model, optimizer, schedule and regularizers
from a `RunConfig`, and is handed what the config asks of the theory package above it (a theory
objective's loss, the condensation tracker; `theory.training.build_trainer` resolves both); `fit` runs
epochs (`run_epoch`: `_train_epoch`, then `close_epoch`, which evaluates), appends each epoch's metrics
to the run directory, checkpoints, and stops on divergence, early stopping or the step budget.

Determinism: ``torch.manual_seed(seed)`` right before the model is built fixes initialisation,
every dropout / stochastic-depth mask and the input noise; a separate generator on the training
device, seeded with the same integer, fixes data order, augmentation and mixing partners. Both
states are checkpointed, so a resumed run ends bit-identical (CPU) to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from reglab.config import ConfigError, RunConfig, TrainConfig
from reglab.data import TensorData, apply_augmentation, batch_indices, draw_augmentation, epoch_steps, load_dataset
from reglab.models import build_model
from reglab.provenance import record
from reglab.regularize.early_stopping import EarlyStopping
from reglab.regularize.ema import build_ema
from reglab.regularize.max_norm import apply_max_norm, max_norm_weights
from reglab.regularize.mixing import MixDraw, draw_mixing, mix_batch
from reglab.regularize.noise import add_input_noise
from reglab.regularize.optim import Schedule, build_optimizer
from reglab.regularize.penalties import Penalty, penalized_parameters
from reglab.regularize.sam import sam_gradients
from reglab.regularize.swa import build_swa, refresh_batch_norm, swa_start_step
from reglab.train import rundir
from reglab.train.eval_budget import train_eval_size
from reglab.train.losses import correct, make_criterion

if TYPE_CHECKING:
    from reglab.train.packed import PackedTrainer

EpochCallback = Callable[[int, nn.Module, dict], dict | None]
"""Called after each epoch with (epoch, evaluated model, metrics); a returned dict joins the metrics."""

ObjectiveLoss = Callable[..., torch.Tensor]
"""The loss of a theory objective (``train.objective`` other than "drop"), called as
``objective(forward, x, y, lr=..., loss_fn=...)``: the batch's mean loss."""


@dataclass
class RunResult:
    status: str  # "done" or "diverged"
    epochs: list[dict]
    final: dict
    best: dict
    seconds: float
    num_params: int
    device: str
    diverged_epoch: int | None = None
    stopped_epoch: int | None = None
    threads: int | None = None  # torch intra-op threads the run trained with (train.threads)
    config: dict = field(default_factory=dict)
    confusion: list[list[int]] | None = None  # test set, rows = true class, columns = predicted
    pack: dict | None = None  # trained packed: {"size": K, "slot": its row, "runs": the pack's run directory names}
    # (after an interruption: "resumed_alone_at_epoch", or "resumed_at_epoch" and the "earlier" pack's record)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda, else mps, else cpu; a named device that this machine lacks is a `ConfigError`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if torch.backends.mps.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device: {name!r} but torch {torch.__version__} sees no CUDA device; "
                          "use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device: {name!r} but this machine has {torch.cuda.device_count()} CUDA devices")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device: {name!r} but MPS is not available here; use --device cpu (or auto)")
    return device


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run with `threads` torch intra-op threads, restoring the previous number afterwards.

    Every execution path (in-process, pool worker, Ray task) trains with the run's own
    ``train.threads``, so a run's numbers do not depend on where it ran: CPU reductions split
    over a different number of threads round differently."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


_DATA_CACHE: dict[tuple[str, str], TensorData] = {}


def cached_dataset(cfg: RunConfig, device: torch.device) -> TensorData:
    """Load a data set once per process and device; runs of a study share the tensors read-only."""
    key = (cfg.data.model_dump_json(), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = load_dataset(cfg.data, device=device)
    return _DATA_CACHE[key]


def planned_steps(train: TrainConfig, n_train: int) -> int:
    """Optimizer steps of a whole run: epochs × `epoch_steps`, at most max_steps."""
    per_run = train.epochs * epoch_steps(n_train, train.batch_size)
    return min(per_run, train.max_steps or per_run)


def uses_channels_last(setting: bool, model: nn.Module, device: torch.device) -> bool:
    """Whether a run keeps its weights and batches channels-last: a model with 2-D convolutions on CUDA
    when ``train.channels_last`` is set, and always on CPU, where oneDNN computes convolutions in that
    layout and otherwise reorders every input and output (a step of source 000's DeeperCNN 1.3–1.4×
    faster; the same result up to rounding, docs/performance.md)."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    return device.type == "cpu" or (device.type == "cuda" and setting)


def set_cudnn_autotuner(train: TrainConfig, device: torch.device) -> None:
    """On CUDA, ``torch.backends.cudnn.benchmark = train.cudnn_benchmark``, before the run's first
    convolution: torch keeps the algorithm chosen the first time a shape runs for the whole process,
    so the flag counts only then. Measured on an H200 with a pack of 20 source-000 DeeperCNNs, the
    autotuner with channels-last made the step 1.35× faster in bf16 and 1.08× in float32, and
    channels-last without it 1.18× faster in bf16 but 1.18× slower in float32 (docs/performance.md)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = train.cudnn_benchmark


CPU_CONV_EVAL_BATCH = 32
"""Largest evaluation batch of a network with 2-D convolutions on CPU: oneDNN's convolutions run 1.3–2.6×
faster per sample on batches whose activations stay in cache than on 1024 (one thread: DeeperCNN,
ResNet-20, VGG-9, ResNet-18; docs/performance.md). The metrics are the same up to rounding."""


def eval_batch_size(requested: int, channels_last_on_cpu: bool) -> int:
    """Samples per forward pass in evaluation: `requested` (``train.eval_batch_size``), at most
    `CPU_CONV_EVAL_BATCH` for a conv net on CPU (which always runs channels-last)."""
    return min(requested, CPU_CONV_EVAL_BATCH) if channels_last_on_cpu else requested


class Trainer:
    def __init__(self, cfg: RunConfig, *, data: TensorData | None = None, objective: ObjectiveLoss | None = None,
                 config_callbacks: Iterable[EpochCallback] = ()):
        """`objective`: the loss of ``train.objective`` (None for "drop"); `config_callbacks`: the epoch
        callbacks the config asks for (``train.track_condensation``), run before each `fit`'s own. A config
        asking for one not handed in is refused; `theory.training.build_trainer` resolves both from `cfg`."""
        if (objective is None) != (cfg.train.objective == "drop"):
            raise ConfigError(f"train.objective = {cfg.train.objective!r}: Trainer(objective=...) is its loss, "
                              "None for 'drop' (theory.training.build_trainer resolves it from the config)")
        self.config_callbacks = list(config_callbacks)
        if cfg.train.track_condensation and not self.config_callbacks:
            raise ConfigError("train.track_condensation: Trainer(config_callbacks=...) needs the tracker "
                              "(theory.training.build_trainer resolves it from the config)")
        self.cfg, self.objective = cfg, objective
        self.device = resolve_device(cfg.train.device)
        self.data = data if data is not None else cached_dataset(cfg, self.device)
        reg, train = cfg.regularize, cfg.train

        torch.manual_seed(cfg.seed)  # init and every random mask
        self.model = build_model(cfg.model, input_shape=self.data.input_shape,
                                 num_outputs=self.data.num_outputs, reg=reg).to(self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)  # data order, augmentation
        on_cuda = self.device.type == "cuda"
        set_cudnn_autotuner(train, self.device)
        self.channels_last = uses_channels_last(train.channels_last, self.model, self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if train.compile and on_cuda else self.model
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if train.amp and on_cuda \
            else contextlib.nullcontext

        n = self.data.x_train.shape[0]
        self.batch_size = n if train.batch_size == 0 else min(train.batch_size, n)
        self.steps_per_epoch = epoch_steps(n, self.batch_size)
        self.optimizer = build_optimizer(self.model, cfg.optim, reg)
        self.schedule = Schedule(self.optimizer, cfg.optim, steps_per_epoch=self.steps_per_epoch,
                                 total_steps=planned_steps(train, n), swa=reg.swa,
                                 swa_start=swa_start_step(reg.swa, train.epochs, self.steps_per_epoch))
        self.penalty = Penalty(penalized_parameters(self.model, reg.penalize), l1=reg.l1, l2=reg.l2)
        self.max_norm_weights = max_norm_weights(self.model) if reg.max_norm else []
        if self.max_norm_weights:  # start inside the ball, so that an EMA or SWA average stays in it too
            apply_max_norm(self.max_norm_weights, reg.max_norm)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ema = build_ema(self.model, reg.ema) if reg.ema else None
        self.swa = build_swa(self.model) if reg.swa.epochs else None
        self.stopper = EarlyStopping(reg.early_stopping)
        self.train_criterion = make_criterion(train.loss, self.data.num_classes,
                                              label_smoothing=reg.label_smoothing)
        self.eval_criterion = make_criterion(train.loss, self.data.num_classes)
        self.epoch, self.step = 0, 0
        self.mix: MixDraw | None = None  # the current step's mixing draws
        self.confusion: list[list[int]] | None = None  # test-set confusion of the current weights, once known

    def in_layout(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the model's memory layout: channels-last images when `self.channels_last`."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    # ------------------------------------------------------------------------------- evaluation
    @property
    def evaluated_model(self) -> nn.Module:
        """The model whose metrics are reported: the weight EMA when enabled; with SWA, the average once
        it holds an epoch's weights (before that, the model itself)."""
        if self.ema is not None:
            return self.ema.module
        if self.swa is not None and self.swa.n_averaged.item() > 0:
            return self.swa.module
        return self.model

    @torch.no_grad()
    def weight_norm(self) -> float:
        """‖w‖₂ over the Linear/Conv weights of the evaluated model (`penalized_parameters(…, "weights")`,
        whatever the run penalizes, so that every arm reports one quantity): what weight decay and L2 shrink."""
        return nn.utils.get_total_norm(penalized_parameters(self.evaluated_model, "weights")).item()

    @torch.no_grad()
    def average_weights(self) -> None:
        """SWA at an epoch's end: from the first averaged epoch on, add the weights to the average and
        recompute its BatchNorm statistics on the training set, in order, cut as training cuts it
        (`epoch_steps`), without augmentation. The pass's random draws (dropout) come from a fork of
        the global generator, so training goes on as it would without SWA."""
        if self.swa is None or self.epoch <= self.cfg.train.epochs - self.cfg.regularize.swa.epochs:
            return
        self.swa.update_parameters(self.model)
        x = self.data.x_train
        batches = x.split(self.batch_size)[:self.steps_per_epoch]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), self.autocast():
            refresh_batch_norm(self.swa, (self.in_layout(batch) for batch in batches))

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, *, confusion: bool = False) -> dict:
        """Mean loss and (classification) accuracy of the evaluated model on ``(x, y)`` in eval mode;
        with `confusion`, also its confusion matrix (rows: true class, columns: predicted)."""
        model, c = self.evaluated_model, self.data.num_classes
        size = eval_batch_size(self.cfg.train.eval_batch_size, self.channels_last and self.device.type == "cpu")
        was_training = model.training
        model.eval()
        loss_sum = torch.zeros((), device=self.device)
        counts = torch.zeros((c or 1) ** 2, device=self.device, dtype=torch.long)
        for start in range(0, x.shape[0], size):
            xb, yb = x[start:start + size], y[start:start + size]
            with self.autocast():
                out = model(self.in_layout(xb)).float()
            loss_sum += self.eval_criterion(out, yb) * xb.shape[0]
            if c is not None:
                counts += torch.bincount(yb * c + out.argmax(dim=1), minlength=c * c)
        model.train(was_training)
        result = {"loss": (loss_sum / x.shape[0]).item()}
        if c is not None:
            matrix = counts.view(c, c)
            result["acc"] = matrix.diagonal().sum().item() / x.shape[0]
            if confusion:
                result["confusion"] = matrix.tolist()
        return result

    def test_confusion(self) -> list[list[int]] | None:
        """Confusion matrix of the evaluated model on the test set (None for regression): the one of the
        last epoch's test evaluation when the weights are still those (`self.confusion`), else a new pass."""
        if self.confusion is not None:
            return self.confusion
        return self.evaluate(self.data.x_test, self.data.y_test, confusion=True).get("confusion")

    # --------------------------------------------------------------------------------- training
    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mean training loss of a batch (with mixing, or the theory objective's) and its output."""
        if self.objective is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            return self.objective(self.forward, x, y, lr=lr, loss_fn=self.train_criterion), None
        if self.mix is not None:  # this step's mixing draws (same for SAM's second gradient)
            x, y_partner, lam = mix_batch(x, y, self.mix)
            out = self.forward(x).float()
            loss = lam * self.train_criterion(out, y) + (1 - lam) * self.train_criterion(out, y_partner)
            return loss, out
        out = self.forward(x).float()
        return self.train_criterion(out, y), out

    def _objective(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        with self.autocast():
            loss, out = self._loss(x, y)
        total = loss + self.penalty() if self.penalty.active else loss
        return total, loss, out

    def _train_epoch(self) -> dict[str, float]:
        data, cfg = self.data, self.cfg
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct_sum = torch.zeros((), device=self.device, dtype=torch.long)
        grad_norm_sum = torch.zeros((), device=self.device)
        seen = steps = 0
        n = data.x_train.shape[0]
        batches = batch_indices(n, self.batch_size, self.generator)  # the epoch's permutation, then
        draw = draw_augmentation(n, cfg.data.augment, self.generator)  # its augmentation and mixing,
        mixing = self.draw_mixing()  # in one draw each
        for idx in batches:
            x, y = data.x_train[idx], data.y_train[idx]
            if draw is not None:
                x = apply_augmentation(x, cfg.data.augment, draw.rows(seen, seen + idx.shape[0]))
            if cfg.regularize.input_noise:  # before mixing, which then blends two noisy samples
                x = add_input_noise(x, cfg.regularize.input_noise)
            x = self.in_layout(x)
            self.mix = None if mixing is None else mixing.step(steps)
            total, loss, out = self._objective(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.regularize.sam_rho:
                sam_gradients(self.params, lambda x=x, y=y: self._objective(x, y)[0], cfg.regularize.sam_rho,
                              model=self.model)
            if cfg.regularize.grad_clip:
                grad_norm = nn.utils.clip_grad_norm_(self.params, cfg.regularize.grad_clip)
            else:
                grad_norm = nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
            self.optimizer.step()
            if self.max_norm_weights:
                apply_max_norm(self.max_norm_weights, cfg.regularize.max_norm)
            self.schedule.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)

            loss_sum += loss.detach() * idx.shape[0]
            if out is not None and data.num_classes is not None:
                correct_sum += correct(out.detach(), y)
            grad_norm_sum += grad_norm
            seen += idx.shape[0]
            steps += 1
            self.step += 1
            if cfg.train.max_steps and self.step >= cfg.train.max_steps:
                break
        metrics = {"train_loss": (loss_sum / seen).item(), "grad_norm": (grad_norm_sum / steps).item()}
        if data.num_classes is not None and cfg.train.objective == "drop" and not (
            cfg.regularize.mixup or cfg.regularize.cutmix
        ):
            metrics["train_acc"] = correct_sum.item() / seen
        return metrics

    def draw_mixing(self) -> MixDraw | None:
        """This epoch's mixup/CutMix draws (None without mixing; a theory objective never mixes: the
        config refuses the pair)."""
        reg = self.cfg.regularize
        if not (reg.mixup or reg.cutmix):
            return None
        return draw_mixing(self.steps_per_epoch, self.batch_size, self.data.input_shape, mixup=reg.mixup,
                           cutmix=reg.cutmix, generator=self.generator)

    def run_epoch(self) -> dict:
        """Train one epoch, evaluate, and return the epoch's metrics record."""
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        self.epoch += 1
        train_metrics = self._train_epoch()
        self.average_weights()
        return self.close_epoch(train_metrics, lr=lr, start=start)

    def close_epoch(self, train_metrics: dict[str, float], *, lr: float, start: float) -> dict:
        """Evaluate after an epoch's training (epoch counter already advanced) and return its record;
        the packed executor trains K runs together and then closes each run's epoch with this."""
        metrics = {"epoch": self.epoch, "step": self.step, **train_metrics}
        data, eval_start = self.data, time.perf_counter()
        if n_eval := train_eval_size(self.cfg.train.eval_train_samples, data.x_train.shape[0]):
            for k, v in self.evaluate(data.x_train[:n_eval], data.y_train[:n_eval]).items():
                metrics[f"train_eval_{k}"] = v
        if data.x_val is not None:
            metrics.update({f"val_{k}": v for k, v in self.evaluate(data.x_val, data.y_val).items()})
        test = self.evaluate(data.x_test, data.y_test, confusion=True)
        self.confusion = test.pop("confusion", None)  # of the weights just evaluated: the run's, if it ends here
        metrics.update({f"test_{k}": v for k, v in test.items()})
        metrics.update(lr=lr, weight_norm=self.weight_norm())
        monitored = metrics.get("val_loss", metrics.get("train_eval_loss", metrics["train_loss"]))
        if math.isfinite(monitored):
            self.schedule.epoch_end(monitored)
        end = time.perf_counter()
        metrics.update(train_seconds=eval_start - start, eval_seconds=end - eval_start, seconds=end - start)
        return metrics

    # ------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        rng = {"cpu": torch.get_rng_state(), "data": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "epoch": self.epoch, "step": self.step, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "swa": self.swa.state_dict() if self.swa is not None else None,
            "stopper": self.stopper.state_dict(), "rng": rng,
        }

    def load_checkpoint(self, path: Path) -> None:
        """Restore the state saved in `path`; an unreadable or mismatched file raises `DamagedFile`."""
        state = rundir.load_checkpoint(path, self.device)
        if state.get("rng", {}).get("data") is not None and (
                state["rng"]["data"].numel() != self.generator.get_state().numel()):
            raise ConfigError(f"{path}: was written on another kind of device than this run's {self.device} "
                              f"(train.device = {self.cfg.train.device!r}); its data order cannot go on here. "
                              "Resume it there (set train.device), or delete the checkpoint to train the run "
                              "again from the start here")
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise rundir.DamagedFile(path, f"does not match this run's model and optimizer "
                                           f"({type(err).__name__}); delete it to train this run again from "
                                           "the start") from err

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step, self.confusion = state["epoch"], state["step"], None
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.schedule.sync(self.step)  # an extended budget moves a cosine schedule's horizon
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.swa is not None:
            self.swa.load_state_dict(state["swa"])
        self.stopper.load_state_dict(state["stopper"])
        torch.set_rng_state(state["rng"]["cpu"].cpu())
        self.generator.set_state(state["rng"]["data"].cpu())
        if "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu(), self.device)

    # ------------------------------------------------------------------------------------- fit
    def open_run_dir(self, run_dir: Path, *, resume: bool = True, extend: bool = False) -> list[dict]:
        """Make `run_dir` this run's directory: with ``resume`` and a checkpoint there, load it and return
        the epochs it covers (metrics.jsonl cut to them; `rundir.resumed_metrics`); else start afresh (no
        epochs, no pack.json, no checkpoint).
        A directory started with another config is refused (`rundir.check_resumable`)."""
        checkpoint = run_dir / "checkpoint.pt"
        if resume:  # every check before anything in the directory changes
            rundir.check_resumable(run_dir, self.cfg.to_dict(), extend=extend)
        epochs: list[dict] = []
        if resume and checkpoint.exists():
            self.load_checkpoint(checkpoint)
            epochs = rundir.resumed_metrics(run_dir / "metrics.jsonl", self.epoch)
        else:  # a fresh start: no pack record, and no checkpoint that a later resume could mistake for its own
            (run_dir / "pack.json").unlink(missing_ok=True)
            checkpoint.unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_json_atomic(run_dir / "config.json", self.cfg.to_dict())
        rundir.rewrite_metrics(run_dir / "metrics.jsonl", epochs)
        if not self.epoch:
            (run_dir / "provenance.jsonl").unlink(missing_ok=True)  # a fresh start: only its own record
        rundir.append_metrics(run_dir / "provenance.jsonl", {"epoch": self.epoch, **record([str(self.device)])})
        return epochs

    @property
    def budget_spent(self) -> bool:
        """Whether the run has trained its epochs (or steps): its last epoch is checkpointed whatever
        `train.checkpoint_every`, so that running a finished run again trains nothing."""
        train = self.cfg.train
        return self.epoch >= train.epochs or bool(train.max_steps and self.step >= train.max_steps)

    def final_record(self, epochs: list[dict]) -> dict:
        """The run's final metrics once training has ended: the last epoch's or, where early stopping
        keeps the best weights (``restore_best``), the best epoch's, whose weights it restores."""
        if not (self.stopper.enabled and self.stopper.cfg.restore_best and self.stopper.best_state is not None):
            return dict(epochs[-1])
        self.stopper.restore(self.evaluated_model)
        self.confusion = None  # the weights are the best epoch's now
        return dict(epochs[self.stopper.best_epoch - 1])

    def fit(self, run_dir: str | Path | None = None, *, callbacks: Iterable[EpochCallback] = (),
            resume: bool = True, extend: bool = False) -> RunResult:
        """Train for the configured budget; with `run_dir`, log every epoch there and resume from it.

        A run directory is resumed only with the config it was started with (`rundir.check_resumable`);
        `extend=True` accepts a larger budget (epochs, max_steps). ``resume=False`` starts over.
        """
        with torch_threads(self.cfg.train.threads):
            return self._fit(run_dir, list(callbacks), resume=resume, extend=extend)

    def _fit(self, run_dir: str | Path | None, callbacks: list[EpochCallback], *, resume: bool,
             extend: bool) -> RunResult:
        callbacks = self.config_callbacks + callbacks
        run_dir = Path(run_dir) if run_dir is not None else None
        epochs: list[dict] = []
        pack = None  # the pack this run trained in, if it resumes alone from a packed checkpoint
        if run_dir is not None:
            epochs = self.open_run_dir(run_dir, resume=resume, extend=extend)
            pack = rundir.read_pack(run_dir) if self.epoch else None
            if pack is not None:
                pack["resumed_alone_at_epoch"] = self.epoch

        log = EpochLog(self, run_dir, epochs, pack=pack)
        start = time.perf_counter() - sum(e["seconds"] for e in epochs)
        while not self.budget_spent and not self.stopper.stopped:
            metrics = self.run_epoch()
            for callback in callbacks:
                metrics.update(callback(self.epoch, self.evaluated_model, metrics) or {})
            going_on = log.record(metrics)
            if log.checkpoint_due:
                rundir.save_atomic(self.state_dict(), run_dir / "checkpoint.pt")
            if not going_on:
                break
        return log.finish(seconds=time.perf_counter() - start)


class EpochLog:
    """A run's epochs as every training loop keeps them (`Trainer.fit`, a pack's `PackedTrainer.fit`):
    each epoch appended to metrics.jsonl, divergence (a non-finite train or test loss, or gradient norm: an
    overflowing step whose loss still reads finite) and early stopping
    end the run, a checkpoint is due on schedule, on stopping and at the end of the budget, and the end
    writes model.pt (a finished run) and summary.json. `pack`: the pack record the result carries."""

    def __init__(self, trainer: Trainer, run_dir: Path | None, epochs: list[dict], *, pack: dict | None):
        self.trainer, self.run_dir, self.epochs, self.pack = trainer, run_dir, epochs, pack
        self.checkpoint_due = False
        self.status, self.diverged_epoch, self.stopped_epoch = "done", None, trainer.stopper.stopped_epoch

    def record(self, metrics: dict) -> bool:
        """Log an epoch, let early stopping see it and set `checkpoint_due`; False when the run ends
        here: it diverged or stopped early. The caller writes the checkpoint."""
        t = self.trainer
        self.epochs.append(metrics)
        self.checkpoint_due = False
        if self.run_dir is not None:
            rundir.append_metrics(self.run_dir / "metrics.jsonl", metrics)
        if not all(math.isfinite(metrics.get(key, 0.0)) for key in ("train_loss", "test_loss", "grad_norm")):
            self.status, self.diverged_epoch = "diverged", t.epoch
            return False
        stop = t.stopper.enabled and t.stopper.update(t.epoch, metrics, t.evaluated_model)
        every = t.cfg.train.checkpoint_every
        self.checkpoint_due = self.run_dir is not None and bool(every) and (
            t.epoch % every == 0 or stop or t.budget_spent)
        if stop:
            self.stopped_epoch = t.epoch
        return not stop

    def finish(self, *, seconds: float) -> RunResult:
        """The run's result (`seconds`: its training time), written to the run directory."""
        t = self.trainer
        result = RunResult(
            status=self.status, epochs=self.epochs, final=t.final_record(self.epochs), best=best_epoch(self.epochs),
            seconds=seconds, num_params=sum(p.numel() for p in t.params), device=str(t.device),
            diverged_epoch=self.diverged_epoch, stopped_epoch=self.stopped_epoch, threads=torch.get_num_threads(),
            config=t.cfg.to_dict(), confusion=t.test_confusion() if self.status == "done" else None, pack=self.pack,
        )
        if self.run_dir is not None:
            if self.status == "done":
                rundir.save_atomic(t.evaluated_model.state_dict(), self.run_dir / "model.pt")
            rundir.write_json_atomic(self.run_dir / "summary.json", result.to_dict() | {"epochs": None})
        return result


def best_epoch(epochs: list[dict]) -> dict:
    """The epoch with the best test accuracy (classification) or lowest test loss (regression)."""
    finite = [e for e in epochs if math.isfinite(e["test_loss"])]
    if not finite:
        return {}
    key = "test_acc" if "test_acc" in finite[0] else "test_loss"
    chosen = (max if key == "test_acc" else min)(finite, key=lambda e: e[key])
    return {"epoch": chosen["epoch"], "test_loss": chosen["test_loss"], **(
        {"test_acc": chosen["test_acc"]} if key == "test_acc" else {})}


def train_run(cfg: RunConfig, *, run_dir: str | Path | None = None, callbacks: Iterable[EpochCallback] = (),
              resume: bool = True, extend: bool = False, data: TensorData | None = None,
              pack_of_one: bool | None = None, objective: ObjectiveLoss | None = None,
              config_callbacks: Iterable[EpochCallback] = ()) -> RunResult:
    """Train one run described by `cfg`; see `Trainer.fit`. `objective` and `config_callbacks` are handed to
    `Trainer`: ``reglab.train_run`` (`theory.training.train_run`) resolves them from the config.

    `data`: train and evaluate on these tensors instead of loading `cfg.data` (your own data set).
    `pack_of_one`: train through `PackedTrainer` as a pack of one (stacked state, batched optimizer,
    CUDA graph), resuming as `Trainer.fit` does. None (default): where that step is captured as a
    CUDA graph; elsewhere the solo `Trainer` step. A `run_dir` another process trains in is refused
    (`rundir.locked`).
    """
    with rundir.locked(Path(run_dir)) if run_dir is not None else contextlib.nullcontext():
        return _train_run(cfg, run_dir, list(callbacks), resume=resume, extend=extend, data=data,
                          pack_of_one=pack_of_one, objective=objective, config_callbacks=config_callbacks)


def _train_run(cfg: RunConfig, run_dir: str | Path | None, callbacks: list[EpochCallback], *, resume: bool,
               extend: bool, data: TensorData | None, pack_of_one: bool | None, objective: ObjectiveLoss | None,
               config_callbacks: Iterable[EpochCallback]) -> RunResult:
    if run_dir is not None and resume:  # refuse a mismatched directory before loading data
        rundir.check_resumable(Path(run_dir), cfg.to_dict(), extend=extend)
    trainer = Trainer(cfg, data=data, objective=objective, config_callbacks=config_callbacks)
    if pack_of_one is None:  # where PackedTrainer captures its step as a CUDA graph
        pack_of_one = trainer.device.type == "cuda" and cfg.train.cuda_graphs
    if pack_of_one:
        from reglab.train.packed import PackedTrainer, packing_blocker

        if packing_blocker(cfg) is None:
            if run_dir is not None:
                with torch_threads(cfg.train.threads):
                    trainer.open_run_dir(Path(run_dir), resume=resume, extend=extend)
            return _fit_packed(PackedTrainer([trainer]), run_dir, callbacks)
    return trainer.fit(run_dir, callbacks=callbacks, resume=resume, extend=extend)


def _fit_packed(pack: PackedTrainer, run_dir: str | Path | None, callbacks: list[EpochCallback]) -> RunResult:
    """`Trainer.fit` of a pack of one: the callbacks see each epoch's evaluated model and metrics."""
    trainer = pack.trainers[0]

    def on_epoch(_: int, metrics: dict) -> None:
        for callback in callbacks:
            metrics.update(callback(trainer.epoch, trainer.evaluated_model, metrics) or {})

    with torch_threads(trainer.cfg.train.threads):
        return pack.fit([run_dir], on_epoch=on_epoch)[0]


def evaluated_weights(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The weights a checkpoint's run reports (`Trainer.evaluated_model`): its weight EMA or SWA average
    where it keeps one (and SWA has averaged an epoch), else the model's own."""
    for average in (checkpoint.get("ema"), checkpoint.get("swa")):
        if average is not None and average["n_averaged"].item() > 0:
            return {k.removeprefix("module."): v for k, v in average.items() if k.startswith("module.")}
    return checkpoint["model"]


def load_trained(run_dir: str | Path, *, device: str = "cpu", weights: str | Path | None = None
                 ) -> tuple[RunConfig, nn.Module, TensorData]:
    """Rebuild a finished run's config, evaluated model (weights only) and data, for analysis.

    `weights`: a model.pt or checkpoint.pt (its raw weights) to load instead of the run's own: model.pt,
    else the weights the run evaluates from its checkpoint (`evaluated_weights`: an unfinished run).
    Weights that do not fit the run's config raise `DamagedFile`.
    """
    run_dir = Path(run_dir)
    cfg = rundir.read_run_config(run_dir).override({"train.device": device})
    on = resolve_device(cfg.train.device)  # auto picks one; a device this machine lacks is a ConfigError
    data = cached_dataset(cfg, on)
    model = build_model(cfg.model, input_shape=data.input_shape, num_outputs=data.num_outputs,
                        reg=cfg.regularize).to(on)
    named = weights is not None  # a checkpoint named: its raw weights; found in the directory: the evaluated ones
    if weights is None:
        weights = run_dir / "model.pt" if (run_dir / "model.pt").exists() else run_dir / "checkpoint.pt"
    state = rundir.load_checkpoint(Path(weights), on)
    if "optimizer" in state:  # a checkpoint, not bare weights
        state = state["model"] if named else evaluated_weights(state)
    try:
        model.load_state_dict(state)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise rundir.DamagedFile(weights, f"does not fit the model of {run_dir / 'config.json'} "
                                          f"({type(err).__name__}); analyze it in the run directory that "
                                          "wrote it, or train this run again") from err
    return cfg, model.eval(), data
