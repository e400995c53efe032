"""The run config a preset trains: its settings' device and data folder, the shared defaults under the preset's."""

import pytest
import torch

from reglab.reproduce import Settings
from reglab.reproduce.common import half_mse, run_config
from reglab.reproduce.disentangle import fnn, paired_ci


def test_run_config_carries_data_folder_and_device_and_keeps_the_presets_values(tmp_path):
    cfg = run_config({"data": {"name": "fn1d"}, "train": {"eval_train_samples": 50}},
                     Settings(data_dir=tmp_path, device="cpu"))
    assert str(cfg.data.data_dir) == str(tmp_path) and cfg.train.device == "cpu"
    assert cfg.train.eval_train_samples == 50 and cfg.train.checkpoint_every == 0  # preset's value, shared default
    assert run_config({"data": {"name": "fn1d"}}, Settings()).train.eval_train_samples == 1000


def test_half_mse_by_hand():
    out, y = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert half_mse(out, y).item() == pytest.approx(0.5 * (5 + 25) / 2)  # ½ Σ over outputs, mean over samples


def test_every_objective_of_a_seed_starts_from_that_seeds_initialisation():
    a, b, other = fnn(0.0, 7), fnn(0.5, 7), fnn(0.0, 8)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert not torch.equal(a[0].weight, other[0].weight)
    assert b[2].p == 0.5


def test_paired_ci_is_the_student_t_interval_by_hand():
    ci = paired_ci([1.0, 2.0, 3.0])  # sd 1, t(0.975, 2 df) = 4.302653
    half = 4.302653 / 3**0.5
    assert (ci["mean"], ci["n"]) == (pytest.approx(2.0), 3)
    assert (ci["ci_low"], ci["ci_high"]) == (pytest.approx(2 - half, rel=1e-5), pytest.approx(2 + half, rel=1e-5))
