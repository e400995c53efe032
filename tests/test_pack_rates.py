"""Per-run dropout and stochastic-depth rates in one pack (reglab.train.rates).

Expectations are independent of the code under test: survival probabilities worked out by hand from
the linear rule, a rate-0 run equal to its solo run (the neutral rate is the identity), and Monte
Carlo keep frequencies of the rate modules against their probabilities.
"""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import assert_same_run
from reglab.config import RunConfig
from reglab.data import TensorData
from reglab.models.deeper_cnn import ReplaceSkip
from reglab.study.spec import load_spec
from reglab.train.loop import Trainer
from reglab.train.pack_layers import PackBatchNorm, PackMaxPool2d
from reglab.train.packed import PackedTrainer, pack_groups
from reglab.train.rates import RateGate, RateReplaceSkip, pack_key

RESMLP = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
    "model": {"name": "resmlp", "options": {"width": 16, "blocks": 2}},
    "optim": {"name": "adamw", "lr": 3e-3},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 64},
}


def resmlp(seed: int = 0, **overrides) -> RunConfig:
    return RunConfig.from_dict({"seed": seed, **RESMLP}).override(overrides)


def test_each_run_gets_its_own_rates_and_a_rate_free_run_trains_as_alone():
    configs = [resmlp(0), resmlp(1, **{"regularize.dropout.p": 0.3}),
               resmlp(2, **{"regularize.stochastic_depth.rate": 0.5}),
               resmlp(3, **{"regularize.dropout": {"p": 0.2, "layers": [0]}})]
    assert pack_groups(configs) == [[0, 1, 2, 3]]
    pack = PackedTrainer([Trainer(c) for c in configs])
    dropout = [values for name, values in pack.rate_values.items() if name.endswith(".rate")]
    survival = [values for name, values in pack.rate_values.items() if name.endswith(".survival")]
    # sites 0, 1 inside the blocks and 2 before the head; the linear rule over L = 2 blocks: 1 − l/2 · 0.5
    assert [list(run) for run in zip(*dropout, strict=True)] == [[0, 0, 0], [0.3, 0.3, 0.3], [0, 0, 0], [0.2, 0, 0]]
    assert [list(run) for run in zip(*survival, strict=True)] == [[1, 1], [1, 1], [0.75, 0.5], [1, 1]]

    results = pack.fit()
    solo = Trainer(configs[0])
    solo_epochs = solo.fit().epochs
    for a, b in zip(solo_epochs, results[0].epochs, strict=True):  # rate 0 and survival 1: the identity
        for key in ("train_loss", "test_loss", "test_acc", "grad_norm"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
    for a, b in zip(solo.model.state_dict().values(), pack.trainers[0].model.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    assert all(r.status == "done" for r in results)


def test_dropout_rates_differ_per_run_in_one_forward():
    cfg = resmlp(0, **{"model.name": "mlp", "model.options": {"widths": [32]}, "regularize.dropout.p": 0.5})
    pack = PackedTrainer([Trainer(cfg), Trainer(cfg.override({"regularize.dropout.p": 0.0}))])
    k = 400  # per run: one hidden layer, dropout before the output layer
    model, x = pack.trainers[0].model.train(), pack.trainers[0].data.x_test[:8]
    params = {name: p.detach().expand(2 * k, *p.shape) for name, p in model.named_parameters()}
    buffers = {name: b.repeat_interleave(k, 0) for name, b in pack.buffers.items()}  # k copies of each run
    with torch.no_grad():
        out = pack.vmapped(params, buffers, x.expand(2 * k, *x.shape)).view(2, k, *x.shape[:1], -1)
        solo = torch.stack([model(x) for _ in range(k)])
        expected = model.eval()(x)
    torch.testing.assert_close(out[1], expected.expand_as(out[1]), atol=1e-6, rtol=0)  # rate 0: no mask at all
    ratio = out[0].std(0) / solo.std(0)
    assert ratio.min() > 0.8 and ratio.max() < 1.25  # rate 0.5: the solo mask distribution


@pytest.mark.parametrize("scaling", ["inverted", "test"])
def test_rate_gate_keeps_a_branch_with_its_survival_probability(scaling):
    torch.manual_seed(0)
    gate, p, n = RateGate("row", scaling), 0.7, 20000
    gate.survival.fill_(p)
    out = gate.train()(torch.ones(n, 3))
    kept = out[:, 0] != 0
    assert abs(kept.float().mean().item() - p) < 4 * (p * (1 - p) / n) ** 0.5
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / p if scaling == "inverted" else 1.0))
    assert torch.equal(out[:, 0] == out[:, 1], torch.ones(n, dtype=torch.bool))  # one draw per sample
    assert torch.allclose(gate.eval()(torch.ones(4, 3)), torch.full((4, 3), p if scaling == "test" else 1.0))


