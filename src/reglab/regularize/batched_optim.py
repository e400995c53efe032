"""One optimizer step for K runs at once, over their parameters stacked as rows of a ``(K, P)`` tensor.

Each row is one run's parameters flattened; every per-run hyper-parameter (lr, momentum, betas, eps,
weight decay, L1/L2, clipping threshold) is a ``(K, 1)`` or ``(K, P)`` tensor broadcast over the rows,
so a step launches the same few kernels whatever K is, never reads a value back to the host and can
be captured in a CUDA graph. The update rules are `torch.optim`'s, written as broadcast tensor ops:

  SGD (Polyak momentum / Nesterov)              g ← g + λ·w;  b ← μ·b + g  (b ← g first);
                                                 w ← w − η·(g + μ·b if Nesterov else b)
  RMSprop (Hinton 2012)                          g ← g + λ·w;  v ← α·v + (1 − α)·g²;  w ← w − η·g/(√v + ε)
  Adam (Kingma & Ba 2015) / AdamW (Loshchilov    w ← w·(1 − η·λ_dec);  g ← g + λ·w;  m ← m + (1 − β₁)(g − m);
  & Hutter 2019)                                 v ← β₂·v + (1 − β₂)·g²;  w ← w − (η/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε)

Runs of different families (SGD-like, RMSprop, Adam-like) may share a stack: each family updates its
own rows (one gather and one scatter when it does not cover them all). Before the optimizer, the
L1/L2 penalties enter as their exact gradients (``l1·sign(w) + l2·w``, the gradient of
``l1·Σ|w| + (l2/2)·Σw²``) and each run's gradient is clipped to its own total norm, as
`torch.nn.utils.clip_grad_norm_` does (``g·min(1, c/(‖g‖ + 1e-6))``). Where the runs decay the same
tensors (`decayed_spans`), decay and penalties touch only those columns, scaled by a ``(K, 1)`` column.
The learning rate of step t of run k is ``lr_table[t, k]``, read on the device by a step counter.

Where a family's rows share the rule's constants (betas and eps; momentum and Nesterov)
and, over the current table, their learning rates, the update itself is torch's own fused kernel
(`torch._fused_adam_`, `torch._fused_sgd_`, as ``torch.optim``'s ``fused=True``): one pass over the
parameters, gradients and state instead of a dozen, after the weight-decay passes, which may differ
per run. RMSprop has no fused kernel; on devices other than CPU and CUDA the broadcast ops run, and
so they do where a first call of the kernels on the device fails (they are torch internals).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from reglab.errors import one_line

FAMILIES = {"sgd": "sgd", "momentum": "sgd", "nesterov": "sgd", "rmsprop": "rmsprop", "adam": "adam",
            "adamw": "adam"}
"""reglab optimizer name → the update rule family that runs it."""


@dataclass(frozen=True)
class RunOptim:
    """One run's optimizer hyper-parameters (`torch.optim` meanings); `weight_decay` is decoupled for AdamW."""

    name: str
    momentum: float = 0.0
    alpha: float = 0.99
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in FAMILIES:
            raise ValueError(f"optim.name: unknown optimizer {self.name!r}")

    @property
    def nesterov(self) -> bool:
        return self.name == "nesterov"


def decayed_spans(decay: Tensor, chunks: Sequence[slice]) -> list[list[slice]] | None:
    """Where every row of `decay` ``(n, P)`` marks the same columns (runs that decay the same tensors,
    the usual case), the marked columns of each chunk as slices relative to the chunk: weight decay and
    the penalties then touch only those columns, with no mask to read. None where the rows differ."""
    mask = decay.bool()
    if not bool((mask == mask[:1]).all()):
        return None
    edge = mask.new_zeros(1, dtype=torch.int8)
    edges = torch.diff(mask[0].to(torch.int8), prepend=edge, append=edge).nonzero().flatten().tolist()
    spans = list(zip(edges[::2], edges[1::2], strict=True))
    return [[slice(max(a, c.start) - c.start, min(b, c.stop) - c.start) for a, b in spans if a < c.stop and b > c.start]
            for c in chunks]


