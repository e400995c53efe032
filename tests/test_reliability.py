"""Nothing wrong is recorded: a run directory resumes only with its own config, damaged files are
named with what to do, a lost run is never reported as done, and reports of odd studies stay honest."""

import json
import re
import shutil
import sqlite3

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FailEverything
from reglab.config import ConfigError, RunConfig, identity_changes
from reglab.report import NO_RESULT, notes, write_report
from reglab.study import LocalExecutor, StudySpec, load_study, run_study
from reglab.study.results import run_record
from reglab.study.stats import summarize
from reglab.study.store import RunRow
from reglab.train import train_run
from reglab.train.loop import best_epoch, load_trained
from reglab.train.rundir import DamagedFile, metrics_intact

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
        "model": {"name": "mlp", "options": {"widths": [16]}}, "optim": {"name": "momentum", "lr": 0.05},
        "regularize": {"dropout": {"p": 0.1}},
        "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 128}}


def tiny(**overrides) -> RunConfig:
    return RunConfig.from_dict(BASE).override(overrides)


def without_seconds(epochs):
    return [{k: v for k, v in e.items() if not k.endswith("seconds")} for e in epochs]


def files(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir()}


# ----------------------------------------------------------------------------------- 1: resume
def test_resume_refuses_another_config_naming_fields_and_touches_nothing(tmp_path):
    run_dir = tmp_path / "a"
    train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    before = files(run_dir)
    for overrides, named in (({"optim.lr": 0.01, "regularize.l2": 0.01}, ["optim.lr 0.05 -> 0.01",
                                                                          "regularize.l2 0.0 -> 0.01"]),
                             ({"optim.name": "adam"}, ["optim.name 'momentum' -> 'adam'"]),
                             ({"model.options.widths": [32]}, ["model.options.widths [16] -> [32]"])):
        with pytest.raises(ConfigError) as err:
            train_run(tiny(**{"train.epochs": 1, **overrides}), run_dir=run_dir)
        assert all(name in str(err.value) for name in named), str(err.value)
        assert files(run_dir) == before  # config.json, metrics and checkpoint untouched


def test_execution_settings_differing_or_added_since_a_run_started_do_not_block_its_resume(tmp_path):
    """CUDA's kernel choices (channels-last, cuDNN's autotuner, CUDA graphs, compile) are not what a run
    is: a run or study started before one of them changed default, or existed, resumes and keeps its
    finished runs; any other change is still refused."""
    run_dir = tmp_path / "a"
    train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    stored = json.loads((run_dir / "config.json").read_text())
    del stored["train"]["cudnn_benchmark"]  # a field added later
    stored["train"].update(channels_last=False, cuda_graphs=False)  # defaults then
    (run_dir / "config.json").write_text(json.dumps(stored))
    train_run(tiny(), run_dir=run_dir, extend=True)
    with pytest.raises(ConfigError, match=r"another config \(optim.lr 0.05 -> 0.01\)"):
        train_run(tiny(**{"optim.lr": 0.01}), run_dir=run_dir, extend=True)

    out = tmp_path / "study"
    spec = StudySpec.from_dict(SPEC)
    first = run_study(spec, out, executor=LocalExecutor(workers=1), progress=False)
    with sqlite3.connect(out / "study.db") as db:  # the rows as a study started before these defaults stored them
        for run_id, config in db.execute("SELECT run_id, config FROM runs").fetchall():
            old = json.loads(config)
            del old["train"]["cudnn_benchmark"]
            old["train"]["channels_last"] = False
            db.execute("UPDATE runs SET config = ?, config_hash = 'old' WHERE run_id = ?", (json.dumps(old), run_id))
    again = run_study(spec, out, executor=LocalExecutor(workers=1), progress=False)
    assert again.executed == [] and len(again.skipped) == 4 and epochs_of(again).equals(epochs_of(first))
    with sqlite3.connect(out / "study.db") as db:  # a default that changes the run itself: still refused
        old = json.loads(db.execute("SELECT config FROM runs WHERE run_id = 'l2__s1'").fetchone()[0])
        old["optim"]["momentum"] = 0.5
        db.execute("UPDATE runs SET config = ? WHERE run_id = 'l2__s1'", (json.dumps(old),))
    with pytest.raises(ConfigError, match=r"resolved configs of 1 runs changed \(reglab's defaults changed\?\)"):
        run_study(spec, out, executor=LocalExecutor(workers=1), progress=False)


