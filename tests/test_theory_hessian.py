"""Hessian-vector products, top eigenvalue and Hutchinson trace against the dense Hessian of a tiny net."""

import math

import pytest
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


def test_eigenpairs_match_dense_eigendecomposition():
    from reglab.theory import HessianOperator, hessian_eigenpairs

    model, (x, y) = tiny(), data()
    values, vectors = torch.linalg.eigh(dense_hessian(model, F.cross_entropy, x, y))
    pairs = hessian_eigenpairs(model, F.cross_entropy, x, y, k=3, tol=1e-8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pairs.values, values.flip(0)[:3], rtol=1e-6, atol=1e-8)
    for i in range(3):  # eigenvectors up to sign
        assert abs(torch.dot(pairs.vectors[i], vectors[:, -1 - i]).abs().item() - 1) < 1e-6
    named = pairs.by_name(HessianOperator(model, F.cross_entropy, x, y), 0)
    assert list(named) == [n for n, _ in model.named_parameters()]
    assert named["0.weight"].shape == (6, 3)


def half_squared(out, y):
    return 0.5 * ((out - y) ** 2).sum(1).mean()


@pytest.mark.parametrize(("outputs", "k"), [(2, 2), (2, 3), (3, 3), (3, 4)])
def test_repeated_eigenvalues_are_returned_as_often_as_they_occur(outputs, k):
    """A linear model under squared error has H = I_outputs ⊗ X̃ᵀX̃/n: every eigenvalue `outputs` times,
    which one start vector's Krylov space meets once (it closes after 4 products of the 8-12 dims)."""
    from reglab.theory import hessian_eigenpairs

    torch.manual_seed(0)
    model = nn.Linear(3, outputs).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 3, generator=g, dtype=torch.float64), torch.randn(10, outputs, generator=g,
                                                                            dtype=torch.float64)
    values, vectors = torch.linalg.eigh(dense_hessian(model, half_squared, x, y))
    pairs = hessian_eigenpairs(model, half_squared, x, y, k=k, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pairs.values, values.flip(0)[:k])
    top = vectors[:, values >= values[-1] - 1e-9]  # the top eigenspace, of dimension `outputs`
    for v in pairs.vectors[:min(k, outputs)]:  # each lies in it, and they are orthonormal
        assert (top.T @ v).norm() == pytest.approx(1.0)
    torch.testing.assert_close(pairs.vectors @ pairs.vectors.T, torch.eye(k, dtype=torch.float64))