def _column(values: Sequence[float], like: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """Per-run values as a ``(n, 1)`` column on `like`'s device (float64 unless `dtype` is given)."""
    dtype = dtype or (torch.float32 if like.device.type == "mps" else torch.float64)
    return torch.tensor(list(values), dtype=dtype, device=like.device).unsqueeze(1)


class _Family:
    """The rows of one update rule: their hyper-parameters as columns and their optimizer state.

    Hyper-parameter arithmetic (1 − β, bias corrections, η/(1 − β₁ᵗ)) is done in float64 and rounded
    once to the parameters' dtype, as `torch.optim` does with Python floats."""

    def __init__(self, kind: str, rows: list[int], runs: list[RunOptim], decay: Tensor, params: Tensor,
                 chunks: Sequence[slice]):
        self.kind, self.n, dtype = kind, len(rows), params.dtype
        self.row_list = rows
        self.rows = None if rows == list(range(params.shape[0])) else torch.tensor(rows, device=params.device)
        col = lambda values: _column(values, params)  # noqa: E731
        low = lambda values: _column(values, params).to(dtype)  # noqa: E731
        coupled = [0.0 if r.name == "adamw" else r.weight_decay for r in runs]
        decoupled = [r.weight_decay if r.name == "adamw" else 0.0 for r in runs]
        self.spans = decayed_spans(decay, chunks)
        self.decay_mask = decay.bool() if self.spans is None else None
        self.coupled = (low(coupled) * (decay if self.spans is None else 1)) if any(coupled) else None
        self.decoupled = col(decoupled) if any(decoupled) else None
        self.one = params.new_ones(())
        self.constants = self._constants(runs[0]) if kind != "rmsprop" else None
        self.fusable = kind != "rmsprop" and all(self._constants(r) == self.constants for r in runs)
        self.lr_uniform = False  # over the current lr table (`BatchedOptimizer.set_lr_table`)
        width = params.shape[1]
        if kind == "sgd":
            momentum = [r.momentum if r.name != "sgd" else 0.0 for r in runs]
            self.momentum = low(momentum)
            self.nesterov = col([float(r.nesterov) for r in runs]).bool()
            self.any_nesterov = any(r.nesterov for r in runs)
            self.buffers = {"momentum_buffer": params.new_zeros(self.n, width)} if any(momentum) else {}
        elif kind == "rmsprop":
            self.alpha, self.rest = low([r.alpha for r in runs]), low([1 - r.alpha for r in runs])
            self.eps = low([r.eps for r in runs])
            self.buffers = {"square_avg": params.new_zeros(self.n, width)}
        else:
            self.beta1, self.beta2 = col([r.betas[0] for r in runs]), col([r.betas[1] for r in runs])
            self.rest1, self.rest2 = low([1 - r.betas[0] for r in runs]), low([1 - r.betas[1] for r in runs])
            self.beta2_low, self.eps = low([r.betas[1] for r in runs]), low([r.eps for r in runs])
            self.buffers = {"exp_avg": params.new_zeros(self.n, width), "exp_avg_sq": params.new_zeros(self.n, width)}

    def _constants(self, run: RunOptim) -> tuple:
        """The rule's constants of `run` other than lr and weight decay (equal for all rows: fusable)."""
        if self.kind == "adam":
            return run.betas, run.eps
        momentum = run.momentum if run.name != "sgd" else 0.0
        return momentum, run.nesterov

    @property
    def fused(self) -> bool:
        return self.fusable and self.lr_uniform

    def update(self, w: Tensor, g: Tensor, lr: Tensor, step: Tensor, scratch: Tensor,
               chunks: Sequence[slice], *, first_step: bool) -> None:
        """Update rows `w` (in place) by gradient `g` (overwritten) with learning rates `lr` ``(n, 1)``
        (float64); `step` (float64) counts this step, 1 on the first (`first_step`: the host knows it
        too). `scratch` is a buffer shaped like `w`: every large intermediate is written there, so a
        step allocates nothing of size P. The columns are updated `chunks` at a time (on CPU a chunk
        stays in cache through all the ops)."""
        dtype = w.dtype
        shrink = (1 - lr * self.decoupled).to(dtype) if self.decoupled is not None else None
        if self.fused:
            for i, cols in enumerate(chunks) if shrink is not None or self.coupled is not None else ():
                self._decay(w[:, cols], g[:, cols], scratch[:, cols], i, cols, shrink)
            self._fused_update(w, g, lr[:1].to(torch.float32), step, first_step)
            return
        lr_low = lr.to(dtype)
        if self.kind == "adam":
            step_size = (lr / (1 - self.beta1.pow(step))).to(dtype)
            root = (1 - self.beta2.pow(step)).sqrt().to(dtype)
        for i, cols in enumerate(chunks):
            wc, gc, s = w[:, cols], g[:, cols], scratch[:, cols]
            state = {name: buf[:, cols] for name, buf in self.buffers.items()}
            self._decay(wc, gc, s, i, cols, shrink)
            if self.kind == "sgd":
                if state:
                    buf = state["momentum_buffer"]
                    buf.mul_(self.momentum).add_(gc)  # from zeros: b ← g first
                    if self.any_nesterov:
                        torch.mul(self.momentum, buf, out=s).add_(gc)
                        gc = torch.where(self.nesterov, s, buf, out=s)
                    else:
                        gc = buf
                wc.sub_(torch.mul(gc, lr_low, out=s))
            elif self.kind == "rmsprop":
                square = state["square_avg"]
                square.mul_(self.alpha).add_(torch.mul(gc, gc, out=s).mul_(self.rest))
                torch.sqrt(square, out=s).add_(self.eps)
                wc.sub_(torch.div(gc, s, out=s).mul_(lr_low))
            else:
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(gc, self.rest1)
                v.mul_(self.beta2_low).add_(torch.mul(gc, gc, out=s).mul_(self.rest2))
                torch.sqrt(v, out=s).div_(root).add_(self.eps)
                wc.sub_(torch.div(m, s, out=s).mul_(step_size))

    def _decay(self, wc: Tensor, gc: Tensor, s: Tensor, i: int, cols: slice, shrink: Tensor | None) -> None:
        """Weight decay on chunk `i` (columns `cols`): decoupled (``w ← w·(1 − η·λ)``), then coupled
        (``g ← g + λ·w``); on the decayed spans alone where the rows share them, else through the mask."""
        if self.spans is not None:
            for part in self.spans[i]:
                if shrink is not None:
                    wc[:, part].mul_(shrink)
                if self.coupled is not None:
                    gc[:, part].addcmul_(wc[:, part], self.coupled)
            return
        if shrink is not None:
            wc.mul_(torch.where(self.decay_mask[:, cols], shrink, self.one, out=s))
        if self.coupled is not None:
            gc.add_(torch.mul(self.coupled[:, cols], wc, out=s))

    def _fused_update(self, w: Tensor, g: Tensor, lr: Tensor, step: Tensor, first_step: bool) -> None:
        """torch's fused kernel with the rows' common constants and lr ``(1,)`` (weight decay done)."""
        if self.kind == "adam":
            (beta1, beta2), eps = self.constants
            torch._fused_adam_([w], [g], [self.buffers["exp_avg"]], [self.buffers["exp_avg_sq"]], [],
                               [step.to(torch.float32)], lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=eps, amsgrad=False, maximize=False)
        else:
            momentum, nesterov = self.constants
            torch._fused_sgd_([w], [g], list(self.buffers.values()), weight_decay=0.0, momentum=momentum, lr=lr,
                              dampening=0.0, nesterov=nesterov, maximize=False, is_first_step=first_step)


@functools.cache
def fused_kernels_fail(device: torch.device) -> str | None:
    """Why `_Family._fused_update` cannot run on `device` (None: it can), from one call of each kernel
    on a tiny family; said once as a warning. CPU and CUDA only."""
    if device.type not in ("cpu", "cuda"):
        return f"no fused kernels used on {device.type}"
    params, step, lr = torch.zeros(1, 4, device=device), torch.ones((), device=device), torch.ones(1, 1, device=device)
    try:
        for run in (RunOptim("adam"), RunOptim("momentum", momentum=0.9), RunOptim("sgd")):
            family = _Family(FAMILIES[run.name], [0], [run], torch.ones_like(params), params, [slice(0, 4)])
            family._fused_update(params, torch.ones_like(params), lr, step, True)
    except (RuntimeError, TypeError, AttributeError, NotImplementedError) as err:
        reason = one_line(err, first_line=True)
        warnings.warn(f"BatchedOptimizer: torch's fused optimizer kernels fail on {device} ({reason}); "
                      "using broadcast tensor ops", stacklevel=2)
        return reason
    return None


class BatchedOptimizer:
    """Penalty gradients, per-run clipping and the optimizer update for the rows of `params` ``(K, P)``.

    `runs[k]` holds run k's hyper-parameters; `decay` ``(K, P)`` (0/1) marks the entries that weight
    decay and the L1/L2 penalties act on; `lr_table` ``(T, K)`` the learning rate of each step
    (`set_lr_table` replaces it and restarts its counter). On accelerators every op covers all P
    columns at once; on CPU the columns go in chunks of `CPU_CHUNK` columns, which keeps the data
    in cache — the number of ops is then proportional to P/`CPU_CHUNK` but still independent of K.
    """

    CPU_CHUNK = 32768
    """Columns per chunk on CPU: K rows of them stay in cache through a step's ops for packs of tens."""

    def __init__(self, params: Tensor, runs: Sequence[RunOptim], decay: Tensor, lr_table: Tensor):
        if params.dim() != 2 or len(runs) != params.shape[0] or decay.shape != params.shape:
            raise ValueError("BatchedOptimizer: expects params and decay (K, P) and one RunOptim per row")
        self.runs = list(runs)
        decay = decay.to(params)
        col = lambda values: _column(values, params, params.dtype)  # noqa: E731
        width = params.shape[1]
        per_chunk = width if params.device.type != "cpu" else self.CPU_CHUNK
        self.chunks = [slice(start, start + per_chunk) for start in range(0, width, per_chunk)]
        self.spans = decayed_spans(decay, self.chunks)
        masked = decay if self.spans is None else 1
        self.l1 = col([r.l1 for r in runs]) * masked if any(r.l1 for r in runs) else None
        self.l2 = col([r.l2 for r in runs]) * masked if any(r.l2 for r in runs) else None
        clip = [r.grad_clip for r in runs]
        self.clip = col(clip).squeeze(1) if any(clip) else None
        self.clipped = self.clip > 0 if self.clip is not None else None
        self.families = []
        for kind in dict.fromkeys(FAMILIES[r.name] for r in runs):
            rows = [k for k, r in enumerate(runs) if FAMILIES[r.name] == kind]
            self.families.append(_Family(kind, rows, [runs[k] for k in rows], decay[rows], params, self.chunks))
        if fused_kernels_fail(params.device) is not None:
            for family in self.families:
                family.fusable = False
        self.scratch = torch.empty_like(params, requires_grad=False)
        self.step_count = torch.zeros((), dtype=self.hyper_dtype(params), device=params.device)
        self.first_step = True  # on the host: torch's fused SGD starts its momentum as the first gradient
        self.lr_table = lr_table.to(self.step_count).clone()
        self.lr_index = torch.zeros(1, dtype=torch.long, device=params.device)
        self._choose_kernels(lr_table)

    @staticmethod
    def hyper_dtype(params: Tensor) -> torch.dtype:
        """Dtype of learning rates and step counts: float64 (float32 on MPS, which has none)."""
        return torch.float32 if params.device.type == "mps" else torch.float64

    def set_lr_table(self, table: Tensor) -> bool:
        """Learning rates ``(T, K)`` of the next T steps. A table no longer than the current one is
        written into it in place, so a captured CUDA graph goes on reading the right rates; returns
        True when the table had to be replaced by a larger tensor, or when a family switches between
        torch's fused kernel and the broadcast ops (either way a captured step must be captured again)."""
        self.lr_index.zero_()
        switched = self._choose_kernels(table)
        if table.shape[1:] == self.lr_table.shape[1:] and table.shape[0] <= self.lr_table.shape[0]:
            self.lr_table[:table.shape[0]].copy_(table)
            return switched
        self.lr_table = table.to(self.lr_table).clone()
        return True

    def _choose_kernels(self, table: Tensor) -> bool:
        """Fused kernels for the families whose rows have equal rates all through `table`; whether any
        family's choice changed."""
        switched = False
        for family in self.families:
            rows = table[:, family.row_list]
            uniform = bool((rows == rows[:, :1]).all())
            switched |= family.fusable and uniform != family.lr_uniform
            family.lr_uniform = uniform
        return switched

    @torch.no_grad()
    def add_penalty_gradients(self, params: Tensor, grad: Tensor) -> None:
        """Add each run's L1/L2 penalty gradient at `params`, l1·sign(w) + l2·w (masked), to `grad`."""
        scratch = self.scratch
        for i, cols in enumerate(self.chunks) if self.l1 is not None or self.l2 is not None else ():
            if self.spans is not None:
                g, w, s = grad[:, cols], params[:, cols], scratch[:, cols]
                for part in self.spans[i]:
                    if self.l1 is not None:
                        g[:, part].addcmul_(torch.sign(w[:, part], out=s[:, part]), self.l1)
                    if self.l2 is not None:
                        g[:, part].addcmul_(w[:, part], self.l2)
                continue
            if self.l1 is not None:
                grad[:, cols].add_(torch.sign(params[:, cols], out=scratch[:, cols]).mul_(self.l1[:, cols]))
            if self.l2 is not None:
                grad[:, cols].add_(torch.mul(self.l2[:, cols], params[:, cols], out=scratch[:, cols]))

    def step(self, params: Tensor, grad: Tensor, *, penalties: bool = True) -> Tensor:
        """One step of every run: updates `params` in place (`grad` is overwritten) and returns each
        run's gradient norm ``(K,)`` (with penalty gradients, before clipping, as `clip_grad_norm_`).
        ``penalties=False``: `grad` already holds them (SAM adds them at its perturbed weights)."""
        scratch, chunks = self.scratch, self.chunks
        if penalties:
            self.add_penalty_gradients(params, grad)
        norm = torch.linalg.vector_norm(grad, dim=1)
        if self.clip is not None:
            coef = torch.where(self.clipped, (self.clip / (norm + 1e-6)).clamp(max=1.0), torch.ones_like(norm))
            grad.mul_(coef.unsqueeze(1))
        lr = self.lr_table.index_select(0, self.lr_index).squeeze(0).unsqueeze(1)
        self.lr_index.add_(1)
        self.step_count.add_(1)
        first, self.first_step = self.first_step, False
        for family in self.families:
            if family.rows is None:
                family.update(params, grad, lr, self.step_count, scratch, chunks, first_step=first)
            else:
                w = params.index_select(0, family.rows)
                family.update(w, grad.index_select(0, family.rows), lr.index_select(0, family.rows),
                              self.step_count, scratch[:family.n], chunks, first_step=first)
                params.index_copy_(0, family.rows, w)
        return norm

    # ----------------------------------------------------------------- state as torch.optim keeps it
    def _locate(self, k: int) -> tuple[_Family, int]:
        kind = FAMILIES[self.runs[k].name]
        family = next(f for f in self.families if f.kind == kind)
        return family, (k if family.rows is None else family.rows.tolist().index(k))

    def run_state(self, k: int) -> dict[str, Tensor]:
        """Run k's optimizer state as flat ``(P,)`` tensors named as `torch.optim` names them."""
        family, row = self._locate(k)
        return {name: buf[row] for name, buf in family.buffers.items()}

    @torch.no_grad()
    def load_run_state(self, k: int, state: dict[str, Tensor]) -> None:
        """Set run k's optimizer state from flat tensors named as in `run_state`."""
        family, row = self._locate(k)
        for name, buf in family.buffers.items():
            if name in state:
                buf[row].copy_(state[name])

    @torch.no_grad()
    def set_step(self, step: int) -> None:
        """Number of steps already taken (every run of a stack has taken the same number)."""
        self.step_count.fill_(step)
        self.first_step = step == 0
