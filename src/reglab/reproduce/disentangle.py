"""The setting of the chapter's disentangling experiments (figs 1.10 and 1.11, eq. 1.1).

A 784-1000-10 ReLU FNN with dropout after its hidden layer, loss ½‖f − y‖² on one-hot labels, trained
on the first 1000 MNIST images by full-batch gradient descent with step ε on one of

    R_S, R_drop, L1 = R_S + R1, L2 = R_S + R̃2, L3 = R_drop − R̃2, L4 = R_drop − R1

(reglab.theory.dropout.objective_loss; R̃2 = (ε/4)‖∇_θ R_drop(θ, η)‖² for the step's own mask draw).
Every objective of one seed starts from the same initialisation, so minima can be interpolated.
`paired_ci` gives the mean and Student-t 95% interval over seeds of a per-seed difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reglab.config import DataConfig
from reglab.data import load_dataset
from reglab.reproduce.common import half_mse, mnist_1000
from reglab.reproduce.framework import Settings
from reglab.study.stats import describe
from reglab.theory.dropout import objective_loss

LABELS = {"rs": "R_S", "drop": "R_drop", "rs+r1": "L1 = R_S + R1", "rs+r2": "L2 = R_S + R̃2",
          "drop-r2": "L3 = R_drop − R̃2", "drop-r1": "L4 = R_drop − R1"}
#: what the chapter leaves open, and the value used (written to results.json)
CHOICES = {
    "network": "784-1000-10 with ReLU and a bias in both layers (the chapter names only the sizes)",
    "initialisation": "PyTorch default (uniform ±1/√fan_in); one initialisation per seed shared by all objectives",
    "loss": "½‖f − y‖² on one-hot labels (the chapter's MSE setting of the R1 lemma)",
    "inputs": "raw pixels in [0, 1] (torchvision's ToTensor); with standardised pixels full-batch GD at "
              "ε = 0.05 spikes to a loss of ≈ 20 in two steps, and then L3 diverges and L2 stalls at 19% "
              "accuracy while R_S, R_drop, L1 and L4 recover (an audit, 2026-11-28): raw pixels suit the "
              "chapter's step size. Fig. 1.4's preset (r1-mnist), on the same network and images at "
              "ε = 5e-3, standardises them and draws N(0, 1/fan_in) weights without an output bias: the "
              "presets differ there, each as its own choices say",
    "optimizer": "plain gradient descent on the full batch of 1000 images, no momentum, no weight decay",
    "accuracy": "test accuracy of the final iterate, dropout off",
}


@dataclass
class Data:
    x: torch.Tensor  # (n, 784)
    y: torch.Tensor  # (n, 10) one-hot
    x_test: torch.Tensor
    labels_test: torch.Tensor
    note: str


def mnist_first_1000(settings: Settings, train_subset: int = 1000, test_subset: int | None = None) -> Data:
    """The first `train_subset` MNIST training images (mnist-5k where full MNIST is absent), pixels in [0, 1],
    and the test set."""
    cfg, note = mnist_1000(settings)
    d = load_dataset(DataConfig(**{**cfg, "train_subset": train_subset, "test_subset": test_subset},
                                normalize=False, data_dir=settings.data_dir), device=settings.device)
    return Data(d.x_train.flatten(1), nn.functional.one_hot(d.y_train, 10).float(), d.x_test.flatten(1),
                d.y_test, note)


def fnn(p: float, seed: int, device: str | torch.device = "cpu") -> nn.Sequential:
    """784 → 1000 ReLU → Dropout(p) → 10, initialised from `seed` (the same for every p) on the CPU."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Dropout(p), nn.Linear(1000, 10)).to(device)


def train_gd(objective: str, p: float, lr: float, steps: int, seed: int, data: Data) -> nn.Sequential:
    """`steps` full-batch GD steps of size `lr` on `objective` from initialisation `seed`; masks drawn from
    a generator seeded by `seed` as well."""
    model = fnn(p, seed, data.x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    torch.manual_seed(10_000 + seed)
    for _ in range(steps):
        optimizer.zero_grad()
        objective_loss(objective, model, data.x, data.y, lr=lr, loss_fn=half_mse).backward()
        optimizer.step()
    return model.eval()


def evaluate(model: nn.Module, data: Data) -> dict[str, float]:
    """Training loss R_S and test accuracy, dropout off."""
    with torch.no_grad():
        return {"train_loss": half_mse(model(data.x), data.y).item(),
                "test_acc": (model(data.x_test).argmax(1) == data.labels_test).double().mean().item()}


def paired_ci(values: list[float]) -> dict[str, float]:
    """Mean and Student-t 95% interval over seeds."""
    s = describe(values)
    return {"mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n}


def fmt_ci(ci: dict[str, float], scale: float = 1.0, unit: str = "") -> str:
    return (f"{scale * ci['mean']:+.3g}{unit} (95% CI {scale * ci['ci_low']:+.3g} to "
            f"{scale * ci['ci_high']:+.3g}{unit}, {ci['n']} seeds)")
