"""Packed training: a run trained in a pack equals the same run trained alone.

Exact up to float rounding (atol 1e-5) where no global randomness is involved: a vmapped matrix
product sums in a different order than the solo one, so bit equality is not promised. Dropout masks
are checked in distribution. Tiny runs on CPU: mnist1d (256 training samples), small MLPs.
"""

import json
import math
import re

import pytest
import torch
from typer.testing import CliRunner

from conftest import Recorder, assert_same_run
from reglab.cli.app import app
from reglab.config import RunConfig
from reglab.data import TensorData
from reglab.study import StudySpec, make_executor, run_study
from reglab.study.packed import (
    PACK_MARGIN,
    PARAM_COPIES,
    PackChoices,
    PackedExecutor,
    PackProbe,
    estimate_run_bytes,
    group_run_steps,
    measured_pack_size,
    measurement_run_steps,
    parse_pack,
    plan_packs,
    solo_step_seconds,
)
from reglab.study.runner import plan
from reglab.theory.training import build_trainer
from reglab.train.loop import Trainer
from reglab.train.packed import PackedTrainer, pack_key, packing_blocker

BASE = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
    "model": {"name": "mlp", "options": {"widths": [32, 16]}},
    "optim": {"name": "momentum", "lr": 0.05},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 64},
}


def config(seed: int = 0, **overrides) -> RunConfig:
    return RunConfig.from_dict({"seed": seed, **BASE}).override(overrides)


def test_packed_runs_equal_solo_runs_with_their_own_optimizers_and_penalties():
    configs = [
        config(0),
        config(1, **{"optim.name": "adam", "optim.lr": 3e-3, "regularize.label_smoothing": 0.1}),
        config(2, **{"optim.name": "adamw", "optim.lr": 1e-3, "optim.weight_decay": 0.1,
                     "regularize.grad_clip": 0.5}),
        config(3, **{"optim.lr": 0.2, "regularize.l2": 1e-3, "optim.schedule.name": "cosine"}),
    ]
    solo = [Trainer(c) for c in configs]
    solo_results = [t.fit() for t in solo]
    packed = [Trainer(c) for c in configs]
    packed_results = PackedTrainer(packed).fit()
    for s, p, rs, rp in zip(solo, packed, solo_results, packed_results, strict=True):
        assert rp.status == "done" and len(rp.epochs) == 2
        assert_same_run(s, p, rs.epochs, rp.epochs)
        assert rp.confusion is not None and sum(map(sum, rp.confusion)) == sum(map(sum, rs.confusion))
        mismatched = sum(abs(a - b) for ra, rb in zip(rs.confusion, rp.confusion, strict=True)
                         for a, b in zip(ra, rb, strict=True))
        assert mismatched <= 2  # per-class counts as the solo run's (a rounding-level tie may flip one)
    finals = [r.final["train_loss"] for r in packed_results]
    assert len(set(finals)) == len(finals)  # the runs really differ from one another


