"""Stacked nets: selecting nets keeps each one's own rows and rate; the recorded history; plain GD by hand."""

import torch

from reglab.reproduce.stacked import init_nets, risk, train


def data(n=10, d=2, k=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, k, generator=g)


def test_select_keeps_each_nets_rows_and_dropout_rate():
    nets = init_nets([2, 6, 1], [1.0, 0.5], [0.0, 0.25, 0.5], activation="tanh", seeds=[10, 11, 12])
    picked = nets.select([2, 0])
    assert picked.p.tolist() == [0.5, 0.0]
    for whole, part in zip(nets.parameters(), picked.parameters(), strict=True):
        torch.testing.assert_close(part[0], whole[2].detach())
        torch.testing.assert_close(part[1], whole[0].detach())
    alone = init_nets([2, 6, 1], [1.0, 0.5], [0.5], activation="tanh", seeds=[12])  # net 2 drawn on its own
    for a, b in zip(picked.parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(a[0], b[0].detach())


def test_history_records_the_start_every_record_every_steps_and_the_end():
    x, y = data()
    nets = init_nets([2, 8, 1], [1.0, 0.5], [0.0, 0.0], activation="tanh", seeds=[0, 1])
    start = risk(nets, x, y).tolist()
    copies = nets.clone()
    history = train(nets, "rs", x, y, steps=5, lr=0.05, optimizer="gd", record_every=2)
    assert len(history) == 4  # before steps 0, 2, 4, and after the last
    assert history[0] == start
    expected = []
    for steps in (2, 4, 5):  # plain GD is deterministic: train a copy that far and read R_S
        part = copies.clone()
        train(part, "rs", x, y, steps=steps, lr=0.05, optimizer="gd", record_every=100)
        expected.append(risk(part, x, y).tolist())
    for got, want in zip(history[1:], expected, strict=True):
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want))


def test_gd_is_plain_gradient_descent():
    """Two steps of θ ← θ − lr·∇R_S(θ), worked with autograd on a copy, per net."""
    x, y = data()
    nets = init_nets([2, 5, 1], [1.0, 0.5], [0.0, 0.0], activation="relu", seeds=[3, 4])
    by_hand = [p.detach().clone().requires_grad_() for p in nets.parameters()]
    lr = 0.1
    for _ in range(2):
        w1, w2, b1 = by_hand
        h = torch.relu(torch.einsum("nd,tmd->tnm", x, w1) + b1[:, None, :])
        out = torch.einsum("tnm,tkm->tnk", h, w2)
        loss = (0.5 * (out - y).pow(2).sum(-1).mean(1)).sum()
        grads = torch.autograd.grad(loss, by_hand)
        by_hand = [(p - lr * g).detach().requires_grad_() for p, g in zip(by_hand, grads, strict=True)]
    train(nets, "rs", x, y, steps=2, lr=lr, optimizer="gd")
    for a, b in zip(nets.parameters(), by_hand, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-5, atol=1e-6)
