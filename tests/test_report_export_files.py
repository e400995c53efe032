"""Where `export` writes by default (<study>/report/export/) and the LaTeX tables' layout: the first
column (the arm) left-aligned, the numbers right-aligned, one table per metric with a label of its own."""

import re

import pytest

from reglab.report.export import export
from reglab.study import LocalExecutor, StudySpec, run_study

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = {"name": "Tiny Study!", "seeds": 2,
        "base": {"data": {"name": "mnist1d", "train_subset": 128, "test_subset": 128},
                 "model": {"name": "mlp", "options": {"widths": [8]}},
                 "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "eval_train_samples": 64}},
        "arms": {"base": {}, "l2": {"regularize": {"l2": 0.001}}}}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    run_study(StudySpec.from_dict(SPEC), out, executor=LocalExecutor(workers=1), progress=False)
    return out


def test_latex_tables_go_to_report_export_tables_by_default(study_dir):
    written = export(study_dir, "latex")
    folder = study_dir / "report" / "export" / "tables"
    assert written["latex"] and all(path.parent == folder and path.is_file() for path in written["latex"])
    assert {"summary.tex", "runs.tex"} <= {p.name for p in folder.iterdir()}


def test_each_table_left_aligns_its_first_column_and_has_its_own_label(study_dir, tmp_path):
    written = export(study_dir, "latex", tmp_path)["latex"]
    labels = []
    for path in written:
        text = path.read_text()
        spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", text).group(1)
        header = text.split(r"\toprule")[1].split(r"\\")[0]
        assert spec == "l" + "r" * header.count("&"), path.name  # one letter per column, the first one l
        label = re.search(r"\\label\{([^}]*)\}", text).group(1)
        assert re.fullmatch(r"tab:Tiny-Study-[A-Za-z0-9-]+", label), label  # no _ or ! to escape in a \ref
        labels.append(label)
    assert len(set(labels)) == len(labels) and "tab:Tiny-Study-final-test-acc" in labels