def test_a_batchnorm_mlp_trains_when_an_epoch_would_end_in_one_sample_alone_and_packed():
    """257 samples in batches of 64 leave one: that batch is left out (BatchNorm1d cannot normalise a
    single sample), alone and in a pack, so both take 4 steps an epoch and agree."""
    bn = {"model.norm": "batch", "data.train_subset": 257, "model.options": {"widths": [32, 16], "bias": False}}
    configs = [config(0, **bn), config(1, **bn, **{"optim.lr": 0.02})]
    solo = [Trainer(c) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [Trainer(c) for c in configs]
    results = PackedTrainer(packed).fit()
    for s, p, epochs, result in zip(solo, packed, solo_epochs, results, strict=True):
        assert [e["step"] for e in epochs] == [4, 8]
        assert_same_run(s, p, epochs, result.epochs)


def test_a_packed_runs_optimizer_state_is_the_one_torch_optim_keeps():
    """Plain SGD packed with momentum runs keeps no state, as torch.optim.SGD(momentum=0) does."""
    configs = [config(0, **{"optim.name": "sgd"}), config(1), config(2, **{"optim.name": "adam", "optim.lr": 1e-3})]
    solo = [Trainer(c) for c in configs]
    for t in solo:
        t.fit()
    packed = [Trainer(c) for c in configs]
    PackedTrainer(packed).fit()
    for s, p in zip(solo, packed, strict=True):
        a, b = s.optimizer.state_dict()["state"], p.optimizer.state_dict()["state"]
        assert a.keys() == b.keys() and all(x.keys() == b[i].keys() for i, x in a.items())
    assert packed[0].optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize("augment", [{"crop_padding": 2, "flip": True},
                                     {"crop_padding": 2, "flip": True, "rotate": 30.0, "cutout": 6}],
                         ids=["crop-flip", "rotate-cutout"])
def test_packed_conv_nets_with_augmentation_equal_solo_runs(augment):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 1, 12, 12, generator=g), torch.randint(0, 3, (96,), generator=g)
    data = TensorData("images", x[:64], y[:64], x[64:], y[64:], num_classes=3)
    cnn = {"model.name": "deeper_cnn", "model.norm": "batch", "train.batch_size": 16,
           "model.options": {"channels": [4, 8, 8], "fc_widths": [16]}, "data.augment": augment}
    configs = [config(0, **cnn), config(1, **cnn, **{"optim.lr": 0.01})]
    solo = [Trainer(c, data=data) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [Trainer(c, data=data) for c in configs]
    for s, p, es, rp in zip(solo, packed, solo_epochs, PackedTrainer(packed).fit(), strict=True):
        assert_same_run(s, p, es, rp.epochs)


def test_batchnorm_statistics_are_kept_per_run():
    configs = [config(seed, **{"model.norm": "batch"}) for seed in (0, 1)]
    solo = [Trainer(c) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [Trainer(c) for c in configs]
    packed_epochs = [r.epochs for r in PackedTrainer(packed).fit()]
    for s, p, es, ep in zip(solo, packed, solo_epochs, packed_epochs, strict=True):
        assert_same_run(s, p, es, ep)
    means = [dict(t.model.named_buffers())["1.running_mean"] for t in packed]
    assert not torch.allclose(means[0], means[1])
    assert int(dict(packed[0].model.named_buffers())["1.num_batches_tracked"]) == 2 * 4  # 2 epochs × 4 batches


def test_condensation_is_tracked_per_packed_run_as_for_a_solo_run():
    configs = [config(seed, **{"train.track_condensation": True}) for seed in (0, 1)]
    solo = [build_trainer(c) for c in configs]
    solo_epochs = [t.fit().epochs for t in solo]
    packed = [build_trainer(c) for c in configs]
    for s, p, es, rp in zip(solo, packed, solo_epochs, PackedTrainer(packed).fit(), strict=True):
        assert_same_run(s, p, es, rp.epochs)
        assert [e["effective_ratio/0"] for e in rp.epochs] == pytest.approx([e["effective_ratio/0"] for e in es])


def test_weight_ema_and_mixup_runs_share_a_pack():
    configs = [config(0, **{"model.norm": "batch", "regularize.ema": 0.9}),
               config(1, **{"model.norm": "batch", "regularize.mixup": 0.4})]
    solo = Trainer(configs[0])
    solo_epochs = solo.fit().epochs
    packed = [Trainer(c) for c in configs]
    results = PackedTrainer(packed).fit()
    assert_same_run(solo, packed[0], solo_epochs, results[0].epochs)  # EMA weights and averaged BN statistics
    for a, b in zip(solo.ema.module.state_dict().values(), packed[0].ema.module.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)
    assert "train_acc" not in results[1].final and results[1].status == "done"  # as Trainer reports mixup runs


def test_dropout_masks_are_drawn_per_run_at_the_solo_rate():
    cfg = config(0, **{"model.options.widths": [32], "regularize.dropout.p": 0.5, "train.epochs": 1})
    twins = PackedTrainer([Trainer(cfg) for _ in range(2)]).fit()  # same init and data order: only masks differ
    assert twins[0].final["train_loss"] != twins[1].final["train_loss"]

    k = 400  # one hidden layer, dropout before the output layer: the output is linear in the mask
    pack = PackedTrainer([Trainer(cfg) for _ in range(2)])  # its vmapped network takes any number of runs
    model, x = pack.trainers[0].model.train(), pack.trainers[0].data.x_test[:8]
    params = {name: p.detach().expand(k, *p.shape) for name, p in model.named_parameters()}
    buffers = {name: b[0].expand(k, *b.shape[1:]) for name, b in pack.buffers.items()}  # the dropout rate
    with torch.no_grad():
        packed = pack.vmapped(params, buffers, x.expand(k, *x.shape))
        solo = torch.stack([model(x) for _ in range(k)])
        expected = model.eval()(x)
    assert (packed.mean(0) - expected).abs().max() < 4 * packed.std(0).max() / k ** 0.5  # inverted dropout
    ratio = packed.std(0) / solo.std(0)
    assert ratio.min() > 0.8 and ratio.max() < 1.25  # same mask distribution as solo training


def test_a_diverging_run_ends_alone_while_the_pack_goes_on(tmp_path):
    configs = [config(0), config(1, **{"optim.name": "sgd", "optim.lr": 1e6}), config(2)]
    dirs = [tmp_path / f"run{i}" for i in range(3)]
    ended = []
    packed = [Trainer(c) for c in configs]
    results = PackedTrainer(packed).fit(dirs, on_result=lambda i, result: ended.append((i, result.status)))
    assert ended == [(1, "diverged"), (0, "done"), (2, "done")]
    assert results[1].diverged_epoch == 1 and not (dirs[1] / "model.pt").exists()
    solo = Trainer(configs[2])
    assert_same_run(solo, packed[2], solo.fit().epochs, results[2].epochs)  # untouched by its diverged neighbour


def test_early_stopping_ends_a_packed_run_as_it_ends_the_solo_run(tmp_path):
    stopping = {"regularize.early_stopping": {"patience": 1, "monitor": "val_acc", "restore_best": True}}
    split = {"data.val_split": 0.25, "train.epochs": 8}
    configs = [config(0, **split, **stopping), config(1, **split),
               config(2, **split, **{"regularize.early_stopping": {"patience": 2, "monitor": "val_loss",
                                                                   "restore_best": False}, "optim.lr": 0.3})]
    solo = [Trainer(c) for c in configs]
    solo_results = [t.fit() for t in solo]
    assert solo_results[0].stopped_epoch < 8 and solo_results[1].stopped_epoch is None  # the case under test
    ended = []
    packed = [Trainer(c) for c in configs]
    dirs = [tmp_path / f"run{i}" for i in range(3)]
    results = PackedTrainer(packed).fit(dirs, on_result=lambda i, result: ended.append(i))
    assert ended.index(0) < ended.index(1)  # the stopped run ends while the pack goes on
    for s, p, rs, rp in zip(solo, packed, solo_results, results, strict=True):
        assert (rp.status, rp.stopped_epoch, len(rp.epochs)) == (rs.status, rs.stopped_epoch, len(rs.epochs))
        assert_same_run(s, p, rs.epochs, rp.epochs)  # weights: run 0's best epoch's, restored
        assert rp.final["epoch"] == rs.final["epoch"] and rp.final["test_acc"] == pytest.approx(rs.final["test_acc"])
        assert rp.confusion == rs.confusion
    best = solo[0].stopper.best_epoch
    assert results[0].final["epoch"] == best < results[0].stopped_epoch  # the best epoch's metrics are final
    saved = torch.load(dirs[0] / "model.pt", weights_only=True)
    for name, weight in packed[0].model.state_dict().items():
        torch.testing.assert_close(saved[name], weight, atol=0, rtol=0, msg=name)
    assert json.loads((dirs[0] / "summary.json").read_text())["stopped_epoch"] == results[0].stopped_epoch
    (dirs[0] / "summary.json").unlink()  # interrupted after its stopping checkpoint: it resumes as stopped
    again = Trainer(configs[0])
    again.open_run_dir(dirs[0])
    redone = PackedTrainer([again]).fit(dirs[:1])[0]
    assert (redone.stopped_epoch, len(redone.epochs), redone.final) == (
        results[0].stopped_epoch, len(results[0].epochs), results[0].final)


def test_packed_run_directories_match_what_trainer_fit_writes(tmp_path):
    packed = PackedTrainer([Trainer(config(s)) for s in (0, 1)])
    results = packed.fit([tmp_path / "a", tmp_path / "b"])
    Trainer(config(1)).fit(tmp_path / "solo")
    for name in ("config.json", "metrics.jsonl", "summary.json", "model.pt", "checkpoint.pt"):
        assert (tmp_path / "b" / name).exists(), name
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    solo_lines = (tmp_path / "solo" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x).keys() for x in lines] == [json.loads(x).keys() for x in solo_lines]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["status"] == "done" and summary["final"]["epoch"] == 2 == results[1].final["epoch"]
    assert summary["pack"] == {"size": 2, "runs": ["a", "b"], "slot": 1}  # which runs shared the global generator
    assert json.loads((tmp_path / "solo" / "summary.json").read_text())["pack"] is None


def test_what_can_share_a_pack():
    assert pack_key(config(0)) == pack_key(config(5, **{"optim.name": "adam", "optim.lr": 0.3,
                                                        "regularize.l2": 0.1, "regularize.mixup": 0.2}))
    assert pack_key(config(0)) == pack_key(config(0, **{"regularize.dropout.p": 0.1}))  # a per-run rate
    assert pack_key(config(0)) != pack_key(config(0, **{"train.batch_size": 32}))
    assert pack_key(config(0)) != pack_key(config(0, **{"regularize.dropblock.p": 0.1}))
    assert packing_blocker(config(0)) is None
    held_out = {"data.val_split": 0.25}
    stopping = config(0, **held_out, **{"regularize.early_stopping.patience": 2})
    assert packing_blocker(stopping) is None and pack_key(stopping) == pack_key(config(0, **held_out))
    sam = config(0, **{"regularize.sam_rho": 0.05})  # packs of SAM runs (any radius) apart from the others
    assert pack_key(sam) == pack_key(config(0, **{"regularize.sam_rho": 0.2})) != pack_key(config(0))
    assert pack_key(config(0, **{"train.compile": True})) != pack_key(config(0))  # compiled packs apart
    assert packing_blocker(config(0, **{"train.objective": "rs"})) == "train.objective"
    with pytest.raises(ValueError, match="train.objective: run with seed 1 cannot be trained packed"):
        PackedTrainer([Trainer(config(0)), build_trainer(config(1, **{"train.objective": "rs"}))])
    with pytest.raises(ValueError, match="differ in data, model, stochastic-depth form or training budget"):
        PackedTrainer([Trainer(config(0)), Trainer(config(1, **{"train.batch_size": 32}))])


def tiny_spec(arms: dict, seeds: int = 3) -> StudySpec:
    return StudySpec.from_dict({"name": "tiny", "seeds": seeds, "base": BASE, "arms": arms})


def test_auto_packing_in_one_process_lets_a_run_with_bad_data_fail_alone(tmp_path):
    """Measuring a group loads its data; data a run cannot use fails that run, not the study."""
    spec = tiny_spec({"base": {}, "tiny": {"data": {"train_subset": 1, "val_split": 0.5}}}, seeds=1)
    result = run_study(spec, tmp_path, executor=PackedExecutor(1, pack="auto"), progress=False)
    runs = result.runs.set_index("run_id")
    assert runs.loc["base__s0", "status"] == "done" and runs.loc["tiny__s0", "status"] == "failed"
    assert "data.val_split: 0.5 of 1 training samples" in runs.loc["tiny__s0", "error"]


def test_plan_packs_groups_by_architecture_and_keeps_the_rest_in_plan_order(tmp_path):
    spec = tiny_spec({"base": {}, "drop": {"regularize": {"dropout": {"p": 0.2}}},
                      "b32": {"train": {"batch_size": 32}}, "rs": {"train": {"objective": "rs"}}})
    tasks = plan(spec, tmp_path)
    packs, alone = plan_packs(tasks, 4)
    assert [[t.run_id for t in p] for p in packs] == [  # dropout rates are per run: base and drop share packs
        ["base__s0", "drop__s0", "base__s1", "drop__s1"], ["base__s2", "drop__s2"], ["b32__s0", "b32__s1", "b32__s2"]]
    assert [t.run_id for t in alone] == ["rs__s0", "rs__s1", "rs__s2"]
    assert plan_packs(tasks, "auto", decide=lambda group: 0) == ([], tasks)  # measured: alone is faster
    packs, alone = plan_packs(tasks, "auto", decide=lambda group: 2)  # measured: packs of two, one kept
    assert [[t.run_id for t in p] for p in packs] == [
        ["base__s0", "drop__s0"], ["base__s1", "drop__s1"], ["base__s2", "drop__s2"], ["b32__s0", "b32__s1"],
        ["b32__s2"]]
    assert plan_packs(tasks, "off") == ([], tasks)
    interrupt_after(tasks[0], 1)  # base__s0 and drop__s1 resume at the step after their first epoch
    interrupt_after(tasks[5], 1)
    tasks[4].run_dir.mkdir(parents=True)
    (tasks[4].run_dir / "checkpoint.pt").write_bytes(b"torn")  # base__s1 will set it aside and start afresh
    packs, alone = plan_packs(tasks, 4)
    assert [[t.run_id for t in p] for p in packs] == [  # the runs of a pack resume at one step
        ["base__s0", "drop__s1"], ["drop__s0", "base__s1", "base__s2", "drop__s2"], ["b32__s0", "b32__s1", "b32__s2"]]


class Interrupted(Exception):
    pass


def interrupt_after(task, epochs: int) -> None:
    """Train `task` alone into its run directory and stop it after `epochs` epochs (checkpointed)."""
    def stop(epoch, _model, _metrics):
        if epoch > epochs:
            raise Interrupted

    with pytest.raises(Interrupted):
        Trainer(task.config).fit(task.run_dir, callbacks=[stop])


def test_packed_executor_runs_a_study_with_fallback_runs(tmp_path):
    spec = tiny_spec({"base": {}, "rs": {"train": {"objective": "rs"}}}, seeds=2).override(
        {"train.epochs": 1})
    result = run_study(spec, tmp_path / "packed", executor=PackedExecutor(pack=2), progress=False)
    alone = run_study(spec, tmp_path / "solo", progress=False)
    packed_runs, solo_runs = (r.runs.set_index("run_id") for r in (result, alone))
    assert (packed_runs["status"] == "done").all() and len(packed_runs) == 4
    assert packed_runs.loc["rs__s1", "final_test_loss"] == solo_runs.loc["rs__s1", "final_test_loss"]
    assert packed_runs.loc["base__s1", "final_test_loss"] == pytest.approx(
        solo_runs.loc["base__s1", "final_test_loss"], abs=1e-5)


def test_a_pack_out_of_memory_trains_again_in_halves(tmp_path, monkeypatch):
    fit, sizes = PackedTrainer.fit, []

    def fit_within_memory(self, *args, **kwargs):  # a device that holds at most two runs at once
        sizes.append(len(self.trainers))
        if len(self.trainers) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(PackedTrainer, "fit", fit_within_memory)
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}, seeds=3).override({"train.epochs": 1})
    result = run_study(spec, tmp_path / "packed", executor=PackedExecutor(pack=6), progress=False)
    alone = run_study(spec, tmp_path / "solo", progress=False)
    assert sizes == [6, 3, 1, 2, 3, 1, 2]  # halves, and halves of halves, down to what fits
    packed, solo = (r.runs.set_index("run_id") for r in (result, alone))
    assert (packed["status"] == "done").all() and len(packed) == 6
    for run_id in solo.index:
        assert packed.loc[run_id, "final_test_loss"] == pytest.approx(solo.loc[run_id, "final_test_loss"], abs=1e-5)


