"""The presets that follow the dropout chapter's own setups, in their --quick versions on the CPU:
every claim row carries the source's statement and the criterion, counts are exact covers, the data
used is named. The quick runs are too small to judge the claims; only their shape is asserted."""


import pytest
import torch

from conftest import fake_cifar10, run_quick_preset
from reglab.data import DataNotFoundError, get_dataset_info
from reglab.reproduce import Settings, run


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one thread (the shared fixture of conftest)."""


quick = run_quick_preset


QUICK_CLAIMS = {"teacher-student": 1, "escape": 2, "sample-size": 2, "dropout-1d": 2,
                "r1-mnist": 4}


@pytest.mark.parametrize("name", sorted(QUICK_CLAIMS))
def test_source_setup_presets_report_each_claim_with_source_and_criterion(name, tmp_path):
    data = quick(name, tmp_path)
    check_claims(data, QUICK_CLAIMS[name])
    if name == "sample-size":
        check_sample_size_verdicts(data)


def check_sample_size_verdicts(data: dict) -> None:
    """Each verdict recomputed from the reported test errors and the criterion's threshold."""
    from reglab.reproduce.experiments.sample_size import GOOD

    errors = data["numbers"]["test_error"]
    plain_key = min(errors, key=lambda k: float(k.split("=")[1]))  # p=0.0
    above = [n for n in errors[plain_key] if int(n) > 6]
    assert above
    with_dropout = all(errors[k][n]["mean"] < GOOD for k in errors if k != plain_key for n in above)
    without_bad = all(errors[plain_key][n]["mean"] >= GOOD for n in above)
    verdicts = {c["claim"]: c["verdict"] for c in data["claims"]}
    word = {True: "agree", False: "disagree"}
    assert verdicts["with dropout the student generalizes well once n > 6"] == word[with_dropout]
    assert verdicts["without dropout the student generalizes badly"] == word[without_bad]


def check_claims(data: dict, count: int) -> None:
    assert len(data["claims"]) == count
    for claim in data["claims"]:
        judged = ("agree", "disagree", "not run") if "judged only on" in claim["criterion"] else ("agree", "disagree")
        assert claim["verdict"] in judged and claim["source"] and claim["criterion"]
    assert data["choices"] and data["budget"] == "quick"


def test_condensation_counts_directions_exactly_on_both_depths(tmp_path):
    data = quick("condensation", tmp_path)
    check_claims(data, 6)
    for depth in ("2-layer", "3-layer"):
        for of_rate in (data["numbers"][depth][rate] for rate in ("p=0.0", "p=0.3")):
            assert of_rate["count_methods"] == ["exact"]
            for net in of_rate["per_seed"]:
                assert 1 <= net["nonzero_directions"]["count"] <= net["nonzero_directions"]["greedy_count"]
                assert net["nonzero_directions"]["greedy_count"] <= net["nonzero_neurons"]
                assert net["effective_ratio"]["method"] == "exact" and 0 < net["effective_ratio"]["ratio"] <= 1


def test_r1_mnist_uses_real_digits_and_both_nets_carry_r1(tmp_path):
    data = quick("r1-mnist", tmp_path)
    for loss in ("R_drop", "R_S + R1"):
        assert data["numbers"][loss]["p=0.5"]["R1"]["mean"] > 0
    assert 0 <= data["numbers"]["R_S alone"]["test_acc"]["mean"] <= 1
    assert any("mnist-5k" in note or "first 1000 MNIST" in note for note in data["notes"])
    on_mnist5k = any("mnist-5k" in note for note in data["notes"])
    absolute = [c for c in data["claims"] if "%" in c["claim"]]  # the source's absolute accuracies
    assert len(absolute) == 2 and all((c["verdict"] == "not run") == on_mnist5k for c in absolute)



def test_effective_ratio_needs_cifar10_and_runs_on_a_stand_in(tmp_path):
    if get_dataset_info("cifar10").probe(None) is None:
        (tmp_path / "empty").mkdir()
        with pytest.raises(DataNotFoundError, match="cifar10: .*not found; looked in:"):
            run("effective-ratio", Settings(quick=True, data_dir=tmp_path / "empty"), tmp_path / "missing")
    fake_cifar10(tmp_path / "data")
    data = quick("effective-ratio", tmp_path, data_dir=tmp_path / "data")
    assert any(str(tmp_path / "data") in note for note in data["notes"])  # says which data it used
    assert any("not a result" in note for note in data["notes"])
    assert any("layer1.2.body.0" in note and "layer2.0.body.0" in note for note in data["notes"])
    assert [c["verdict"] for c in data["claims"]] == ["not run", "not run"]  # one seed cannot judge
    history = data["numbers"]["dropout p=0.5"]["history"][0]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        for layer in ("Conv2-1", "Conv3-1"):
            assert h[layer]["method"] == "exact" and 0 < h[layer]["ratio"] <= h[layer]["greedy"] <= 1




def test_direction_count_is_exact_or_says_it_fell_back_to_the_greedy_bound(monkeypatch):
    from reglab.reproduce import condensed

    pairs = torch.tensor([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0], [0.05, 0.99], [-1.0, 0.0]])
    assert condensed.direction_count(pairs) == {"count": 3, "ratio": 3 / 5, "method": "exact", "greedy_count": 3}
    monkeypatch.setattr(condensed, "TIME_LIMIT", 0.0)
    spread = torch.randn(300, 3, generator=torch.Generator().manual_seed(0))
    fallback = condensed.direction_count(spread, 0.5)
    assert fallback["method"].startswith("greedy") and fallback["count"] == fallback["greedy_count"]
    assert fallback["greedy_max_factor"] > 1


def test_effective_ratio_uses_the_sources_kaiming_initialisation():
    """He et al.'s N(0, 2/fan_in), not PyTorch's default (std 1/√(3·fan_in))."""
    import torch
    from torch import nn

    from reglab.reproduce.experiments.effective_ratio import he_init

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Linear(512, 10))
    he_init(model)
    assert model[0].weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.03)
    assert model[1].weight.std().item() == pytest.approx((2 / 512) ** 0.5, rel=0.05)
    assert torch.count_nonzero(model[1].bias) == 0