def test_a_field_missing_from_a_stored_config_counts_as_its_default():
    """A field added to reglab after a config was written is missing there; at its default it is no
    change, at another value it is, and so is a default that changed (the stored value is the old one)."""
    config = tiny().to_dict()
    stored = json.loads(json.dumps(config))
    del stored["regularize"]["sam_rho"], stored["regularize"]["dropblock"], stored["train"]["max_steps"]
    assert identity_changes(stored, config) == {} == identity_changes(config, stored)
    assert identity_changes(stored, tiny(**{"regularize.sam_rho": 0.05}).to_dict()) == {
        "regularize.sam_rho": (0.0, 0.05)}
    stored["optim"]["betas"] = [0.8, 0.999]  # a default that changed since: refused
    stored["train"]["compile"] = True  # an execution setting: never a change
    assert identity_changes(stored, config) == {"optim.betas": ([0.8, 0.999], [0.9, 0.999])}
    stored["model"]["options"]["depth"] = 3  # a free-form option has no default: missing is a change
    assert identity_changes(stored, config)["model.options.depth"] == (3, None)


def test_runs_stored_before_a_field_existed_resume(tmp_path):
    """A run directory and a study whose stored configs lack a field reglab added since (at its default)
    resume and keep every finished run."""
    run_dir = tmp_path / "a"
    train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    stored = json.loads((run_dir / "config.json").read_text())
    del stored["regularize"]["sam_rho"]
    (run_dir / "config.json").write_text(json.dumps(stored))
    train_run(tiny(), run_dir=run_dir, extend=True)

    out, serial = tmp_path / "study", LocalExecutor(workers=1)
    spec = StudySpec.from_dict(SPEC)
    first = run_study(spec, out, executor=serial, progress=False)
    with sqlite3.connect(out / "study.db") as db:
        for run_id, config in db.execute("SELECT run_id, config FROM runs").fetchall():
            old = json.loads(config)
            del old["regularize"]["dropblock"]
            db.execute("UPDATE runs SET config = ? WHERE run_id = ?", (json.dumps(old), run_id))
            (out / "runs" / run_id / "config.json").write_text(json.dumps(old))
    again = run_study(spec, out, executor=serial, progress=False)
    assert again.executed == [] and len(again.skipped) == 4 and epochs_of(again).equals(epochs_of(first))
    (out / "study.db").unlink()  # lost: rebuilt from the run directories, which hold these configs
    rebuilt = run_study(spec, out, executor=serial, progress=False, rebuild=True)
    assert rebuilt.executed == [] and len(rebuilt.skipped) == 4


def test_a_study_spec_whose_execution_settings_changed_resumes(tmp_path):
    """The same in the spec itself (`reglab compare --set train.compile=true`, or the TOML edited): a
    base and an arm that change only execution settings keep every finished run; another change in the
    same tables is refused, naming them."""
    out, serial = tmp_path / "study", LocalExecutor(workers=1)
    spec = StudySpec.from_dict(SPEC)
    first = run_study(spec, out, executor=serial, progress=False)
    changed = {**SPEC, "base": {**BASE, "train": {**BASE["train"], "compile": True, "cuda_graphs": False}},
               "arms": {"base": {"train": {"channels_last": False}}, "l2": SPEC["arms"]["l2"]}}
    again = run_study(StudySpec.from_dict(changed), out, executor=serial, progress=False)
    assert again.executed == [] and len(again.skipped) == 4 and epochs_of(again).equals(epochs_of(first))
    back = run_study(spec, out, executor=serial, progress=False)  # and back again
    assert back.executed == [] and len(back.skipped) == 4
    changed["arms"]["base"]["train"]["batch_size"] = 16
    with pytest.raises(ConfigError, match=r"spec changed since it was started \(arms.base\); use --force"):
        run_study(StudySpec.from_dict(changed), out, executor=serial, progress=False)