def test_an_interrupted_study_resumes_its_runs_in_packs(tmp_path):
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}, seeds=2)  # 4 runs × 2 epochs
    tasks = plan(spec, tmp_path / "packed")
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "packed", executor=InterruptedAlone(), progress=False)
    result = run_study(spec, tmp_path / "packed", executor=PackedExecutor(pack=4), progress=False)
    solo = run_study(spec, tmp_path / "solo", progress=False).runs.set_index("run_id")
    packed = result.runs.set_index("run_id")
    assert (packed["status"] == "done").all()
    for run_id in solo.index:
        assert packed.loc[run_id, "final_test_loss"] == pytest.approx(solo.loc[run_id, "final_test_loss"], abs=1e-5)
    summaries = {t.run_id: json.loads((t.run_dir / "summary.json").read_text()) for t in tasks}
    resumed = {"size": 3, "runs": [t.run_dir.name for t in tasks[:3]], "resumed_at_epoch": 1, "earlier": None}
    assert [summaries[t.run_id]["pack"] for t in tasks[:3]] == [resumed | {"slot": i} for i in range(3)]
    assert summaries[tasks[3].run_id]["pack"] is None  # alone: the only fresh run (a forced --pack 4)
    assert [len(read_epochs(t)) for t in tasks] == [2, 2, 2, 2]


