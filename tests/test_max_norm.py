"""Max-norm constraint: each unit's incoming weights projected onto ‖w‖₂ ≤ c after every step, against a
unit-by-unit reference, in training, and packed (per-run radii) equal to solo runs."""

import pytest
import torch
from torch import nn

from conftest import assert_same_run, mlp_config
from reglab.config import ConfigError, RunConfig
from reglab.data import TensorData
from reglab.regularize.max_norm import apply_max_norm, apply_max_norm_stacked, max_norm_weights
from reglab.train.loop import Trainer
from reglab.train.packed import PackedTrainer

pytestmark = pytest.mark.usefixtures("one_thread")

def config(seed: int = 0, **overrides) -> RunConfig:
    """`MLP_RUN` at a higher lr and a weaker decay, so that its units reach the radii below."""
    return mlp_config(seed, **({"optim.lr": 3e-3, "optim.weight_decay": 0.01} | overrides))


def projected_by_hand(w: torch.Tensor, c: float) -> torch.Tensor:
    """Unit by unit: a unit whose incoming weights are longer than c is scaled to length c (up to renorm's
    1e-7 in the denominator), the others are left alone."""
    out = w.clone()
    for i in range(w.shape[0]):
        length = float(w[i].double().norm())
        if length > c:
            out[i] = w[i] * (c / (length + 1e-7))
    return out


def test_projection_matches_the_unit_by_unit_rule_for_linear_and_conv_weights():
    g = torch.Generator().manual_seed(0)
    linear = torch.randn(6, 5, generator=g) * torch.tensor([0.1, 0.5, 1, 2, 4, 8]).unsqueeze(1)
    conv = torch.randn(4, 3, 3, 3, generator=g) * torch.tensor([0.05, 0.5, 2, 5]).view(4, 1, 1, 1)
    c = 1.5
    expected = [projected_by_hand(w, c) for w in (linear, conv)]
    weights = [linear.clone(), conv.clone()]
    apply_max_norm([(w, 0) for w in weights], c)
    for got, want, before in zip(weights, expected, (linear, conv), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
        lengths = got.flatten(1).norm(dim=1)
        assert (lengths <= c * (1 + 1e-6)).all()
        short = before.flatten(1).norm(dim=1) <= c
        assert short.any() and (~short).any() and torch.equal(got[short], before[short])  # both kinds of unit
    stacked = [torch.stack([w, w]) for w in (linear, conv)]  # run 0 constrained, run 1 not (c = ∞)
    apply_max_norm_stacked([(w, 1) for w in stacked], torch.tensor([c, float("inf")]))
    for s, want, before in zip(stacked, expected, (linear, conv), strict=True):
        torch.testing.assert_close(s[0], want, rtol=1e-6, atol=0)
        assert torch.equal(s[1], before)


def test_a_transposed_convolutions_units_are_its_output_channels():
    """ConvTranspose weights are (in, out, k…): a unit's incoming weights are a column, constrained as such
    (by hand: the norm over every input channel and kernel position of one output channel)."""
    model = nn.Sequential(nn.ConvTranspose2d(16, 2, 3), nn.Flatten(), nn.Linear(50, 3))
    with torch.no_grad():
        model[0].weight.fill_(0.7)  # each output channel: ‖w‖₂ = 0.7·√(16·9) = 8.4
    weights = max_norm_weights(model)
    assert [axis for _, axis in weights] == [1, 0]
    apply_max_norm(weights, 1.0)
    per_output = model[0].weight.transpose(0, 1).flatten(1).norm(dim=1)
    torch.testing.assert_close(per_output, torch.ones(2), rtol=1e-6, atol=0)
    with pytest.raises(ConfigError, match="grouped ConvTranspose"):
        max_norm_weights(nn.ConvTranspose2d(4, 4, 3, groups=2))


def test_the_initial_weights_start_inside_the_ball_so_the_ema_stays_in_it():
    """Projected when the run is built, before the EMA copies them: an average of points of the ball lies in
    it, so the evaluated (EMA) network keeps every unit within c too (unprojected, its first epochs did not)."""
    trainer = Trainer(config(**{"regularize.max_norm": 0.3, "regularize.ema": 0.99}))
    for model in (trainer.model, trainer.ema.module):
        assert max(float(w.detach().norm(dim=1).max()) for w, _ in max_norm_weights(model)) <= 0.3 * (1 + 1e-6)
    trainer.fit()
    assert max(float(w.detach().norm(dim=1).max()) for w, _ in max_norm_weights(trainer.ema.module)) <= 0.3 * (1 + 1e-6)


def test_training_keeps_every_unit_within_the_radius_and_leaves_biases_alone():
    trainer = Trainer(config(**{"regularize.max_norm": 0.4}))
    trainer.fit()
    linears = [m for m in trainer.model.modules() if isinstance(m, nn.Linear)]
    lengths = torch.cat([m.weight.norm(dim=1) for m in linears])
    assert (lengths <= 0.4 * (1 + 1e-6)).all()
    assert (lengths > 0.4 * (1 - 1e-4)).float().mean() > 0.5  # the constraint was active for most units
    assert any(m.bias.norm() > 0.4 for m in linears)  # biases are not constrained


def test_a_radius_no_unit_reaches_trains_bit_for_bit_as_no_constraint():
    free, wide = Trainer(config()), Trainer(config(**{"regularize.max_norm": 1e6}))
    assert free.fit().final["test_loss"] == wide.fit().final["test_loss"]
    for a, b in zip(free.model.state_dict().values(), wide.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["mlp", "conv"])
def test_packed_runs_with_their_own_radius_equal_their_solo_runs(case):
    runs = [{"regularize.max_norm": 0.4}, {},
            {"regularize.max_norm": 1.0, "optim.name": "momentum", "optim.lr": 0.05, "regularize.l2": 1e-3}]
    data = None
    if case == "conv":
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(96, 1, 12, 12, generator=g), torch.randint(0, 3, (96,), generator=g)
        data = TensorData("images", x[:64], y[:64], x[64:], y[64:], num_classes=3)
        cnn = {"model.name": "deeper_cnn", "model.norm": "batch", "train.batch_size": 16,  # momentum: Adam would
               "model.options": {"channels": [4, 8, 8], "fc_widths": [16]},  # blow up the rounding in a bias
               "optim.name": "momentum", "optim.lr": 0.05}  # before BatchNorm (test_packed_step.py)
        runs = [cnn | r for r in runs]
    configs = [config(seed, **r) for seed, r in enumerate(runs)]
    solo = [Trainer(c, data=data) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [Trainer(c, data=data) for c in configs]
    for s, p, es, rp in zip(solo, packed, solo_epochs, PackedTrainer(packed).fit(), strict=True):
        assert_same_run(s, p, es, rp.epochs)
    first = solo[0].model.state_dict()
    assert any(w.dim() > 1 and w.flatten(1).norm(dim=1).max() > 0.4 * (1 - 1e-4) for w in first.values())