@pytest.mark.parametrize("k", [2, 5])
def test_a_low_rank_hessian_is_not_searched_dimension_by_dimension(k):
    """Rank 3 in 51 dimensions: the first Krylov block closes after 4 products and the null space outside
    it holds nothing above the k-th value (0 for k = 5: λ1, λ2, λ3, 0, 0), so Lanczos stops at once."""
    from reglab.theory import hessian_eigenpairs

    torch.manual_seed(0)
    model = nn.Linear(50, 1).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 50, generator=g, dtype=torch.float64), torch.randn(3, 1, generator=g, dtype=torch.float64)
    values = torch.linalg.eigvalsh(dense_hessian(model, half_squared, x, y)).flip(0)[:k]
    pairs = hessian_eigenpairs(model, half_squared, x, y, k=k, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(pairs.values, values, atol=1e-10, rtol=1e-8)
    assert pairs.products <= 6


def test_batched_products_equal_the_full_batch():
    from reglab.theory.hessian import HessianOperator

    model, (x, y) = tiny(), data()
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    full = HessianOperator(model, F.cross_entropy, x, y)(v)
    torch.testing.assert_close(HessianOperator(model, F.cross_entropy, x, y, batch_size=7)(v), full)


def test_module_block_is_the_dense_sub_matrix():
    model, (x, y) = tiny(), data()
    h = dense_hessian(model, F.cross_entropy, x, y)
    block = h[-21:, -21:]  # "3": weight (3, 6) and bias (3,) of the last layer
    top = hessian_top_eigenvalue(model, F.cross_entropy, x, y, params=["3"], tol=1e-8,
                                 generator=torch.Generator().manual_seed(0))
    assert abs(top - torch.linalg.eigvalsh(block)[-1].item()) < 1e-6
    estimate, se = hessian_trace(model, F.cross_entropy, x, y, params=["3"], samples=200,
                                 generator=torch.Generator().manual_seed(1))
    assert abs(estimate - torch.trace(block).item()) < 4 * se


class ScaledHead(nn.Module):
    """A root module that owns a parameter and has a child that owns others."""

    def __init__(self):
        super().__init__()
        self.scale, self.head = nn.Parameter(torch.tensor(1.5)), nn.Linear(3, 3)

    def forward(self, x):
        return self.scale * torch.tanh(self.head(x))


def test_per_layer_blocks_hold_only_the_parameters_a_module_owns():
    from reglab.theory.analyze import sharpness_metrics

    torch.manual_seed(0)
    model, (x, y) = ScaledHead().double(), data()
    h = dense_hessian(model, F.cross_entropy, x, y)  # parameter order: scale, head.weight, head.bias
    metrics = sharpness_metrics(model, F.cross_entropy, x, y, hessian=("top",), per_layer=True)
    assert abs(metrics["hessian_top/"] - h[0, 0].item()) < 1e-6
    assert abs(metrics["hessian_top/head"] - torch.linalg.eigvalsh(h[1:, 1:])[-1].item()) < 1e-6
    assert abs(metrics["hessian_top"] - torch.linalg.eigvalsh(h)[-1].item()) < 1e-6


def test_slq_quadrature_is_exact_for_low_degree_polynomials():
    """With m steps, Σ_j τ_j θ_j^d = vᵀH^d v/‖v‖² for d < 2m: checked for d = 1, 2 against the dense H."""
    from reglab.theory import hessian_density

    model, (x, y) = tiny(), data()
    h = dense_hessian(model, F.cross_entropy, x, y)
    n = h.shape[0]
    g = torch.Generator().manual_seed(3)
    density = hessian_density(model, F.cross_entropy, x, y, steps=5, probes=2, generator=g)
    g = torch.Generator().manual_seed(3)
    for r in range(2):
        v = (torch.randint(0, 2, (n,), generator=g) * 2 - 1).double()
        assert abs(density.integrate(lambda t: t)[r].item() - (v @ h @ v).item() / n) < 1e-9
        assert abs(density.integrate(lambda t: t**2)[r].item() - (v @ h @ h @ v).item() / n) < 1e-9
        assert abs(density.weights[r].sum().item() - 1) < 1e-12
    grid = torch.linspace(-5, 5, 2001, dtype=torch.float64)
    assert abs(torch.trapezoid(density.density(grid, 0.1), grid).item() - 1) < 1e-3


def test_train_mode_uses_batch_statistics_and_restores_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 2)).double()
    x, y = data()[0], data()[1] % 2
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss_of(flat):
        parts = dict(zip(names, (c.view(s) for c, s in zip(flat.split([s.numel() for s in shapes]), shapes,
                                                            strict=True)), strict=True))
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        return F.cross_entropy(functional_call(model.train(), {**parts, **buffers}, (x,)), y)

    h = torch.autograd.functional.hessian(loss_of, flat0)
    model.eval()
    v = torch.randn(flat0.numel(), dtype=torch.float64)
    torch.testing.assert_close(hessian_vector_product(model, F.cross_entropy, x, y, v, mode="train"), h @ v)
    assert not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_mode_is_checked():
    model, (x, y) = tiny(), data()
    with pytest.raises(ValueError, match="mode: expected eval or train"):
        hessian_trace(model, F.cross_entropy, x, y, mode="training")
    with pytest.raises(ValueError, match="params: 'head' is neither a trainable parameter nor a module"):
        hessian_trace(model, F.cross_entropy, x, y, params=["head"])
    with pytest.raises(ValueError, match="batch_size: must be at least 1"):
        hessian_trace(model, F.cross_entropy, x, y, batch_size=0)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_parity_with_pyhessian_over_several_batches():
    """PyHessian (Yao et al. 2020) on the same float32 net and batches: power iteration and Hutchinson."""
    import copy

    pyhessian = pytest.importorskip("pyhessian")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(60, 5, generator=g), torch.randint(0, 3, (60,), generator=g)
    batches = [(x[i:i + 20], y[i:i + 20]) for i in range(0, 60, 20)]
    reference = pyhessian.hessian(copy.deepcopy(model), F.cross_entropy, dataloader=batches, cuda=False)
    torch.manual_seed(1)
    (top,), _ = reference.eigenvalues(maxIter=500, tol=1e-7)
    ours = hessian_top_eigenvalue(model, F.cross_entropy, x, y, batch_size=20, tol=1e-6,
                                  generator=torch.Generator().manual_seed(0))
    assert ours == pytest.approx(top, rel=1e-3)
    torch.manual_seed(2)
    probes = torch.tensor(reference.trace(maxIter=200, tol=0.0))
    trace, se = hessian_trace(model, F.cross_entropy, x, y, batch_size=20, samples=200,
                              generator=torch.Generator().manual_seed(3))
    assert abs(trace - probes.mean().item()) < 4 * (se**2 + probes.var().item() / len(probes)) ** 0.5