def test_a_damaged_checkpoint_is_set_aside_and_its_run_starts_afresh_in_a_pack(tmp_path):
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}, seeds=2)
    tasks = plan(spec, tmp_path / "packed")
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, tmp_path / "packed", executor=InterruptedAlone(), progress=False)
    (tasks[2].run_dir / "checkpoint.pt").write_bytes(b"torn")  # e.g. a disk that filled mid-write
    result = run_study(spec, tmp_path / "packed", executor=PackedExecutor(pack=4), progress=False)
    solo = run_study(spec, tmp_path / "solo", progress=False).runs.set_index("run_id")
    packed = result.runs.set_index("run_id")
    for run_id in solo.index:
        assert packed.loc[run_id, "final_test_loss"] == pytest.approx(solo.loc[run_id, "final_test_loss"], abs=1e-5)
    packs = [json.loads((t.run_dir / "summary.json").read_text())["pack"] for t in tasks]
    assert [(p["size"], p.get("resumed_at_epoch")) for p in packs] == [(2, 1), (2, 1), (2, None), (2, None)]
    assert (tasks[2].run_dir / "checkpoint.pt.damaged").read_bytes() == b"torn"


class InterruptedAlone:
    """An executor stopped by Ctrl-C after three runs got through their first epoch alone."""

    def execute(self, tasks, events):
        for task in tasks[:3]:
            events.started(task)
            interrupt_after(task, 1)
        raise KeyboardInterrupt