def test_a_larger_budget_needs_extend_and_then_matches_an_uninterrupted_run(tmp_path):
    run_dir = tmp_path / "a"
    train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    with pytest.raises(ConfigError, match=r"train.epochs 1 -> 2.*--extend"):
        train_run(tiny(), run_dir=run_dir)
    train_run(tiny(), run_dir=run_dir, extend=True)
    with pytest.raises(ConfigError, match=r"another config \(train.epochs 2 -> 1\)"):  # shrinking: refused
        train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir, extend=True)
    straight = train_run(tiny())
    assert json.loads((run_dir / "summary.json").read_text())["config"]["train"]["epochs"] == 2
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert without_seconds(lines) == without_seconds(straight.epochs)


# ------------------------------------------------------------------------------- 6: corruption
def test_a_truncated_checkpoint_is_named_with_what_to_do(tmp_path):
    run_dir = tmp_path / "a"
    train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    checkpoint = run_dir / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(DamagedFile, match=f"^{checkpoint}: damaged.*delete it to train this run again"):
        train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    weights = run_dir / "model.pt"  # the weights: nothing to retrain, the checkpoint stands in
    weights.write_bytes(b"not weights")
    with pytest.raises(DamagedFile, match=r"model.pt: damaged.*delete it: the run's checkpoint.pt, if any, stands in"):
        load_trained(run_dir)


def test_a_damaged_metrics_line_is_named_not_taken_for_the_end_of_the_file(tmp_path):
    """Only a torn last line (a crash mid-write) is dropped: a damaged line before intact ones is named,
    and nothing is rewritten; a file that lacks epochs its checkpoint trained is named too."""
    run_dir = tmp_path / "a"
    cfg = tiny(**{"train.epochs": 3})
    train_run(cfg, run_dir=run_dir)
    metrics = run_dir / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], '{"epoch": 2, "tr', lines[2]]) + "\n")
    before = files(run_dir)
    with pytest.raises(DamagedFile, match=f"^{metrics}: line 2 is not an epoch record.*delete {run_dir}"):
        train_run(cfg, run_dir=run_dir)
    assert files(run_dir) == before
    metrics.write_text("\n".join([lines[0], lines[2]]) + "\n")  # epoch 2's record lost
    with pytest.raises(DamagedFile, match=r"holds epochs 1–3 \(2 records\), not the epochs 1–3 its checkpoint"):
        train_run(cfg, run_dir=run_dir)
    metrics.write_text("\n".join([*lines, '{"epoch": 4, "tr']))  # a torn last line: dropped, as before
    assert train_run(cfg, run_dir=run_dir).epochs[-1]["epoch"] == 3


