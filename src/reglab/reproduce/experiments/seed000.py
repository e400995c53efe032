"""`seed000`: the project's seed-000 study (reglab.study) with its statistical verdicts.

DeeperCNN with BatchNorm and a cosine schedule on Fashion-MNIST: weight decay, dropout in the FC layers
and stochastic depth on conv1 against a baseline, over seeds (`src/reglab/presets/seed000.toml`). The
preset reports no numbers of its own, so each row states the question and the study's answer
(paired t-test over seeds, Holm-adjusted across arms, reglab.study). The full preset (60,000 images,
15 epochs, 3 seeds) needs a GPU; here the full version keeps the first 3000 training and 2000 test
images and 5 epochs, the quick one 128 and 1.
"""

from __future__ import annotations

from pathlib import Path

from reglab.config import ConfigError
from reglab.report import has_finished_run
from reglab.reproduce.common import new_figure, pct
from reglab.reproduce.framework import Claim, Outcome, Settings, preset
from reglab.study import LocalExecutor, StudySpec, load_spec, run_study

FULL = {"train_subset": 3000, "test_subset": 2000, "epochs": 5, "seeds": 3, "arms": None}
QUICK = {"train_subset": 128, "test_subset": 128, "epochs": 1, "seeds": 2,
         "arms": ["Baseline", "Dropout 0.3 (FC layers)"]}


def spec(s: dict, data_dir: Path | None = None) -> StudySpec:
    """The seed000 preset with the reductions of `s` (subsets, epochs, seeds, optionally fewer arms),
    its data searched first in `data_dir`."""
    changes = {"data.train_subset": s["train_subset"], "data.test_subset": s["test_subset"],
               "train.checkpoint_every": 0}
    if data_dir is not None:
        changes["data.data_dir"] = str(data_dir)
    data = load_spec("seed000", seeds=s["seeds"], epochs=s["epochs"]).override(changes).to_dict()
    if s["arms"] is not None:
        data["arms"] = {k: v for k, v in data["arms"].items() if k in s["arms"]}
    return StudySpec.from_dict(data)


@preset("seed000")
def run(settings: Settings) -> Outcome:
    s = QUICK if settings.quick else FULL
    study = run_study(spec(s, settings.data_dir), settings.out / "study",
                      executor=LocalExecutor(1, device=settings.device), progress=False)
    study.write_report()
    if not has_finished_run(study):
        raise ConfigError(f"seed000: no run of the study finished; the first error: {study.runs['error'].iloc[0]}")
    summary = study.summary()
    acc = summary[summary["metric"] == "final_test_acc"].set_index("arm")
    numbers = {arm: {k: row[k] for k in ("n", "mean", "std", "ci_low", "ci_high", "diff", "test", "p_value",
                                                 "p_adjusted", "verdict")}
               for arm, row in acc.iterrows()}
    claims = [Claim(f"{arm} vs {study.baseline}: does it change final test accuracy beyond seed noise?",
                    f"{pct(row['mean'])} vs {pct(acc.loc[study.baseline, 'mean'])}, Δ {100 * row['diff']:+.2f} "
                    f"points, {row['test']}: {row['verdict']}", None)
              for arm, row in acc.iterrows() if arm != study.baseline]
    fig, (ax,) = new_figure(1, width=6.0, height=3.6)
    ax.barh(list(acc.index), 100 * acc["mean"], xerr=100 * (acc["ci_high"] - acc["mean"]).fillna(0), capsize=3)
    ax.set(xlabel="final test accuracy (%) — mean and 95% CI over seeds", title="seed000 (reduced)")
    return Outcome(figures={"seed000_test_acc": fig}, numbers=numbers, claims=claims, settings=s, notes=[
        f"Reduced from the preset: first {s['train_subset']} training and {s['test_subset']} test images of "
        f"Fashion-MNIST, {s['epochs']} epochs (cosine schedule over them), {s['seeds']} seeds"
        + ("" if s["arms"] is None else f", arms {s['arms']} only") + ".",
        f"Full study report (HTML, Markdown, CSV): {settings.out / 'study' / 'report'}."])
