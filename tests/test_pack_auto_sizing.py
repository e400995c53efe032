"""Pack sizing and the ``--pack auto`` decision (reglab.study.packed), with the timings stubbed.

Expectations are worked by hand from the documented rules: ⌈group / workers⌉ runs per pack with
several workers, the less disturbed (smaller) of two timings on each side, a measured pack of one
kept, the training left to resumed runs counted from their checkpoints, and a run that already
ended in a pack reported once. Tiny runs on CPU (mnist1d, 256 samples, a small MLP).
"""

import pytest
import torch

from conftest import Recorder
from reglab.study import StudySpec
from reglab.study.packed import group_run_steps, measured_pack_size, plan_packs, train_pack
from reglab.study.runner import plan
from reglab.train.loop import Trainer
from reglab.train.packed import PackedTrainer

BASE = {
    "data": {"name": "mnist1d", "train_subset": 256, "test_subset": 128},
    "model": {"name": "mlp", "options": {"widths": [32, 16]}},
    "optim": {"name": "momentum", "lr": 0.05},
    "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 64},
}


def spec(arms: dict, seeds: int) -> StudySpec:
    return StudySpec.from_dict({"name": "tiny", "seeds": seeds, "base": BASE, "arms": arms})


def stub_timings(monkeypatch, solo_seconds: float, pack_seconds: list[float]) -> list:
    """solo_step_seconds → `solo_seconds`; PackedTrainer.time_step → the next of `pack_seconds` (whole pack)."""
    sizes = []
    queue = list(pack_seconds)
    monkeypatch.setattr("reglab.study.packed.solo_step_seconds", lambda cfg, steps, threads=None: solo_seconds)

    def time_step(self, steps):
        sizes.append(len(self.trainers))
        return queue.pop(0)

    monkeypatch.setattr(PackedTrainer, "time_step", time_step)
    return sizes


def test_with_workers_a_pack_holds_the_group_divided_by_the_workers_rounded_up(tmp_path, monkeypatch):
    tasks = plan(spec({"base": {}}, seeds=5).override({"train.epochs": 100}), tmp_path)  # 5 runs × 400 steps
    # 5 runs over 2 workers: packs of ⌈5/2⌉ = 3; 0.5 ms per run-step packed against 1 ms alone
    sizes = stub_timings(monkeypatch, 1e-3, [3 * 0.5e-3] * 2)
    assert measured_pack_size(tasks, workers=2) == 3
    assert sizes == [3, 3]


def test_auto_compares_the_less_disturbed_timing_of_each_side(tmp_path, monkeypatch):
    tasks = plan(spec({"base": {}}, seeds=3).override({"train.epochs": 100}), tmp_path)
    # the pack's two timings: 0.6 ms per run-step, then 3 ms (a burst of load): the smaller one counts,
    # 0.6 < 0.9 × 1 ms alone, so the group packs
    stub_timings(monkeypatch, 1e-3, [3 * 0.6e-3, 3 * 3e-3])
    lines = []
    assert measured_pack_size(tasks, workers=1, report=lines.append) == 3
    assert "0.60 ms per run-step in a pack of 3" in lines[0]


def test_a_measured_pack_of_one_is_kept_as_a_pack(tmp_path):
    tasks = plan(spec({"base": {}, "wd": {"optim": {"weight_decay": 1e-3}}}, seeds=2), tmp_path)
    packs, alone = plan_packs(tasks, "auto", decide=lambda group: 1)  # measured: a pack of one is faster
    assert [[t.run_id for t in p] for p in packs] == [[t.run_id] for t in tasks] and alone == []


def test_pack_1_makes_every_run_a_pack_of_one_and_a_larger_k_leaves_a_single_leftover_alone(tmp_path):
    tasks = plan(spec({"base": {}}, seeds=3), tmp_path)
    packs, alone = plan_packs(tasks, 1)  # seeds of one arm all train the same way
    assert [[t.run_id for t in p] for p in packs] == [[t.run_id] for t in tasks] and alone == []
    packs, alone = plan_packs(tasks, 2)
    assert [len(p) for p in packs] == [2] and [t.run_id for t in alone] == [tasks[2].run_id]


class Interrupted(Exception):
    pass


def test_a_resumed_groups_training_counts_only_the_steps_left(tmp_path):
    tasks = plan(spec({"base": {}}, seeds=2), tmp_path)  # 2 epochs × 256/64 = 8 steps a run
    assert group_run_steps(tasks, torch.device("cpu")) == 2 * 8

    def stop(epoch, _model, _metrics):
        if epoch > 1:
            raise Interrupted

    for task in tasks:  # both checkpointed after their first epoch: 4 steps each left
        with pytest.raises(Interrupted):
            Trainer(task.config).fit(task.run_dir, callbacks=[stop])
    assert group_run_steps(tasks, torch.device("cpu")) == 2 * 4


def test_a_run_that_ended_before_its_pack_failed_keeps_its_result(tmp_path, monkeypatch):
    """Run `hot` diverges in epoch 1 and leaves the pack; the pack then fails in epoch 2: only the run
    still going is reported failed, the diverged run keeps its result (reported once)."""
    tasks = plan(spec({"base": {}, "hot": {"optim": {"name": "sgd", "lr": 1e6}}}, seeds=1), tmp_path)
    epochs = PackedTrainer._train_epoch
    calls = []

    def train_epoch(self):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("broken in epoch 2")
        return epochs(self)

    monkeypatch.setattr(PackedTrainer, "_train_epoch", train_epoch)
    events = Recorder()
    train_pack(tasks, events)
    assert len(calls) == 2
    assert events.results["hot__s0"].status == "diverged"
    assert events.errors == {"base__s0": "RuntimeError: broken in epoch 2"}
