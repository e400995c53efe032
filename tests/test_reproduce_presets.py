"""Every reproduction in its --quick version on the CPU, and the claims whose direction it already shows.

Directions asserted only where the quick version shows them by a wide margin (teacher-student
condensation early in training, the R1 lemma, which is exact); dropout-1d's flatness is checked through
the CLI in test_reproduce.py.
"""

import json

import pytest
import torch

from reglab.data import get_dataset_info
from reglab.reproduce import Settings, run


@pytest.fixture(autouse=True)
def one_thread():
    """The quick runs are tiny: one thread avoids oversubscribing a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def quick(name: str, tmp_path, **settings) -> dict:
    data = run(name, Settings(quick=True, **settings), tmp_path / name)
    files = {p.name for p in (tmp_path / name).iterdir()}
    assert {"results.json", "report.html"} <= files and any(f.endswith(".png") for f in files)
    assert json.loads((tmp_path / name / "results.json").read_text()) == json.loads(json.dumps(data))
    assert data["quick"] is True and data["claims"]
    return data


@pytest.mark.parametrize("name", ["l1-l4"])
def test_quick_presets_run_and_report_every_claim(name, tmp_path):
    data = quick(name, tmp_path)
    assert all(c["verdict"] in ("agree", "disagree", "n/a") for c in data["claims"])


def test_interpolation_reports_a_barrier_per_pair_of_minima(tmp_path):
    data = quick("interpolation", tmp_path)
    assert len(data["numbers"]) == 3 and all(c["verdict"] == "n/a" for c in data["claims"])
    for curve in data["numbers"].values():
        alphas, losses = curve["alphas"], curve["train_loss"]
        inside = [loss for a, loss in zip(alphas, losses, strict=True) if 0 <= a <= 1]
        assert curve["barrier"] == pytest.approx(max(inside) - max(inside[0], inside[-1]))


def test_dropout_table_runs_available_rows_and_explains_missing_ones(tmp_path):
    data = quick("dropout-table", tmp_path)
    for row in ("VGG-9 / CIFAR-10 (first 2048)", "ResNet-20 / CIFAR-100"):
        dataset = "cifar10" if "CIFAR-10 " in row else "cifar100"
        if get_dataset_info(dataset).probe(None) is None:
            assert "not found; looked in:" in data["numbers"][row]["skipped"]
            assert any(n.startswith(f"{row}: not run") for n in data["notes"])
    assert {"FNN / MNIST", "Transformer / MNIST-1D"} <= {c["claim"].split(":")[0] for c in data["claims"]}


def test_seed000_runs_the_study_with_verdicts(tmp_path):
    data = quick("seed000", tmp_path)
    assert [c["verdict"] for c in data["claims"]] == ["n/a"]  # the preset reports no numbers to agree with
    assert "Dropout 0.3 (FC layers)" in data["numbers"] and data["numbers"]["Baseline"]["n"] == 2
    assert (tmp_path / "seed000" / "study" / "report" / "report.html").is_file()
