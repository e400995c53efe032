"""Does Gaussian input noise lose test accuracy to BatchNorm statistics gathered on noisy inputs?

A BatchNorm network trained with input noise keeps running statistics of its noisy training batches and
applies them to clean test inputs. For the `augmentation` preset's `noise` arm (σ = 0.5) and, as the
control, its `none` arm, this trains each seed as the study does (15 epochs, one thread) and compares the
test accuracy of the trained network with that of the same weights after re-estimating every BatchNorm
layer's statistics on the clean training set (`torch.optim.swa_utils.update_bn`, a cumulative average over
the training batches). docs/regularizers.md ("Gaussian input noise") quotes its output.

    python tools/input_noise_bn_shift.py --seeds 10      # ≈ 5 min on one CPU core
"""

import argparse
import copy

import numpy as np
import torch
from scipy import stats
from torch.optim.swa_utils import update_bn

from reglab.study import load_spec
from reglab.study.stats import describe
from reglab.train.loop import Trainer


@torch.no_grad()
def accuracy_with_clean_statistics(trainer: Trainer) -> float:
    model, data = copy.deepcopy(trainer.model), trainer.data
    update_bn([trainer.in_layout(b) for b in data.x_train.split(trainer.batch_size)], model)
    model.eval()
    return (model(trainer.in_layout(data.x_test)).argmax(1) == data.y_test).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    seeds = parser.parse_args().seeds
    torch.set_num_threads(1)
    spec = load_spec("augmentation")
    for arm in ("noise", "none"):
        gains = []
        for seed in range(seeds):
            trainer = Trainer(spec.arm_config(arm, seed))
            trainer.fit()
            trained = trainer.evaluate(trainer.data.x_test, trainer.data.y_test)["acc"]
            clean = accuracy_with_clean_statistics(trainer)
            gains.append(clean - trained)
            print(f"{arm} seed {seed}: test accuracy {trained:.4f} as trained, {clean:.4f} with clean statistics")
        gain = 100 * np.array(gains)
        ci, p = describe(gain), stats.ttest_1samp(gain, 0).pvalue
        print(f"{arm}: clean statistics change test accuracy by {ci.mean:+.2f} pp "
              f"(95% CI {ci.ci_low:+.2f} to {ci.ci_high:+.2f}, paired t p = {p:.2g}, {seeds} seeds)")


if __name__ == "__main__":
    main()
