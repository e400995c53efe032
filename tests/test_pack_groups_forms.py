"""Which runs may share a pack (reglab.train.rates.pack_key / pack_groups): fields that must match.

Expectations are the documented grouping rule, worked by hand on tiny configs: equal data, model and
budget; one stochastic-depth form (mode, scaling, depth options) per group; runs without stochastic
depth join the largest form of their key. No training.
"""

from reglab.config import RunConfig
from reglab.study.spec import load_spec
from reglab.train.rates import pack_groups, pack_key

RESMLP = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
    "model": {"name": "resmlp", "options": {"width": 16, "blocks": 2}},
    "optim": {"name": "adamw", "lr": 3e-3},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 64},
}


def resmlp(seed: int = 0, **overrides) -> RunConfig:
    return RunConfig.from_dict({"seed": seed, **RESMLP}).override(overrides)


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