def read_epochs(task) -> list[dict]:
    return [json.loads(line) for line in (task.run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_pack_out_of_memory_after_a_checkpoint_resumes_in_halves_from_it(tmp_path, monkeypatch):
    fit, starts = PackedTrainer.fit, []

    def fit_until_memory_runs_out(self, *args, **kwargs):  # a pack of more than two runs fails in epoch 2
        starts.append((len(self.trainers), self.trainers[0].epoch))
        on_epoch = kwargs.pop("on_epoch")

        def epoch(i, metrics):
            if len(self.trainers) > 2 and metrics["epoch"] == 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            on_epoch(i, metrics)

        return fit(self, *args, on_epoch=epoch, **kwargs)

    monkeypatch.setattr(PackedTrainer, "fit", fit_until_memory_runs_out)
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}, seeds=2)
    result = run_study(spec, tmp_path / "packed", executor=PackedExecutor(pack=4), progress=False)
    solo = run_study(spec, tmp_path / "solo", progress=False).runs.set_index("run_id")
    assert starts == [(4, 0), (2, 1), (2, 1)]  # the halves resume at their epoch-1 checkpoints
    packed = result.runs.set_index("run_id")
    for run_id in solo.index:
        assert packed.loc[run_id, "final_test_loss"] == pytest.approx(solo.loc[run_id, "final_test_loss"], abs=1e-5)


def test_packs_and_single_runs_share_a_pool_of_worker_processes(tmp_path):
    spec = tiny_spec({"base": {}, "rs": {"train": {"objective": "rs"}}}, seeds=3).override(
        {"train.epochs": 1})
    result = run_study(spec, tmp_path / "pool", executor=PackedExecutor(workers=2, pack=2), progress=False)
    alone = run_study(spec, tmp_path / "solo", progress=False)
    pooled, solo = (r.runs.set_index("run_id") for r in (result, alone))
    assert (pooled["status"] == "done").all() and len(pooled) == 6
    for run_id in solo.index:  # base__s0/s1 packed in a worker, base__s2 and the theory-objective runs alone
        assert pooled.loc[run_id, "final_test_loss"] == pytest.approx(solo.loc[run_id, "final_test_loss"], abs=1e-5)
    assert pooled["pack_size"].fillna(0).to_dict() == {"base__s0": 2, "rs__s0": 0, "base__s1": 2, "rs__s1": 0,
                                                       "base__s2": 0, "rs__s2": 0}  # 0 here: trained alone


def test_auto_packing_measures_both_ways(tmp_path, monkeypatch):
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}).override({"train.epochs": 100})
    tasks = plan(spec, tmp_path)  # 6 runs × 400 steps: long enough to be worth measuring
    assert solo_step_seconds(tasks[0].config, steps=2) > 0
    assert measured_pack_size(tasks, workers=1) in (0, len(tasks))  # in this process: the whole group, or alone
    taken = []  # run-steps trained while measuring, counted where they happen
    objective, step = Trainer._objective, PackedTrainer._step
    monkeypatch.setattr(Trainer, "_objective", lambda self, x, y: taken.append(1) or objective(self, x, y))
    monkeypatch.setattr(PackedTrainer, "_step", lambda self, idx, *a: taken.append(len(idx)) or step(self, idx, *a))
    lines = []
    size = measured_pack_size(tasks, workers=2, report=lines.append)
    assert size in (0, 3)  # in two workers: half the group each, or alone
    assert sum(taken) == measurement_run_steps(3, torch.device("cpu"), kinds=2) == 80  # base__s0, wd__s0, base__s1
    alone, packed = (float(x) for x in re.findall(r"([\d.]+) ms", lines[0]))  # as printed: to 0.01 ms
    assert lines[0].startswith("--pack auto: 6 runs of mlp on cpu")
    if abs(packed - PACK_MARGIN * alone) > 0.01:  # the printed times decide as the exact ones did
        assert (size == 3) == (packed < PACK_MARGIN * alone)


