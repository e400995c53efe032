"""Stacked nets: the same arithmetic as separate networks, R1 as reglab.theory.dropout_r1, the lemma."""

import pytest
import torch

from reglab.reproduce.stacked import forward, init_nets, module, objective, r1, risk, train
from reglab.theory import dropout_r1


def data(n=12, d=3, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, k, generator=g)


@pytest.mark.parametrize("kind", ["rs", "rs+r1"])
def test_stacked_training_equals_training_each_net_alone(kind):
    x, y = data()
    sizes, stds = [3, 16, 8, 2], [0.7, 0.3, 0.2]
    together = init_nets(sizes, stds, [0.0, 0.3], activation="tanh", seeds=[1, 2])
    train(together, kind, x, y, steps=30, lr=1e-2)
    for t, (seed, p) in enumerate([(1, 0.0), (2, 0.3)]):
        alone = init_nets(sizes, stds, [p], activation="tanh", seeds=[seed])
        train(alone, kind, x, y, steps=30, lr=1e-2)
        for a, b in zip(together.parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(a[t], b[0], rtol=1e-5, atol=1e-6)


def test_module_and_r1_agree_with_the_theory_module():
    x, y = data()
    nets = init_nets([3, 32, 2], [1.0, 0.5], [0.2, 0.6], activation="relu", seeds=[0, 1])
    out, features = forward(nets, x)
    rs = risk(nets, x, y)
    for t in range(2):
        net = module(nets, t)
        torch.testing.assert_close(net(x), out[t])
        torch.testing.assert_close(0.5 * (net(x) - y).pow(2).sum(1).mean(), rs[t])
        torch.testing.assert_close(dropout_r1(net, x), r1(nets, features)[t])


def test_mean_dropout_loss_is_rs_plus_r1_and_padding_weights_select_samples():
    x, y = data(n=8)
    nets = init_nets([3, 64, 2], [1.0, 0.3], [0.5], activation="tanh", seeds=[3])
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        draws = torch.stack([objective(nets, "drop", x, y, generator=g) for _ in range(20000)])
        expected = objective(nets, "rs+r1", x, y)
    stderr = draws.std() / 20000 ** 0.5
    assert abs(draws.mean() - expected) < 4 * stderr
    weight = torch.tensor([[1.0] * 5 + [0.0] * 3])
    with torch.no_grad():
        torch.testing.assert_close(risk(nets, x, y, weight), risk(nets, x[:5], y[:5]))


def test_bad_settings_name_the_field():
    with pytest.raises(ValueError, match="p: one dropout rate"):
        init_nets([1, 4, 1], [1.0, 1.0], [1.0], activation="tanh", seeds=[0])
    with pytest.raises(ValueError, match="activation"):
        init_nets([1, 4, 1], [1.0, 1.0], [0.0], activation="gelu", seeds=[0])
