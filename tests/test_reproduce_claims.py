"""Each reproduction's verdicts recomputed independently: from the criterion text and thresholds,
either on hand-made numbers (the judging functions: both sides) or from a --quick run's reported
numbers (the judging inline in a preset: what the run gives). The 95% intervals are recomputed from
the per-seed values with a Student-t table, not read from the reported "ci95"/"ci_low"."""

import math

import pytest

from conftest import fake_cifar10, run_quick_preset

quick = run_quick_preset
WORD = {True: "agree", False: "disagree", None: "not run"}
T975 = {2: 12.706204736174707, 3: 4.302652729911275, 4: 3.182446305284263}  # t_{0.975, n-1} by n


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here on one thread (the shared fixture of conftest)."""


def mean(values):
    return sum(values) / len(values)


def interval(values):
    """(low, high) of the 95% Student-t interval of the mean of `values`."""
    n, m = len(values), mean(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = T975[n] * sd / math.sqrt(n)
    return m - half, m + half


def ci_entirely_below(a_values, b_values):
    return interval(a_values)[1] < interval(b_values)[0]


def verdicts(data):
    return [c["verdict"] for c in data["claims"]]


# ---------------------------------------------------------------- (b) condensed.below: the shared CI rule

def test_below_means_the_first_ci_lies_entirely_below_the_second():
    from reglab.reproduce.condensed import below

    assert below({"mean": 1.0, "ci95": 0.5}, {"mean": 3.0, "ci95": 1.0})  # 1.5 < 2.0
    assert not below({"mean": 1.0, "ci95": 1.5}, {"mean": 3.0, "ci95": 1.0})  # 2.5 > 2.0: overlap
    assert not below({"mean": 1.0, "ci95": 1.0}, {"mean": 3.0, "ci95": 1.0})  # touching: not entirely below
    assert not below({"mean": 3.0, "ci95": 0.1}, {"mean": 1.0, "ci95": 0.1})  # the opposite order


# ---------------------------------------------------------------- (b) condensation.claims_for

def _s(m, ci=0.1, n=3):
    return {"mean": m, "ci95": ci, "n": n, "values": [m] * n}


def _depth(rel, dirs, tv):
    """rates 0.0 (first), 0.1, 0.3: per-rate relative change, direction count, total variation (means)."""
    r = {f"p={p}": {"relative_change": _s(rel[i]), "nonzero_directions": _s(dirs[i], 1.0),
                    "output_total_variation": _s(tv[i]), "train_R_S": _s(1e-3)}
         for i, p in enumerate((0.0, 0.1, 0.3))}
    r["target_total_variation"] = 2.0
    return r


@pytest.mark.parametrize("rel, dirs, tv, expected", [
    ((0.1, 0.5, 0.6), (10, 3, 4), (5.0, 2.0, 3.0), (True, True, True)),
    ((0.25, 0.5, 0.6), (10, 3, 4), (5.0, 2.0, 3.0), (False, True, True)),  # plain moved ≥ 0.2
    ((0.1, 0.5, 0.05), (10, 3, 4), (5.0, 2.0, 3.0), (False, True, True)),  # one rate moved less than plain
    ((0.1, 0.5, 0.6), (10, 3, 9), (5.0, 2.0, 3.0), (True, False, True)),  # 9 ± 1 overlaps 10 ± 1
    ((0.1, 0.5, 0.6), (10, 3, 4), (5.0, 2.0, 5.0), (True, True, False)),  # equal TV is not lower
    ((0.1, 0.5, 0.6), (10, 3, 4), (5.0, 6.0, 3.0), (True, True, False)),  # one rate oscillates more
])
def test_condensation_claims_follow_their_criteria_on_hand_made_numbers(rel, dirs, tv, expected):
    from reglab.reproduce.experiments.condensation import claims_for

    claims = claims_for(2, _depth(rel, dirs, tv), [0.0, 0.1, 0.3], 3)
    assert [c.agrees for c in claims] == list(expected)
    assert all(c.claim.startswith("2-layer") for c in claims)


def test_condensation_quick_verdicts_recomputed(tmp_path):
    data = quick("condensation", tmp_path)
    expected = []
    for depth in ("2-layer", "3-layer"):
        r = data["numbers"][depth]
        plain, drop = r["p=0.0"], r["p=0.3"]
        expected += [plain["relative_change"]["mean"] < 0.2
                     and drop["relative_change"]["mean"] > plain["relative_change"]["mean"],
                     ci_entirely_below(drop["nonzero_directions"]["values"], plain["nonzero_directions"]["values"]),
                     drop["output_total_variation"]["mean"] < plain["output_total_variation"]["mean"]]
    assert verdicts(data) == [WORD[e] for e in expected]


# ---------------------------------------------------------------- (a) quick runs, recomputed verdicts

def test_dropout_1d_verdicts_recomputed(tmp_path):
    data = quick("dropout-1d", tmp_path)
    plain, drop = data["numbers"]["without dropout"], data["numbers"]["dropout p=0.3"]
    expected = [ci_entirely_below(drop[k]["values"], plain[k]["values"])
                for k in ("output_total_variation", "mean_loss_rise")]
    assert verdicts(data) == [WORD[e] for e in expected]


def test_teacher_student_verdict_recomputed(tmp_path):
    data = quick("teacher-student", tmp_path)
    plain = data["numbers"]["p=0.0"]["nonzero_directions"]["values"]
    drop = data["numbers"]["p=0.3"]["nonzero_directions"]["values"]
    expected = all(v <= 2 for v in drop) and all(v > 2 for v in plain)
    assert verdicts(data) == [WORD[expected]]


def test_escape_verdicts_recomputed(tmp_path):
    data = quick("escape", tmp_path)
    control = data["numbers"]["R_S (reference)"]["nonzero_directions"]["values"]
    expected = [ci_entirely_below(data["numbers"][label]["nonzero_directions"]["values"], control)
                for label in ("R_drop", "R_S + R1")]
    assert verdicts(data) == [WORD[e] for e in expected]


def test_r1_mnist_verdicts_recomputed_with_the_absolute_claims_judged(tmp_path, monkeypatch):
    """The absolute-accuracy claims are judged only on MNIST: the run is told it has MNIST (mnist-5k's
    tensors stand in) so that all four verdicts are computed."""
    from reglab.reproduce import Settings
    from reglab.reproduce.experiments import r1_mnist

    tensors = r1_mnist.mnist_tensors(Settings(quick=True), r1_mnist.QUICK["n_train"])
    monkeypatch.setattr(r1_mnist, "mnist_tensors", lambda settings, n: tensors)
    monkeypatch.setattr(r1_mnist, "mnist_1000", lambda settings: ({"name": "mnist", "train_subset": 1000}, "MNIST"))
    data = quick("r1-mnist", tmp_path)
    n = data["numbers"]
    drop, withr1, rs = n["R_drop"], n["R_S + R1"], n["R_S alone"]["test_acc"]["mean"]
    rates = list(drop)
    accs = [drop[k]["test_acc"]["mean"] for k in rates] + [withr1[k]["test_acc"]["mean"] for k in rates]
    similar = all(abs(drop[k]["test_acc"]["mean"] - withr1[k]["test_acc"]["mean"]) <= 0.02 for k in rates)
    about_79 = 0.76 <= rs <= 0.82
    above_88 = all(a > 0.88 and a > rs for a in accs)

    def close(a, b):
        return abs(a - b) <= 0.2 * abs(a + b) / 2

    terms = all(close(drop[k][t]["mean"], withr1[k][t]["mean"]) for k in rates for t in ("R_S", "R1"))
    assert verdicts(data) == [WORD[e] for e in (similar, about_79, above_88, terms)]


def test_l1_l4_verdicts_recomputed(tmp_path):
    data = quick("l1-l4", tmp_path)
    acc = data["numbers"]["test_acc_per_seed"]  # lr -> objective -> rate -> seed -> accuracy

    def per_seed(a, b):
        seeds = next(iter(acc.values()))[a]["p=0.5"].keys()
        return [mean([acc[lr][a][rate][s] - acc[lr][b][rate][s] for lr in acc for rate in acc[lr][a]])
                for s in seeds]

    expected = [abs(mean(per_seed("rs+r1", "drop"))) <= 0.01, abs(mean(per_seed("drop-r2", "drop"))) <= 0.01,
                interval(per_seed("rs+r1", "rs"))[0] > 0, interval(per_seed("rs+r1", "rs+r2"))[0] > 0,
                abs(mean(per_seed("drop-r1", "rs"))) <= 0.01]
    assert verdicts(data) == [WORD[e] for e in expected]


def test_interpolation_verdicts_recomputed(tmp_path):
    data = quick("interpolation", tmp_path)
    n = data["numbers"]
    alphas = [float(a) for a in n["alphas"]]
    i = {a: min(range(len(alphas)), key=lambda k: abs(alphas[k] - a)) for a in (-0.25, 0.0, 1.0, 1.25)}
    seeds = list(n["train_loss_per_seed"]["c"]["p=0.5"])
    diffs = []
    for s in seeds:
        per = [c[s][i[1.25]] - c[s][i[1.0]] - (c[s][i[-0.25]] - c[s][i[0.0]])
               for panel in "cdef" for c in n["train_loss_per_seed"][panel].values()]
        diffs.append(mean(per))
    expected = [n["max_on_segment_over_init"]["a"]["mean"] <= 0.10, n["max_on_segment_over_init"]["b"]["mean"] <= 0.10,
                interval(diffs)[0] > 0]
    assert verdicts(data) == [WORD[e] for e in expected]


def test_dropout_table_verdicts_recomputed(tmp_path):
    data = quick("dropout-table", tmp_path)
    claims = {c["claim"]: c["verdict"] for c in data["claims"]}
    for row, numbers in data["numbers"].items():
        mine = [v for k, v in claims.items() if k.startswith(row + ":")]
        if "not run here" in numbers:
            assert mine == ["not run", "not run"]
            continue
        with_, without = numbers["with"], numbers["without"]
        gain = [a - b for a, b in zip(with_["test_acc"], without["test_acc"], strict=True)]
        flatter = [b - a for a, b in zip(with_["sharpness"], without["sharpness"], strict=True)]
        assert mine == [WORD[interval(gain)[0] > 0], WORD[interval(flatter)[0] > 0]], row
    assert "FNN / MNIST" in data["numbers"] and "not run here" not in data["numbers"]["FNN / MNIST"]


def test_effective_ratio_verdicts_recomputed_with_three_seeds(tmp_path, monkeypatch):
    """One quick seed is "not run"; three (the criterion's minimum) on stand-in CIFAR-10 files are judged."""
    from reglab.reproduce.experiments import effective_ratio

    monkeypatch.setattr(effective_ratio, "QUICK", {**effective_ratio.QUICK, "seeds": 3})
    fake_cifar10(tmp_path / "data")
    data = quick("effective-ratio", tmp_path, data_dir=tmp_path / "data")
    plain, drop = data["numbers"]["without dropout"], data["numbers"]["dropout p=0.5"]
    expected = [ci_entirely_below(drop[label]["values"], plain[label]["values"]) for label in ("Conv2-1", "Conv3-1")]
    assert [len(drop[label]["values"]) for label in ("Conv2-1", "Conv3-1")] == [3, 3]
    assert verdicts(data) == [WORD[e] for e in expected]


def test_seed000_verdicts_recomputed_when_judged(tmp_path, monkeypatch):
    """The quick run judges nothing; a tiny "full" run (mnist-5k standing in for MNIST, the full budget
    shrunk to 2 epochs so rankings and fluctuation count) judges all eight claims."""
    from reglab.reproduce import Settings, run
    from reglab.reproduce.experiments import seed000

    tiny = {"train_subset": 64, "test_subset": 64, "epochs": 2, "seeds": 2}
    original_spec = seed000.spec
    monkeypatch.setattr(seed000, "FULL", tiny)
    monkeypatch.setattr(seed000, "_data", lambda settings: ("mnist", "Data: stand-in"))
    monkeypatch.setattr(seed000, "spec", lambda s, data: original_spec(s, "mnist-5k"))
    data = run("seed000", Settings(), tmp_path / "seed000")
    acc, loss, wobble = (data["numbers"][m] for m in ("final_test_acc", "final_test_loss", "fluctuation"))
    source = {"Baseline": 0.9922, "Weight decay 0.001": 0.9922, "Dropout 0.3 (FC layers)": 0.9912,
              "Stochastic depth conv1 p=0.2": 0.9924}
    sd, wd, dr = "Stochastic depth conv1 p=0.2", "Weight decay 0.001", "Dropout 0.3 (FC layers)"
    expected = [abs(acc[arm]["mean"] - v) <= 0.002 for arm, v in source.items()]
    expected += [all(acc[sd]["mean"] > acc[a]["mean"] for a in acc if a != sd),
                 all(loss[sd]["mean"] < loss[a]["mean"] for a in loss if a != sd),
                 loss[wd]["mean"] > loss["Baseline"]["mean"],
                 wobble[dr]["mean"] < wobble["Baseline"]["mean"] and wobble[sd]["mean"] < wobble["Baseline"]["mean"]]
    assert verdicts(data) == [WORD[e] for e in expected]



@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_seed000_budget_depends_on_the_flags_and_the_data_never_on_the_device(tmp_path, monkeypatch, device):
    """Without --reduced the preset's 15 epochs × 3 seeds run on whichever real digits are found (mnist-5k
    is marked reduced for its data); --reduced is 1 epoch on 1000 images; the device changes neither."""
    from reglab.reproduce import Settings
    from reglab.reproduce.experiments import seed000

    chosen = []

    def capture(s, data):
        chosen.append((data, s["epochs"], s["seeds"], s["train_subset"]))
        raise KeyboardInterrupt  # stop before training

    monkeypatch.setattr(seed000, "spec", capture)
    for data, reduced in (("mnist-5k", False), ("mnist", False), ("mnist-5k", True)):
        monkeypatch.setattr(seed000, "_data", lambda settings, data=data: (data, "Data: stand-in"))
        with pytest.raises(KeyboardInterrupt):
            seed000.run(Settings(reduced=reduced, device=device, out=tmp_path))
    assert chosen == [("mnist-5k", 15, 3, None), ("mnist", 15, 3, None), ("mnist-5k", 1, 3, 1000)]

# ---------------------------------------------------------------- both sides of inline rules, on injected counts

def _fake_condensation(counts):
    """A stand-in for reglab.reproduce.condensed.condensation whose successive calls report `counts`."""
    it = iter(counts)

    def condensation(nets, t, initial=None):
        c = next(it)
        return {"effective_ratio": {"count": c, "ratio": 0.5, "method": "exact", "greedy_count": c},
                "nonzero_neurons": 30, "nonzero_directions": {"count": c, "ratio": 0.5, "method": "exact",
                                                              "greedy_count": c},
                "relative_change": 0.1}
    return condensation


@pytest.mark.parametrize("plain, drop, expected", [
    ([5, 6], [1, 2], "agree"),
    ([5, 2], [1, 2], "disagree"),  # one seed without dropout already needs only 2
    ([5, 6], [2, 3], "disagree"),  # one seed with dropout needs 3
    ([2, 1], [5, 6], "disagree"),  # the opposite of the claim
])
def test_teacher_student_verdict_on_injected_direction_counts(plain, drop, expected, tmp_path, monkeypatch):
    from reglab.reproduce.experiments import teacher_student

    monkeypatch.setattr(teacher_student, "condensation", _fake_condensation(plain + drop))  # rate 0 first
    data = quick("teacher-student", tmp_path)
    assert data["numbers"]["p=0.0"]["nonzero_directions"]["values"] == plain
    assert verdicts(data) == [expected]


@pytest.mark.parametrize("rs, drop, r1, expected", [
    ([10, 10], [3, 3], [10, 10], ["agree", "disagree"]),
    ([10, 10], [12, 12], [4, 4], ["disagree", "agree"]),  # more directions than R_S: not condensed
    ([10, 10], [10, 10], [9, 9], ["disagree", "agree"]),
])
def test_escape_verdicts_on_injected_direction_counts(rs, drop, r1, expected, tmp_path, monkeypatch):
    from reglab.reproduce.experiments import escape

    # calls: each continuation (R_S, R_drop, R_S + R1) per seed, then the R_S minimum per seed
    monkeypatch.setattr(escape, "condensation", _fake_condensation(rs + drop + r1 + [20, 20]))
    data = quick("escape", tmp_path)
    assert data["numbers"]["R_drop"]["nonzero_directions"]["values"] == drop
    assert verdicts(data) == expected


@pytest.mark.parametrize("rs, drop, withr1, expected", [
    (0.79, 0.90, 0.91, ["agree", "agree", "agree"]),
    (0.75, 0.87, 0.90, ["disagree", "disagree", "disagree"]),  # 4 points from 79%, one loss under 88%
    (0.95, 0.90, 0.93, ["disagree", "disagree", "disagree"]),  # above 88% but not above R_S alone; gap 3 points
])
def test_r1_mnist_accuracy_verdicts_on_injected_accuracies(rs, drop, withr1, expected, tmp_path, monkeypatch):
    """Test accuracies injected (summary's calls go test_acc, R_S, R1 per rate, for R_S, R_drop, R_S + R1):
    both sides of the three accuracy claims."""
    from reglab.reproduce import Settings
    from reglab.reproduce.experiments import r1_mnist

    tensors = r1_mnist.mnist_tensors(Settings(quick=True), r1_mnist.QUICK["n_train"])
    monkeypatch.setattr(r1_mnist, "mnist_tensors", lambda settings, n: tensors)
    monkeypatch.setattr(r1_mnist, "mnist_1000", lambda settings: ({"name": "mnist", "train_subset": 1000}, "MNIST"))
    original, calls, inject = r1_mnist.summary, [], {0: rs, 3: drop, 6: withr1}

    def summary(values):
        k = len(calls)
        calls.append(k)
        return original([inject[k]] * len(values) if k in inject else values)

    monkeypatch.setattr(r1_mnist, "summary", summary)
    data = quick("r1-mnist", tmp_path)
    assert data["numbers"]["R_drop"]["p=0.5"]["test_acc"]["mean"] == pytest.approx(drop)
    assert verdicts(data)[:3] == expected