def test_rate_replace_skip_matches_source_000s_block():
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU())
    solo, rated = ReplaceSkip(body, 0.8, mode="row"), RateReplaceSkip(body, "row")
    rated.survival.fill_(0.8)
    x = torch.randn(5000, 2, 4, 4)
    torch.testing.assert_close(rated.eval()(x), solo.eval()(x))  # the expectation at test time
    out = rated.train()(x)
    replaced = (out[:, 2:] == 0).flatten(1).all(1)  # padded channels stay zero only where the block was skipped
    assert abs(1 - replaced.float().mean().item() - 0.8) < 4 * (0.16 / 5000) ** 0.5


def images() -> TensorData:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 1, 16, 16, generator=g), torch.randint(0, 3, (96,), generator=g)
    return TensorData("images", x[:64], y[:64], x[64:], y[64:], num_classes=3)


def test_seed000_arms_share_one_pack_and_its_baseline_trains_as_alone():
    spec = load_spec("seed000")
    configs = [spec.arm_config(arm, 0) for arm in spec.arms]
    assert pack_groups(configs) == [[0, 1, 2, 3]]  # replace_skip and the gate's form only matter with a rate
    other_form = configs[3].override({"regularize.stochastic_depth.mode": "row"})
    assert pack_groups([*configs, other_form]) == [[0, 1, 2, 3], [4]]

    small = {"data.name": "mnist", "model.options.channels": [4, 8, 8], "model.options.fc_widths": [16],
             "train.epochs": 1, "train.batch_size": 16, "train.device": "cpu", "train.eval_train_samples": 32}
    configs = [c.override(small) for c in configs]
    pack = PackedTrainer([Trainer(c, data=images()) for c in configs])
    assert [v for name, v in pack.rate_values.items() if name.endswith("survival")] == [[1.0, 1.0, 1.0, 0.8]]
    results = pack.fit()
    solo = Trainer(configs[0], data=images())
    for a, b in zip(solo.fit().epochs, results[0].epochs, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
        assert b["test_loss"] == pytest.approx(a["test_loss"], abs=1e-5)


def test_a_pack_of_one_calls_its_network_without_vmap_and_trains_as_alone():
    """A pack of one runs the solo kernels (no vmap: Linear is addmm, not bmm) on its stacked state,
    BatchNorm statistics and the weight-decay arm's masked decay included."""

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    spec = load_spec("seed000")
    small = {"data.name": "mnist", "model.options.channels": [4, 8, 8], "model.options.fc_widths": [16],
             "train.epochs": 2, "train.batch_size": 16, "train.device": "cpu", "train.eval_train_samples": 32}
    cfg = spec.arm_config("Weight decay 0.001", 0).override(small)
    pack = PackedTrainer([Trainer(cfg, data=images())])
    layers = [m for m in pack.module.modules() if isinstance(m, PackBatchNorm | PackMaxPool2d)]
    assert len(layers) == 6 and not pack.batched and not any(m.batched for m in layers)
    pack.module.train()
    pack.optimizer.set_lr_table(pack._lr_table(2))
    with Ops() as ops:
        pack._step(torch.randint(0, 64, (1, 16)))
    assert "addmm" in ops.names and "bmm" not in ops.names
    fresh = PackedTrainer([Trainer(cfg, data=images())])
    solo = Trainer(cfg, data=images())
    assert_same_run(solo, fresh.trainers[0], solo.fit().epochs, fresh.fit()[0].epochs)


def test_a_pack_left_with_one_run_goes_on_without_vmap():
    configs = [resmlp(0), resmlp(1, **{"optim.name": "sgd", "optim.lr": 1e6})]  # run 1 diverges in epoch 1
    pack = PackedTrainer([Trainer(c) for c in configs])
    assert pack.batched
    results = pack.fit()
    assert [r.status for r in results] == ["done", "diverged"] and not pack.batched
    solo = Trainer(configs[0])
    assert_same_run(solo, pack.trainers[0], solo.fit().epochs, results[0].epochs)


def test_rate_gate_batch_mode_drops_the_whole_batch_at_once():
    from reglab.train.rates import RateGate

    torch.manual_seed(0)
    gate, p, trials = RateGate("batch", "inverted").train(), 0.5, 400
    gate.survival.fill_(p)
    kept = []
    for _ in range(trials):
        out = gate(torch.ones(32, 3))
        assert torch.all(out == out[0]), "batch mode: one draw for the whole batch"
        kept.append(bool(out[0, 0] != 0))
    assert abs(sum(kept) / trials - p) < 4 * math.sqrt(p * (1 - p) / trials)


def test_pack_of_all_blocks_and_selected_blocks_stochastic_depth():
    """One run skips every block (linear rule over L = 2), one only block 0 (L = 1): survivals by hand."""
    from reglab.config import RunConfig
    from reglab.train.loop import Trainer
    from reglab.train.packed import PackedTrainer, pack_groups

    base = {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
            "model": {"name": "resmlp", "options": {"width": 16, "blocks": 2}},
            "optim": {"name": "adamw", "lr": 3e-3},
            "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_train_samples": 64}}
    configs = [RunConfig.from_dict({"seed": 0, **base}).override({"regularize.stochastic_depth.rate": 0.5}),
               RunConfig.from_dict({"seed": 1, **base}).override(
                   {"regularize.stochastic_depth": {"rate": 0.5, "blocks": [0]}})]
    assert pack_groups(configs) == [[0, 1]]
    pack = PackedTrainer([Trainer(c) for c in configs])
    survival = [v for name, v in pack.rate_values.items() if name.endswith(".survival")]
    assert [list(run) for run in zip(*survival, strict=True)] == [[0.75, 0.5], [0.5, 1.0]]


