"""Studies: a base run plus named arms, each over several seeds, run, stored, compared honestly.

    >>> from reglab.study import load_spec, run_study
    >>> result = run_study(load_spec("quickstart", epochs=2), "studies/quick")
    >>> result.summary()          # per arm and metric: n, mean ± std, 95% CI, Δ vs baseline, p, verdict
    >>> result.write_report()     # HTML, Markdown and CSV under studies/quick/report/
"""

from reglab.study.executors import (
    EXECUTORS,
    Executor,
    LocalExecutor,
    RunEvents,
    RunTask,
    make_executor,
    register_executor,
)
from reglab.study.results import Study, load_study
from reglab.study.runner import StudyResult, run_study
from reglab.study.spec import StudySpec, load_spec

__all__ = [
    "EXECUTORS", "Executor", "LocalExecutor", "RunEvents", "RunTask", "Study", "StudyResult", "StudySpec",
    "load_spec", "load_study", "make_executor", "register_executor", "run_study",
]