def test_a_checkpoint_from_another_kind_of_device_is_refused_not_taken_for_damaged(tmp_path):
    """A data-order generator's state holds only on its own kind of device (CPU: Mersenne Twister,
    CUDA: Philox): a run started where `device = "auto"` meant one kind is refused where it means the
    other, with what to do, and its checkpoint is kept."""
    run_dir = tmp_path / "a"
    cfg = tiny(**{"train.epochs": 2})
    train_run(tiny(**{"train.epochs": 1}), run_dir=run_dir)
    checkpoint = run_dir / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["rng"]["data"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state
    torch.save(state, checkpoint)
    with pytest.raises(ConfigError, match=r"checkpoint.pt: was written on another kind of device than this run's "
                                          r"cpu .*Resume it there \(set train.device\)") as err:
        train_run(cfg, run_dir=run_dir, extend=True)
    assert not isinstance(err.value, DamagedFile) and checkpoint.exists()


SPEC = {"name": "corrupt", "seeds": 2, "base": BASE, "arms": {"base": {}, "l2": {"regularize": {"l2": 0.001}}}}


def epochs_of(study):
    timings = [c for c in study.epochs if c.endswith("seconds")]
    frame = study.epochs.drop(columns=timings).sort_values(["run_id", "epoch"])
    return frame.reset_index(drop=True)


def test_lost_files_and_a_damaged_checkpoint_or_index_are_recovered(tmp_path, capsys):
    out = tmp_path / "study"
    serial = LocalExecutor(workers=1)
    first = run_study(StudySpec.from_dict(SPEC), out, executor=serial, progress=False)
    reference = epochs_of(first)

    # a run whose summary is gone is not "done", and its damaged checkpoint does not block the rerun
    run_dir = out / "runs" / "l2__s1"
    (run_dir / "summary.json").unlink()
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    lost = load_study(out).runs.set_index("run_id").loc["l2__s1"]
    assert lost["status"] == "missing" and "summary.json is gone" in lost["error"]
    capsys.readouterr()
    again = run_study(StudySpec.from_dict(SPEC), out, executor=serial, progress=True)
    assert again.executed == ["l2__s1"] and (again.runs["status"] == "done").all()
    assert (run_dir / "checkpoint.pt.damaged").exists()
    said = capsys.readouterr().err  # not silently: the run says what was set aside
    assert ("l2__s1: checkpoint.pt was damaged; set aside as checkpoint.pt.damaged, the run trained again from "
            "the start") in said
    assert epochs_of(again).equals(reference)

    # a damaged index: named, with the command that rebuilds it; the rebuild keeps every finished run
    (out / "study.db").write_bytes(b"garbage" * 100)
    for name in ("study.db-wal", "study.db-shm"):
        (out / name).unlink(missing_ok=True)
    with pytest.raises(DamagedFile, match=r"study.db: damaged .*--rebuild-index"):
        run_study(StudySpec.from_dict(SPEC), out, executor=serial, progress=False)
    rebuilt = run_study(StudySpec.from_dict(SPEC), out, executor=serial, progress=True, rebuild=True)
    assert rebuilt.executed == [] and len(rebuilt.skipped) == 4
    assert ("study.db: index rebuilt from the run directories (4 of 4 runs finished; the damaged one set aside "
            "as study.db.damaged)") in capsys.readouterr().err
    assert (out / "study.db.damaged").exists()
    assert (rebuilt.runs["status"] == "done").all()
    assert epochs_of(rebuilt).equals(reference)
    assert rebuilt.summary().equals(first.summary())


def test_damaged_metrics_retrain_their_run_and_a_lost_index_deletes_nothing(tmp_path):
    out = tmp_path / "study"
    serial = LocalExecutor(workers=1)
    spec = StudySpec.from_dict(SPEC)
    reference = epochs_of(run_study(spec, out, executor=serial, progress=False))

    # a finished run's metrics lose a record: the run is trained again (the file set aside), not reported short
    metrics = out / "runs" / "l2__s1" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[1] + "\n")
    again = run_study(spec, out, executor=serial, progress=False)
    assert again.executed == ["l2__s1"] and (again.runs["status"] == "done").all()
    assert (metrics.parent / "metrics.jsonl.damaged").exists()
    assert epochs_of(again).equals(reference)

    # study.db lost or emptied: refused with what to do, every run directory kept; --rebuild-index keeps all
    for lose in (lambda db: db.unlink(), lambda db: db.write_bytes(b"")):
        for name in ("study.db", "study.db-wal", "study.db-shm"):
            if name != "study.db":
                (out / name).unlink(missing_ok=True)
        lose(out / "study.db")
        before = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*")}
        with pytest.raises(DamagedFile, match=r"study.db: (missing|empty), but .*runs holds 4 run directories; "
                                              r"index them again .*--rebuild-index"):
            run_study(spec, out, executor=serial, progress=False)
        assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*")} == before
        rebuilt = run_study(spec, out, executor=serial, progress=False, rebuild=True)
        assert rebuilt.executed == [] and epochs_of(rebuilt).equals(reference)


