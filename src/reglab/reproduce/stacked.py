"""Many small fully connected networks trained at once, stacked on a leading "net" axis.

The dropout-theory experiments train wide one- or two-hidden-layer networks on tiny data sets, for
several seeds, dropout rates and objectives. Stacking T independent networks in one tensor per layer,

    h ← σ(h W_lᵀ + b_l) ⊙ mask_l   (hidden layers),   f = h W_Lᵀ   (no output bias),

turns T small runs into one batched run with exactly the same arithmetic per network: the summed
loss Σ_t R_t has ∂/∂θ_t = ∂R_t/∂θ_t, and Adam and gradient descent update every entry on its own.
Dropout: mask entries 1/q with probability q = 1 − p_t, else 0, drawn per net, sample and unit, after
every hidden layer. Losses are ½‖f − y‖² averaged over each net's own samples (`weight` marks them),
and R1 is the source's R_1(θ) = (1 − q)/(2nq) Σ_i Σ_j ‖W_j^{[L]} h_j(x_i)‖² with h the last hidden
layer (reglab.theory.dropout_r1 for one nn.Module; `module` converts net t into one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
OBJECTIVES = ("rs", "drop", "rs+r1")


@dataclass
class StackedNets:
    """T networks of layer sizes `sizes` = [d, m_1, …, k]: weights[l] (T, m_{l+1}, m_l), biases of the
    hidden layers (T, m_{l+1}); `p`: each net's dropout rate (T,), used by the ``drop`` objective and R1."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    p: torch.Tensor
    activation: str

    @property
    def count(self) -> int:
        return self.weights[0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return [*self.weights, *self.biases]

    def clone(self) -> StackedNets:
        return StackedNets([w.detach().clone().requires_grad_() for w in self.weights],
                           [b.detach().clone().requires_grad_() for b in self.biases], self.p.clone(), self.activation)

    def select(self, index: Sequence[int] | torch.Tensor) -> StackedNets:
        """The nets `index` (copies), e.g. to continue training some of them under another objective."""
        index = torch.as_tensor(index, device=self.p.device)
        return StackedNets([w.detach()[index].clone().requires_grad_() for w in self.weights],
                           [b.detach()[index].clone().requires_grad_() for b in self.biases], self.p[index].clone(),
                           self.activation)


def init_nets(sizes: Sequence[int], stds: Sequence[float], p: Sequence[float] | torch.Tensor, *,
              activation: str, seeds: Sequence[int], device: str | torch.device = "cpu") -> StackedNets:
    """Net t: every weight and bias of layer l drawn N(0, stds[l]²) from `torch.manual_seed`-style
    generator seeds[t] (one generator per net, so a net's init does not depend on the others)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if len(stds) != len(sizes) - 1:
        raise ValueError(f"stds: one per layer ({len(sizes) - 1}), got {len(stds)}")
    p = torch.as_tensor(p, dtype=torch.float32).flatten()
    if len(p) != len(seeds) or not ((p >= 0) & (p < 1)).all():
        raise ValueError(f"p: one dropout rate in [0, 1) per seed ({len(seeds)}), got {p.tolist()}")
    per_net = []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        layers = []
        for l, std in enumerate(stds):
            w = torch.randn(sizes[l + 1], sizes[l], generator=g) * std
            b = torch.randn(sizes[l + 1], generator=g) * std if l < len(stds) - 1 else None
            layers.append((w, b))
        per_net.append(layers)
    weights = [torch.stack([net[l][0] for net in per_net]).to(device).requires_grad_() for l in range(len(stds))]
    biases = [torch.stack([net[l][1] for net in per_net]).to(device).requires_grad_() for l in range(len(stds) - 1)]
    return StackedNets(weights, biases, p.to(device), activation)


def forward(nets: StackedNets, x: torch.Tensor, *, dropout: bool = False,
            generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs (T, n, k) and the last hidden layer before its mask (T, n, m); x: (n, d) or (T, n, d)."""
    act = ACTIVATIONS[nets.activation]
    h = x if x.dim() == 3 else x.expand(nets.count, *x.shape)
    keep = (1 - nets.p).view(-1, 1, 1)
    for w, b in zip(nets.weights[:-1], nets.biases, strict=True):
        h = act(torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2)))
        features = h
        if dropout:
            mask = torch.rand(h.shape, generator=generator, device=h.device) < keep
            h = h * mask / keep
    return torch.bmm(h, nets.weights[-1].transpose(1, 2)), features


def _mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Per-net mean over samples (T, n) → (T,), over the samples with weight 1 when `weight` is given."""
    return values.mean(1) if weight is None else (values * weight).sum(1) / weight.sum(1)


def risk(nets: StackedNets, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """R_S per net (T,): ½‖f − y‖² averaged over samples, no dropout."""
    out, _ = forward(nets, x)
    return _mean(0.5 * (out - y).pow(2).sum(-1), weight)


def r1(nets: StackedNets, features: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """R_1 per net (T,): (p/(2q)) · mean_i Σ_j ‖W_j^{[L]}‖² h_ij², p the drop and q the keep probability."""
    column_norms = nets.weights[-1].pow(2).sum(1)  # (T, m): ‖W_j^{[L]}‖²
    per_sample = (features.pow(2) * column_norms.unsqueeze(1)).sum(-1)
    return nets.p / (2 * (1 - nets.p)) * _mean(per_sample, weight)


def objective(nets: StackedNets, kind: str, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-net training loss (T,): ``rs`` R_S, ``drop`` R_drop (one fresh mask), ``rs+r1`` R_S + R_1."""
    if kind not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {kind!r}")
    out, features = forward(nets, x, dropout=kind == "drop", generator=generator)
    loss = _mean(0.5 * (out - y).pow(2).sum(-1), weight)
    return loss + r1(nets, features, weight) if kind == "rs+r1" else loss


def train(nets: StackedNets, kind: str, x: torch.Tensor, y: torch.Tensor, *, steps: int, lr: float,
          optimizer: str = "adam", weight: torch.Tensor | None = None, record_every: int = 100,
          seed: int = 0) -> list[list[float]]:
    """Full-batch training of every net in place; returns R_S per net (no dropout) every `record_every`
    steps and after the last one: a list of records, each a list of T floats."""
    params = nets.parameters()
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif optimizer == "gd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'gd', got {optimizer!r}")
    generator = torch.Generator(device=x.device).manual_seed(seed)
    history = []
    for step in range(steps):
        if step % record_every == 0:
            with torch.no_grad():
                history.append(risk(nets, x, y, weight).tolist())
        opt.zero_grad(set_to_none=True)
        objective(nets, kind, x, y, weight, generator).sum().backward()
        opt.step()
    with torch.no_grad():
        history.append(risk(nets, x, y, weight).tolist())
    return history


def module(nets: StackedNets, t: int) -> nn.Sequential:
    """Net t as an nn.Sequential (Linear, activation, [Dropout(p_t)] …, Linear without bias), eval mode."""
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[nets.activation]
    layers: list[nn.Module] = []
    p = float(nets.p[t])
    for w, b in zip(nets.weights[:-1], nets.biases, strict=True):
        linear = nn.Linear(w.shape[2], w.shape[1])
        with torch.no_grad():
            linear.weight.copy_(w[t])
            linear.bias.copy_(b[t])
        layers += [linear, act()] + ([nn.Dropout(p)] if p > 0 else [])
    last = nn.Linear(nets.weights[-1].shape[2], nets.weights[-1].shape[1], bias=False)
    with torch.no_grad():
        last.weight.copy_(nets.weights[-1][t])
    return nn.Sequential(*layers, last).to(nets.weights[0].device).eval()
