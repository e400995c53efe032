"""R1, R2 and the dropout-theory objectives against independent Monte Carlo / exact expectations.

Monte Carlo: the batch is replicated M = 10⁴ times and pushed through the model's own nn.Dropout in
one forward pass, so every replica gets independent masks (one batched draw). Tolerances are 4
standard errors of the Monte Carlo mean (+1e-9 for rounding); everything runs in float64.
"""

import itertools

import pytest
import torch
from torch import nn

from reglab.theory import dropout_disabled, dropout_r1, dropout_r2, objective_loss

M = 10_000


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - y).pow(2).sum(1).mean()


def mlp(widths: list[int], p: float, *, dropout_everywhere: bool = False, d_in: int = 5, d_out: int = 3,
        seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers, previous = [], d_in
    for i, width in enumerate(widths):
        layers += [nn.Linear(previous, width), nn.Tanh()]
        if dropout_everywhere or i == len(widths) - 1:
            layers.append(nn.Dropout(p))
        previous = width
    layers.append(nn.Linear(previous, d_out))
    return nn.Sequential(*layers).double()


def data(n: int = 8, d_in: int = 5, d_out: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g, dtype=torch.float64), torch.randn(n, d_out, generator=g,
                                                                                dtype=torch.float64)


def replica_losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Dropout loss of each of M replicas of the batch (independent masks), shape (M,)."""
    with torch.no_grad():
        out = model(x.repeat(M, 1))
    return 0.5 * (out - y.repeat(M, 1)).pow(2).sum(1).view(M, x.shape[0]).mean(1)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("widths", [[16], [32, 16], [8, 8, 8]])
def test_r1_is_mean_dropout_loss_minus_eval_loss(p, widths):
    model, (x, y) = mlp(widths, p), data()
    with torch.no_grad():  # targets near the eval output: small residuals, low Monte Carlo variance
        y = model.eval()(x) + 0.2 * y
    torch.manual_seed(2)
    model.train()
    losses = replica_losses(model, x, y)
    mean, se = losses.mean().item(), losses.std().item() / M**0.5
    with torch.no_grad():
        eval_loss = half_mse(model.eval()(x), y).item()
        r1 = dropout_r1(model.train(), x).item()
    assert r1 > 30 * se  # power: R1 off by 15 % would exceed the 4-SE tolerance
    assert abs(mean - eval_loss - r1) < 4 * se + 1e-9


def test_r1_with_dropout_at_every_layer():
    """E[L_drop] = E[L with only the last dropout off] + E[R1 on train-mode features], not L_eval + R1(eval).

    Same seed ⇒ the three passes share the earlier layers' masks, so the SE of the paired difference
    bounds the SE of (difference − R1) (law of total variance).
    """
    model, (x, y) = mlp([16, 16], 0.3, dropout_everywhere=True), data()
    model.train()
    torch.manual_seed(3)
    full = replica_losses(model, x, y)
    model[-2].eval()  # the last dropout only
    torch.manual_seed(3)
    partial = replica_losses(model, x, y)
    model[-2].train()
    torch.manual_seed(3)
    with torch.no_grad():
        r1_train = dropout_r1(model, x.repeat(M, 1)).item()
    diff = full - partial
    se = diff.std().item() / M**0.5
    assert abs(diff.mean().item() - r1_train) < 4 * se + 1e-9
    with torch.no_grad(), dropout_disabled(model):
        r1_eval = dropout_r1(model, x).item()
        gap_eval = full.mean().item() - half_mse(model(x), y).item()
    assert abs(gap_eval - r1_eval) > 4 * full.std().item() / M**0.5  # the eval identity does not hold


def test_r1_rejects_models_without_final_dropout_linear():
    with pytest.raises(ValueError, match="this model ran no dropout module"):
        dropout_r1(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3))
    with pytest.raises(ValueError, match="this model ran no dropout module"):
        dropout_r1(nn.Linear(3, 2), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"the last dropout \(module '1'\) is Dropout1d"):
        dropout_r1(nn.Sequential(nn.Linear(3, 4), nn.Dropout1d(0.5), nn.Linear(4, 2)), torch.randn(2, 3))


def test_r1_accepts_nested_sequential():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2))
    model = nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), head)
    x = torch.randn(6, 3)
    h = torch.relu(model[0][0](x))
    expected = (1 - 0.5) / (2 * 6 * 0.5) * (h.pow(2) * head[1].weight.pow(2).sum(0)).sum()
    torch.testing.assert_close(dropout_r1(model, x), expected)


def test_r2_expectation_matches_exact_enumeration():
    """E(ε/4)‖∇R_drop‖² by enumerating all 2^(n·m) = 64 masks, vs the mean of many dropout_r2 calls."""
    p, lr, n, width = 0.4, 0.1, 2, 3
    keep = 1 - p
    model, (x, y) = mlp([width], p, d_in=2, d_out=1), data(n, 2, 1)
    params = list(model.parameters())
    exact = 0.0
    for bits in itertools.product([0.0, 1.0], repeat=n * width):
        mask = torch.tensor(bits, dtype=torch.float64).view(n, width)
        prob = keep ** mask.sum().item() * (1 - keep) ** (n * width - mask.sum().item())
        h = torch.tanh(model[0](x))
        loss = half_mse(model[3](h * mask / keep), y)
        exact += prob * sum(g.pow(2).sum() for g in torch.autograd.grad(loss, params)).item()
    exact *= lr / 4

    torch.manual_seed(4)
    model.train()
    draws = torch.tensor([dropout_r2(model, x, y, lr=lr, loss_fn=half_mse).item() for _ in range(3000)])
    se = draws.std().item() / len(draws) ** 0.5
    assert abs(draws.mean().item() - exact) < 4 * se + 1e-12


def test_r2_is_gradient_norm_of_the_same_mask_and_differentiable():
    model, (x, y) = mlp([8], 0.5), data()
    model.eval()  # dropout_r2 switches dropout on by itself
    torch.manual_seed(5)
    r2 = dropout_r2(model, x, y, lr=0.2, loss_fn=half_mse)
    model.train()
    torch.manual_seed(5)
    grads = torch.autograd.grad(half_mse(model(x), y), list(model.parameters()))
    torch.testing.assert_close(r2, 0.2 / 4 * sum(g.pow(2).sum() for g in grads))
    r2.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_objective_rs_is_eval_loss_and_restores_modes():
    model, (x, y) = mlp([16, 8], 0.5, dropout_everywhere=True), data()
    model.train()
    rs = objective_loss("rs", model, x, y, lr=0.1, loss_fn=half_mse)
    assert all(m.training for m in model.modules())
    with torch.no_grad():
        expected = half_mse(model.eval()(x), y)
    torch.testing.assert_close(rs.detach(), expected)


@pytest.mark.parametrize("name", ["drop", "rs", "rs+r1", "rs+r2", "drop-r2", "drop-r1"])
def test_objectives_consistent_and_differentiable(name):
    model, (x, y) = mlp([16, 8], 0.3), data()
    model.train()
    lr = 0.05
    torch.manual_seed(6)
    loss = objective_loss(name, model, x, y, lr=lr, loss_fn=half_mse)
    torch.manual_seed(6)  # the same masks: R_drop is the loss of the model as it trains
    parts = {"drop": half_mse(model(x), y), "rs": half_mse(model.eval()(x), y)}  # R_S: no dropout
    model.train()
    torch.manual_seed(6)
    r2 = dropout_r2(model, x, y, lr=lr, loss_fn=half_mse)
    r1 = dropout_r1(model, x)  # deterministic features: dropout only on the last hidden layer
    expected = {"drop": parts["drop"], "rs": parts["rs"], "rs+r1": parts["rs"] + r1,
                "rs+r2": parts["rs"] + r2, "drop-r2": parts["drop"] - r2, "drop-r1": parts["drop"] - r1}[name]
    torch.testing.assert_close(loss, expected)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_objective_errors():
    model, (x, y) = mlp([4], 0.5), data()
    with pytest.raises(ValueError, match="unknown objective"):
        objective_loss("dropout", model, x, y, lr=0.1, loss_fn=half_mse)
    conv = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Dropout(0.5), nn.ReLU(), nn.Linear(6, 3))
    conv.double()
    xc = torch.randn(8, 1, 5, dtype=torch.float64)
    assert torch.isfinite(objective_loss("drop-r2", conv, xc, y, lr=0.1, loss_fn=half_mse))
    with pytest.raises(ValueError, match=r"the last dropout \(module '2'\) feeds ReLU \('3'\)"):
        objective_loss("rs+r1", conv, xc, y, lr=0.1, loss_fn=half_mse)
    assert torch.isfinite(objective_loss("drop", model, x, y, loss_fn=half_mse))  # no lr needed
    with pytest.raises(ValueError, match="lr: objective 'drop-r2' needs the step size"):
        objective_loss("drop-r2", model, x, y, loss_fn=half_mse)


def test_reglab_mlp_identity_and_objectives():
    """The zoo's `mlp` with dropout at its last site only: the exact identity, and every objective."""
    from reglab.config import ModelConfig, RegularizeConfig
    from reglab.models import build_model

    torch.manual_seed(0)
    reg = RegularizeConfig(dropout={"p": 0.4, "layers": [1]})
    model = build_model(ModelConfig(name="mlp", options={"widths": [16, 12], "activation": "tanh"}),
                        input_shape=(5,), num_outputs=3, reg=reg).double()
    x, y = data()
    torch.manual_seed(7)
    losses = replica_losses(model.train(), x, y)
    with torch.no_grad():
        gap = losses.mean().item() - half_mse(model.eval()(x), y).item()
        r1 = dropout_r1(model, x).item()
    assert abs(gap - r1) < 4 * losses.std().item() / M**0.5 + 1e-9
    model.train()
    for name in ("drop", "rs", "rs+r1", "rs+r2", "drop-r2", "drop-r1"):
        objective_loss(name, model, x, y, lr=0.1, loss_fn=half_mse).backward()
    no_last = build_model(ModelConfig(name="mlp", options={"widths": [16, 12]}), input_shape=(5,),
                          num_outputs=3, reg=RegularizeConfig(dropout={"p": 0.4, "layers": [0]}))
    with pytest.raises(ValueError, match="which is not the model's output layer"):
        dropout_r1(no_last, x.float())


class Residual(nn.Module):
    """Not an nn.Sequential: a skip connection, then dropout into the output layer, in forward()."""

    def __init__(self):
        super().__init__()
        self.body, self.drop, self.head = nn.Linear(4, 4), nn.Dropout(0.3), nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.drop(x + torch.tanh(self.body(x))))


