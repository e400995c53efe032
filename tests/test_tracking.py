"""Experiment tracking against the real libraries: TensorBoard event files read back with TensorBoard's
own `EventAccumulator`, MLflow runs read back with `MlflowClient.search_runs`; both must hold exactly the
runs and per-epoch values of the study store, once each, whatever the executor and however often the
study is resumed."""

import importlib.util

import pytest
from typer.testing import CliRunner

from reglab.cli import app
from reglab.config import ConfigError
from reglab.report import write_report
from reglab.study import StudySpec, load_study, make_executor, run_study
from reglab.study.tracking import parse_sinks

pytest.importorskip("mlflow", reason="pip install 'reglab[tracking]'")
pytest.importorskip("tensorboard", reason="pip install 'reglab[tracking]'")
from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

EPOCHS = 3
SPEC = {
    "name": "tracked", "seeds": 2,
    "base": {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
             "model": {"name": "mlp", "options": {"widths": [16]}}, "optim": {"name": "momentum", "lr": 0.05},
             "train": {"epochs": EPOCHS, "batch_size": 64, "device": "cpu", "eval_train_samples": 128}},
    "arms": {"base": {}, "dropout": {"regularize": {"dropout": {"p": 0.2}}}},
}
METRICS = ["train_loss", "train_acc", "train_eval_acc", "test_loss", "test_acc", "lr"]


def store_values(study, run_id: str, metric: str) -> list[tuple[int, float]]:
    rows = study.epochs[study.epochs["run_id"] == run_id]
    return [(int(e), float(v)) for e, v in zip(rows["epoch"], rows[metric], strict=True)]


def check_tensorboard(out, study) -> None:
    root = out / "tensorboard"
    assert sorted(str(p.relative_to(root)) for p in root.glob("*/s*")) == \
        sorted(f"{r.arm}/s{r.seed}" for r in study.runs.itertuples())
    for run in study.runs.itertuples():
        events = EventAccumulator(str(root / run.arm / f"s{run.seed}"))
        events.Reload()
        for metric in METRICS:
            logged = [(e.step, e.value) for e in events.Scalars(metric)]
            expected = store_values(study, run.run_id, metric)
            assert [s for s, _ in logged] == [s for s, _ in expected] == list(range(1, EPOCHS + 1))
            assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)  # float32
        hparams = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
        values = hparams.session_start_info.hparams
        assert values["arm"].string_value == run.arm and values["seed"].number_value == run.seed
        expected_p = 0.2 if run.arm == "dropout" else 0.0
        assert values["regularize.dropout.p"].number_value == pytest.approx(expected_p)
        final = events.Scalars("hparam/test_acc")
        assert [e.value for e in final] == pytest.approx([run.final_test_acc], rel=1e-6)


def mlflow_runs(out):
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("reglab.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def check_mlflow(out, study) -> None:
    client, parents, children = mlflow_runs(out)
    assert len(parents) == 1 and parents[0].data.params["arms"] == "base,dropout"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted((c.data.tags["arm"], c.data.tags["seed"]) for c in children) == \
        sorted((r.arm, str(r.seed)) for r in study.runs.itertuples())
    for child in children:
        run_id = child.data.tags["reglab.run_id"]
        assert child.info.status == "FINISHED" and child.data.tags["reglab.status"] == "done"
        assert float(child.data.params["regularize.dropout.p"]) == (0.2 if child.data.tags["arm"] == "dropout"
                                                                     else 0.0)
        for metric in METRICS:
            history = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, metric))
            assert history == store_values(study, run_id, metric)  # float64 in SQLite: exact


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """A study run without tracking, then resumed twice with both sinks, then reported."""
    out = tmp_path_factory.mktemp("resumed")
    spec = StudySpec.from_dict(SPEC)
    first = run_study(spec, out, progress=False)
    assert not (out / "tensorboard").exists() and not (out / "mlflow.db").exists()  # off by default
    second = run_study(spec, out, progress=False, log="tensorboard,mlflow")
    third = run_study(spec, out, progress=False, log=["tensorboard", "mlflow"])
    third.tracker.log_report(write_report(third)["html"].parent)
    assert len(first.executed) == 4 and second.executed == third.executed == []
    return out