def test_lanczos_to_full_dimension_reproduces_the_spectrum():
    from reglab.theory.hessian import _tridiagonal, lanczos

    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 50, generator=g, dtype=torch.float64)
    a = a + a.T
    alphas, betas, basis = lanczos(lambda v: a @ v, torch.randn(50, generator=g, dtype=torch.float64), 50)
    assert basis.shape == (50, 50)  # the basis grew past its first block of 16 rows
    torch.testing.assert_close(basis @ basis.T, torch.eye(50, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.linalg.eigvalsh(_tridiagonal(alphas, betas)), torch.linalg.eigvalsh(a))


def test_hutchinson_standard_error_matches_the_rademacher_variance():
    """For Rademacher v, Var(vᵀHv) = 2 Σ_{i≠j} H_ij², so the SE of the mean of S probes is
    √(2 Σ_{i≠j} H_ij² / S). Quadratic loss ½·mean((Xw − y)²): H = XᵀX/n exactly."""
    from reglab.theory import hessian_trace

    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    y = torch.randn(50, 1, generator=g, dtype=torch.float64)
    model = nn.Linear(6, 1, bias=False).double()
    h = x.T @ x / 50
    off = h - torch.diag(torch.diag(h))
    samples = 400
    expected_se = math.sqrt(2 * off.pow(2).sum().item() / samples)
    estimate, se = hessian_trace(model, lambda out, t: 0.5 * (out - t).pow(2).sum(1).mean(), x, y,
                                 samples=samples, generator=torch.Generator().manual_seed(1))
    assert estimate == pytest.approx(torch.trace(h).item(), abs=5 * expected_se)
    assert 0.75 < se / expected_se < 1.25


def test_copies_of_a_top_eigenvalue_are_found_where_the_krylov_space_does_not_close():
    """H = diag(3, 3, 3, 40 values in [0, 1]): one start vector meets the top eigenspace in one direction
    and its space never closes before converging, so the copies must be looked for outside the found
    vectors (a deflated Lanczos run); before that check, k = 3 gave [3, 3, 1]."""
    from reglab.theory import hessian_eigenpairs

    spectrum = torch.cat([torch.full((3,), 3.0, dtype=torch.float64), torch.linspace(0, 1, 40, dtype=torch.float64)])
    n = spectrum.numel()
    model = nn.Linear(n, 1, bias=False).double()
    x = torch.diag((n * spectrum).sqrt())  # XᵀX/n = diag(spectrum): the Hessian of half_squared
    y = torch.zeros(n, 1, dtype=torch.float64)
    torch.testing.assert_close(dense_hessian(model, half_squared, x, y), torch.diag(spectrum))
    for seed in range(3):
        pairs = hessian_eigenpairs(model, half_squared, x, y, k=4, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(pairs.values, torch.tensor([3.0, 3.0, 3.0, 1.0], dtype=torch.float64),
                                   atol=1e-6, rtol=0)
        assert (pairs.vectors[:3, 3:].norm(dim=1) < 1e-4).all()  # the first three span the top eigenspace
        assert (pairs.residuals <= 1e-4 * pairs.values.abs().clamp_min(1)).all()
        torch.testing.assert_close(pairs.vectors @ pairs.vectors.T, torch.eye(4, dtype=torch.float64))
