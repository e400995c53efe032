"""Study specs: TOML and Python give the same validated spec; every error names its field."""

import pytest
import torch

from reglab.config import ConfigError
from reglab.presets import preset_names, preset_text
from reglab.study import StudySpec, load_spec
from reglab.study import spec as spec_module
from reglab.study.spec import arm_slug, run_id

TOML = """
name = "tiny"
description = "a test"
seeds = [0, 2]
baseline = "base"
[base]
data = { name = "mnist1d", train_subset = 256 }
model.options.widths = [16]
train.epochs = 3
[arms.base]
[arms.dropout]
regularize.dropout.p = 0.2
train.epochs = 4
"""


def test_toml_and_python_give_the_same_spec(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(TOML)
    spec = load_spec(path)
    same = StudySpec(
        name="tiny", description="a test", seeds=[0, 2], baseline="base",
        base={"data": {"name": "mnist1d", "train_subset": 256}, "model": {"options": {"widths": [16]}},
              "train": {"epochs": 3}},
        arms={"base": {}, "dropout": {"regularize": {"dropout": {"p": 0.2}}, "train": {"epochs": 4}}},
    )
    assert spec.spec_hash == same.spec_hash
    cfg = spec.arm_config("dropout", 2)
    assert cfg.seed == 2 and cfg.regularize.dropout.p == 0.2 and cfg.train.epochs == 4
    assert cfg.data.train_subset == 256 and cfg.model.options == {"widths": [16]}  # deep-merged
    assert spec.arm_config("base", 0).regularize.dropout.p == 0.0
    assert spec.seed_list == [0, 2] and load_spec(path, seeds=3).seed_list == [0, 1, 2]
    short = load_spec(path, epochs=1)  # base and every arm that sets it
    assert {short.arm_config(a, 0).train.epochs for a in short.arms} == {1}


@pytest.mark.parametrize(("change", "message"), [
    ({"arms": {"base": {}, "dropout": {"regularize": {"dropout": {"p": 1.5}}}}},
     "arms.dropout.regularize.dropout.p: Input should be less than 1 (got 1.5)"),
    ({"baseline": "foo"}, "baseline: 'foo' is not an arm (arms: base, dropout)"),
    ({"base": {"optim": {"lr": -1}}}, "base.optim.lr: Input should be greater than 0 (got -1)"),
    ({"arms": {"a": {"optim": {"nme": "sgd"}}}}, "arms.a.optim.nme: Extra inputs are not permitted"),
    ({"arms": {"a": {"regularize": {"mixup": 1.0, "cutmix": 1.0}}}}, "arms.a: regularize.mixup and"),
    ({"arms": {"a": {"regularize": {"stochastic_depth": {"rate": 0.2}}}}},
     "arms.a.regularize.stochastic_depth.rate: model 'mlp' has no residual blocks"),
    ({"arms": {"a": {"model": {"options": {"width": [3]}}}}}, "arms.a.model.options.width: unknown option"),
    ({"arms": {"a": {"data": {"name": "nope"}}}}, "arms.a.data.name: unknown data set 'nope'"),
    ({"arms": {"a": {"model": {"name": "nope"}}}}, "arms.a.model.name: unknown model 'nope'"),
    ({"arms": {"a": {"seed": 1}}}, "arms.a.seed: a study sets seeds with `seeds`"),
    ({"arms": {"a b": {}, "a_b": {}}}, "arms: 'a_b' and 'a b' map to the same run directory name"),
    ({"seeds": 0}, "seeds: needs at least one seed"),
    ({"seeds": [1, 1]}, "seeds: must be distinct"),
    ({"seeds": True}, "seeds: expected N or a list of integers (got True)"),
    ({"seeds": "3"}, "seeds: expected N or a list of integers (got '3')"),
    ({"arms": {"a": {"optim": {"lr": True}}}}, "arms.a.optim.lr: expected a number (got True)"),
    ({"base": {"train": {"epochs": True}}}, "base.train.epochs: expected a number (got True)"),
    ({"arms": {}}, "arms: Dictionary should have at least 1 item"),
    ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
])
def test_errors_name_the_field(change, message):
    data = {"name": "t", "arms": {"base": {}, "dropout": {}}, **change}
    with pytest.raises(ConfigError) as err:
        StudySpec.from_dict(data)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_unknown_source_lists_presets():
    with pytest.raises(ConfigError, match="neither a TOML file nor a preset.*quickstart"):
        load_spec("no-such-study")
    with pytest.raises(ConfigError, match="no such file"):
        load_spec("missing.toml")


def test_every_preset_loads_and_validates():
    assert {"quickstart", "seed000", "l2-vs-weight-decay", "norm-and-ema", "weight-averaging",
            "augmentation"} <= set(preset_names())
    for name in preset_names():
        spec = load_spec(name)
        assert spec.name == name and spec.baseline in spec.arms and len(spec.seed_list) >= 3
        assert preset_text(name).lstrip().startswith("#")  # each preset explains itself
    seed000 = load_spec("seed000")
    sd = seed000.arm_config("Stochastic depth conv1 p=0.2", 0).regularize.stochastic_depth
    assert (sd.rate, sd.rule, sd.blocks) == (0.2, "constant", [0])
    assert seed000.arm_config("Dropout 0.3 (FC layers)", 0).regularize.dropout.p == 0.3
    assert seed000.arm_config("Weight decay 0.001", 0).optim.weight_decay == 0.001
    augmentation = load_spec("augmentation")  # one input regularizer per arm, no flip (digits)
    assert augmentation.arm_config("none", 0).data.augment == augmentation.arm_config("noise", 0).data.augment
    assert augmentation.arm_config("crop", 0).data.augment.crop_padding == 2
    assert augmentation.arm_config("rotate", 0).data.augment.rotate == 15
    assert augmentation.arm_config("cutout", 0).data.augment.cutout == 10
    assert augmentation.arm_config("noise", 0).regularize.input_noise == 0.5
    assert not any(augmentation.arm_config(arm, 0).data.augment.flip for arm in augmentation.arms)


def test_run_ids_are_safe_directory_names():
    assert run_id("<b>x</b>", 3) == "b_x_b__s3"
    assert arm_slug("Weight decay 0.001") == "Weight_decay_0.001"
    assert arm_slug("../..") == "arm"


@pytest.fixture(params=["cpu", "meta"])
def load_time_forward(request, monkeypatch):
    """The load-time forward on zeroed CPU memory (models up to CPU_CHECK_BYTES), or on meta tensors."""
    if request.param == "meta":
        monkeypatch.setattr(spec_module, "CPU_CHECK_BYTES", 0)
    spec_module._meta_build_problem.cache_clear()
    yield request.param
    spec_module._meta_build_problem.cache_clear()


def test_a_model_that_cannot_be_built_for_its_data_fails_at_load_time_in_every_arm_that_has_it(load_time_forward):
    """The meta-device build is done once per distinct model section; each arm still gets its own error."""
    bad = {"model": {"name": "deeper_cnn"}}  # a CNN for MNIST-1D's 1-D signals
    for arm in ("a", "b"):
        arms = {"ok": {}, arm: bad}
        with pytest.raises(ConfigError, match=rf"^arms\.{arm}\.model\.name: 'deeper_cnn' needs image input"):
            StudySpec.from_dict({"name": "t", "base": {"data": {"name": "mnist1d"}}, "arms": arms})


def test_a_model_registered_again_is_built_again(load_time_forward):
    from torch import nn

    from reglab.models import register_model
    from reglab.models import registry as registry_module

    def fits(*, input_shape, num_outputs, norm, dropout, stochastic_depth, dropblock):
        return nn.Linear(input_shape[0], num_outputs)

    def breaks(*, input_shape, num_outputs, norm, dropout, stochastic_depth, dropblock):
        return nn.Linear(input_shape[0] + 1, num_outputs)  # a wrong input width: fails on the first batch

    spec = {"name": "t", "base": {"data": {"name": "mnist1d"}, "model": {"name": "tmp_meta_model"}}, "arms": {"a": {}}}
    try:
        register_model("tmp_meta_model", description="t", residual=False, dropout_sites="none")(fits)
        StudySpec.from_dict(spec)
        with pytest.warns(UserWarning, match="registered again"):
            register_model("tmp_meta_model", description="t", residual=False, dropout_sites="none")(breaks)
        with pytest.raises(ConfigError, match="cannot be built"):
            StudySpec.from_dict(spec)
    finally:
        registry_module._REGISTRY.pop("tmp_meta_model", None)


@pytest.mark.parametrize("persistent", [True, False])
def test_the_load_time_build_reads_its_buffers_as_zeros_and_imports_no_compiler(persistent):
    """The load-time forward runs CPU kernels on zeroed memory: an index buffer is valid (uninitialised
    memory could hold any index), also one outside the state dict, and no meta kernel pulls in
    torch._dynamo (≈ 1 s a process)."""
    import subprocess
    import sys

    from torch import nn

    from reglab.models import register_model
    from reglab.models import registry as registry_module

    class Lookup(nn.Module):  # gathers input features by a buffer of indices
        def __init__(self, width: int, classes: int):
            super().__init__()
            self.register_buffer("index", torch.arange(width).flip(0), persistent=persistent)
            self.head = nn.Linear(width, classes)

        def forward(self, x):
            assert self.index.device == x.device, "a buffer left on the meta device"
            return self.head(x[:, self.index])

    def lookup(*, input_shape, num_outputs, norm, dropout, stochastic_depth, dropblock):
        return Lookup(input_shape[0], num_outputs)

    try:
        register_model("tmp_lookup_model", description="t", residual=False, dropout_sites="none")(lookup)
        StudySpec.from_dict({"name": "t", "base": {"data": {"name": "mnist1d"}, "model": {"name": "tmp_lookup_model"}},
                             "arms": {"a": {}}})
    finally:
        registry_module._REGISTRY.pop("tmp_lookup_model", None)
    code = ("import sys; from reglab.study import load_spec; load_spec('quickstart'); "
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
