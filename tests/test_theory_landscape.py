"""Filter-normalized directions, batched 1-D / 2-D loss slices vs a slow loop, interpolation endpoints."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglab.theory import filter_normalized_direction, interpolate, loss_along_direction, loss_surface


def mse(out, y):
    return 0.5 * (out - y).pow(2).sum(1).mean()


def bn_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            model(torch.randn(32, 4) * 2 + 1)
    return model


def cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9, 3))


def slow_loss(model, dirs_and_coeffs, loss_fn, x, y):
    """Reference: copy the model, move its parameters in place, evaluate in eval mode."""
    moved = copy.deepcopy(model).eval()
    with torch.no_grad():
        for i, p in enumerate(moved.parameters()):
            for d, c in dirs_and_coeffs:
                p.add_(c * d[i])
        return loss_fn(moved(x), y).item()


@pytest.mark.parametrize("make", [lambda: bn_mlp(0), cnn])
def test_filter_normalized_direction_has_the_model_filter_norms(make):
    model = make()
    g = torch.Generator().manual_seed(0)
    direction = filter_normalized_direction(model, g)
    assert len(direction) == len(list(model.parameters()))
    for d, p in zip(direction, model.parameters(), strict=True):
        assert d.shape == p.shape
        if p.dim() <= 1:
            assert torch.equal(d, torch.zeros_like(p))
        else:
            torch.testing.assert_close(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1))
            assert not torch.allclose(d, p)
    g = torch.Generator().manual_seed(0)
    with_bias = filter_normalized_direction(model, g, include_bias_and_norm=True)
    for d, p in zip(with_bias, model.parameters(), strict=True):
        if p.dim() <= 1:
            torch.testing.assert_close(d, p.detach())


def test_loss_along_direction_at_zero_and_against_loop():
    model = bn_mlp(0)
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    alphas = torch.linspace(-1, 1, 9)
    losses = loss_along_direction(model, d, mse, x, y, alphas, chunk_size=4)
    assert model.training  # mode restored
    with torch.no_grad():
        base = mse(copy.deepcopy(model).eval()(x), y)
    torch.testing.assert_close(losses[4], base)
    expected = torch.tensor([slow_loss(model, [(d, a)], mse, x, y) for a in alphas.tolist()])
    torch.testing.assert_close(losses, expected)


def test_loss_surface_matches_slow_loop():
    model = cnn()
    x, y = torch.randn(6, 2, 5, 5), torch.randint(0, 3, (6,))
    g = torch.Generator().manual_seed(2)
    d1, d2 = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
    alphas, betas = torch.linspace(-1, 1, 5), torch.linspace(-0.5, 0.5, 3)
    surface = loss_surface(model, d1, d2, F.cross_entropy, x, y, alphas, betas, chunk_size=4)
    assert surface.shape == (5, 3)
    expected = torch.tensor([[slow_loss(model, [(d1, a), (d2, b)], F.cross_entropy, x, y)
                              for b in betas.tolist()] for a in alphas.tolist()])
    torch.testing.assert_close(surface, expected)


def test_interpolate_endpoints_and_bn_statistics():
    a, b = bn_mlp(0).eval(), bn_mlp(1).eval()
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    result = interpolate(a, b, F.cross_entropy, x, y)
    assert result["bn_statistics"] == "interpolated"
    assert len(result["alphas"]) == 41 and result["alphas"][10] == 0 and result["alphas"][30] == 1
    with torch.no_grad():
        for model, i in ((a, 10), (b, 30)):
            assert result["losses"][i].item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
            acc = (model(x).argmax(1) == y).double().mean().item()
            assert result["accs"][i].item() == pytest.approx(acc)

    batches = [torch.randn(10, 4) for _ in range(3)]
    loader = [(xb, None) for xb in batches]
    recomputed = interpolate(a, b, F.cross_entropy, x, y, [0.0, 0.5, 1.0], bn_loader=loader)
    assert recomputed["bn_statistics"] == "recomputed"
    reference = copy.deepcopy(a)  # update_bn's recipe on a dropout-free copy
    reference[3] = nn.Identity()
    torch.optim.swa_utils.update_bn(batches, reference)
    with torch.no_grad():
        expected = F.cross_entropy(reference.eval()(x), y).item()
    assert recomputed["losses"][0].item() == pytest.approx(expected, rel=1e-6)


def test_interpolate_regression_without_bn():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    result = interpolate(a, b, mse, x, y, alphas=[0.0, 0.5, 1.0])
    assert result["bn_statistics"] is None and "accs" not in result
    mid = nn.Linear(3, 2)
    with torch.no_grad():
        mid.weight.copy_((a.weight + b.weight) / 2)
        mid.bias.copy_((a.bias + b.bias) / 2)
        assert result["losses"][1].item() == pytest.approx(mse(mid(x), y).item(), rel=1e-6)
        assert result["losses"][2].item() == pytest.approx(mse(b(x), y).item(), rel=1e-6)


def test_named_direction_layer_norm_and_states():
    from reglab.theory import named_direction

    model = bn_mlp(0)
    g = torch.Generator().manual_seed(0)
    by_filter = named_direction(model, generator=g)
    assert list(by_filter) == [n for n, _ in model.named_parameters()]
    torch.testing.assert_close(by_filter["0.weight"].norm(dim=1), model[0].weight.detach().norm(dim=1))
    layer = named_direction(model, norm="layer", generator=g)
    torch.testing.assert_close(layer["4.weight"].norm(), model[4].weight.detach().norm())
    assert not torch.allclose(layer["4.weight"].norm(dim=1), model[4].weight.detach().norm(dim=1))
    states = named_direction(model, include_states=True, include_bias_and_norm=True, generator=g)
    assert {"1.running_mean", "1.running_var"} <= set(states) and "1.num_batches_tracked" not in states
    torch.testing.assert_close(states["1.running_var"], model[1].running_var)
    with pytest.raises(ValueError, match="norm: expected filter or layer"):
        named_direction(model, norm="unit")


def test_state_directions_move_the_batchnorm_buffers():
    from reglab.theory import named_direction

    model = bn_mlp(0)
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    d = named_direction(model, include_states=True, include_bias_and_norm=True,
                        generator=torch.Generator().manual_seed(1))
    alphas = torch.tensor([-0.5, 0.0, 0.5])
    losses = loss_along_direction(model, d, mse, x, y, alphas)
    for a, loss in zip(alphas.tolist(), losses, strict=True):
        moved = copy.deepcopy(model).eval()
        with torch.no_grad():
            for name, t in list(moved.named_parameters()) + list(moved.named_buffers()):
                if name in d:
                    t.add_(a * d[name])
            torch.testing.assert_close(loss, mse(moved(x), y))


def test_train_mode_slice_uses_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = loss_along_direction(model, d, mse, x, y, [-1.0, 0.5], mode="train")
    for a, loss in zip([-1.0, 0.5], losses, strict=True):
        moved = copy.deepcopy(model).train()
        with torch.no_grad():
            for p, t in zip(moved.parameters(), d, strict=True):
                p.add_(a * t)
            torch.testing.assert_close(loss, mse(moved(x), y))
    assert not model.training
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_interpolate_in_train_mode_uses_batch_statistics():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).eval()
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    result = interpolate(a, b, F.cross_entropy, x, y, [0.0, 1.0], mode="train")
    assert result["mode"] == "train" and interpolate(a, b, F.cross_entropy, x, y, [0.0])["mode"] == "eval"
    assert result["bn_statistics"] == "batch"
    for model, loss in zip((a, b), result["losses"], strict=True):
        with torch.no_grad():
            assert loss.item() == pytest.approx(F.cross_entropy(copy.deepcopy(model).train()(x), y).item(), rel=1e-6)
    with pytest.raises(ValueError, match="mode: expected eval or train"):
        interpolate(a, b, F.cross_entropy, x, y, mode="test")


def test_moving_buffers_before_the_first_layer_is_exact():
    from reglab.theory import named_direction

    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(4, affine=False), nn.Linear(4, 3)).train()
    with torch.no_grad():
        model(torch.randn(32, 4) * 3 + 1)
    model.eval()
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    d = named_direction(model, include_states=True, include_bias_and_norm=True,
                        generator=torch.Generator().manual_seed(0))
    losses = loss_along_direction(model, d, mse, x, y, [0.5])
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for name, t in list(moved.named_parameters()) + list(moved.named_buffers()):
            if name in d:
                t.add_(0.5 * d[name])
        torch.testing.assert_close(losses[0], mse(moved(x), y))
def test_layer_normalized_direction_matches_a_hand_computation():
    """norm="layer": the same Gaussian draw as the generator gives, each tensor scaled by ‖θ_i‖/‖d_i‖."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(12.0).view(4, 3) - 5)
        model[0].bias.copy_(torch.tensor([3.0, 0.0, -4.0, 0.0]))  # ‖b‖ = 5
    g = torch.Generator().manual_seed(7)
    direction = filter_normalized_direction(model, g, norm="layer", include_bias_and_norm=True)
    g = torch.Generator().manual_seed(7)
    for p, d in zip(model.parameters(), direction, strict=True):
        raw = torch.randn(p.shape, generator=g)
        expected = raw * (p.detach().pow(2).sum().sqrt() / raw.pow(2).sum().sqrt())
        torch.testing.assert_close(d, expected)
    assert direction[1].norm().item() == pytest.approx(5.0)
    rows = direction[0].norm(dim=1) / model[0].weight.detach().norm(dim=1)
    assert rows.std() > 0.05  # whole-layer, not per-row, scaling
    assert filter_normalized_direction(model, g, norm="layer")[1].abs().sum() == 0  # biases 0 by default
    with pytest.raises(ValueError, match="norm: expected filter or layer"):
        filter_normalized_direction(model, norm="neuron")