def test_catch_up_logs_every_finished_run_once_to_tensorboard(resumed):
    check_tensorboard(resumed, load_study(resumed))


def test_catch_up_logs_every_finished_run_once_to_mlflow_with_the_report(resumed):
    study = load_study(resumed)
    check_mlflow(resumed, study)
    client, parents, _ = mlflow_runs(resumed)
    files = {a.path for a in client.list_artifacts(parents[0].info.run_id, "report")}
    assert {"report/report.html", "report/report.md", "report/summary.csv"} <= files
    assert parents[0].info.status == "FINISHED"


needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray: pip install 'reglab[ray]'")


@pytest.mark.parametrize("executor", [
    pytest.param(("packed", {"pack": 2}), id="packed"),
    pytest.param(("local", {"workers": 2}), id="process-pool", marks=pytest.mark.slow),
    pytest.param(("ray", {"workers": 2}), id="ray", marks=[pytest.mark.ray, needs_ray]),
])
def test_the_driver_logs_live_from_every_executor(tmp_path, executor):
    name, options = executor
    spec = StudySpec.from_dict({**SPEC, "log": ["tensorboard", "mlflow"]})
    run_study(spec, tmp_path, executor=make_executor(name, **options), progress=False)
    study = load_study(tmp_path)
    assert set(study.runs["status"]) == {"done"}
    check_tensorboard(tmp_path, study)
    check_mlflow(tmp_path, study)


def test_a_force_rerun_replaces_its_records(tmp_path):
    spec = StudySpec.from_dict({**SPEC, "seeds": 1, "log": ["tensorboard", "mlflow"]})
    run_study(spec, tmp_path, progress=False)
    changed = StudySpec.from_dict({**spec.to_dict(), "arms": {"base": {}, "dropout": {"regularize": {
        "dropout": {"p": 0.5}}}}})
    result = run_study(changed, tmp_path, progress=False, force=True)
    assert result.executed == ["dropout__s0"]
    _, _, children = mlflow_runs(tmp_path)
    assert sorted(c.data.tags["reglab.run_id"] for c in children) == ["base__s0", "dropout__s0"]
    assert [c.data.params["regularize.dropout.p"] for c in children if c.data.tags["arm"] == "dropout"] == ["0.5"]
    events = EventAccumulator(str(tmp_path / "tensorboard" / "dropout" / "s0"))
    events.Reload()
    assert [e.step for e in events.Scalars("test_acc")] == [1, 2, 3]  # replaced, not appended


def test_sinks_are_named_and_checked(tmp_path):
    assert parse_sinks("tensorboard, mlflow=sqlite:///x.db") == {"tensorboard": None, "mlflow": "sqlite:///x.db"}
    assert parse_sinks(None) == parse_sinks("") == {}
    with pytest.raises(ConfigError, match=r"^log: .*unknown sink 'wandb'"):
        StudySpec.from_dict({**SPEC, "log": ["wandb"]})
    with pytest.raises(ConfigError, match=r"^log: unknown sink 'tb'"):
        run_study(StudySpec.from_dict(SPEC), tmp_path / "study", log="tb")
    assert not (tmp_path / "study").exists()  # refused before anything is written
    assert StudySpec.from_dict({**SPEC, "log": ["mlflow"]}).spec_hash == StudySpec.from_dict(SPEC).spec_hash


def test_compare_log_option_reaches_the_sinks(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text('name = "tracked"\nseeds = 1\n[base]\ndata = { name = "mnist1d", train_subset = 256, '
                    'test_subset = 256 }\nmodel.options.widths = [16]\ntrain = { epochs = 2, batch_size = 64, '
                    'device = "cpu" }\n[arms.base]\n')
    runner = CliRunner()
    bad = runner.invoke(app, ["compare", str(toml), "--out", str(tmp_path / "bad"), "--log", "wandb"])
    assert bad.exit_code != 0 and "unknown sink 'wandb'" in str(bad.exception) and not (tmp_path / "bad").exists()
    result = runner.invoke(app, ["compare", str(toml), "--out", str(tmp_path / "s"), "--workers", "1",
                                 "--log", "tensorboard"])
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "s" / "tensorboard" / "base" / "s0").glob("events.out.tfevents.*"))
    assert not (tmp_path / "s" / "mlflow.db").exists()