def test_an_interrupted_rebuild_or_a_partial_index_never_trains_a_finished_run_again(tmp_path, monkeypatch):
    """A rebuild killed after indexing some runs left a sound but partial study.db, and the next run
    deleted the unindexed finished runs and trained them afresh. The rebuild now renames its index into
    place whole, and a run directory the index lacks is adopted (finished: kept; else: resumed)."""
    from reglab.study import runner

    out = tmp_path / "study"
    serial = LocalExecutor(workers=1)
    spec = StudySpec.from_dict(SPEC)
    reference = epochs_of(run_study(spec, out, executor=serial, progress=False))
    (out / "study.db").write_bytes(b"garbage" * 100)
    for name in ("study.db-wal", "study.db-shm"):
        (out / name).unlink(missing_ok=True)
    adopted = []

    def adopt_then_die(store, task, position):
        if len(adopted) == 2:
            raise KeyboardInterrupt  # the driver killed mid-rebuild
        adopted.append(task.run_id)
        return real_adopt(store, task, position)

    real_adopt = runner.adopt
    monkeypatch.setattr(runner, "adopt", adopt_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, out, executor=serial, progress=False, rebuild=True)
    monkeypatch.setattr(runner, "adopt", real_adopt)
    assert (out / "study.db").read_bytes() == b"garbage" * 100  # the damaged index, untouched
    assert not list(out.glob(".rebuild-*"))
    rebuilt = run_study(spec, out, executor=serial, progress=False, rebuild=True)
    assert rebuilt.executed == [] and epochs_of(rebuilt).equals(reference)

    # a partial index (two runs missing from it): the missing runs are adopted, not deleted and retrained
    with sqlite3.connect(out / "study.db") as db:
        db.execute("DELETE FROM runs WHERE run_id IN ('l2__s0', 'l2__s1')")
    marker = out / "runs" / "l2__s0" / "marker"
    marker.write_text("kept")
    (out / "runs" / "l2__s1" / "summary.json").unlink()  # unfinished: resumes from its checkpoint
    again = run_study(spec, out, executor=serial, progress=False)
    assert again.executed == ["l2__s1"] and marker.read_text() == "kept"
    assert (again.runs["status"] == "done").all() and epochs_of(again).equals(reference)


def test_damaged_run_files_under_a_lost_index_retrain_or_resume_their_runs(tmp_path):
    """--rebuild-index over a run whose config.json does not read (its checkpoint's config is unknown:
    set aside, trained afresh) and one whose summary.json is not an object (resumed: nothing to train)."""
    out = tmp_path / "study"
    serial = LocalExecutor(workers=1)
    spec = StudySpec.from_dict(SPEC)
    reference = epochs_of(run_study(spec, out, executor=serial, progress=False))
    (out / "runs" / "l2__s1" / "config.json").write_text("garbage")
    (out / "runs" / "l2__s0" / "summary.json").write_text("[1, 2]")
    (out / "study.db").unlink()
    again = run_study(spec, out, executor=serial, progress=False, rebuild=True)
    assert sorted(again.executed) == ["l2__s0", "l2__s1"] and (again.runs["status"] == "done").all()
    assert (out / "runs" / "l2__s1" / "config.json.damaged").read_text() == "garbage"
    assert epochs_of(again).equals(reference)


