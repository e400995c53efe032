"""One module per reproduction; importing this package registers them all."""

from reglab.reproduce.experiments import (  # noqa: F401
    condensation,
    dropout_1d,
    dropout_table,
    effective_ratio,
    escape,
    interpolation,
    l1_l4,
    r1_mnist,
    sample_size,
    seed000,
    teacher_student,
)
