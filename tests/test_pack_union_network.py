"""A pack's union network (reglab.train.rates.rate_network) and its rate modules.

Expectations are independent of the code under test: survival probabilities by the linear rule worked
by hand, the form of every gate read from the runs' configs, and the documented behaviour of a rate
module (identity at evaluation; a batch-mode gate skips the whole batch at once). No training: the
union network is built on the meta device and its rate modules are given real buffers here.
"""

import pytest
import torch
from torch import nn

from reglab.config import RunConfig
from reglab.models import build_model
from reglab.study.spec import load_spec
from reglab.train.rates import RateDropout, RateGate, RateReplaceSkip, rate_network

RESMLP = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
    "model": {"name": "resmlp", "options": {"width": 8, "blocks": 3}},
    "optim": {"name": "adamw", "lr": 3e-3},
    "train": {"epochs": 1, "batch_size": 64, "device": "cpu"},
}
SHAPE, OUTPUTS = (40,), 10


def resmlp(seed: int = 0, **overrides) -> RunConfig:
    return RunConfig.from_dict({"seed": seed, **RESMLP}).override(overrides)


def union_of(configs, shape=SHAPE, outputs=OUTPUTS):
    models = [build_model(c.model, input_shape=shape, num_outputs=outputs, reg=c.regularize) for c in configs]
    return rate_network(configs, models, input_shape=shape, num_outputs=outputs)


def by_run(values: dict, suffix: str) -> list[list[float]]:
    columns = [v for name, v in values.items() if name.endswith(suffix)]
    return [list(run) for run in zip(*columns, strict=True)]


def test_the_union_has_a_gate_at_every_block_some_run_selects():
    """Run 0 skips block 0 only, run 1 block 2 only: one selected block each, so survival 1 − 0.5 there."""
    configs = [resmlp(0, **{"regularize.stochastic_depth": {"rate": 0.5, "blocks": [0]}}),
               resmlp(1, **{"regularize.stochastic_depth": {"rate": 0.5, "blocks": [2]}})]
    union, values = union_of(configs)
    assert sum(isinstance(m, RateGate) for m in union.modules()) == 2
    assert by_run(values, ".survival") == [[0.5, 1.0], [1.0, 0.5]]


def test_a_pack_without_dropout_has_no_dropout_modules():
    union, values = union_of([resmlp(0), resmlp(1, **{"regularize.l2": 1e-3})])
    assert not any(isinstance(m, RateDropout | nn.Dropout) for m in union.modules())
    assert values == {}
    union, values = union_of([resmlp(0), resmlp(1, **{"regularize.dropout": {"p": 0.2, "layers": [1]}})])
    assert sum(isinstance(m, RateDropout) for m in union.modules()) == 1  # only where some run drops
    assert by_run(values, ".rate") == [[0.0], [0.2]]


def test_a_run_whose_dropout_has_no_place_in_the_union_is_refused():
    plain, dropping = resmlp(0), resmlp(1, **{"regularize.dropout.p": 0.3})
    model = build_model(dropping.model, input_shape=SHAPE, num_outputs=OUTPUTS, reg=dropping.regularize)
    with pytest.raises(ValueError, match="has no place in the pack's network"):
        rate_network([plain], [model], input_shape=SHAPE, num_outputs=OUTPUTS)


def test_rate_dropout_is_the_identity_at_evaluation():
    torch.manual_seed(0)
    drop = RateDropout()
    drop.rate.fill_(0.5)
    x = torch.randn(64, 32)
    torch.testing.assert_close(drop.eval()(x), x, rtol=0, atol=0)
    out = drop.train()(x)
    kept = out != 0
    torch.testing.assert_close(out[kept], 2 * x[kept])  # × 1/(1 − 0.5)
    assert 0.4 < kept.float().mean().item() < 0.6  # 2048 draws: sd 0.011


def materialized(module: nn.Module) -> nn.Module:
    module.to_empty(device="cpu")
    for p in module.parameters():
        nn.init.normal_(p)
    return module


@pytest.mark.parametrize(("mode", "scaling"), [("batch", "test"), ("row", "test"), ("batch", "inverted")])
def test_the_union_gates_skip_and_scale_as_the_runs_configs_say(mode, scaling):
    torch.manual_seed(0)
    sd = {"rate": 0.5, "mode": mode, "scaling": scaling}
    union, values = union_of([resmlp(0, **{"regularize.stochastic_depth": sd}), resmlp(1)])
    gates = [m for m in union.modules() if isinstance(m, RateGate)]
    assert len(gates) == 3 and by_run(values, ".survival")[1] == [1.0, 1.0, 1.0]
    for gate in gates:
        materialized(gate).survival.fill_(0.25)
        expected_eval = 0.25 if scaling == "test" else 1.0  # scaling "test": p·branch at evaluation
        torch.testing.assert_close(gate.eval()(torch.ones(4, 3)), torch.full((4, 3), expected_eval))
        out = gate.train()(torch.ones(256, 3))
        kept = out[:, 0] != 0
        assert torch.all(out[kept] == (4.0 if scaling == "inverted" else 1.0))
        if mode == "batch":  # one draw for the whole batch, each time
            assert kept.all() or not kept.any()
        else:  # one draw per sample: 256 rows at survival 0.25
            assert 0 < kept.sum() < 256


def test_the_union_replaced_block_draws_once_per_batch_as_source_000s():
    torch.manual_seed(0)
    spec = load_spec("seed000")
    small = {"model.options.channels": [4, 8, 8], "model.options.fc_widths": [16]}
    configs = [spec.arm_config(arm, 0).override(small) for arm in spec.arms]
    assert configs[3].regularize.stochastic_depth.mode == "batch"
    union, values = union_of(configs, shape=(1, 12, 12))
    (block,) = [m for m in union.modules() if isinstance(m, RateReplaceSkip)]
    assert by_run(values, ".survival") == [[1.0], [1.0], [1.0], [0.8]]
    materialized(block).survival.fill_(0.5)
    block.train()
    x = torch.randn(32, 1, 12, 12)
    for _ in range(20):
        with torch.no_grad():
            out = block(x)
        skipped = (out[:, 1:] == 0).flatten(1).all(1)  # the padded channels stay zero only where skipped
        assert skipped.all() or not skipped.any(), "batch mode: one draw for the whole batch"
