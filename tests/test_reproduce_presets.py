"""Every reproduction in its --quick version on the CPU, and the claims whose direction it already shows.

Directions asserted only where the quick version shows them by a wide margin (teacher-student
condensation early in training, the R1 lemma, which is exact); dropout-1d's flatness is checked through
the CLI in test_reproduce.py.
"""

import json

import pytest
import torch

from reglab.data import DataNotFoundError, get_dataset_info
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


def test_teacher_student_dropout_lowers_the_effective_ratio_early_in_training(tmp_path):
    """The quick run (1000 steps) separates clearly (≈ 1.0 vs 0.8). Not a proof of the claim: the full
    run, trained 10,000 steps, condenses more *without* dropout (docs/results/teacher-student)."""
    numbers = quick("teacher-student", tmp_path)["numbers"]
    assert numbers["dropout p=0.2"]["effective_ratio"] < numbers["without dropout"]["effective_ratio"] - 0.05


def test_r1_mnist_mean_dropout_loss_is_rs_plus_r1(tmp_path):
    data = quick("r1-mnist", tmp_path)
    for objective in ("dropout", "R_S + R1"):
        terms = data["numbers"][objective]["p=0.5"]
        assert terms["E_R_drop"] == pytest.approx(terms["R_S"] + terms["R1"], rel=0.02)
        assert terms["R1"] > 0
    assert 0 <= data["numbers"]["R_S alone"]["test_acc"] <= 1
    assert any("mnist-5k" in note or "first 1000 MNIST" in note for note in data["notes"])


@pytest.mark.parametrize("name", ["condensation", "sample-size", "escape", "l1-l4"])
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


def _fake_cifar10(root, per_file: int = 64) -> None:
    """A CIFAR-10-format stand-in (random pixels and labels) for tests only: 5 training files + test."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = torch.randint(0, 10, (per_file, 1), generator=generator, dtype=torch.uint8)
        pixels = torch.randint(0, 256, (per_file, 3072), generator=generator, dtype=torch.uint8)
        (folder / name).write_bytes(torch.cat([labels, pixels], 1).numpy().tobytes())


def test_effective_ratio_needs_cifar10_and_runs_on_a_stand_in(tmp_path):
    if get_dataset_info("cifar10").probe(None) is None:
        with pytest.raises(DataNotFoundError, match="cifar10: .*not found; looked in:"):
            run("effective-ratio", Settings(quick=True, data_dir=tmp_path / "empty"), tmp_path / "missing")
    _fake_cifar10(tmp_path / "data")
    data = quick("effective-ratio", tmp_path, data_dir=tmp_path / "data")
    assert any(str(tmp_path / "data") in note for note in data["notes"])  # says which data it used
    assert any("not a result" in note for note in data["notes"])
    history = data["numbers"]["dropout p=0.5"]["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 < h[layer] <= 1 for h in history for layer in ("conv1", "conv8", "conv16"))


def _fake_idx(folder, n_train: int = 160, n_test: int = 160) -> None:
    """Four IDX files of random 28×28 images and labels (a stand-in for MNIST-format data, tests only)."""
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(0)
    for stem, shape in {"train-images-idx3-ubyte": (n_train, 28, 28), "train-labels-idx1-ubyte": (n_train,),
                        "t10k-images-idx3-ubyte": (n_test, 28, 28), "t10k-labels-idx1-ubyte": (n_test,)}.items():
        magic = 2051 if len(shape) == 3 else 2049
        header = b"".join(n.to_bytes(4, "big") for n in (magic, *shape))
        high = 256 if len(shape) == 3 else 10
        values = torch.randint(0, high, shape, generator=generator, dtype=torch.uint8)
        (folder / stem).write_bytes(header + values.numpy().tobytes())


def test_seed000_runs_the_study_with_verdicts(tmp_path):
    _fake_idx(tmp_path / "data")  # whatever MNIST-format set the preset names is found here first
    data = quick("seed000", tmp_path, data_dir=tmp_path / "data")
    assert [c["verdict"] for c in data["claims"]] == ["n/a"]  # the preset reports no numbers to agree with
    assert "Dropout 0.3 (FC layers)" in data["numbers"] and data["numbers"]["Baseline"]["n"] == 2
    assert (tmp_path / "seed000" / "study" / "report" / "report.html").is_file()
