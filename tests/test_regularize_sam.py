"""SAM on a quadratic against its closed form; weights restored bit for bit; BN stats updated once.
Also label smoothing against its definition."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglab.regularize.sam import sam_gradients
from reglab.train.losses import make_criterion

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sam_gradient_on_quadratic_matches_closed_form():
    torch.manual_seed(0)
    m = torch.randn(6, 6, dtype=torch.float64)
    a = m @ m.T + torch.eye(6, dtype=torch.float64)  # symmetric positive definite
    w1 = nn.Parameter(torch.randn(4, dtype=torch.float64))  # two tensors: ε uses the global norm
    w2 = nn.Parameter(torch.randn(2, dtype=torch.float64))
    params = [w1, w2]

    def loss() -> torch.Tensor:
        w = torch.cat([w1, w2])
        return 0.5 * w @ a @ w

    before = [p.detach().clone() for p in params]
    loss().backward()
    rho = 0.05
    sam_gradients(params, loss, rho)
    w = torch.cat(before)
    g = a @ w
    expected = a @ (w + rho * g / g.norm())
    torch.testing.assert_close(torch.cat([w1.grad, w2.grad]), expected, rtol=1e-12, atol=1e-12)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))


def test_sam_restores_float32_weights_exactly_and_freezes_bn_in_second_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]

    def closure() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    closure().backward()
    stats = [b.clone() for b in model[1].buffers()]  # after the first (ordinary) pass
    sam_gradients(params, closure, rho=0.5, model=model)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))
    assert all(torch.equal(b, s) for b, s in zip(model[1].buffers(), stats, strict=True))
    assert int(model[1].num_batches_tracked) == 1


def test_label_smoothing_equals_hand_formula():
    torch.manual_seed(0)
    k, eps = 5, 0.1
    out, y = torch.randn(7, k, dtype=torch.float64), torch.randint(0, k, (7,))
    logp = out.log_softmax(1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    expected = ((1 - eps) * nll + eps * (-logp).mean(1)).mean()
    torch.testing.assert_close(make_criterion("ce", k, label_smoothing=eps)(out, y), expected)
    target = F.one_hot(y, k).double() * (1 - eps) + eps / k
    mse = 0.5 * (out - target).pow(2).sum(1).mean()
    torch.testing.assert_close(make_criterion("mse", k, label_smoothing=eps)(out, y), mse)