def test_a_probe_holds_all_but_its_pilots_until_its_measurement_plans_them(tmp_path):
    tasks = plan(tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}), tmp_path)  # 6 runs
    ids = lambda runs: [t.run_id for t in runs]  # noqa: E731
    probe = PackProbe(tasks, workers=2)
    assert ids(probe.pilots) == ["base__s0"] and probe.held == tasks[1:]
    assert PackProbe(tasks, workers=3).pilots == tasks[:2] and PackProbe(tasks[:1], workers=2).held == tasks[:1]
    events = Recorder()
    packs = probe.plan((3, ["measured"]), events)
    assert [ids(p) for p in packs] == [ids(tasks[1:4]), ids(tasks[4:])] and events.notes == ["measured"]
    assert PackChoices(events, workers=2).find(tasks)["size"] == 3  # kept with the study, pilots included
    assert probe.plan((0, []), events) == []


def test_with_workers_auto_packing_measures_in_a_worker_while_a_pilot_trains(tmp_path, monkeypatch):
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}).override({"train.epochs": 32})
    tasks = plan(spec, tmp_path)  # 6 runs × 128 steps: just long enough to be measured
    taken = []  # run-steps trained in this process (the driver)
    objective, step = Trainer._objective, PackedTrainer._step
    monkeypatch.setattr(Trainer, "_objective", lambda self, x, y: taken.append(1) or objective(self, x, y))
    monkeypatch.setattr(PackedTrainer, "_step", lambda self, idx, *a: taken.append(len(idx)) or step(self, idx, *a))
    events = Recorder()
    PackedExecutor(workers=2, pack="auto").execute(tasks, events)
    assert taken == [], "the driver trained"
    assert not events.errors and set(events.results) == {t.run_id for t in tasks}
    (line,) = events.notes
    assert line.startswith("--pack auto: 6 runs of mlp on cpu")
    sizes = {run_id: (r.pack or {}).get("size", 0) for run_id, r in events.results.items()}
    assert sizes["base__s0"] == 0  # the pilot trained alone while the others waited for the measurement
    held = [sizes[t.run_id] for t in tasks[1:]]
    assert held == ([3, 3, 3, 2, 2] if line.endswith("packs of 3") else [0] * 5)
    monkeypatch.undo()
    for task in tasks:  # packed or alone, each run is the run trained alone
        solo = Trainer(task.config).fit()
        assert events.results[task.run_id].final["test_loss"] == pytest.approx(solo.final["test_loss"], abs=1e-5)


def test_a_resumed_study_trains_its_runs_as_auto_first_chose_without_timing_again(tmp_path, monkeypatch):
    from reglab.study import packed

    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}).override({"train.epochs": 1})

    def measured(group, workers=1, report=lambda text: None):
        report(f"--pack auto: {len(group)} runs: measured -> trained alone")
        return 0

    def interrupted(self, tasks, events):
        raise KeyboardInterrupt

    monkeypatch.setattr(packed, "measured_pack_size", measured)
    monkeypatch.setattr(packed.LocalExecutor, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C after the decision, before any run trained
        run_study(spec, tmp_path, executor=PackedExecutor(1, pack="auto"), progress=False)
    monkeypatch.undo()
    monkeypatch.setattr(packed, "measured_pack_size", lambda *a, **k: pytest.fail("timed again"))
    notes = []
    monkeypatch.setattr("reglab.study.progress.StudyProgress.note", lambda self, text: notes.append(text))
    result = run_study(spec, tmp_path, executor=PackedExecutor(1, pack="auto"), progress=False)
    assert (result.runs["status"] == "done").all() and result.runs["pack_size"].isna().all()  # alone, as chosen
    assert notes == ["--pack auto: 6 runs: measured -> trained alone (measured when these runs were planned; "
                     "kept on resuming)"]


def test_a_kept_auto_decision_holds_only_for_its_runs_configs_and_workers(tmp_path):
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}})
    tasks = plan(spec, tmp_path)
    events = Recorder()
    PackChoices(events, workers=2).add(tasks, 3, ["--pack auto: 6 runs of mlp on cpu: … -> packs of 3"])
    kept = PackChoices(events, workers=2)
    assert kept.find(tasks[2:])["size"] == 3  # a resumed subset of the runs it measured
    assert PackChoices(events, workers=1).find(tasks) is None  # another number of workers: timed again
    other_lr = plan(spec.override({"optim.lr": 0.01}), tmp_path)
    assert kept.find(other_lr) is None and kept.find(plan(tiny_spec({"base": {}}, seeds=4), tmp_path)) is None
    PackedExecutor(workers=2, pack="auto").execute(tasks, events)  # no measurement, so no pilot trains alone
    assert not events.errors
    assert {run_id: r.pack["size"] for run_id, r in events.results.items()} == dict.fromkeys(
        [t.run_id for t in tasks], 3)
    assert events.notes == ["--pack auto: 6 runs of mlp on cpu: … -> packs of 3 (measured when these runs were "
                            "planned; kept on resuming)"]


