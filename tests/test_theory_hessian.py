"""Hessian-vector products, top eigenvalue and Hutchinson trace against the dense Hessian of a tiny net."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from reglab.theory import hessian_top_eigenvalue, hessian_trace, hessian_vector_product


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 3)).double()


def dense_hessian(model, loss_fn, x, y) -> torch.Tensor:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss_of(flat):
        parts = flat.split([s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, parts, shapes, strict=True)}
        return loss_fn(functional_call(model.eval(), params, (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flat0)


def data(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randint(0, 3, (20,), generator=g)


def test_hvp_matches_dense_hessian():
    model, (x, y) = tiny(), data()
    h = dense_hessian(model, F.cross_entropy, x, y)
    v = torch.randn(h.shape[0], dtype=torch.float64)
    torch.testing.assert_close(hessian_vector_product(model.train(), F.cross_entropy, x, y, v), h @ v)
    assert model.training  # evaluated in eval mode, mode restored
    ones = [torch.ones_like(p) for p in model.parameters()]
    per_param = hessian_vector_product(model, F.cross_entropy, x, y, ones)
    torch.testing.assert_close(torch.cat([t.flatten() for t in per_param]), h.sum(1))


def test_top_eigenvalue_within_one_percent():
    for seed in range(3):
        model, (x, y) = tiny(seed), data(seed)
        top = torch.linalg.eigvalsh(dense_hessian(model, F.cross_entropy, x, y))[-1].item()
        g = torch.Generator().manual_seed(0)
        estimate = hessian_top_eigenvalue(model, F.cross_entropy, x, y, generator=g)
        assert abs(estimate - top) <= 0.01 * abs(top)


def test_top_eigenvalue_is_largest_algebraic_when_a_negative_one_dominates():
    """loss = Σ_k c_k w_k² for a bias-free linear model on the basis vectors: H = diag(2c)."""
    model = nn.Linear(3, 1, bias=False).double()
    c = torch.tensor([-5.0, 1.0, 0.5], dtype=torch.float64)

    def loss_fn(out, y):
        return (c * out[:, 0].pow(2)).sum()

    x = torch.eye(3, dtype=torch.float64)
    estimate = hessian_top_eigenvalue(model, loss_fn, x, None, generator=torch.Generator().manual_seed(0))
    assert abs(estimate - 2.0) < 0.02


def test_trace_within_four_standard_errors():
    model, (x, y) = tiny(), data()
    exact = torch.trace(dense_hessian(model, F.cross_entropy, x, y)).item()
    estimate, se = hessian_trace(model, F.cross_entropy, x, y, samples=200,
                                 generator=torch.Generator().manual_seed(0))
    assert se > 0
    assert abs(estimate - exact) < 4 * se