# ------------------------------------------------- which runs may share a pack: fields that must match
def test_runs_on_other_data_never_share_a_pack():
    """A pack trains every run on one data set: runs on another subset or data set are kept apart."""
    base = resmlp(0)
    for change in ({"data.train_subset": 128}, {"data.test_subset": 64}, {"data.name": "fn1d"}):
        other = resmlp(1, **change)
        assert pack_key(other) != pack_key(base), change
        assert pack_groups([base, other]) == [[0], [1]], change


def test_stochastic_depth_runs_of_other_scalings_are_packed_apart():
    inverted = resmlp(0, **{"regularize.stochastic_depth": {"rate": 0.5, "scaling": "inverted"}})
    at_test = resmlp(1, **{"regularize.stochastic_depth": {"rate": 0.5, "scaling": "test"}})
    assert pack_key(inverted) == pack_key(at_test)  # same architecture ...
    assert pack_groups([inverted, at_test]) == [[0], [1]]  # ... but a gate cannot scale both ways
    other_rate = resmlp(2, **{"regularize.stochastic_depth": {"rate": 0.2, "scaling": "inverted"}})
    assert pack_groups([inverted, at_test, other_rate]) == [[0, 2], [1]]  # a rate may differ


def test_a_replaced_block_and_a_plain_block_are_packed_apart_when_both_skip():
    """DeeperCNN's `replace_skip` is a depth option: free where no block is skipped, binding where one is."""
    spec = load_spec("seed000")
    replaced = spec.arm_config("Stochastic depth conv1 p=0.2", 0)
    assert replaced.model.options["replace_skip"] is True
    gated = replaced.override({"seed": 1, "model.options.replace_skip": False})
    assert pack_key(gated) == pack_key(replaced)
    assert pack_groups([replaced, gated]) == [[0], [1]]
    no_depth = gated.override({"seed": 2, "regularize.stochastic_depth.rate": 0.0})
    assert pack_groups([replaced, no_depth]) == [[0, 1]]  # without a rate replace_skip changes nothing


def test_runs_without_stochastic_depth_join_the_largest_form():
    row = {"rate": 0.5, "mode": "row"}
    batch = {"rate": 0.5, "mode": "batch"}
    configs = [resmlp(0, **{"regularize.stochastic_depth": row}),
               resmlp(1, **{"regularize.stochastic_depth": batch}),
               resmlp(2, **{"regularize.stochastic_depth": batch}),
               resmlp(3)]  # no stochastic depth: fits either form; joins the batch form's two runs
    assert pack_groups(configs) == [[0], [1, 2, 3]]
    configs.append(resmlp(4, **{"regularize.stochastic_depth": row}))
    configs.append(resmlp(5, **{"regularize.stochastic_depth": row}))  # now row has three
    assert pack_groups(configs) == [[0, 3, 4, 5], [1, 2]]