@pytest.mark.parametrize(("per_run", "chosen"), [(0.95, 0), (0.85, 3)])
def test_auto_packing_packs_only_below_the_margin(tmp_path, monkeypatch, per_run, chosen):
    spec = tiny_spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}).override({"train.epochs": 100})
    tasks = plan(spec, tmp_path)
    calls = []  # the two sides alternate, so that a burst of load hits both

    def solo(cfg, steps, threads=None):  # a run with weight decay takes twice as long alone
        calls.append(("solo", cfg.optim.weight_decay, steps))
        return 2e-3 if cfg.optim.weight_decay else 1e-3

    monkeypatch.setattr("reglab.study.packed.solo_step_seconds", solo)
    monkeypatch.setattr(PackedTrainer, "time_step", lambda self, steps: calls.append("pack") or per_run * 4e-3)
    lines = []  # the pack: base__s0, wd__s0, base__s1, so alone is (1 + 2 + 1) / 3 ms a step on average
    assert measured_pack_size(tasks, workers=2, report=lines.append) == chosen  # 0.9 × alone: PACK_MARGIN
    assert calls == [("solo", 0.0, 10), ("solo", 1e-3, 5), "pack"] * 2  # each kind for its share of the steps
    assert "1.33 ms a step alone (mean of its 2 kinds of run)" in lines[0]
    assert lines[0].endswith("trained alone" if chosen == 0 else "packs of 3")


def test_auto_packing_times_compiled_runs_alone_without_compiling_them(tmp_path, monkeypatch):
    """Compiling each kind of run alone would cost more than the measurement; the pack keeps its setting."""
    tasks = plan(tiny_spec({"base": {}}).override({"train.epochs": 100, "train.compile": True}), tmp_path)
    compiled = []
    monkeypatch.setattr("reglab.study.packed.solo_step_seconds",
                        lambda cfg, steps, threads=None: compiled.append(cfg.train.compile) or 1e-3)
    monkeypatch.setattr(PackedTrainer, "time_step",
                        lambda self, steps: compiled.append(self.trainers[0].cfg.train.compile) or 1e-3)
    measured_pack_size(tasks)
    assert compiled == [False, True] * 2


def test_auto_packing_does_not_measure_a_group_shorter_than_ten_times_the_measurement(tmp_path, monkeypatch):
    tasks = plan(tiny_spec({"base": {}}), tmp_path)  # 3 runs × 2 epochs × 4 steps
    monkeypatch.setattr("reglab.study.packed.solo_step_seconds", lambda *a, **k: pytest.fail("measured"))
    lines = []
    assert measured_pack_size(tasks, report=lines.append) == 0
    assert lines == ["--pack auto: 3 runs of mlp on cpu: too short to measure (76 timed run-steps against 24 of "
                     "training) -> trained alone"]
    long = plan(tiny_spec({"base": {}}).override({"train.epochs": 64}), tmp_path / "long")  # 768 ≥ 10 × 76
    assert group_run_steps(long, torch.device("cpu")) == 768
    with pytest.raises(pytest.fail.Exception, match="measured"):
        measured_pack_size(long)


def test_pack_option_parsing_and_registration():
    assert parse_pack("auto") == "auto" and parse_pack("off") == "off" and parse_pack("3") == 3
    for bad in ("0", "-2", "1.5", "many"):
        with pytest.raises(ValueError, match=f"pack: expected auto, off or a positive integer \\(got '{bad}'\\)"):
            parse_pack(bad)
    assert isinstance(make_executor("packed", workers=1, device="cpu", pack=2), PackedExecutor)
    out = CliRunner().invoke(app, ["compare", "quickstart", "--pack", "zero"])
    assert out.exit_code == 2 and "positive integer" in out.output


def test_memory_estimate_grows_with_the_batch():
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 3))
    params = 4 * (10 * 20 + 20 + 20 * 3 + 3)
    small, large = (estimate_run_bytes(model, torch.randn(n, 10)) for n in (1, 101))
    assert small == PARAM_COPIES * params + 2 * 4 * (20 + 20 + 3)
    assert large - small == 2 * 4 * 100 * (20 + 20 + 3)


def test_solo_step_timing_spans_epochs_shorter_than_the_steps_it_times():
    """One batch per epoch: the timing goes on over epochs instead of dividing by zero steps."""
    from reglab.study.packed import solo_step_seconds

    cfg = config(0, **{"data.train_subset": 32, "train.batch_size": 32})
    seconds = solo_step_seconds(cfg, steps=3)
    assert math.isfinite(seconds) and seconds > 0