def test_a_study_db_that_is_a_directory_and_a_figures_path_that_is_a_file_are_named(tmp_path):
    out = tmp_path / "study"
    study = run_study(StudySpec.from_dict({**SPEC, "seeds": 1}), out, executor=LocalExecutor(workers=1),
                      progress=False)
    figures = write_report(study)["figures"]
    shutil.rmtree(figures)
    figures.write_text("x")
    with pytest.raises(ConfigError, match=r"report/figures: .*file"):
        write_report(study)
    (out / "study.db").unlink()
    (out / "study.db").mkdir()
    with pytest.raises(DamagedFile, match=r"study.db: damaged .*--rebuild-index"):
        load_study(out)


def test_metrics_are_intact_only_up_to_the_last_epoch_a_run_trained_not_only_its_final_record(tmp_path):
    """An early-stopped run's final record is its best epoch, a diverged run's its last; a tail cut
    after the best epoch but before the stopping epoch is damage too."""
    def intact(epochs: int, **summary) -> bool:
        (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e}) + "\n" for e in range(1, epochs + 1)))
        (tmp_path / "summary.json").write_text(json.dumps(summary))
        return metrics_intact(tmp_path)

    stopped = {"final": {"epoch": 2}, "stopped_epoch": 5}
    assert intact(5, **stopped) and not intact(4, **stopped) and not intact(2, **stopped)
    diverged = {"final": {"epoch": 3}, "diverged_epoch": 3, "stopped_epoch": None}
    assert intact(3, **diverged) and not intact(2, **diverged)
    assert intact(4, final={"epoch": 4}) and not intact(3, final={"epoch": 4})


# ------------------------------------------------------------------------------------ 3, 8: reports
def test_report_of_a_study_without_a_finished_run_says_so(tmp_path):
    study = run_study(StudySpec.from_dict(SPEC), tmp_path / "s", executor=FailEverything(), progress=False)
    paths = write_report(study)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert NO_RESULT in markdown and NO_RESULT in page
    assert markdown.count("RuntimeError: boom") == 4


def test_markdown_report_escapes_title_description_and_baseline(tmp_path):
    spec = {**SPEC, "seeds": 1, "name": "<script>alert(1)</script>",
            "description": "<img src=x onerror=y> *b* ````", "arms": {"<b>base</b>": {}, "l2": {
                "regularize": {"l2": 0.001}}}, "base": {**BASE, "train": {**BASE["train"], "epochs": 1}}}
    study = run_study(StudySpec.from_dict(spec), tmp_path / "s", executor=LocalExecutor(workers=1),
                      progress=False)
    markdown = write_report(study)["markdown"].read_text()
    # the spec is shown verbatim in one fenced block that the description's four backticks cannot close
    (fence, code), = re.findall(r"^(`{3,})json\n(.*?)\n\1$", markdown, flags=re.M | re.S)
    assert len(fence) == 5 and json.loads(code) == study.spec.to_dict()
    text = markdown.replace(code, "")
    assert re.search(r"(?<!\\)<", text) is None  # elsewhere every "<" is an entity or backslash-escaped
    assert markdown.startswith("# Study: &lt;script&gt;alert(1)&lt;/script&gt;\n")
    assert "&lt;img src=x onerror=y&gt; \\*b\\* \\`\\`\\`\\`" in markdown
    assert "baseline: &lt;b&gt;base&lt;/b&gt;" in markdown


def test_an_arm_name_over_two_lines_keeps_each_markdown_table_row_on_one_line(tmp_path):
    spec = {**SPEC, "seeds": 1, "arms": {"base": {}, "two\nlines": {"regularize": {"l2": 0.001}}},
            "base": {**BASE, "train": {**BASE["train"], "epochs": 1}}}
    study = run_study(StudySpec.from_dict(spec), tmp_path / "s", executor=LocalExecutor(workers=1), progress=False)
    markdown = write_report(study)["markdown"].read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| two lines |")]
    assert len(rows) >= 5 and all(line.endswith("|") for line in rows)
    assert not any(line.startswith("lines") for line in markdown.splitlines())  # no row split in two