def test_a_channels_last_model_gets_the_slow_loops_losses_without_vmap_fallbacks():
    """A conv net trained on CPU is channels-last; vmap has no batching rule for adaptive
    pooling of channels-last activations, so the landscape must evaluate contiguous copies."""
    import warnings

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3),  # vmapped conv
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).to(memory_format=torch.channels_last)
    model.eval()
    x, y = torch.randn(8, 3, 6, 6), torch.randn(8, 3)
    d = [torch.randn_like(p) for p in model.parameters()]  # channels-last like the weights
    alphas = [-0.5, 0.0, 0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses = loss_along_direction(model, d, mse, x, y, alphas)
    for alpha, loss in zip(alphas, losses, strict=True):
        assert loss.item() == pytest.approx(slow_loss(model, [(d, alpha)], mse, x, y), rel=1e-5)


class TiedLayers(nn.Module):
    """The first layer's weight is also the second layer's: moving it moves both uses."""

    def __init__(self):
        super().__init__()
        self.first, self.second, self.out = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.out(torch.tanh(self.second(torch.tanh(self.first(x)))))


def test_a_slice_moves_every_use_of_a_tied_weight():
    torch.manual_seed(0)
    model = TiedLayers()
    x, y = torch.randn(9, 4), torch.randn(9, 3)
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    losses = loss_along_direction(model, d, mse, x, y, [0.0, 0.7])
    expected = torch.tensor([slow_loss(model, [(d, a)], mse, x, y) for a in (0.0, 0.7)])
    torch.testing.assert_close(losses, expected)


class TiedDecoder(nn.Module):
    """An autoencoder whose decoder uses the encoder's weight in its own forward, not as a module."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec_bias = nn.Linear(5, 3), nn.Parameter(torch.zeros(5))

    def forward(self, x):
        return F.linear(torch.tanh(self.enc(x)), self.enc.weight.T, self.dec_bias)


def test_a_slice_moves_an_input_layers_weight_where_the_forward_uses_it_again():
    torch.manual_seed(0)
    model = TiedDecoder().double()
    x = torch.randn(8, 5, dtype=torch.float64)
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    losses = loss_along_direction(model, d, mse, x, x, [-1.0, 0.0, 0.5])
    expected = torch.tensor([slow_loss(model, [(d, a)], mse, x, x) for a in (-1.0, 0.0, 0.5)], dtype=torch.float64)
    torch.testing.assert_close(losses, expected)


@pytest.mark.parametrize("norm", ["filter", "layer"])
@pytest.mark.parametrize("include_bias_and_norm", [False, True])
def test_both_direction_builders_give_one_direction(norm, include_bias_and_norm):
    """`filter_normalized_direction` is `named_direction`'s parameters: with per-layer normalisation a
    bias is a Gaussian of the bias's norm in both, not a copy of the bias in one of them."""
    from reglab.theory import named_direction

    model = bn_mlp(0)
    as_list = filter_normalized_direction(model, torch.Generator().manual_seed(3), norm=norm,
                                          include_bias_and_norm=include_bias_and_norm)
    by_name = named_direction(model, norm=norm, include_bias_and_norm=include_bias_and_norm,
                              generator=torch.Generator().manual_seed(3))
    for d, (name, named), p in zip(as_list, by_name.items(), model.parameters(), strict=True):
        torch.testing.assert_close(d, named, rtol=0, atol=0, msg=name)
        if p.dim() == 1 and include_bias_and_norm and p.detach().norm() > 0:
            torch.testing.assert_close(d.norm(), p.detach().norm())
            assert torch.equal(d, p.detach()) == (norm == "filter")  # a copy per filter, a Gaussian per layer
