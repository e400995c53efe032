"""The packed step: a constant number of dispatched ops whatever the pack size, no host sync, every
optimizer equal to its solo run, and checkpoints that a solo run resumes from."""

import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import OpCounter, assert_same_run, pack_step_ops
from conftest import mlp_config as config
from reglab.config import RunConfig
from reglab.data import TensorData, draw_augmentation
from reglab.train.loop import Trainer
from reglab.train.packed import PackedTrainer


def step_ops(k: int, **overrides) -> list[str]:
    """Ops dispatched by one packed step of `k` runs (after one step of warm-up)."""
    return pack_step_ops([config(seed, **overrides) for seed in range(k)])


@pytest.mark.parametrize("overrides", [
    {},
    {"model.norm": "batch", "regularize.ema": 0.99, "regularize.grad_clip": 1.0, "regularize.l1": 1e-4,
     "regularize.dropout.p": 0.2, "regularize.label_smoothing": 0.1, "regularize.max_norm": 1.0},
    {"model.norm": "batch", "regularize.sam_rho": 0.05, "regularize.l2": 1e-4},  # SAM's second pass
])
def test_ops_per_step_do_not_grow_with_the_pack(overrides):
    two, sixteen = step_ops(2, **overrides), step_ops(16, **overrides)
    assert len(sixteen) <= 1.3 * len(two), (len(two), len(sixteen))
    assert "aten._local_scalar_dense" not in sixteen  # no host synchronisation inside a step
    assert "aten.addmm" in sixteen or "aten.bmm" in sixteen  # the counter saw the step's real work


def test_a_mixed_optimizer_pack_still_takes_a_constant_number_of_ops():
    names = ["adam", "momentum", "rmsprop", "nesterov"]

    def ops(k):
        return pack_step_ops([config(s, **{"optim.name": names[s % 4], "optim.lr": 0.01}) for s in range(k)])
    assert len(ops(16)) <= 1.3 * len(ops(4))


@pytest.mark.parametrize("options", [{"crop_padding": 2, "flip": True},
                                     {"crop_padding": 2, "flip": True, "rotate": 30.0, "cutout": 4}],
                         ids=["crop-flip", "rotate-cutout"])
def test_augmentation_is_drawn_per_epoch_so_a_step_takes_a_constant_number_of_ops(options):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 1, 8, 8, generator=g), torch.randint(0, 3, (96,), generator=g)
    data = TensorData("images", x[:64], y[:64], x[64:], y[64:], num_classes=3)
    augment = {"model.name": "deeper_cnn", "model.norm": "batch", "data.augment": options,
               "model.options": {"channels": [4], "fc_widths": [8]}}

    def ops(k):
        configs = [config(s, **augment) for s in range(k)]
        pack = PackedTrainer([Trainer(c, data=data) for c in configs])
        pack.module.train()
        pack.optimizer.set_lr_table(pack._lr_table(10))
        idx = torch.randint(0, 64, (k, 16))
        draw = pack._stack_draws([draw_augmentation(16, configs[0].data.augment, torch.Generator().manual_seed(s))
                                  for s in range(k)])
        pack._step(idx, draw)
        with OpCounter() as counter:
            pack._step(idx, draw)
        return counter.ops

    two, sixteen = ops(2), ops(16)
    assert len(sixteen) <= 1.3 * len(two), (len(two), len(sixteen))
    assert "aten._local_scalar_dense" not in sixteen


def test_mixing_is_drawn_per_epoch_so_a_step_takes_a_constant_number_of_ops():
    arms = [{"regularize.mixup": 0.4}, {"regularize.cutmix": 1.0}, {}]  # mixup, CutMix and no mixing in one pack

    def ops(k):
        pack = PackedTrainer([Trainer(config(s, **arms[s % 3])) for s in range(k)])
        pack.module.train()
        pack.optimizer.set_lr_table(pack._lr_table(10))
        idx = torch.randint(0, 256, (k, 50))
        mix = pack._stack_mixing([pack.trainers[i].draw_mixing() for i in range(k)]).step(0)
        pack._step(idx, None, mix)
        with OpCounter() as counter:
            pack._step(idx, None, mix)
        return counter.ops

    three, eighteen = ops(3), ops(18)
    assert len(eighteen) <= 1.3 * len(three), (len(three), len(eighteen))
    assert "aten._local_scalar_dense" not in eighteen  # no host synchronisation: a CUDA pack is captured


