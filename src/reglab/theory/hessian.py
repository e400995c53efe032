"""Sharpness from Hessian-vector products, on the model's device in its dtype.

H = ∇²_θ L(θ) of the mean loss L = (1/N) Σ_i ℓ(model(x_i), y_i) over the trainable parameters (or
over a chosen subset: one module's block of H). H·v is Pearlmutter's trick by double backward,
∇_θ⟨∇_θ L, v⟩. With `batch_size`, the N samples are split into batches and H·v = Σ_b (n_b/N) H_b·v is
accumulated batch by batch (the full training set, without holding every batch's graph); one
batch keeps its gradient graph and reuses it for every product.

* top-k eigenpairs: Lanczos with full reorthogonalization (Lanczos 1950; Golub & Van Loan,
  *Matrix Computations* §10.1), Ritz values = the k largest *algebraic* eigenvalues of the
  tridiagonal T_m, stopped when every Ritz residual |β_m s_{m,i}| ≤ tol·max(1, |θ_i|), restarted
  outside an invariant subspace, and for k > 1 checked by Lanczos on the deflated operator outside
  the found vectors, so that repeated eigenvalues show with their multiplicity;
* density: stochastic Lanczos quadrature (Golub & Meurant 1994; Ubaru, Chen & Saad 2017; Ghorbani,
  Krishnan & Xiao 2019): per Rademacher probe v/‖v‖, nodes θ_j and weights τ_j = (s_{1j})² of T_m
  give ∫ f dμ ≈ Σ_j τ_j f(θ_j), exact for polynomials f of degree < 2m;
* trace: Hutchinson (1989), tr H = E[vᵀHv] for Rademacher v.

`mode` = "eval" (default: no dropout, BatchNorm running statistics) or "train" (dropout masks and
BatchNorm batch statistics). In train mode every forward of batch b reuses the random state of
its first, so the operator is one fixed symmetric matrix; BatchNorm running buffers are restored.
This is the operator that PyHessian (Yao, Gholami, Keutzer & Mahoney 2020) computes, tested
here against `torch.autograd.functional.hessian`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from reglab.config import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MODES = ("eval", "train")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ConfigError(f"mode: expected eval or train (got {mode!r})")
    return mode


class HessianOperator:
    """v ↦ H·v for flat vectors v on the parameters' device and dtype.

    `params`: names of the parameters spanning H (module names select all of a module's
    parameters), default every trainable parameter. `batch_size`: split (x, y) into batches and
    accumulate (default: one batch, graph kept for every product).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                 mode: str = "eval", params: Sequence[str] | None = None, batch_size: int | None = None):
        self.model, self.loss_fn, self.mode = model, loss_fn, check_mode(mode)
        self.names, self.params = select_parameters(model, params)
        self.size = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size: must be at least 1 (got {batch_size})")
        n = x.shape[0]
        step = batch_size or n
        self.batches = [(x[i:i + step], None if y is None else y[i:i + step]) for i in range(0, n, step)]
        self.weights = [b[0].shape[0] / n for b in self.batches]
        # train mode: one seed per batch, so that every product sees the same dropout masks
        self.seeds = [int(s) for s in torch.randint(0, 2**62, (len(self.batches),))] if mode == "train" else []
        self.products = 0
        self._cached = self._gradients(0) if len(self.batches) == 1 else None

    def _gradients(self, b: int) -> list[tuple[torch.Tensor, int]]:
        """(∂L_b/∂θ_i with graph, i) for the gradients that depend on θ."""
        x, y = self.batches[b]
        model = self.model
        saved_modes = [m.training for m in model.modules()]
        # train mode: BatchNorm updates copies of its running buffers, the model's stay as they are
        buffers = {k: v.clone() for k, v in model.named_buffers()} if self.mode == "train" else {}
        try:
            if self.mode == "eval":
                model.eval()
                loss = self.loss_fn(model(x), y)
            else:
                model.train()
                with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                    torch.manual_seed(self.seeds[b])
                    loss = self.loss_fn(functional_call(model, buffers, (x,)), y)
        finally:
            for m, training in zip(model.modules(), saved_modes, strict=True):
                m.training = training
        grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        return [(g, i) for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [c.view_as(p) for c, p in zip(flat.split([p.numel() for p in self.params]), self.params,
                                             strict=True)]

    def __call__(self, flat: torch.Tensor) -> torch.Tensor:
        v = self.split(flat.to(self.dtype))
        total = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        for b, weight in enumerate(self.weights):
            pairs = self._cached if self._cached is not None else self._gradients(b)
            if not pairs:
                continue
            hv = torch.autograd.grad([g for g, _ in pairs], self.params, grad_outputs=[v[i] for _, i in pairs],
                                     retain_graph=self._cached is not None, allow_unused=True,
                                     materialize_grads=True)
            total += weight * torch.cat([h.flatten() for h in hv])
        self.products += 1
        return total


def select_parameters(model: nn.Module, names: Sequence[str] | None) -> tuple[list[str], list[torch.Tensor]]:
    """Trainable parameters whose name is one of `names` or lies under one of them (module names)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if names is not None:
        wanted = list(names)
        known = {n for n, _ in named} | {n for n, _ in model.named_modules()}
        if unknown := [w for w in wanted if w not in known]:
            raise ConfigError(f"params: {unknown[0]!r} is neither a trainable parameter nor a module of the model")
        named = [(n, p) for n, p in named if any(n == w or n.startswith(w + ".") or w == "" for w in wanted)]
    if not named:
        raise ConfigError("params: no trainable parameters selected")
    return [n for n, _ in named], [p for _, p in named]


def _probe(n: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Rademacher ±1 vector of length n, drawn on the generator's device, returned on `like`'s."""
    device = generator.device if generator is not None else like.device
    return (torch.randint(0, 2, (n,), generator=generator, device=device) * 2 - 1).to(like)


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, steps: int,
            on_step: Callable[[torch.Tensor, torch.Tensor, int, bool], bool] | None = None,
            restart: Callable[[], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lanczos tridiagonalization with full reorthogonalization (twice, "twice is enough").

    Returns (α (m,), β (m,), Q (m, n)): T_m = tridiag(β_{1..m−1}, α, β_{1..m−1}), Q's rows orthonormal,
    β_m the norm of the last residual. Stops when `on_step(α, β, block, closed)` returns True (`block`:
    the step at which the current Krylov block began; `closed`: the residual vanished, the block spans
    an invariant subspace), and on an invariant subspace unless `restart` is given: then it goes on
    from restart()'s vector made orthogonal to Q, a new block (its β entry in T is 0). A single start
    vector meets each eigenspace in one direction, so only a new block can show a repeated eigenvalue's
    other copies (Golub & Van Loan §10.1.5: an invariant subspace found).
    """
    n = start.numel()
    steps = min(steps, n)
    basis = torch.empty(min(steps, 16), n, dtype=start.dtype, device=start.device)  # grown as needed
    alphas, betas = [], []
    q, block = start / start.norm(), 0
    for j in range(steps):
        if j == basis.shape[0]:
            basis = torch.cat([basis, torch.empty_like(basis[:min(j, steps - j)])])
        basis[j] = q
        w = matvec(q)
        alphas.append(torch.dot(w, q))
        w = _orthogonalized(w, basis[:j + 1])
        beta = w.norm()
        betas.append(beta)
        a, b = torch.stack(alphas), torch.stack(betas)
        tiny = 100 * torch.finfo(start.dtype).eps
        closed = bool(beta <= tiny * a.abs().max().clamp_min(torch.finfo(start.dtype).tiny))
        if (on_step is not None and on_step(a, b, block, closed)) or (closed and (restart is None or j + 1 == steps)):
            break
        if closed:
            w = _orthogonalized(restart().to(start), basis[:j + 1])
            if w.norm() <= tiny:  # nothing left outside the basis
                break
            betas[-1], block, beta = torch.zeros_like(beta), j + 1, w.norm()
        q = w / beta
    m = len(alphas)
    return torch.stack(alphas), torch.stack(betas), basis[:m]


def _orthogonalized(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
    return w


def _tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    return torch.diag(alphas) + torch.diag(betas[:-1], 1) + torch.diag(betas[:-1], -1)


@dataclass
class Eigenpairs:
    """Top-k eigenvalues (descending) and unit eigenvectors (k, n) of H; `residuals` ‖Hv − λv‖ estimates."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    products: int

    def by_name(self, operator: HessianOperator, i: int = 0) -> dict[str, torch.Tensor]:
        """Eigenvector i split into one tensor per parameter of `operator`, by name."""
        return dict(zip(operator.names, operator.split(self.vectors[i]), strict=True))


def hessian_eigenpairs(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, k: int = 1,
                       max_steps: int = 100, tol: float = 1e-4, mode: str = "eval",
                       params: Sequence[str] | None = None, batch_size: int | None = None,
                       generator: torch.Generator | None = None) -> Eigenpairs:
    """The k largest algebraic eigenvalues of H with eigenvectors (Lanczos, module docstring).

    Stops once the k Ritz residuals are ≤ tol·max(1, |λ|) (checked every step), at most `max_steps`
    products; raises if they have not converged by then. Where the Krylov space closes (an invariant
    subspace: small models, low-rank or Kronecker-structured H), Lanczos goes on from a new random vector
    outside it, until that block's top Ritz value is at most the k-th. Where one block converged without
    closing, the top eigenvalue outside the k vectors found (`_top_outside`) replaces the k-th while it
    is larger: a repeated eigenvalue is returned as often as it occurs (up to k). `generator` draws the
    start vectors.
    """
    operator = HessianOperator(model, loss_fn, x, y, mode=mode, params=params, batch_size=batch_size)
    if k < 1 or k > operator.size:
        raise ConfigError(f"k: must be between 1 and the number of parameters {operator.size} (got {k})")
    start = torch.randn(operator.size, generator=generator, dtype=operator.dtype,
                        device=generator.device if generator is not None else operator.device).to(operator.device)

    def ritz(alphas: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas))
        top = values.flip(0)[:k], vectors.flip(1)[:, :k]
        return top[0], top[1], (betas[-1] * top[1][-1]).abs()

    def small(residual: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return residual <= tol * value.abs().clamp_min(1.0)

    def converged(alphas: torch.Tensor, betas: torch.Tensor, block: int, closed: bool) -> bool:
        """The k Ritz pairs have converged and, once an invariant subspace was met, the space outside it
        holds nothing above the k-th: the current block's top Ritz value, converged, is at most that."""
        if block == 0 and closed and alphas.numel() < operator.size:
            return False  # an invariant subspace: look outside it for copies of its eigenvalues
        if alphas.numel() < k:
            return False
        values, _, residuals = ritz(alphas, betas)
        if not small(residuals, values).all():
            return False
        if block == 0:
            return True
        outside, vectors = torch.linalg.eigh(_tridiagonal(alphas[block:], betas[block:]))
        top, kth = outside[-1], values[-1]
        return bool(small((betas[-1] * vectors[-1, -1]).abs(), top) and top <= kth + tol * kth.abs().clamp_min(1.0))

    def restart() -> torch.Tensor:
        return torch.randn(operator.size, generator=generator, dtype=operator.dtype,
                           device=generator.device if generator is not None else operator.device)

    alphas, betas, basis = lanczos(operator, start, max_steps, converged, restart)
    values, vectors, residuals = ritz(alphas, betas)
    boundaries = (betas[:-1] == 0).nonzero()
    block = int(boundaries[-1]) + 1 if len(boundaries) else 0
    closed = bool(betas[-1] <= 100 * torch.finfo(operator.dtype).eps * alphas.abs().max().clamp_min(
        torch.finfo(operator.dtype).tiny))
    if values.numel() < k or not (alphas.numel() == operator.size or converged(alphas, betas, block, closed)):
        raise RuntimeError(f"Lanczos did not converge to {k} eigenpairs in max_steps={max_steps} products "
                           f"(residuals {residuals.tolist()}); raise max_steps or tol")
    eigenvectors = vectors.T @ basis
    eigenvectors = eigenvectors / eigenvectors.norm(dim=1, keepdim=True)
    if k > 1 and block == 0 and alphas.numel() < operator.size:  # one block, never closed: it met each
        for _ in range(k):  # eigenspace in one direction; copies of a found eigenvalue lie outside its vectors
            top, u = _top_outside(operator, eigenvectors, restart().to(operator.device), max_steps, small)
            if top <= values[-1] + tol * values[-1].abs().clamp_min(1.0):
                break
            order = torch.cat([values[:-1], top.view(1)]).argsort(descending=True)
            residual = (operator(u) - top * u).norm().view(1)
            values = torch.cat([values[:-1], top.view(1)])[order]
            eigenvectors = torch.cat([eigenvectors[:-1], u.view(1, -1)])[order]
            residuals = torch.cat([residuals[:-1], residual])[order]
    return Eigenpairs(values, eigenvectors, residuals, operator.products)


def _top_outside(operator: Callable[[torch.Tensor], torch.Tensor], found: torch.Tensor, start: torch.Tensor,
                 max_steps: int, small: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest eigenvalue of H on the orthogonal complement of `found`'s rows (orthonormal) and its
    unit eigenvector: Lanczos on the deflated operator P·H·P, P = I − FᵀF, until its top Ritz pair
    converges (`small`) or its Krylov space closes."""
    def outside(v: torch.Tensor) -> torch.Tensor:
        return _orthogonalized(operator(_orthogonalized(v, found)), found)

    def done(alphas: torch.Tensor, betas: torch.Tensor, _block: int, _closed: bool) -> bool:
        values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas))
        return bool(small((betas[-1] * vectors[-1, -1]).abs(), values[-1]))

    alphas, betas, basis = lanczos(outside, _orthogonalized(start, found), max_steps, done)
    values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas))
    u = vectors[:, -1] @ basis
    return values[-1], u / u.norm()


def hessian_top_eigenvalue(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                           iters: int = 100, tol: float = 1e-4, mode: str = "eval",
                           params: Sequence[str] | None = None, batch_size: int | None = None,
                           generator: torch.Generator | None = None) -> float:
    """Largest *algebraic* eigenvalue λ_max(H) (`hessian_eigenpairs` with k = 1, `iters` = max_steps).

    Unlike plain power iteration, which finds the eigenvalue of largest |λ|, Lanczos returns λ_max
    even when a negative eigenvalue dominates in magnitude.
    """
    pairs = hessian_eigenpairs(model, loss_fn, x, y, k=1, max_steps=iters, tol=tol, mode=mode, params=params,
                               batch_size=batch_size, generator=generator)
    return float(pairs.values[0])


def hessian_trace(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, samples: int = 100,
                  mode: str = "eval", params: Sequence[str] | None = None, batch_size: int | None = None,
                  generator: torch.Generator | None = None) -> tuple[float, float]:
    """Hutchinson: tr H = E[vᵀHv], v Rademacher (±1 entries). Returns (mean of `samples` draws, its standard
    error s/√samples); the variance of one draw is 2 Σ_{i≠j} H_ij²."""
    if samples < 2:
        raise ConfigError("hessian_trace needs samples ≥ 2 for a standard error")
    operator = HessianOperator(model, loss_fn, x, y, mode=mode, params=params, batch_size=batch_size)
    values = []
    for _ in range(samples):
        v = _probe(operator.size, operator.params[0], generator)
        values.append(torch.dot(v, operator(v)))
    values = torch.stack(values).double()
    return values.mean().item(), values.std().item() / math.sqrt(samples)


def hessian_vector_product(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                           v: list[torch.Tensor] | torch.Tensor, *, mode: str = "eval",
                           batch_size: int | None = None) -> list[torch.Tensor] | torch.Tensor:
    """H·v; `v` one tensor per trainable parameter (returns the same), or one flat vector (returns flat)."""
    operator = HessianOperator(model, loss_fn, x, y, mode=mode, batch_size=batch_size)
    if isinstance(v, torch.Tensor):
        return operator(v)
    return operator.split(operator(torch.cat([t.flatten() for t in v])))


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe r, nodes θ_rj and weights τ_rj (Σ_j τ_rj = 1)."""

    nodes: list[torch.Tensor]
    weights: list[torch.Tensor]
    size: int  # n, the dimension of H

    def integrate(self, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Per-probe estimates of (1/n) tr f(H) = Σ_j τ_rj f(θ_rj), shape (probes,)."""
        return torch.stack([(w * f(t)).sum() for t, w in zip(self.nodes, self.weights, strict=True)])

    def density(self, grid: torch.Tensor, sigma: float) -> torch.Tensor:
        """φ(t) = mean_r Σ_j τ_rj N(t; θ_rj, σ²) on `grid`: the eigenvalue density smoothed by a Gaussian."""
        grid = grid.to(self.nodes[0])
        curves = [(w[:, None] * torch.exp(-(grid[None] - t[:, None]) ** 2 / (2 * sigma**2))).sum(0)
                  for t, w in zip(self.nodes, self.weights, strict=True)]
        return torch.stack(curves).mean(0) / (sigma * math.sqrt(2 * math.pi))


def hessian_density(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, steps: int = 80,
                    probes: int = 1, mode: str = "eval", params: Sequence[str] | None = None,
                    batch_size: int | None = None, generator: torch.Generator | None = None) -> SpectralDensity:
    """Eigenvalue density of H by stochastic Lanczos quadrature: `probes` Rademacher starts, `steps`
    Lanczos steps each (cost probes × steps Hessian-vector products, memory steps × n)."""
    operator = HessianOperator(model, loss_fn, x, y, mode=mode, params=params, batch_size=batch_size)
    nodes, weights = [], []
    for _ in range(probes):
        alphas, betas, _ = lanczos(operator, _probe(operator.size, operator.params[0], generator), steps)
        values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas))
        nodes.append(values)
        weights.append(vectors[0] ** 2)
    return SpectralDensity(nodes, weights, operator.size)


def parameter_blocks(model: nn.Module) -> dict[str, list[str]]:
    """The "layers" of per-layer analyses: each module owning trainable parameters directly → the names
    of those parameters (its children's parameters are their own blocks)."""
    blocks: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            blocks.setdefault(name.rpartition(".")[0], []).append(name)
    return blocks
