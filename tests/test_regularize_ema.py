"""Weight EMA against the closed form of the recorded parameter (and BN-statistics) trajectory."""

import pytest
import torch
from torch import nn

from reglab.regularize.ema import build_ema, ema_multi_avg_fn

pytestmark = pytest.mark.usefixtures("one_thread")


def _toy() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1)).double()


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_ema_equals_closed_form_including_bn_statistics():
    torch.manual_seed(0)
    beta, steps = 0.9, 30
    model = _toy()
    ema = build_ema(model, beta)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(64, 4, dtype=torch.float64), torch.randn(64, 1, dtype=torch.float64)
    trajectory = [_state(model)]
    for t in range(steps):
        batch = slice(16 * (t % 4), 16 * (t % 4 + 1))
        loss = (model(x[batch]) - y[batch]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(model)
        trajectory.append(_state(model))

    averaged = ema.module.state_dict()
    for key, final in trajectory[-1].items():
        if not final.is_floating_point():  # num_batches_tracked: copied, not averaged
            assert key.endswith("num_batches_tracked") and int(averaged[key]) == steps == int(final)
            continue
        closed = beta**steps * trajectory[0][key] + sum(
            (1 - beta) * beta ** (steps - k) * trajectory[k][key] for k in range(1, steps + 1))
        recurrence = trajectory[0][key]
        for k in range(1, steps + 1):
            recurrence = beta * recurrence + (1 - beta) * trajectory[k][key]
        torch.testing.assert_close(averaged[key], closed, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(recurrence, closed, rtol=1e-12, atol=1e-14)
        if key != "0.bias":  # the bias before BatchNorm gets no gradient
            assert not torch.equal(final, trajectory[0][key])
    bn = ema.module[1]
    assert not torch.allclose(bn.running_mean, model[1].running_mean)  # averaged, not copied
    # the EMA network evaluates with its own (averaged) BN statistics
    ema.module.eval()
    reference = _toy()
    reference.load_state_dict(averaged)
    torch.testing.assert_close(ema.module(x), reference.eval()(x), rtol=0, atol=0)


def test_ema_starts_at_the_model_and_survives_state_dict():
    torch.manual_seed(0)
    model = _toy()
    ema = build_ema(model, 0.999)
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(),
                                                  model.state_dict().values(), strict=True))
    other = build_ema(_toy(), 0.999)
    other.load_state_dict(ema.state_dict())
    assert int(other.n_averaged) == 1
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), ema.state_dict().values(),
                                                  strict=True))


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_invalid_decay(decay):
    with pytest.raises(ValueError, match="regularize.ema"):
        ema_multi_avg_fn(decay)