OPTIMIZERS = [
    {"optim.name": "sgd", "optim.lr": 0.1, "regularize.l1": 1e-4},
    {"optim.name": "momentum", "optim.lr": 0.05, "optim.weight_decay": 1e-3, "optim.schedule.name": "step",
     "optim.schedule.step_size": 1, "optim.schedule.gamma": 0.5},
    {"optim.name": "nesterov", "optim.lr": 0.05, "regularize.grad_clip": 0.5, "regularize.l2": 1e-3},
    {"optim.name": "rmsprop", "optim.lr": 1e-3, "optim.weight_decay": 1e-3},
    {"optim.name": "adam", "optim.lr": 2e-3, "optim.weight_decay": 1e-3, "optim.schedule.name": "cosine",
     "optim.schedule.warmup_epochs": 1},
    {"optim.name": "adamw", "optim.lr": 2e-3, "optim.weight_decay": 0.1, "regularize.penalize": "all",
     "optim.schedule.name": "plateau", "optim.schedule.patience": 0, "optim.schedule.gamma": 0.5},
]


@pytest.mark.parametrize(("norm", "runs"), [
    # momentum-like rules with BatchNorm (Adam would blow up the rounding in a bias before BatchNorm)
    ("batch", [{"optim.name": "momentum", "optim.lr": 0.05, "regularize.l2": 1e-3, "regularize.grad_clip": 0.5},
               {"optim.name": "nesterov", "optim.lr": 0.05, "regularize.l1": 1e-4, "regularize.sam_rho": 0.1},
               {"optim.name": "sgd", "optim.lr": 0.2, "regularize.mixup": 0.4}]),
    ("none", [{"optim.name": "adam", "optim.lr": 3e-3, "regularize.label_smoothing": 0.1},
              {"optim.name": "adamw", "optim.lr": 1e-3, "optim.weight_decay": 0.1, "regularize.ema": 0.9,
               "regularize.penalize": "all", "regularize.l2": 1e-3}]),
])
def test_sam_runs_packed_equal_their_solo_runs(norm, runs):
    configs = [config(seed, **({"model.norm": norm, "regularize.sam_rho": 0.05} | run))
               for seed, run in enumerate(runs)]
    solo = [Trainer(c) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [Trainer(c) for c in configs]
    for s, p, es, rp in zip(solo, packed, solo_epochs, PackedTrainer(packed).fit(), strict=True):
        assert_same_run(s, p, es, rp.epochs)  # with BatchNorm: statistics updated by the unperturbed pass only


def test_every_optimizer_packed_equals_its_solo_run():
    configs = [config(seed, **o) for seed, o in enumerate(OPTIMIZERS)]
    solo = [Trainer(c) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [Trainer(c) for c in configs]
    for s, p, es, rp in zip(solo, packed, solo_epochs, PackedTrainer(packed).fit(), strict=True):
        assert_same_run(s, p, es, rp.epochs)


def test_a_packed_checkpoint_resumes_alone_as_the_uninterrupted_run(tmp_path):
    # momentum, not Adam: Adam blows the rounding noise in the gradient of a bias before BatchNorm up to lr
    overrides = {"model.norm": "batch", "regularize.ema": 0.9, "optim.name": "momentum", "optim.lr": 0.05,
                 "optim.schedule.name": "step",
                 "optim.schedule.step_size": 1, "optim.schedule.gamma": 0.7}
    configs = [config(seed, **overrides).override({"train.epochs": 1}) for seed in (0, 1)]
    PackedTrainer([Trainer(c) for c in configs]).fit([tmp_path / "a", tmp_path / "b"])
    resumed = Trainer(configs[1].override({"train.epochs": 3}))
    resumed_epochs = resumed.fit(tmp_path / "b", extend=True).epochs  # a larger budget, made explicit
    straight = Trainer(configs[1].override({"train.epochs": 3}))
    straight_epochs = straight.fit().epochs
    assert_same_run(straight, resumed, straight_epochs[1:], resumed_epochs[1:])
    for x, y in zip(straight.ema.module.state_dict().values(), resumed.ema.module.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())  # it says where its first epoch came from
    assert summary["pack"] == {"size": 2, "runs": ["a", "b"], "slot": 1, "resumed_alone_at_epoch": 1}
    again = Trainer(configs[1]).fit(tmp_path / "b", resume=False)  # a fresh start trains alone
    assert again.pack is None and not (tmp_path / "b" / "pack.json").exists()


def test_a_pack_interrupted_while_writing_its_checkpoints_keeps_its_runs_at_one_step(tmp_path, monkeypatch):
    """One run's checkpoint written and the next run's not: the two would resume an epoch apart, in
    different packs. The pack writes every checkpoint of an epoch first and renames them after."""
    from reglab.train import rundir

    configs = [config(seed, **{"train.epochs": 2}) for seed in (0, 1)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    saves, real_save = [], torch.save

    def save_then_die(obj, path, *args, **kwargs):
        if str(path).endswith("checkpoint.pt.tmp"):
            saves.append(path)
            if len(saves) == 4:  # epoch 2, the second run's checkpoint
                raise KeyboardInterrupt
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(rundir.torch, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        PackedTrainer([Trainer(c) for c in configs]).fit(dirs)
    monkeypatch.setattr(rundir.torch, "save", real_save)
    resumed = [Trainer(c) for c in configs]
    kept = [t.open_run_dir(d) for t, d in zip(resumed, dirs, strict=True)]
    assert [len(epochs) for epochs in kept] == [1, 1] and resumed[0].step == resumed[1].step


def test_interrupted_runs_resume_together_in_a_pack_as_the_uninterrupted_runs(tmp_path):
    configs = [  # every state a resumed pack takes over: moments, a plateau schedule, EMA weights, BatchNorm
        config(0, **{"train.epochs": 3}),
        config(1, **{"train.epochs": 3, "optim.name": "momentum", "optim.lr": 0.05, "regularize.ema": 0.9,
                     "optim.schedule.name": "plateau", "optim.schedule.patience": 0, "optim.schedule.gamma": 0.5}),
        config(2, **{"train.epochs": 3, "optim.name": "rmsprop", "optim.lr": 1e-3, "optim.weight_decay": 0.0}),
    ]
    dirs = [tmp_path / f"run{i}" for i in range(3)]

    def interrupt(i, metrics):
        if metrics["epoch"] == 2:  # after epoch 1's checkpoint, before epoch 2's
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        PackedTrainer([Trainer(c) for c in configs]).fit(dirs, on_epoch=interrupt)
    resumed = [Trainer(c) for c in configs]
    kept = [t.open_run_dir(d) for t, d in zip(resumed, dirs, strict=True)]
    assert [len(epochs) for epochs in kept] == [1, 1, 1] and {t.step for t in resumed} == {6}
    results = PackedTrainer(resumed).fit(dirs)
    straight = [Trainer(c) for c in configs]
    for s, r, result, d in zip(straight, resumed, results, dirs, strict=True):
        assert_same_run(s, r, s.fit().epochs, result.epochs)  # all three epochs, the first one kept
        assert [e["epoch"] for e in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())] == [1, 2, 3]
    for a, b in zip(straight[1].ema.module.state_dict().values(), resumed[1].ema.module.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    assert results[1].pack == {"size": 3, "runs": ["run0", "run1", "run2"], "slot": 1, "resumed_at_epoch": 1,
                               "earlier": {"size": 3, "runs": ["run0", "run1", "run2"], "slot": 1}}
    assert json.loads((dirs[1] / "pack.json").read_text()) == results[1].pack  # the next resume's `earlier`
    with pytest.raises(ValueError, match="resumed runs need the directories"):
        PackedTrainer([resumed_copy(configs[0], dirs[0], tmp_path)]).fit()


def resumed_copy(cfg: RunConfig, run_dir, tmp_path) -> Trainer:
    """A trainer resumed from a copy of `run_dir`'s checkpoint."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    trainer = Trainer(cfg)
    trainer.open_run_dir(copy)
    return trainer


def test_channels_last_pack_feeds_the_grouped_convolution_channels_last_with_the_same_result():
    """vmap runs a pack's convolution as one grouped convolution on (B, K·C, H, W); `pack_channels_last`
    stores the batch so that input is channels-last, and the output keeps that layout for the next layer."""
    from torch.func import vmap

    from reglab.train.packed import pack_channels_last

    class ConvInputs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.inputs: list[torch.Tensor] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket is torch.ops.aten.convolution:
                self.inputs.append(args[0])
            return func(*args, **(kwargs or {}))

    k, b, c, o = 3, 4, 5, 6
    x, weight = torch.randn(k, b, c, 9, 9), torch.randn(k, o, c, 3, 3)
    conv = vmap(lambda x, w: torch.nn.functional.conv2d(x, w, padding=1))
    stored = pack_channels_last(x)
    assert torch.equal(stored, x)
    with ConvInputs() as seen:
        out = conv(stored, weight)
    grouped, = seen.inputs
    assert grouped.shape == (b, k * c, 9, 9) and grouped.is_contiguous(memory_format=torch.channels_last)
    assert out.movedim(0, 1).flatten(1, 2).is_contiguous(memory_format=torch.channels_last)
    expected = torch.stack([torch.nn.functional.conv2d(x[i], weight[i], padding=1) for i in range(k)])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_a_captured_step_is_captured_again_only_when_the_lr_table_had_to_grow():
    pack = PackedTrainer([Trainer(config(seed)) for seed in range(2)])
    pack._set_lr_table(10)
    captured = pack.graph = object()  # stands in for a CUDA graph that reads the table
    pack._set_lr_table(4)
    assert pack.graph is captured
    pack._set_lr_table(11)
    assert pack.graph is None


class DtypeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.dtypes: dict[str, set] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.dtypes.setdefault(func.overloadpacket.__name__, set()).add(out.dtype)
        return out


def test_a_pack_under_bf16_autocast_keeps_its_activations_in_bf16():
    """vmap splits a linear layer into a matrix product (cast by autocast) and an add of the per-run
    bias (not cast): the pack casts its linear biases as autocast casts an unbatched layer's, so the
    activations stay bf16 and the gradients reach the float32 parameters. (CPU autocast stands in
    for CUDA's, which `train.amp` uses; vmap's linear rule is the same on both.)"""
    cfg = config(**{"model.options.widths": [16, 16], "regularize.dropout.p": 0.1})
    pack = PackedTrainer([Trainer(cfg.override({"seed": seed})) for seed in range(3)])
    assert pack.batched and len(pack.linear_biases) == 3
    x = pack.data.x_train[:16].expand(3, -1, -1)
    with torch.autocast("cpu", dtype=torch.bfloat16), DtypeRecorder() as seen:
        out = pack._forward(pack.param_views(), pack.buffers, x)
    assert seen.dtypes["relu"] == {torch.bfloat16} and out.dtype == torch.bfloat16, seen.dtypes
    grads = torch.autograd.grad(out.float().sum(), pack.leaves)
    assert all(g.dtype == torch.float32 and g.isfinite().all() for g in grads)
    with DtypeRecorder() as plain:  # without autocast nothing is cast
        pack._forward(pack.param_views(), pack.buffers, x)
    assert plain.dtypes["relu"] == {torch.float32}
