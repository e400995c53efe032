"""Studies: a base run plus named arms, each over several seeds, run, stored, compared honestly.

    >>> from reglab.report import write_report
    >>> from reglab.study import load_spec, run_study
    >>> result = run_study(load_spec("quickstart", epochs=2), "studies/quick")
    >>> table = result.summary()            # per arm and metric: n, mean ± std, 95% CI, Δ vs baseline, p, verdict
    >>> paths = write_report(result)        # HTML, Markdown and CSV under studies/quick/report/

The names below are imported on first use, so a worker process that trains runs
(`reglab.study.executors`) does not load the statistics and reporting stack (scipy, pandas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reglab.lazy import lazy_attributes

if TYPE_CHECKING:
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

_LAZY = {
    **dict.fromkeys(["EXECUTORS", "Executor", "LocalExecutor", "RunEvents", "RunTask", "make_executor",
                     "register_executor"], "reglab.study.executors"),
    "Study": "reglab.study.results", "load_study": "reglab.study.results",
    "StudyResult": "reglab.study.runner", "run_study": "reglab.study.runner",
    "StudySpec": "reglab.study.spec", "load_spec": "reglab.study.spec",
}

__all__ = [
    "EXECUTORS", "Executor", "LocalExecutor", "RunEvents", "RunTask", "Study", "StudyResult", "StudySpec",
    "load_spec", "load_study", "make_executor", "register_executor", "run_study",
]


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)
