"""One module per reproduction; `CATALOG` names and describes them, so that listing them
(`reglab reproduce --list`) imports neither torch nor matplotlib. A module is imported when its
reproduction runs; there ``@preset(name)`` registers its ``run(settings)``."""

from reglab.reproduce.framework import PresetInfo

CATALOG: dict[str, PresetInfo] = {
    "condensation": PresetInfo(
        "condensation", "Condensation: dropout gathers tanh neurons on few orientations",
        "Fig. 1.2 (1-D target tanh(x−6)+tanh(x+6), 2- and 3-layer tanh nets, linear-regime init)"),
    "dropout-1d": PresetInfo(
        "dropout_1d", "1-D ReLU fit: dropout fits with few turns and finds a flatter minimum",
        "Figs. 1.1 and 1.8 (width-1000 ReLU net, target ½ReLU(−x−⅓)+½ReLU(x−⅓), Adam 1e-4)"),
    "dropout-table": PresetInfo(
        "dropout_table", "Dropout across architectures: accuracy and flatness with vs without",
        "Table 1.1 and fig. 1.9 (FNN/MNIST, VGG-9/CIFAR-10, ResNet-20/CIFAR-100, Transformer/Multi30k)"),
    "effective-ratio": PresetInfo(
        "effective_ratio", "Effective ratio of ResNet-18's Conv2-1 and Conv3-1 with and without dropout",
        "Fig. 1.3 (c) (CIFAR-10, ResNet-18, dropout 0.5 after each block, Adam lr 1e-3, batch 128)"),
    "escape": PresetInfo(
        "escape", "Escape: dropout / R_S + R1 leave an R_S minimum for a condensed one",
        "Fig. 1.6 (train with R_S, then switch to R_drop or R_S + R1)"),
    "interpolation": PresetInfo(
        "interpolation", "Interpolation between minima of L1–L4: R1-trained minima are flatter",
        "fig. 1.11 (R_S on the line between minima of L_i and L_j, one curve per dropout rate)"),
    "l1-l4": PresetInfo(
        "l1_l4", "L1–L4: R1 carries dropout's benefit, R̃2 helps only slightly",
        "fig. 1.10 (R_S, R_drop, L1–L4 over dropout rates, full-batch GD at ε = 0.05 and 0.005)"),
    "r1-mnist": PresetInfo(
        "r1_mnist", "R1 on MNIST: R_S + R1 matches dropout, both beat R_S alone",
        "Fig. 1.4 (784-1000-10 net, first 1000 MNIST images, gradient descent ε = 5e-3)"),
    "sample-size": PresetInfo(
        "sample_size", "Sample size: with dropout the student generalizes once n > 6",
        "Fig. 1.7 (teacher tanh(x−6)+tanh(x+6), width-1000 tanh student, Adam 1e-4, 10 trials)"),
    "seed000": PresetInfo(
        "seed000", "Source 000: Baseline / weight decay / dropout / stochastic depth on an MNIST DeeperCNN",
        "Fig. 1 and Table 1 (MNIST DeeperCNN, four arms)",
        source="source 000 (regularization methods on MNIST, shared/seeds/000)"),
    "teacher-student": PresetInfo(
        "teacher_student", "Teacher-student: dropout condenses the student's neurons on two directions",
        "Fig. 1.3 (a, b) (one-neuron tanh teacher, 10-D input, two-layer tanh student)"),
}
