"""`reglab train`: one run, with a progress bar, final metrics, or one JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reglab.cli.app import app, console, err_console
from reglab.cli.options import PathOpt, build_run_config

Opt = typer.Option


@app.command()
def train(
    dataset: Annotated[str | None, Opt(help="data set (see `reglab datasets`)")] = None,
    model: Annotated[str | None, Opt(help="model (see `reglab models`)")] = None,
    epochs: Annotated[int | None, Opt(help="number of epochs")] = None,
    batch_size: Annotated[int | None, Opt(help="mini-batch size; 0 = full batch")] = None,
    lr: Annotated[float | None, Opt(help="learning rate")] = None,
    optimizer: Annotated[str | None, Opt(help="sgd|momentum|nesterov|rmsprop|adam|adamw")] = None,
    weight_decay: Annotated[float | None, Opt(help="optimizer weight decay (decoupled for adamw)")] = None,
    schedule: Annotated[str | None, Opt(help="constant|step|cosine|linear|plateau")] = None,
    warmup: Annotated[float | None, Opt(help="linear warm-up epochs")] = None,
    l1: Annotated[float | None, Opt(help="adds l1·Σ|w| to the loss")] = None,
    l2: Annotated[float | None, Opt(help="adds (l2/2)·Σw² to the loss")] = None,
    dropout: Annotated[float | None, Opt(help="dropout drop probability p")] = None,
    stochastic_depth: Annotated[float | None, Opt(help="stochastic depth rate 1 − p_L")] = None,
    ema: Annotated[float | None, Opt(help="evaluate an EMA of the weights with this decay")] = None,
    swa: Annotated[int | None, Opt(help="stochastic weight averaging: evaluate the average of the last N "
                                        "epochs' weights (lr: --set regularize.swa.lr=…)")] = None,
    label_smoothing: Annotated[float | None, Opt(help="label smoothing ε")] = None,
    input_noise: Annotated[float | None, Opt(metavar="SIGMA", help="Gaussian input noise: train on x + σ·ε "
                                             "(σ in training-set standard deviations)")] = None,
    mixup: Annotated[float | None, Opt(help="mixup Beta(α, α)")] = None,
    cutmix: Annotated[float | None, Opt(help="cutmix Beta(α, α)")] = None,
    sam: Annotated[float | None, Opt(help="sharpness-aware minimisation radius ρ")] = None,
    grad_clip: Annotated[float | None, Opt(help="clip the gradient norm")] = None,
    max_norm: Annotated[float | None, Opt(help="max-norm constraint: each unit's incoming weights ‖w‖₂ ≤ c")] = None,
    patience: Annotated[int | None, Opt(help="early-stopping patience (needs --val-split)")] = None,
    val_split: Annotated[float | None, Opt(help="fraction of training data held out")] = None,
    norm: Annotated[str | None, Opt(help="none|batch|layer")] = None,
    loss: Annotated[str | None, Opt(help="ce|mse")] = None,
    objective: Annotated[str | None, Opt(help="drop|rs|rs+r1|rs+r2|drop-r2|drop-r1")] = None,
    train_subset: Annotated[int | None, Opt(help="keep the first N training samples (--val-split is carved "
                                                 "from them)")] = None,
    data_dir: Annotated[Path | None, PathOpt(help="directory searched first for data files")] = None,
    seed: Annotated[int | None, Opt(help="the run's one seed")] = None,
    device: Annotated[str | None, Opt(help="auto|cpu|cuda|cuda:N")] = None,
    amp: Annotated[bool | None, Opt("--amp/--no-amp", help="bf16 autocast on CUDA")] = None,
    compile: Annotated[bool | None, Opt("--compile/--no-compile", help="torch.compile on CUDA")] = None,
    config: Annotated[Path | None, PathOpt(help="TOML file with a run config")] = None,
    set_: Annotated[list[str] | None, Opt("--set", help="KEY=VALUE override, e.g. optim.lr=0.1")] = None,
    out: Annotated[Path | None, PathOpt(help="run directory (metrics, checkpoints); an existing one is resumed "
                                         "if the config is the same")] = None,
    extend: Annotated[bool, Opt(help="resume --out with a larger budget (--epochs) than it was started "
                                     "with; without --config, its stored config is the base")] = False,
    as_json: Annotated[bool, Opt("--json", help="print one JSON object: config and per-epoch metrics")] = False,
) -> None:
    """Train one model and print its final metrics."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "set_", "out", "as_json", "extend")}
    from reglab.config import ConfigError
    from reglab.theory.training import train_run
    from reglab.train.loop import resolve_device
    from reglab.train.rundir import check_resumable, clean_json, read_run_config

    if extend and out is None:
        raise ConfigError("--extend: needs --out, the run directory to extend")
    stored = out is not None and extend and config is None and (out / "config.json").is_file()
    cfg = build_run_config(config, flags, set_ or [],
                           base=read_run_config(out).to_dict() if stored else None)
    resolve_device(cfg.train.device)  # a missing device is refused before anything is written
    if out is not None:
        check_resumable(out, cfg.to_dict(), extend=extend)
        if (out / "summary.json").is_file() and not (out / "checkpoint.pt").is_file():
            raise ConfigError(f"{out}: holds a finished run (summary.json) and no checkpoint to continue from "
                              "(train.checkpoint_every = 0?); its results stay there; use another --out to train again")
    live = err_console.is_terminal and not as_json
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err_console,
                  transient=True, disable=not live) as progress:
        task = progress.add_task(f"{cfg.model.name} on {cfg.data.name}", total=cfg.train.epochs, status="")

        def show(epoch: int, _model, metrics: dict) -> None:
            acc = f" test acc {metrics['test_acc']:.4f}" if "test_acc" in metrics else ""
            status = f"loss {metrics['train_loss']:.4f}{acc}"
            progress.update(task, completed=epoch, status=status)
            if not live and not as_json:  # logs and pipes: one line per epoch as it ends
                err_console.print(f"epoch {epoch}/{cfg.train.epochs}: {status}", highlight=False, soft_wrap=True)

        result = train_run(cfg, run_dir=out, callbacks=[show], extend=extend)
    if as_json:
        print(json.dumps(clean_json(result.to_dict())))
        return
    table = Table(title=f"{cfg.model.name} on {cfg.data.name} — seed {cfg.seed}, {result.device}")
    table.add_column("epoch", justify="right")
    keys = [k for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
            if k in result.epochs[0]]
    for k in keys:
        table.add_column(k, justify="right")
    for e in result.epochs:
        table.add_row(str(e["epoch"]), *(f"{e[k]:.4g}" if e[k] is not None else "—" for k in keys))
    console.print(table)
    status = f"[red]diverged at epoch {result.diverged_epoch}[/]" if result.status == "diverged" else "done"
    train_s, eval_s = (sum(e.get(k, 0.0) for e in result.epochs) for k in ("train_seconds", "eval_seconds"))
    console.print(f"status: {status}; {result.num_params:,} parameters; {result.seconds:.1f} s "
                  f"(training {train_s:.1f} s, evaluation {eval_s:.1f} s)")
