"""One module per reproduction; `CATALOG` names and describes them, so that listing them
(`reglab reproduce --list`) imports neither torch nor matplotlib. A module is imported when its
reproduction runs; there ``@preset(name)`` registers its ``run(settings)``."""

from reglab.reproduce.framework import PresetInfo

CATALOG: dict[str, PresetInfo] = {
    "condensation": PresetInfo(
        "condensation", "Condensation: dropout gathers tanh neurons on few orientations",
        "condensation experiment (1-D target tanh(x−6)+tanh(x+6), 2- and 3-layer tanh nets)"),
    "dropout-1d": PresetInfo(
        "dropout_1d", "1-D fit: dropout finds a flatter solution",
        "introductory 1-D example (width-1000 two-layer ReLU net, lr 1e-3)"),
    "dropout-table": PresetInfo(
        "dropout_table", "Dropout across architectures: accuracy and flatness with vs without",
        "Table 1.1 and fig. 1.9 (FNN/MNIST, VGG-9/CIFAR-10, ResNet-20/CIFAR-100, Transformer/Multi30k)"),
    "effective-ratio": PresetInfo(
        "effective_ratio", "Effective ratio of ResNet-18 conv layers with and without dropout",
        "CIFAR-10 ResNet-18 experiment (dropout 0.5 after each block, Adam lr 1e-3, batch 128)"),
    "escape": PresetInfo(
        "escape", "Escape: dropout / R1 move a trained R_S solution to a condensed one",
        "escape experiment (train with R_S, then switch to dropout or R_S + R1)"),
    "interpolation": PresetInfo(
        "interpolation", "Interpolation between minima of L1–L4: R1-trained minima are flatter",
        "fig. 1.11 (R_S on the line between minima of L_i and L_j, one curve per dropout rate)"),
    "l1-l4": PresetInfo(
        "l1_l4", "L1–L4: R1 carries dropout's benefit, R̃2 helps only slightly",
        "fig. 1.10 (R_S, R_drop, L1–L4 over dropout rates, full-batch GD at ε = 0.05 and 0.005)"),
    "r1-mnist": PresetInfo(
        "r1_mnist", "R1 on MNIST: dropout ≈ R_S + R1, both beat R_S alone",
        "explicit-regularizer experiment (784-1000-10 net, first 1000 MNIST images, lr 5e-3)"),
    "sample-size": PresetInfo(
        "sample_size", "Sample size: test error vs n with and without dropout",
        "sample-size experiment (two-neuron tanh teacher, width-1000 student, Adam lr 1e-4)"),
    "seed000": PresetInfo(
        "seed000", "Source 000: Baseline / weight decay / dropout / stochastic depth on an MNIST DeeperCNN",
        "Fig. 1 and Table 1 (MNIST DeeperCNN, four arms)",
        source="source 000 (regularization methods on MNIST, shared/seeds/000)"),
    "teacher-student": PresetInfo(
        "teacher_student", "Teacher-student: dropout condenses the student's neurons",
        "teacher-student experiment (10-D input, one-neuron tanh teacher)"),
}
