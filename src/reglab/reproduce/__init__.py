"""Reproductions of the dropout-theory experiments: ``reglab reproduce <name> [--quick]``.

Each preset re-runs one experiment of the dropout chapter (source 004, "Dropout 的隐式正则化" of the book
理解深度学习, which presents Zhang & Xu 2022, *Implicit regularization of dropout*, arXiv:2207.05952;
figure numbers are the chapter's) — or, for ``seed000``, source 000's MNIST DeeperCNN comparison — and
writes PNG figures, a ``results.json``, a self-contained ``report.html`` and a ``README.md`` putting
the source's value beside reglab's for every claim, with a verdict (docs/reproduce.md collects them:
``python -m reglab.reproduce.summary``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from reglab.reproduce.framework import Claim, Outcome, Preset, Settings, get_preset, presets


def run(name: str, settings: Settings = Settings(), out: str | Path | None = None) -> dict[str, Any]:
    """Run the reproduction `name` and write its files to `out` (default ``reproductions/<name>``).
    The device, `data_dir` and `out` are checked before anything runs; ``auto`` becomes the device it
    picks; an `out` holding another reproduction's results.json is refused."""
    from reglab.config import ConfigError, TrainConfig, validate
    from reglab.provenance import code_version
    from reglab.reproduce import output
    from reglab.train.loop import resolve_device
    from reglab.train.rundir import check_directory

    chosen = get_preset(name)
    device = resolve_device(validate(TrainConfig, {"device": settings.device}, prefix="train").device)
    if settings.data_dir is not None and not Path(settings.data_dir).is_dir():
        raise ConfigError(f"--data-dir: {str(settings.data_dir)!r} is not a directory")
    out = check_directory(out if out is not None else Path("reproductions") / name, "a reproduction directory")
    check_results(out, name)
    settings = dataclasses.replace(settings, out=out, device=str(device))
    code = code_version()  # the code the run starts from
    start = time.perf_counter()
    outcome = chosen.run(settings)
    return output.write(chosen, outcome, settings, settings.out, time.perf_counter() - start, code)


def check_results(out: Path, name: str) -> None:
    """Refuse an `out` whose results.json is another reproduction's or not a reproduction's at all."""
    from reglab.config import ConfigError
    from reglab.train.rundir import DamagedFile

    path = out / "results.json"
    if not path.exists():
        return
    try:
        held = json.loads(path.read_text())["preset"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DamagedFile(path, f"not a reproduction's results.json ({type(err).__name__}); choose another "
                                f"--out, or delete it to run {name} there") from None
    if held != name:
        raise ConfigError(f"{out}: holds the reproduction {held!r}; choose another --out, or delete {out} "
                          "to replace it")


__all__ = ["Claim", "Outcome", "Preset", "Settings", "get_preset", "presets", "run"]