# ------------------------------------------------------------------------------- 5: spec load
@pytest.mark.parametrize(("arm", "error"), [
    ({"model": {"options": {"widths": [-5]}}}, "arms.bad.model.options.widths: widths must be positive"),
    ({"model": {"name": "vgg9", "options": {}}}, "arms.bad.model.name: 'vgg9' needs image input"),
    ({"model": {"name": "transformer", "options": {"d_model": 30, "heads": 4}}}, "arms.bad.model.options.heads"),
])
def test_every_arms_model_is_built_when_the_spec_loads(arm, error):
    with pytest.raises(ConfigError, match=re.escape(error)):
        StudySpec.from_dict({**SPEC, "base": {**BASE, "model": {"name": "mlp"}}, "arms": {"base": {}, "bad": arm}})


# ------------------------------------------------------------------------------- 2: threads
def test_a_run_uses_its_own_thread_count_whatever_the_process_has(tmp_path):
    torch.set_num_threads(2)  # the ambient count of an in-process run (torch's default on 2 cores)
    try:
        ambient = train_run(tiny(), run_dir=tmp_path / "a")
        assert torch.get_num_threads() == 2  # restored afterwards
    finally:
        torch.set_num_threads(1)
    one = train_run(tiny())
    assert ambient.threads == 1 and json.loads((tmp_path / "a" / "summary.json").read_text())["threads"] == 1
    assert without_seconds(ambient.epochs) == without_seconds(one.epochs)


# ------------------------------------------------------------------------------- 10: wording
def test_train_loss_in_training_mode_has_no_better_or_worse_verdict():
    rng = np.random.default_rng(0)
    runs = pd.DataFrame({"arm": ["base"] * 4 + ["dropout"] * 4, "status": ["done"] * 8,
                         "final_train_loss": np.r_[0.10 + 0.001 * rng.standard_normal(4),
                                                   0.30 + 0.001 * rng.standard_normal(4)],
                         "final_test_loss": np.r_[0.50 + 0.001 * rng.standard_normal(4),
                                                  0.60 + 0.001 * rng.standard_normal(4)]})
    rows = summarize(runs, ["base", "dropout"], "base").set_index(["arm", "metric"])
    assert rows.loc[("dropout", "final_train_loss"), "verdict"].startswith("higher (p_holm=")
    assert rows.loc[("dropout", "final_test_loss"), "verdict"].startswith("worse (p_holm=")
    assert "training mode" in rows.loc[("dropout", "final_train_loss"), "label"]
    assert "can exclude 0 while the verdict says \"not distinguishable\"" in notes("holm")


def test_best_test_loss_is_the_lowest_test_loss_of_any_epoch():
    epochs = [{"epoch": 1, "test_loss": 0.9, "test_acc": 0.5}, {"epoch": 2, "test_loss": 0.4, "test_acc": 0.6},
              {"epoch": 3, "test_loss": 0.7, "test_acc": 0.7}]
    row = RunRow("a__s0", "a", 0, 0, "done", {}, "", 1, None, None, 1.0, None,
                 {"final": epochs[-1], "best": best_epoch(epochs)})
    record = run_record(row, epochs)
    assert record["best_test_acc"] == 0.7 and record["best_epoch"] == 3
    assert record["best_test_loss"] == min(e["test_loss"] for e in epochs)


def test_errors_are_stated_on_one_line():
    from reglab.errors import one_line

    cuda = RuntimeError("CUDA error: operation not permitted when stream is capturing\nCUDA kernel errors might be "
                        "asynchronously reported\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1")
    capture = "RuntimeError: CUDA error: operation not permitted when stream is capturing"
    assert one_line(cuda, first_line=True) == capture
    pydantic_like = ValueError("1 validation error\n  lr\n    must be > 0")
    assert one_line(pydantic_like) == "ValueError: 1 validation error lr must be > 0"
    assert one_line(KeyboardInterrupt()) == one_line(KeyboardInterrupt(), first_line=True) == "KeyboardInterrupt"
