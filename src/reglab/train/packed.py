"""Packed training: K runs of one architecture trained together as one stacked model, step by step.

Each run keeps its own `Trainer` — built exactly as when trained alone, so its initialisation
(``torch.manual_seed(seed)`` then `build_model`), data generator, optimizer settings, schedule,
penalties, gradient clipping, EMA and criterion are its own. For the whole training the pack holds
the runs' state stacked: parameters as the rows of one ``(K, P)`` leaf tensor, BatchNorm buffers as
``(K, …)`` tensors, optimizer moments, EMA weights and the metric sums likewise. A step is a fixed
sequence of kernels whatever K is: one gather of the ``(K, B)`` batch indices, one
``torch.func.vmap(functional_call, randomness="different")`` forward, per-run losses as ``(K,)``,
one backward to the stacked leaf (for SAM runs, which pack apart from the others, a second forward and
backward at each run's perturbed weights), one `BatchedOptimizer` step (penalty gradients, per-run
clipping, each run's lr from a device table, its own update rule) and one EMA lerp. The network the pack
executes is the union of its runs' networks, with each run's dropout and stochastic-depth rates as
stacked buffers (`reglab.train.rates`), so runs that differ only in those rates share a pack, and its
BatchNorm and max-pooling layers treat the runs as channels of one tensor (`reglab.train.pack_layers`:
one kernel for all runs, no copies between convolutions). Nothing in a step reads a value back to
the host, so on CUDA the whole step is captured once as a CUDA graph and replayed (``train.cuda_graphs``).
The per-run trainers are brought up to date only at epoch boundaries —
for evaluation, checkpoints (in `torch.optim`'s own state format, so a run resumes alone or packed) and
``model.pt``.

What is the same as a solo run: the data order (each run's permutation from its own generator, drawn
per epoch), augmentation draws and every update rule — so without randomness from torch's global
generator a packed run equals its solo run up to floating-point rounding. What is the same only in
distribution: dropout, DropBlock and stochastic-depth masks, the input noise (one ``randn`` for the
pack's batch, scaled by each run's σ) and the mixup/CutMix ``lam`` (the global generator, drawn once
for the whole pack). Augmentation (crop offsets, flips, rotation angles, cutout centres) and mixing
(partners, CutMix boxes) are drawn once per epoch from each run's generator, as `Trainer` draws them,
and applied to the pack's batch with O(1) ops per step. A run whose loss
becomes non-finite is finished as diverged at the end of that epoch, and a run that early stopping
ends (each run's own `EarlyStopping`, fed its epochs at the epoch boundary) finishes there with its
best weights; the pack goes on without them (the runs do not interact: every computation stays
inside its own row).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from reglab.config import RunConfig
from reglab.data import AugmentDraw, apply_augmentation, draw_augmentation
from reglab.errors import one_line
from reglab.regularize.batched_optim import BatchedOptimizer, RunOptim
from reglab.regularize.max_norm import apply_max_norm_stacked, max_norm_weights
from reglab.regularize.mixing import MixDraw, mix_batch
from reglab.regularize.noise import add_input_noise
from reglab.regularize.penalties import penalized_parameters
from reglab.train import rundir
from reglab.train.loop import EpochLog, RunResult, Trainer
from reglab.train.pack_layers import pack_layers, set_batched
from reglab.train.rates import pack_groups, pack_key, rate_network

__all__ = ["PackedTrainer", "pack_groups", "pack_key", "packing_blocker"]

COMPILE = {"backend": "inductor", "options": {"fallback_random": True}}
"""How ``train.compile`` compiles a pack's forward (`torch.compile`): inductor, fusing the elementwise
work of the forward and backward, with torch's own random ops kept (``fallback_random``): the dropout
and stochastic-depth masks of an eager step, drawn from the generator a CUDA graph replays with fresh
draws."""


def packing_blocker(cfg: RunConfig) -> str | None:
    """Why a run cannot be trained packed (None: it can): the theory objectives (`train.objective` other
    than "drop") differentiate through the model."""
    return "train.objective" if cfg.train.objective != "drop" else None


class PackedTrainer:
    """Train `trainers` (one of `pack_groups`, fresh or resumed at one step: `Trainer.open_run_dir`)
    together; see the module docstring.

    `cuda_graphs`: capture the step as a CUDA graph (default: the runs' ``train.cuda_graphs``; only
    on CUDA). `graph_note` says why a CUDA pack runs without one. `compiled`: `torch.compile` the
    network's forward (and so its backward) as `COMPILE` says (default: the runs' ``train.compile``;
    only on CUDA, as a run trained alone); it compiles again for each new pack size (`outputs`).
    """

    WARMUP_STEPS = 3
    """Eager steps (on a side stream) before a CUDA graph is captured, as torch.cuda.graphs asks."""

    def __init__(self, trainers: Sequence[Trainer], *, cuda_graphs: bool | None = None,
                 compiled: bool | None = None):
        if not trainers:
            raise ValueError("PackedTrainer: needs at least one trainer")
        blocked = [(t.cfg.seed, b) for t in trainers if (b := packing_blocker(t.cfg))]
        if blocked:
            raise ValueError(f"{blocked[0][1]}: run with seed {blocked[0][0]} cannot be trained packed")
        if len(pack_groups([t.cfg for t in trainers])) > 1:
            raise ValueError("PackedTrainer: runs differ in data, model, stochastic-depth form or training budget; "
                             "pack them separately")
        self.trainers = list(trainers)
        self.active = list(range(len(trainers)))
        first = self.trainers[0]
        self.device, self.data = first.device, first.data
        # the code every run executes (with per-run dropout and stochastic-depth rates); tensors come from the pack
        self.module, self.rate_values = rate_network([t.cfg for t in trainers], [t.model for t in trainers],
                                                     input_shape=self.data.input_shape,
                                                     num_outputs=self.data.num_outputs)
        cfg = first.cfg
        on_cuda = self.device.type == "cuda"
        pack_layers(self.module, float32_norms=cfg.train.amp and on_cuda)  # one kernel per layer for all runs
        named = [(name, p) for name, p in self.module.named_parameters() if p.requires_grad]
        self.param_names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        # Linear weights are stored transposed, (in, out): the gradient vmap's bmm gives is then already
        # in the stored layout, where (out, in) storage would cost a transposing copy per weight per step
        linear = {f"{name}.weight".lstrip(".") for name, m in self.module.named_modules() if isinstance(m, nn.Linear)}
        self.transposed = [name in linear for name in self.param_names]
        self.linear_biases = {f"{name}.bias".lstrip(".") for name, m in self.module.named_modules()
                              if isinstance(m, nn.Linear) and m.bias is not None}
        self.buffer_names = [name for name, _ in self.module.named_buffers() if name not in self.rate_values]
        buffer_shapes = [self.module.get_buffer(name).shape for name in self.buffer_names]
        for t in trainers:  # runs map onto the pack's network by position
            if [p.shape for p in t.params] != self.shapes or [b.shape for b in t.model.buffers()] != buffer_shapes:
                raise ValueError(f"PackedTrainer: run with seed {t.cfg.seed} does not fit the pack's network")
        self.vmapped = vmap(self._functional, randomness="different")
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)) \
            if cfg.train.amp and on_cuda else contextlib.nullcontext
        compiled = cfg.train.compile and on_cuda if compiled is None else compiled
        self.compiled = torch.compile(self._outputs, dynamic=False, **COMPILE) if compiled else None
        self.batch_size = first.batch_size
        wanted = cfg.train.cuda_graphs if cuda_graphs is None else cuda_graphs
        self.graph_note = None
        self.use_graphs = on_cuda and wanted
        # channels-last packs on CUDA only: on CPU a pack gains little from it and vmap has no batching
        # rule for adaptive average pooling of channels-last input (ResNets: a per-run fallback)
        self.channels_last = first.channels_last and on_cuda and len(self.data.input_shape) == 3
        self._stack()

    # -------------------------------------------------------------------------------- stacking
    def _functional(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (params, buffers), (x,))

    def _forward(self, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
        """The runs' outputs ``(K, B, …)`` from stacked tensors. A pack of one calls its network on row 0
        directly: the kernels of a solo run, without vmap's batching rules and their Python overhead."""
        if self.batched:
            return self.vmapped(cast_linear_biases(params, self.linear_biases, x.device.type), buffers, x)
        params, buffers = ({name: t.squeeze(0) for name, t in d.items()} for d in (params, buffers))  # views
        return self._functional(params, buffers, x.squeeze(0)).unsqueeze(0)

    def _outputs(self, leaves: list[torch.Tensor], buffers: dict, x: torch.Tensor) -> torch.Tensor:
        """`_forward` of the parameters `leaves` in the pack's precision (bf16 autocast or not), as float32:
        what `outputs` runs (compiled, it takes the leaves themselves, not views of them)."""
        with self.autocast():
            return self._forward(self.param_views(leaves), buffers, x).float()

    def outputs(self, leaves: list[torch.Tensor], buffers: dict, x: torch.Tensor) -> torch.Tensor:
        """`_outputs`, compiled where ``train.compile`` asks, for full batches: an epoch's last, partial
        batch runs eagerly, since compiling a second shape (seconds on a GPU) costs more than one step saves."""
        full = x.shape[1] == self.batch_size
        return (self.compiled if self.compiled is not None and full else self._outputs)(leaves, buffers, x)

    def _runs(self) -> list[Trainer]:
        return [self.trainers[i] for i in self.active]

    @torch.no_grad()
    def _stack(self) -> None:
        """Build the stacked state of the active runs from their trainers (at the start, after a divergence)."""
        runs = self._runs()
        if len({t.step for t in runs}) > 1:
            raise ValueError("PackedTrainer: runs must have taken the same number of steps")
        flat = self._flat  # a run's tensors as a row of the stacked storage
        self.params = torch.stack([flat(t.params) for t in runs])  # (K, P); the leaves below are views of it
        k = len(runs)
        self.leaves = [v.view(k, *(shape[::-1] if tr else shape)).requires_grad_(True)
                       for v, shape, tr in zip(self.params.split(self.numels, dim=1), self.shapes, self.transposed,
                                               strict=True)]
        self.batched = k > 1
        set_batched(self.module, self.batched)
        self.grad = torch.zeros_like(self.params)
        self.buffers = stacked_buffers([t.model for t in runs], self.buffer_names) | {
            name: torch.tensor([values[i] for i in self.active], device=self.device)  # per-run rates
            for name, values in self.rate_values.items()}
        decay = torch.stack([self._decay_mask(t) for t in runs])
        self.optimizer = BatchedOptimizer(self.params, [run_optim(t.cfg) for t in runs], decay,
                                          self.params.new_zeros(1, len(runs)))
        self.optimizer.set_step(runs[0].step)
        for slot, t in enumerate(runs):
            state = [t.optimizer.state.get(p, {}) for p in t.params]
            names = {n for s in state for n, v in s.items() if isinstance(v, torch.Tensor) and v.dim()}
            self.optimizer.load_run_state(slot, {n: flat([s[n] for s in state]) for n in names})
        self.max_norm = None
        if any(t.cfg.regularize.max_norm for t in runs):  # each weight's unit axis, shifted by the run axis
            radii = [t.cfg.regularize.max_norm or float("inf") for t in runs]
            axes = {id(p): axis + 1 for p, axis in max_norm_weights(runs[0].model)}
            self.max_norm = (torch.tensor(radii, device=self.device), [
                (name, axes[id(p)]) for name, p in zip(self.param_names, runs[0].params, strict=True) if id(p) in axes])
        classes = self.data.num_classes
        rho = [t.cfg.regularize.sam_rho for t in runs]  # `pack_key`: all runs of a pack use SAM, or none
        self.sam_rho = torch.tensor(rho, device=self.device).unsqueeze(1) if any(rho) else None
        self.smoothing = torch.tensor([t.cfg.regularize.label_smoothing for t in runs], device=self.device)
        self.smoothing_any = any(t.cfg.regularize.label_smoothing for t in runs)
        sigma = [t.cfg.regularize.input_noise for t in runs]  # (K, 1, …) against the (K, B, …) batch; None: no draw
        self.input_noise = torch.tensor(sigma, device=self.device).view(
            k, 1, *[1] * len(self.data.input_shape)) if any(sigma) else None
        self.loss_name = runs[0].cfg.train.loss
        self.ema_on = [t.ema is not None for t in runs]
        if any(self.ema_on):
            ema_model = [t.ema.module if t.ema is not None else t.model for t in runs]
            self.ema_params = torch.stack([flat(p for p in m.parameters() if p.requires_grad) for m in ema_model])
            self.ema_buffers = stacked_buffers(ema_model, self.buffer_names)
            rest = torch.tensor([1 - t.cfg.regularize.ema if t.ema is not None else 1.0 for t in runs],
                                dtype=torch.float64, device=self.device)
            self.ema_weight = {name: rest.to(b.dtype).view(k, *[1] * (b.dim() - 1))
                               for name, b in self.ema_buffers.items() if b.is_floating_point()}
            self.ema_weight[""] = rest.to(self.params.dtype).view(k, 1)
        self.loss_sum = torch.zeros(k, device=self.device)
        self.correct_sum = torch.zeros(k, device=self.device, dtype=torch.long)
        self.norm_sum = torch.zeros(k, device=self.device)
        self.classify = classes is not None
        self.graph = None
        self.eager_steps = 0

    def _flat(self, tensors: Iterable[torch.Tensor]) -> torch.Tensor:
        """One run's per-parameter tensors (parameters, moments) as a row of the stacked storage."""
        return torch.cat([(p.detach().t() if tr else p.detach()).reshape(-1)
                          for p, tr in zip(tensors, self.transposed, strict=True)])

    def _split(self, row: torch.Tensor) -> list[torch.Tensor]:
        """A row of the stacked storage as views shaped like the run's parameters (inverse of `_flat`)."""
        return [v.view(shape[::-1]).t() if tr else v.view(shape)
                for v, shape, tr in zip(row.split(self.numels), self.shapes, self.transposed, strict=True)]

    def param_views(self, leaves: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The stacked parameters ``(K, …)`` by name, shaped as the network uses them (views of the leaves)."""
        return {name: leaf.transpose(1, 2) if tr else leaf
                for name, leaf, tr in zip(self.param_names, leaves or self.leaves, self.transposed, strict=True)}

    def _decay_mask(self, t: Trainer) -> torch.Tensor:
        """1 where weight decay and the L1/L2 penalties act on run `t`'s flat parameters."""
        chosen = {id(p) for p in penalized_parameters(t.model, t.cfg.regularize.penalize)}
        return torch.cat([torch.full((p.numel(),), float(id(p) in chosen), device=self.device) for p in t.params])

    @torch.no_grad()
    def _unstack(self) -> None:
        """Write the stacked state back into each active run's model, optimizer, schedule and EMA."""
        for slot, t in enumerate(self._runs()):
            for p, view in zip(t.params, self._split(self.params[slot]), strict=True):
                p.copy_(view)
            for name, buf in zip(self.buffer_names, t.model.buffers(), strict=True):
                buf.copy_(self.buffers[name][slot])
            t.step = int(self.optimizer.step_count.item())
            self._write_optimizer_state(t, slot)
            t.schedule.sync(t.step)
            if t.ema is not None:
                ema_params = [p for p in t.ema.module.parameters() if p.requires_grad]
                for p, view in zip(ema_params, self._split(self.ema_params[slot]), strict=True):
                    p.copy_(view)
                for name, buf in zip(self.buffer_names, t.ema.module.buffers(), strict=True):
                    buf.copy_(self.ema_buffers[name][slot])
                t.ema.n_averaged.fill_(t.step + 1)

    def _write_optimizer_state(self, t: Trainer, slot: int) -> None:
        """Run `slot`'s moments into its `torch.optim` optimizer, in torch's own state format."""
        state = self.optimizer.run_state(slot)
        groups = t.optimizer.param_groups
        plain_sgd = isinstance(t.optimizer, torch.optim.SGD) and not any(g["momentum"] for g in groups)
        if not t.step or plain_sgd:  # plain SGD keeps no state (its family's rows may hold momentum for others)
            return
        pieces = {name: self._split(flat) for name, flat in state.items()}
        fused = any(g.get("fused") for g in t.optimizer.param_groups)
        for i, p in enumerate(t.params):
            entry = {name: torch.empty_like(p).copy_(views[i]) for name, views in pieces.items()}  # p's layout
            if isinstance(t.optimizer, torch.optim.SGD):
                entry.setdefault("momentum_buffer", None)
            else:
                entry["step"] = torch.tensor(float(t.step), device=p.device if fused else "cpu")
            t.optimizer.state[p] = entry

    # -------------------------------------------------------------------------------- training
    def _losses(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each run's mean training loss ``(K,)`` from outputs ``(K, B, …)``, as its `train_criterion`."""
        smoothing = self.smoothing if self.smoothing_any else None
        if self.loss_name == "ce":
            logp = out.log_softmax(-1)
            loss = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(1)
            if smoothing is not None:
                loss = (1 - smoothing) * loss + smoothing * -logp.mean(-1).mean(1)
            return loss
        if self.classify:
            target = F.one_hot(y, self.data.num_classes).to(out.dtype)
            if smoothing is not None:
                s = smoothing.view(-1, 1, 1)
                target = target * (1 - s) + s / self.data.num_classes
        else:
            target = y
        return 0.5 * (out - target).pow(2).flatten(2).sum(2).mean(1)

    def _augment(self, x: torch.Tensor, draw: AugmentDraw) -> torch.Tensor:
        """Augmentation of the runs' batches ``(K, B, C, H, W)`` with their draws ``(K, …, B, 1)``, as one
        batch of K·B images (the run axis moved next to the sample axis and merged with it)."""
        k, b = x.shape[:2]
        merged = AugmentDraw(*(None if t is None else t.movedim(0, -3).flatten(-3, -2) for t in draw))
        return apply_augmentation(x.flatten(0, 1), self.trainers[0].cfg.data.augment, merged).unflatten(0, (k, b))

    def _step(self, idx: torch.Tensor, draw: AugmentDraw | None = None, mix: MixDraw | None = None) -> None:
        """One training step of every run on batch indices ``(K, B)`` with their augmentation and
        mixing draws; no host synchronisation."""
        x, y = self.data.x_train[idx], self.data.y_train[idx]
        if draw is not None:
            x = self._augment(x, draw)
        if self.input_noise is not None:  # as Trainer: after augmentation, before mixing
            x = add_input_noise(x, self.input_noise)
        partner = lam = None
        if mix is not None:
            dims = MixDraw(0, 0, None if mix.box is None else 0)
            x, partner, lam = vmap(mix_batch, in_dims=(0, 0, dims))(x, y, mix)  # each run's own partners, lam, box
        if self.channels_last:
            x = pack_channels_last(x)
        out = self.outputs(self.leaves, self.buffers, x)
        losses = self._losses(out, y)
        if mix is not None:
            losses = lam * losses + (1 - lam) * self._losses(out, partner)
        self._gradient(losses)
        if self.sam_rho is not None:
            self._sam_gradient(x, y, partner, lam)
        norms = self.optimizer.step(self.params, self.grad, penalties=self.sam_rho is None)
        if self.max_norm is not None:
            radii, constrained = self.max_norm
            views = self.param_views()
            apply_max_norm_stacked([(views[name], axis) for name, axis in constrained], radii)
        with torch.no_grad():
            if any(self.ema_on):
                self.ema_params.lerp_(self.params, self.ema_weight[""])
                for name, buf in self.ema_buffers.items():
                    if name in self.ema_weight:
                        buf.lerp_(self.buffers[name], self.ema_weight[name])
                    else:
                        buf.copy_(self.buffers[name])
            self.loss_sum.add_(losses.detach() * idx.shape[1])
            if self.classify:
                self.correct_sum.add_((out.argmax(-1) == y).sum(1))
            self.norm_sum.add_(norms)

    def _gradient(self, losses: torch.Tensor) -> None:
        """The gradient of each run's loss into the static ``(K, P)`` buffer `grad`."""
        grads = torch.autograd.grad(losses.sum(), self.leaves)
        torch.cat([g.reshape(losses.shape[0], -1) for g in grads], dim=1, out=self.grad)

    def _sam_gradient(self, x: torch.Tensor, y: torch.Tensor, partner: torch.Tensor | None,
                      lam: torch.Tensor | None) -> None:
        """SAM (`reglab.regularize.sam`) for every run at once: `grad` (∇ loss at w) becomes ∇(loss +
        penalty) at w + ε, ε = ρ·g/‖g‖ with g the run's total gradient at w and ρ its own. The perturbed
        pass sees the step's batch, augmentation and mixing; the weights and the BatchNorm statistics
        end as they were, so the statistics are updated once a step, from the unperturbed weights."""
        with torch.no_grad():
            self.optimizer.add_penalty_gradients(self.params, self.grad)
            norm = torch.linalg.vector_norm(self.grad, dim=1, keepdim=True)
            weights = self.params.clone()
            buffers = {name: self.buffers[name].clone() for name in self.buffer_names}
            self.params.addcmul_(self.grad, self.sam_rho / (norm + 1e-12))
        out = self.outputs(self.leaves, self.buffers, x)
        losses = self._losses(out, y)
        if partner is not None:
            losses = lam * losses + (1 - lam) * self._losses(out, partner)
        self._gradient(losses)
        with torch.no_grad():
            self.optimizer.add_penalty_gradients(self.params, self.grad)  # at w + ε, as the solo loss closure
            self.params.copy_(weights)
            for name, b in buffers.items():
                self.buffers[name].copy_(b)

    def _graph_step(self, idx: torch.Tensor, draw: AugmentDraw | None = None, mix: MixDraw | None = None) -> None:
        """`_step` replayed from a CUDA graph (captured after a few eager warm-up steps); eager on failure."""
        if self.graph is None:
            if self.eager_steps < self.WARMUP_STEPS:
                stream = torch.cuda.Stream(self.device)
                stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(stream):
                    self._step(idx, draw, mix)
                torch.cuda.current_stream(self.device).wait_stream(stream)
                self.eager_steps += 1
                return
            self.static_idx = idx.clone()
            self.static_draw, self.static_mix = clone_draws(draw), clone_draws(mix)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.device(self.device), torch.cuda.graph(graph):  # capture on the pack's GPU
                    self._step(self.static_idx, self.static_draw, self.static_mix)
            except Exception as err:  # capture is impossible here: train eagerly, say why once
                self.use_graphs, self.graph_note = False, one_line(err, first_line=True)
                warnings.warn(f"train.cuda_graphs: eager steps instead of a CUDA graph: {self.graph_note}",
                              stacklevel=2)
                self._step(idx, draw, mix)
                return
            self.graph = graph
        else:
            self.static_idx.copy_(idx)
            for static, new in ((self.static_draw, draw), (self.static_mix, mix)):
                for into, values in zip(static or (), new or (), strict=True):
                    if into is not None:
                        into.copy_(values)
        self.graph.replay()

    @staticmethod
    def _stack_draws(draws: Sequence[AugmentDraw | None]) -> AugmentDraw | None:
        """The runs' augmentation draws as one `AugmentDraw` of ``(K, …)`` tensors (None: no augmentation)."""
        if draws[0] is None:
            return None
        return AugmentDraw(*(None if parts[0] is None else torch.stack(parts) for parts in zip(*draws, strict=True)))

    @staticmethod
    def _stack_mixing(draws: Sequence[MixDraw | None]) -> MixDraw | None:
        """The runs' mixing draws stacked ``(K, steps, …)``; a run without mixing gets lam 1 and no box."""
        present = [d for d in draws if d is not None]
        if not present:
            return None
        like = present[0]
        box = next((d.box for d in present if d.box is not None), None)
        neutral = MixDraw(torch.ones_like(like.blend), torch.zeros_like(like.keys),
                          None if box is None else torch.zeros_like(box))
        filled = [neutral if d is None else d for d in draws]
        boxes = None if box is None else torch.stack([d.box if d.box is not None else neutral.box for d in filled])
        return MixDraw(torch.stack([d.blend for d in filled]), torch.stack([d.keys for d in filled]), boxes)

    def _lr_table(self, steps: int) -> torch.Tensor:
        """Learning rate of each of the next `steps` steps of every active run ``(steps, K)``, from its schedule."""
        columns = []
        for t in self._runs():
            if t.schedule.plateau is not None:
                columns.append([t.optimizer.param_groups[0]["lr"]] * steps)
            else:
                per_step = t.schedule.per_step
                base, factor = per_step.base_lrs[0], per_step.lr_lambdas[0]
                columns.append([base * factor(s) for s in range(t.step, t.step + steps)])
        return torch.tensor(columns, dtype=torch.float64).T

    def _set_lr_table(self, steps: int) -> None:
        """The next `steps` learning rates into the optimizer; a captured step that read a table the
        optimizer had to replace is captured again."""
        if self.optimizer.set_lr_table(self._lr_table(steps)):
            self.graph = None

    def time_step(self, steps: int = 5) -> float:
        """Seconds per step of this pack, after warm-up (and graph capture), on random batches.

        It trains the runs on those batches: for deciding whether to pack, on throwaway trainers."""
        self.module.train()
        warmup = self.WARMUP_STEPS + 2 if self.use_graphs else 2
        self._set_lr_table(warmup + steps)
        n, k = self.data.x_train.shape[0], len(self.active)
        first = self.trainers[self.active[0]]
        idx = torch.randint(0, n, (k, first.batch_size), device=self.device)
        draw = self._stack_draws([draw_augmentation(first.batch_size, first.cfg.data.augment,
                                                    torch.Generator(self.device).manual_seed(i)) for i in range(k)])
        mixing = self._stack_mixing([self.trainers[i].draw_mixing() for i in self.active])
        mix = None if mixing is None else mixing.step(0)
        step = self._graph_step if self.use_graphs else self._step
        for _ in range(warmup):
            step(idx, draw, mix)
        synchronize(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            step(idx, draw, mix)
        synchronize(self.device)
        return (time.perf_counter() - start) / steps

    def _train_epoch(self) -> list[dict[str, float]]:
        """One lockstep epoch of the active runs; returns each one's training metrics."""
        runs = self._runs()
        first = runs[0]
        n, batch = self.data.x_train.shape[0], first.batch_size
        self.module.train()
        perms = torch.stack([torch.randperm(n, generator=t.generator, device=t.generator.device) for t in runs])
        draw = self._stack_draws([draw_augmentation(n, t.cfg.data.augment, t.generator) for t in runs])  # as Trainer
        mixing = self._stack_mixing([t.draw_mixing() for t in runs])  # draws, in Trainer's order
        self._set_lr_table(first.steps_per_epoch)
        for total in (self.loss_sum, self.correct_sum, self.norm_sum):
            total.zero_()
        seen = steps = 0
        step, max_steps = first.step, first.cfg.train.max_steps
        for start in range(0, first.steps_per_epoch * batch, batch):  # no last batch of one sample
            idx = perms[:, start:start + batch]
            rows = None if draw is None else draw.rows(start, start + batch)
            mix = None if mixing is None else mixing.step(steps)
            if self.use_graphs and idx.shape[1] == batch:
                self._graph_step(idx, rows, mix)
            else:
                self._step(idx, rows, mix)
            seen += idx.shape[1]
            steps += 1
            if max_steps and step + steps >= max_steps:
                break
        self._unstack()
        records = []
        for t, loss, grad_norm, right in zip(runs, (self.loss_sum / seen).tolist(), (self.norm_sum / steps).tolist(),
                                             self.correct_sum.tolist(), strict=True):
            record = {"train_loss": loss, "grad_norm": grad_norm}
            reg = t.cfg.regularize
            if self.classify and not (reg.mixup or reg.cutmix):
                record["train_acc"] = right / seen
            records.append(record)
        return records

    # ------------------------------------------------------------------------------------- fit
    def fit(self, run_dirs: Sequence[str | Path | None] | None = None, *,
            on_epoch: Callable[[int, dict], None] = lambda i, metrics: None,
            on_result: Callable[[int, RunResult], None] = lambda i, result: None) -> list[RunResult]:
        """Train every run for its budget, writing each run directory as `Trainer.fit` does.

        `on_epoch(i, metrics)` after each epoch of run i; `on_result(i, result)` as soon as run i ends
        (a diverged or early-stopped run ends early, the others go on). Returns the results in trainer order.
        """
        dirs = [Path(d) if d is not None else None for d in (run_dirs or [None] * len(self.trainers))]
        if len(dirs) != len(self.trainers):
            raise ValueError(f"run_dirs: expected {len(self.trainers)} directories (got {len(dirs)})")
        if any(t.epoch for t in self.trainers) and not all(dirs):
            raise ValueError("run_dirs: resumed runs need the directories they resume from (their earlier epochs)")
        pack = {"size": len(self.trainers)} | ({"runs": [d.name for d in dirs]} if all(dirs) else {})
        logs = [open_run_log(t, d, pack=pack | {"slot": i})
                for i, (t, d) in enumerate(zip(self.trainers, dirs, strict=True))]
        callbacks = [t.config_callbacks for t in self.trainers]  # as `Trainer.fit`: before the caller's
        results: list[RunResult | None] = [None] * len(self.trainers)

        def end(runs: list[int]) -> None:
            """Finish `runs`, which leave the pack; the others go on re-stacked."""
            for i in runs:
                self.active.remove(i)
                results[i] = logs[i].finish(seconds=sum(e["seconds"] for e in logs[i].epochs))
                on_result(i, results[i])
            if runs and self.active:
                self._stack()

        end([i for i in self.active if self.trainers[i].stopper.stopped])  # resumed after early stopping
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
            ended = []  # diverged or stopped early
            for i, record, lr in zip(list(self.active), records, lrs, strict=True):
                t = self.trainers[i]
                t.average_weights()  # SWA, on the run's own weights (unstacked) and its own average
                metrics = t.close_epoch(record, lr=lr, start=time.perf_counter() - share)
                for callback in callbacks[i]:
                    metrics.update(callback(t.epoch, t.evaluated_model, metrics) or {})
                on_epoch(i, metrics)
                if not logs[i].record(metrics):
                    ended.append(i)
            rundir.save_all_atomic([(self.trainers[i].state_dict(), logs[i].run_dir / "checkpoint.pt")
                                    for i in self.active if logs[i].checkpoint_due])
            end(ended)
        end(list(self.active))
        return results


def cast_linear_biases(params: dict[str, torch.Tensor], biases: set[str], device_type: str
                       ) -> dict[str, torch.Tensor]:
    """Under autocast, the biases of `nn.Linear` layers in autocast's dtype. vmap's batching rule runs
    before autocast and splits a linear layer into a matrix product, which autocast casts, and an add
    of the per-run bias, which it does not: a float32 bias would turn the layer's output, and
    everything after it up to the next layer, to float32. Autocast casts an unbatched layer's bias the
    same way; the gradient reaches the float32 parameter through the cast. (A convolution's batching
    rule keeps its bias inside the grouped convolution, which CUDA's autocast casts whole.)"""
    if not torch.is_autocast_enabled(device_type):
        return params
    dtype = torch.get_autocast_dtype(device_type)
    return {name: t.to(dtype) if name in biases else t for name, t in params.items()}


def pack_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A pack's images ``(K, B, C, H, W)`` stored as ``(B, H, W, K, C)``: vmap runs a convolution of the
    pack as one grouped convolution on ``(B, K·C, H, W)``, which then gets a channels-last input (and
    gives a channels-last output, so the layout carries through the network) — ``train.channels_last``."""
    return x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)


def clone_draws(draws: tuple | None) -> tuple | None:
    """A copy of an `AugmentDraw` or `MixDraw` (static inputs of a CUDA graph)."""
    return None if draws is None else type(draws)(*(None if t is None else t.clone() for t in draws))


def stacked_buffers(models: Sequence[torch.nn.Module], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The models' buffers stacked ``(K, …)`` under the pack network's `names`, matched by position."""
    columns = zip(*(list(m.buffers()) for m in models), strict=True)
    return {name: torch.stack(column) for name, column in zip(names, columns, strict=True)}


def run_optim(cfg: RunConfig) -> RunOptim:
    """A run's optimizer, penalty and clipping settings as `BatchedOptimizer` takes them."""
    optim, reg = cfg.optim, cfg.regularize
    return RunOptim(optim.name, momentum=optim.momentum, alpha=optim.alpha,
                    betas=tuple(optim.betas), eps=optim.eps, weight_decay=optim.weight_decay, l1=reg.l1, l2=reg.l2,
                    grad_clip=reg.grad_clip or 0.0)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def open_run_log(trainer: Trainer, run_dir: Path | None, *, pack: dict) -> EpochLog:
    """A packed run's `EpochLog`, its directory written as `Trainer.fit` writes it. `pack` (the pack's
    size, its slot there and the pack's run directory names; for a resumed run also the epoch it resumed
    at and the `earlier` record) goes into the result."""
    epochs: list[dict] = []
    if run_dir is not None:
        if trainer.epoch:  # resumed (`Trainer.open_run_dir`): its epochs so far, and the pack they came from
            epochs = rundir.resumed_metrics(run_dir / "metrics.jsonl", trainer.epoch)
            pack = pack | {"resumed_at_epoch": trainer.epoch, "earlier": rundir.read_pack(run_dir)}
        run_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_json_atomic(run_dir / "config.json", trainer.cfg.to_dict())
        rundir.write_json_atomic(run_dir / "pack.json", pack)
        rundir.rewrite_metrics(run_dir / "metrics.jsonl", epochs)
    return EpochLog(trainer, run_dir, epochs, pack=pack)
