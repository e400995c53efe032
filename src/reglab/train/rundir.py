"""A run's directory: resolved config, append-only per-epoch metrics, summary, weights, checkpoint.

    run_dir/
      config.json      the resolved RunConfig
      metrics.jsonl    one JSON object per finished epoch, appended and fsynced (survives a crash)
      summary.json     the final RunResult (written last: its presence means the run ended)
      checkpoint.pt    model, optimizer, schedule, EMA, RNG states, epoch (atomic replace)
      model.pt         final weights of the evaluated model (state_dict, loads with weights_only)
      provenance.jsonl one line each time the run starts or resumes: its epoch then, the UTC time, the
                       command, the environment and the code version (`reglab.provenance.record`)
      pack.json        only for a run that trained packed: its pack (size, slot, the pack's run
                       directories; resumed_at_epoch and the earlier pack's record for a run that
                       resumed packed), written when the pack starts, so a run that resumes keeps it
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch

from reglab.config import ConfigError, RunConfig, flatten, identity_changes

BUDGET_FIELDS = ("train.epochs", "train.max_steps")
"""Fields a run may be resumed with a larger value of, when the caller says so (``extend=True``)."""


class DamagedFile(ConfigError):
    """A file of a run or study directory cannot be read; the message names it and says what to do."""

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


def clean_json(value: Any) -> Any:
    """Non-finite floats become None so that every file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(clean_json(data), indent=2))
    os.replace(tmp, path)


def save_atomic(obj: Any, path: Path) -> None:
    save_all_atomic([(obj, path)])


def save_all_atomic(items: Sequence[tuple[Any, Path]]) -> None:
    """Save each object to a temporary file first, then rename them all into place: an interruption
    leaves the old files, or (within the renames' milliseconds) some new ones. A pack's checkpoints of
    one epoch are written so, that its runs resume together, from the same step."""
    written = []
    for obj, path in items:
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(obj, tmp)
        written.append((tmp, path))
    for tmp, path in written:
        os.replace(tmp, path)


