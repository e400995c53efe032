"""A run directory's files: the checkpoint loads without running pickled code, a resume keeps each
epoch's record once and in order, every file is strict JSON, model.pt holds the weights the reported
final metrics were measured on, and errors name the file they are about."""

import json
import os

import pytest
import torch
import torch.nn.functional as F

from reglab.config import ConfigError, RunConfig
from reglab.train import train_run
from reglab.train.loop import load_trained
from reglab.train.rundir import (
    DamagedFile,
    append_metrics,
    check_directory,
    clean_json,
    load_checkpoint,
    metrics_intact,
    read_run_config,
    resumed_metrics,
    write_json_atomic,
)

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {"data": {"name": "mnist1d", "train_subset": 128, "test_subset": 128},
        "model": {"name": "mlp", "options": {"widths": [8]}}, "optim": {"name": "momentum", "lr": 0.05},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 64}}


def tiny(**overrides) -> RunConfig:
    return RunConfig.from_dict(BASE).override(overrides)


def strict_json(text: str):
    """JSON as the standard defines it: NaN and Infinity are not JSON."""
    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def epochs_of(path) -> list[int]:
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()]


class MakeDirectory:
    """Unpickling this runs code: it calls os.mkdir(path)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_checkpoint_carrying_pickled_code_is_refused_without_running_it(tmp_path):
    run_dir = tmp_path / "run"
    train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    checkpoint = run_dir / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    marker = tmp_path / "code-ran"
    torch.save({**state, "extra": MakeDirectory(marker)}, checkpoint)
    with pytest.raises(DamagedFile, match=f"^{checkpoint}: damaged"):
        load_checkpoint(checkpoint)
    with pytest.raises(DamagedFile, match=f"^{checkpoint}: damaged"):
        train_run(tiny(), run_dir=run_dir, extend=True)
    assert not marker.exists()  # the pickled call never ran


def test_a_missing_weights_file_is_not_called_damaged(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_checkpoint(tmp_path / "missing.pt")
    assert not isinstance(err.value, DamagedFile)


def test_resumed_metrics_need_each_trained_epoch_once_and_in_order(tmp_path):
    path = tmp_path / "metrics.jsonl"

    def write(epochs):
        path.write_text("".join(json.dumps({"epoch": e, "train_loss": 1.0}) + "\n" for e in epochs))

    write([1, 2, 3, 4])  # epoch 4 was logged after the checkpoint of epoch 3: not resumed
    assert [r["epoch"] for r in resumed_metrics(path, 3)] == [1, 2, 3]
    for damaged in ([1, 1, 3], [2, 1, 3], [1, 3, 3]):  # as many records as epochs, but not epochs 1, 2, 3
        write(damaged)
        with pytest.raises(DamagedFile, match=f"^{path}: holds epochs"):
            resumed_metrics(path, 3)


def test_a_finished_runs_metrics_with_a_repeated_or_misordered_epoch_are_not_intact(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"final": {"epoch": 3}}))
    for epochs, intact in (([1, 2, 3], True), ([1, 1, 2, 3], False), ([1, 3, 2], False), ([2, 3, 4], False)):
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in epochs))
        assert metrics_intact(tmp_path) is intact, epochs


def test_a_resume_drops_a_record_logged_after_the_last_checkpoint(tmp_path):
    """A crash between appending epoch 3's record and writing its checkpoint leaves a record the checkpoint
    has not trained: the resumed run trains epoch 3 again and keeps only its own record of it."""
    run_dir = tmp_path / "run"
    train_run(tiny(), run_dir=run_dir)
    append_metrics(run_dir / "metrics.jsonl", {"epoch": 3, "step": 6, "train_loss": 123.0, "test_loss": 456.0})
    result = train_run(tiny(**{"train.epochs": 3}), run_dir=run_dir, extend=True)
    assert epochs_of(run_dir / "metrics.jsonl") == [1, 2, 3]
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["train_loss"] != 123.0 and last["train_loss"] == result.epochs[-1]["train_loss"]


def test_a_larger_step_budget_is_an_extension_too(tmp_path):
    run_dir = tmp_path / "run"  # 128 samples in batches of 64: 2 steps an epoch
    first = train_run(tiny(**{"train.epochs": 10, "train.max_steps": 2}), run_dir=run_dir)
    assert [e["step"] for e in first.epochs] == [2]
    longer = tiny(**{"train.epochs": 10, "train.max_steps": 6})
    with pytest.raises(ConfigError, match=r"smaller budget \(train.max_steps 2 -> 6\).*--extend"):
        train_run(longer, run_dir=run_dir)
    extended = train_run(longer, run_dir=run_dir, extend=True)
    assert [e["step"] for e in extended.epochs] == [2, 4, 6]
    assert epochs_of(run_dir / "metrics.jsonl") == [1, 2, 3]


def test_non_finite_numbers_become_null_in_every_file(tmp_path):
    inf, nan = float("inf"), float("nan")
    assert clean_json({"a": [inf, -inf, nan, 1.5], "b": (nan, 2), "c": {"d": -inf}}) == {
        "a": [None, None, None, 1.5], "b": [None, 2], "c": {"d": None}}
    write_json_atomic(tmp_path / "x.json", {"loss": inf, "acc": 0.5})
    assert strict_json((tmp_path / "x.json").read_text()) == {"loss": None, "acc": 0.5}
    append_metrics(tmp_path / "m.jsonl", {"epoch": 1, "train_loss": -inf})
    assert strict_json((tmp_path / "m.jsonl").read_text()) == {"epoch": 1, "train_loss": None}


def test_a_diverged_runs_summary_is_strict_json(tmp_path):
    cfg = tiny(**{"optim.name": "sgd", "optim.lr": 1e8, "train.loss": "mse", "train.epochs": 5})
    result = train_run(cfg, run_dir=tmp_path)
    assert result.status == "diverged"
    summary = strict_json((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_epoch"] == result.diverged_epoch
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        strict_json(line)


def test_model_pt_holds_the_weights_the_final_metrics_were_measured_on(tmp_path):
    """With an EMA of the weights, the evaluated model is the average, not the trained weights: model.pt,
    and what `load_trained` (hence `reglab analyze`) loads, must be that average."""
    run_dir = tmp_path / "run"
    train_run(tiny(**{"regularize.ema": 0.9}), run_dir=run_dir)
    final = json.loads((run_dir / "summary.json").read_text())["final"]
    _, model, data = load_trained(run_dir)
    with torch.no_grad():
        logits = model(data.x_test)
    assert F.cross_entropy(logits, data.y_test).item() == pytest.approx(final["test_loss"], rel=1e-5)
    assert (logits.argmax(1) == data.y_test).float().mean().item() == pytest.approx(final["test_acc"], abs=1e-9)


def test_a_missing_config_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path / 'norun' / 'config.json'}: no config.json"):
        read_run_config(tmp_path / "norun")


def test_a_directory_that_reads_but_does_not_write_is_refused(tmp_path, monkeypatch):
    """As root every directory is writable: a fake os.access models a directory this user may read and
    enter but not write."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not (str(path) == str(ro) and mode & os.W_OK)
                        and real(path, mode))
    with pytest.raises(ConfigError, match=r"ro/run: cannot be a run directory, .*ro is not writable"):
        check_directory(ro / "run", "a run directory")
    assert check_directory(tmp_path / "rw" / "run", "a run directory") == tmp_path / "rw" / "run"
