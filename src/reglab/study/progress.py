"""Progress of a running study: a rich bar per arm on a terminal, one line per finished run otherwise."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from reglab.study.executors import RunTask
from reglab.train.loop import RunResult


def _describe(result: RunResult) -> str:
    final = result.final
    acc = f"test acc {final['test_acc']:.4f}" if final.get("test_acc") is not None else ""
    loss = f"test loss {final['test_loss']:.4f}" if final.get("test_loss") is not None else ""
    status = f"diverged at epoch {result.diverged_epoch}" if result.status == "diverged" else "done"
    packed = f"in a pack of {result.pack['size']}" if result.pack else ""
    return ", ".join(x for x in (status, acc or loss, f"{result.seconds:.1f} s", packed) if x)


class StudyProgress:
    """Shows runs starting, epochs passing and runs ending; `enabled=False` makes it silent.

    Bars count epochs: an arm's bar is full when each of its runs has trained all its epochs
    (a diverged or early-stopped run counts as complete when it ends).
    """

    def __init__(self, arms: dict[str, list[tuple[str, int]]], *, enabled: bool = True,
                 console: Console | None = None):
        """`arms`: arm -> [(run_id, epochs)] of every run of the study (finished ones included)."""
        self.console = console or Console(stderr=True, soft_wrap=True, emoji=False)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.total = {run_id: epochs for runs in arms.values() for run_id, epochs in runs}
        self.done = dict.fromkeys(self.total, 0)
        self.arm_of = {run_id: arm for arm, runs in arms.items() for run_id, _ in runs}
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                                 console=self.console, disable=not self.live)
        self.bars = {arm: self.progress.add_task(escape(arm), status="",
                                                 total=sum(e for _, e in runs)) for arm, runs in arms.items()}

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _update(self, run_id: str, epochs: int, status: str = "") -> None:
        self.done[run_id] = min(epochs, self.total[run_id])
        arm = self.arm_of[run_id]
        completed = sum(self.done[r] for r, a in self.arm_of.items() if a == arm)
        self.progress.update(self.bars[arm], completed=completed, **({"status": status} if status else {}))

    def skipped(self, run_id: str) -> None:
        """A run finished before this invocation."""
        self._update(run_id, self.total[run_id])

    def planned(self, todo: int, kept: int, analyse_only: int = 0) -> None:
        """Off a terminal, one line before anything runs: how many runs will run (of them, how many trained
        before and are only analysed) and how many are kept."""
        if self.enabled and not self.live:
            analysing = f" ({analyse_only} trained before: analysed only)" if analyse_only else ""
            self.console.print(f"running {todo} runs{analysing}, keeping {kept} finished ones", highlight=False)

    def note(self, text: str) -> None:
        """One line on how the runs will train (e.g. what ``--pack auto`` measured and chose)."""
        if self.enabled:
            self.console.print(escape(text), highlight=False)

    def started(self, task: RunTask) -> None:
        self._update(task.run_id, self.done[task.run_id], f"seed {task.seed} running")
        if self.enabled and not self.live:
            self.console.print(f"{escape(task.run_id)}: started", highlight=False)

    def epoch(self, task: RunTask, metrics: dict) -> None:
        acc = metrics.get("test_acc")
        status = f"seed {task.seed} epoch {metrics['epoch']}" + (f" acc {acc:.3f}" if acc is not None else "")
        self._update(task.run_id, int(metrics["epoch"]), status)

    def finished(self, task: RunTask, result: RunResult) -> None:
        self._update(task.run_id, self.total[task.run_id], f"seed {task.seed} {result.status}")
        if self.enabled and not self.live:
            self.console.print(f"{escape(task.run_id)}: {_describe(result)}", highlight=False)

    def failed(self, task: RunTask, error: str) -> None:
        self._update(task.run_id, self.total[task.run_id], f"seed {task.seed} failed")
        if self.enabled:
            self.console.print(f"[red]{escape(task.run_id)} failed:[/] {escape(error)}", highlight=False)