def append_metrics(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(clean_json(record)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(path: Path, *, up_to_epoch: int | None = None) -> list[dict]:
    """Per-epoch records. A torn last line (a crash mid-write) is dropped; any other line that is not an
    epoch record raises `DamagedFile` naming it, so that no intact record after it is lost."""
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            epoch = record["epoch"]
        except (json.JSONDecodeError, TypeError, KeyError):
            if number == len(lines):
                break
            raise DamagedFile(path, f"line {number} is not an epoch record (only a torn last line is dropped); "
                                    f"delete {path.parent} to train this run again from the start") from None
        if up_to_epoch is not None and epoch > up_to_epoch:
            break
        records.append(record)
    return records


def resumed_metrics(path: Path, epoch: int) -> list[dict]:
    """The records of epochs 1 … `epoch`, the epochs a checkpoint has trained, each once and in order;
    a file that lacks any of them raises `DamagedFile` (a run resumed from it would report fewer
    epochs than it trained)."""
    records = read_metrics(path, up_to_epoch=epoch)
    found = [r["epoch"] for r in records]
    if found != list(range(1, epoch + 1)):
        shown = f"epochs {found[0]}–{found[-1]} ({len(found)} records)" if found else "no epoch"
        raise DamagedFile(path, f"holds {shown}, not the epochs 1–{epoch} its checkpoint has trained; "
                                f"delete {path.parent} to train this run again from the start")
    return records


def metrics_intact(run_dir: Path) -> bool:
    """Whether a finished run's metrics.jsonl reads (`read_metrics`) and holds the epochs 1, 2, … in
    order, up to at least the last epoch its summary.json says it trained: the epoch early stopping
    stopped it at (its final record is the best epoch, often earlier), else the one it diverged at,
    else its final epoch."""
    try:
        found = [r["epoch"] for r in read_metrics(Path(run_dir) / "metrics.jsonl")]
    except DamagedFile:
        return False
    try:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        final = (summary.get("final") or {}).get("epoch")
        last = summary.get("stopped_epoch") or summary.get("diverged_epoch") or final
    except (OSError, ValueError, AttributeError):
        last = None
    return found == list(range(1, len(found) + 1)) and (not isinstance(last, int) or last <= len(found))


def rewrite_metrics(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(clean_json(r)) + "\n" for r in records))
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers, never pickled code.

    A file that torch cannot read (truncated, overwritten) raises `DamagedFile` naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        remedy = ("delete it: the run's checkpoint.pt, if any, stands in for it (and `reglab train --out` "
                  "with the run's config writes it again without training)" if Path(path).name == "model.pt"
                  else "delete it to train this run again from the start")
        raise DamagedFile(path, f"damaged, torch cannot read it ({type(err).__name__}); {remedy}") from err


T = TypeVar("T")


def resume_or_restart(run_dir: Path, attempt: Callable[[bool], T]) -> T:
    """`attempt(True)`, which resumes from the checkpoint in `run_dir`; where that checkpoint is damaged
    (e.g. a disk filled mid-write), metrics.jsonl lacks the records of its epochs or config.json does
    not read (so the checkpoint's config is unknown), set the damaged file aside (checkpoint.pt.damaged,
    metrics.jsonl.damaged, config.json.damaged) and `attempt(False)`, which starts the run afresh."""
    own = {Path(run_dir) / name for name in ("checkpoint.pt", "metrics.jsonl", "config.json")}
    try:
        return attempt(True)
    except DamagedFile as err:
        if err.path not in own:
            raise
        damaged = err.path
    damaged.replace(damaged.with_name(damaged.name + ".damaged"))
    return attempt(False)


def read_pack(run_dir: Path) -> dict | None:
    """The pack a run started in (pack.json), None for a run that trained alone."""
    path = Path(run_dir) / "pack.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFile(path, f"not valid JSON ({err}); delete it to resume without the pack's record") from None


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no config.json; is {run_dir} a reglab run directory?")
    if not path.is_file():
        raise DamagedFile(path, f"not a file; is {run_dir} a reglab run directory?")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DamagedFile(path, f"not valid JSON ({err}); is {run_dir} a reglab run directory? If it is, "
                                "delete the directory to train the run again, or train into another one") from None
    if not isinstance(config, dict):
        raise DamagedFile(path, f"not a JSON object; is {run_dir} a reglab run directory?")
    return config


def read_run_config(run_dir: Path) -> RunConfig:
    """A run directory's config, validated: a value that does not validate (an edited file, say) names
    the file."""
    try:
        return RunConfig.from_dict(read_config(run_dir))
    except DamagedFile:
        raise
    except ConfigError as err:
        raise DamagedFile(Path(run_dir) / "config.json", f"{err}; was it edited?") from None


def check_directory(path: str | Path, what: str = "an output directory") -> Path:
    """`path`, refused with a one-line `ConfigError` where it or a folder above it is a file, or where
    the nearest existing one cannot be written to (so that nothing is computed or written before a
    directory cannot be made or filled). Creates nothing."""
    path = Path(path)
    for above in (path, *path.parents):
        if above.exists() and not above.is_dir():
            raise ConfigError(f"{path}: is a file; {what} must be a directory" if above == path else
                              f"{path}: cannot be {what}, {above} is a file")
        if above.is_dir():
            if not os.access(above, os.W_OK | os.X_OK):
                raise ConfigError(f"{path}: cannot be {what}, {above} is not writable")
            break
    return path


def make_directory(path: Path, what: str = "an output directory") -> Path:
    """``mkdir -p path`` after `check_directory`: what the OS still refuses (a read-only or virtual file
    system, a full disk) becomes a one-line `ConfigError` naming the path."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{path}: cannot be {what} ({err.strerror or err})") from None
    return path


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """One process at a time trains in `run_dir` (its lock released by the OS if the process dies): two
    would interleave their epochs in metrics.jsonl. Creates the directory to lock it, and removes it
    again if it is still empty when the run fails (e.g. its data did not load)."""
    check_directory(run_dir, "a run directory")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{run_dir}: another reglab process is training this run") from None
        yield
    except BaseException:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()
        raise
    finally:
        os.close(fd)


def config_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (old, new) for every field that differs between two config dicts."""
    a, b = flatten(old), flatten(new)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def check_resumable(run_dir: Path, config: dict, *, extend: bool = False) -> None:
    """Refuse to continue the run in `run_dir` with a config other than the one it was started with.

    Only a larger budget (`BUDGET_FIELDS`) is accepted, and only with ``extend=True``; execution
    settings may differ, and fields added to reglab since may be missing (`identity_changes`); every
    other change raises a `ConfigError`
    naming the changed fields. A directory without config.json is new; a study's directory is refused.
    """
    check_directory(run_dir, "a run directory")
    if (run_dir / "study.db").exists():
        raise ConfigError(f"{run_dir}: holds a study (study.db), not a run; use another directory for the run")
    if not (run_dir / "config.json").exists():
        return
    changes = identity_changes(read_config(run_dir), config)
    grown = {k: v for k, v in changes.items() if k in BUDGET_FIELDS and (v[0] is None) <= (v[1] is None)
             and (v[1] is None or (v[0] is not None and v[1] >= v[0]))}
    other = {k: v for k, v in changes.items() if k not in grown}
    listed = list((other or grown).items())
    shown = "; ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in listed[:5]) + (
        f"; and {len(listed) - 5} more" if len(listed) > 5 else "")
    if other:
        raise ConfigError(f"{run_dir}: holds a run with another config ({shown}); resume it with the same "
                          "options, or train into another directory")
    if grown and not extend:
        raise ConfigError(f"{run_dir}: holds a run with a smaller budget ({shown}); pass --extend "
                          "(extend=True) to train it further, or train into another directory")
    if grown and config.get("regularize", {}).get("swa", {}).get("epochs"):
        raise ConfigError(f"{run_dir}: holds a run that averages its last epochs (regularize.swa), which a "
                          f"larger budget ({shown}) would move; train the longer run into another directory")