def test_r1_of_any_module_whose_last_dropout_feeds_the_output_linear():
    torch.manual_seed(0)
    model = Residual().double()
    x = torch.randn(10, 4, dtype=torch.float64)
    h = x + torch.tanh(model.body(x))
    by_hand = 0.3 / (2 * 0.7) * (h.pow(2) * model.head.weight.pow(2).sum(0)).sum(1).mean()
    torch.testing.assert_close(dropout_r1(model, x), by_hand)
    y = torch.randn(10, 3, dtype=torch.float64)
    with dropout_disabled(model):
        rs = half_mse(model(x), y)
    torch.testing.assert_close(objective_loss("rs+r1", model, x, y, loss_fn=half_mse), rs + by_hand)


def test_r1_of_an_inplace_dropout_uses_the_features_before_the_mask():
    """nn.Dropout(inplace=True) overwrites its input with η ⊙ h: R1 and L4 must still see h."""
    x, y = data()
    plain, inplace = mlp([16], 0.5), mlp([16], 0.5)
    inplace[-2].inplace = True
    expected = dropout_r1(plain.eval(), x)
    torch.testing.assert_close(dropout_r1(inplace.train(), x), expected)
    torch.manual_seed(3)
    l4 = objective_loss("drop-r1", inplace, x, y, loss_fn=half_mse)
    torch.manual_seed(3)
    drop = objective_loss("drop", inplace, x, y, loss_fn=half_mse)
    torch.testing.assert_close(drop - l4, expected)