def test_a_single_run_as_a_pack_of_one_trains_like_the_solo_trainer(tmp_path, monkeypatch):
    from reglab.train import loop

    cfg = config(0, **{"regularize.ema": 0.9})
    seen = []

    def note(epoch, model, metrics):
        seen.append((epoch, isinstance(model, torch.nn.Module)))
        return {"noted": float(epoch)}

    packed = loop.train_run(cfg, run_dir=tmp_path / "one", callbacks=[note], pack_of_one=True)
    solo = loop.train_run(cfg, run_dir=tmp_path / "solo", pack_of_one=False)
    assert seen == [(1, True), (2, True)]
    for a, b in zip(solo.epochs, packed.epochs, strict=True):
        for key in ("train_loss", "test_loss", "test_acc", "grad_norm"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
    lines = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    assert [x["noted"] for x in lines] == [1.0, 2.0]  # what a callback adds is stored, as Trainer.fit does
    assert (tmp_path / "one" / "model.pt").exists()
    longer = cfg.override({"train.epochs": 3})  # resumed from its epoch-2 checkpoint, again as a pack of one
    extended = loop.train_run(longer, run_dir=tmp_path / "one", extend=True, pack_of_one=True)
    straight = loop.train_run(longer, pack_of_one=False)
    assert [e["epoch"] for e in extended.epochs] == [1, 2, 3]
    assert extended.final["test_loss"] == pytest.approx(straight.final["test_loss"], abs=1e-5)
    assert extended.pack == {"size": 1, "runs": ["one"], "slot": 0, "resumed_at_epoch": 2,
                             "earlier": {"size": 1, "runs": ["one"], "slot": 0}}

    monkeypatch.setattr(loop, "_fit_packed", lambda *a: pytest.fail("a CPU run has no CUDA graph to gain"))
    assert loop.train_run(cfg).status == "done"  # default: the solo step where no graph is captured


def test_a_run_without_mixing_trains_as_alone_in_a_pack_with_mixup_and_cutmix():
    configs = [config(0), config(1, **{"regularize.mixup": 0.4}), config(2, **{"regularize.cutmix": 1.0})]
    solo = Trainer(configs[0])
    solo_epochs = solo.fit().epochs
    packed = [Trainer(c) for c in configs]
    results = PackedTrainer(packed).fit()
    assert_same_run(solo, packed[0], solo_epochs, results[0].epochs)  # lam 1, no box: exactly its own batch
    assert all(r.status == "done" for r in results)
    assert results[1].final["train_loss"] != results[2].final["train_loss"]


def test_progress_says_what_auto_chose_and_which_runs_trained_packed(tmp_path):
    import io

    from rich.console import Console

    from reglab.study.progress import StudyProgress

    stream = io.StringIO()
    progress = StudyProgress({"base": [("base__s0", 1), ("base__s1", 1)]}, console=Console(file=stream, width=200))
    tasks = plan(tiny_spec({"base": {}}, seeds=2).override({"train.epochs": 1}), tmp_path)
    results = PackedTrainer([Trainer(t.config) for t in tasks]).fit([t.run_dir for t in tasks])
    with progress:
        progress.note("--pack auto: 2 runs of mlp on cpu: … -> packs of 2")
        progress.finished(tasks[0], results[0])
    text = stream.getvalue()
    assert "--pack auto: 2 runs of mlp on cpu" in text and "base__s0: done" in text and "in a pack of 2" in text


def test_a_channels_last_run_gets_its_optimizer_state_back_in_its_own_layout():
    """On CUDA `train.channels_last` stores conv weights channels-last; the optimizer state a pack
    writes back must have their layout (fused optimizers want matching strides) and their values."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    data = TensorData("images", x[:48], y[:48], x[48:], y[48:], num_classes=3)
    cnn = {"model.name": "deeper_cnn", "train.batch_size": 16, "train.epochs": 1, "optim.name": "momentum",
           "model.options": {"channels": [4, 8], "fc_widths": [8]}}
    trainers = [Trainer(config(seed, **cnn), data=data) for seed in (0, 1)]
    for t in trainers:  # as Trainer does on CUDA with train.channels_last
        t.model.to(memory_format=torch.channels_last)
    PackedTrainer(trainers).fit()
    conv = next(p for p in trainers[1].params if p.dim() == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    buffer = trainers[1].optimizer.state[conv]["momentum_buffer"]
    assert buffer.stride() == conv.stride() and buffer.abs().sum() > 0


class DyingProbe(PackProbe):
    """A measurement whose worker process is killed (out of memory, say)."""

    def measure(self):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


class FailingProbe(PackProbe):
    def measure(self):
        raise RuntimeError("no timer here")


@pytest.mark.parametrize("probe", [DyingProbe, FailingProbe])
def test_runs_held_by_a_measurement_that_fails_or_dies_train_alone(tmp_path, probe):
    from reglab.study.executors import run_in_pool
    from reglab.study.packed import _worker_pack

    tasks = plan(tiny_spec({"base": {}}), tmp_path)
    events = Recorder()
    run_in_pool(2, [], tasks, events, pack_worker=_worker_pack, probes=[probe(tasks, 2)])
    assert not events.errors and set(events.results) == {t.run_id for t in tasks}
    assert all(r.pack is None for r in events.results.values())
    if probe is FailingProbe:
        assert events.notes == ["measuring how to train 2 runs failed (RuntimeError: no timer here): they train alone"]


def test_a_unit_whose_pool_broke_before_it_was_dispatched_goes_to_the_next_pool(tmp_path, monkeypatch):
    """A worker can die between a result and the next dispatch: `submit` then raises BrokenProcessPool."""
    import concurrent.futures as cf
    from concurrent.futures.process import BrokenProcessPool

    from reglab.study import executors

    pools = []

    class Pool:  # the second submit of the first pool finds the pool broken
        def __init__(self, workers, messages):
            self.submits = 0
            pools.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, task):
            self.submits += 1
            if len(pools) == 1 and self.submits == 2:
                raise BrokenProcessPool("a worker died")
            future = cf.Future()
            future.set_result((True, f"trained {task.run_id} in pool {len(pools)}"))
            return future

    monkeypatch.setattr(executors, "worker_pool", Pool)
    tasks = plan(tiny_spec({"base": {}}), tmp_path)
    events = Recorder()
    executors.run_in_pool(2, [], tasks, events)
    assert events.results == {"base__s0": "trained base__s0 in pool 1", "base__s1": "trained base__s1 in pool 2",
                              "base__s2": "trained base__s2 in pool 2"} and not events.errors
