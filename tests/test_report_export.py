"""Paper exports of a study: figures as PNG / SVG / PDF, tables as booktabs LaTeX with escaped text."""

import re
import xml.etree.ElementTree as ET

import matplotlib.image
import pytest
from typer.testing import CliRunner

from reglab.cli import app
from reglab.report.export import export, latex_table, parse_formats
from reglab.study import StudySpec, run_study

pytestmark = pytest.mark.usefixtures("one_thread")

ARM = "wd_1% & {x}"  # LaTeX specials in an arm name
SPEC = {
    "name": "paper_50%", "seeds": 2,
    "base": {"data": {"name": "mnist1d", "train_subset": 256, "test_subset": 256},
             "model": {"name": "mlp", "options": {"widths": [16]}}, "optim": {"name": "momentum", "lr": 0.05},
             "train": {"epochs": 2, "batch_size": 64, "device": "cpu", "eval_train_samples": 128}},
    "arms": {"base": {}, ARM: {"optim": {"weight_decay": 0.01}}},
}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    run_study(StudySpec.from_dict(SPEC), out, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(study_dir):
    return export(study_dir, "png,svg,pdf,latex")


def unescaped(char: str, text: str) -> int:
    return len(re.findall(rf"(?<!\\){re.escape(char)}", text))


def check_latex(text: str) -> None:
    braces = 0
    for char in re.sub(r"\\[{}%&_#$]", "", text):  # escaped characters are not syntax
        braces += {"{": 1, "}": -1}.get(char, 0)
        assert braces >= 0, "a } closes nothing"
    assert braces == 0, "unbalanced braces"
    assert unescaped("%", text) == 0 and unescaped("_", text) == 0 and unescaped("#", text) == 0
    body = text[text.index(r"\begin{tabular}"):text.index(r"\end{tabular}")]
    rules = [m.group() for m in re.finditer(r"\\(toprule|midrule|bottomrule)", body)]
    assert rules == [r"\toprule", r"\midrule", r"\bottomrule"]
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", body).group(1)
    rows = [line for line in body.splitlines() if line.rstrip().endswith(r"\\")]
    assert len(rows) >= 2 and all(unescaped("&", row) == len(spec) - 1 for row in rows)  # header + data
    assert text.isascii(), sorted({c for c in text if not c.isascii()})  # pdfLaTeX: symbols as LaTeX commands
    assert unescaped("<", text.replace("$<$", "")) == 0  # a text-mode < prints ¡ in pdfLaTeX's default font
    assert text.count(r"\begin{table}") == 1 == text.count(r"\end{table}")


def test_every_table_is_booktabs_latex_with_escaped_text(exported):
    names = sorted(p.stem for p in exported["latex"])
    assert {"summary", "stability", "runs", "final_test_acc", "gap_acc"} <= set(names)
    for path in exported["latex"]:
        check_latex(path.read_text())
    summary = next(p for p in exported["latex"] if p.stem == "summary").read_text()
    assert r"wd\_1\% \& \{x\}" in summary and r"95\% CI" in summary and r"$\pm$" in summary
    assert r"\caption{paper\_50\%: each arm against the baseline base}" in summary
    assert r"\label{tab:paper-50-summary}" in summary


def test_latex_table_escapes_every_special_character():
    text = latex_table([{"a_b": r"50% of $x^2 & y_1 # ~ \ {z}", "Δ": "1 ± 2 − 3"}], caption="c_1", label="tab:t")
    check_latex(text)
    cell = text.split(r"\midrule")[1].split(" & ")[0]
    for escaped in (r"50\%", r"\$x\textasciicircum", r"\&", r"y\_1", r"\#", r"\textasciitilde", r"\textbackslash",
                    r"\{z\}"):
        assert escaped in cell, escaped
    assert r"1 $\pm$ 2 $-$ 3" in text and r"a\_b & $\Delta$" in text
    assert r"Hessian $\lambda$\_max $<$0.001" in latex_table([{"x": "Hessian λ_max <0.001"}], caption="c", label="t")
    assert r"fluctuation \textbar{}$\Delta$ test loss\textbar{}" in latex_table(
        [{"fluctuation |Δ test loss|": "1"}], caption="c", label="t")  # a text | would print as — in OT1


def test_figures_are_valid_png_svg_and_pdf(exported):
    assert len(exported["png"]) == len(exported["svg"]) == len(exported["pdf"]) >= 4
    for path in exported["png"]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(path).shape
        assert width >= 1500  # 300 dpi
    for path in exported["svg"]:
        assert ET.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    for path in exported["pdf"]:
        data = path.read_bytes()
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")


def test_a_re_export_writes_the_same_svg_and_pdf_bytes(study_dir, tmp_path):
    """No creation date in the PDF, and SVG ids from a fixed salt (matplotlib draws them at random)."""
    first, second = (export(study_dir, "svg,pdf", tmp_path / name) for name in ("a", "b"))
    for fmt in ("svg", "pdf"):
        for a, b in zip(first[fmt], second[fmt], strict=True):
            assert a.read_bytes() == b.read_bytes(), a.name
    assert b"CreationDate" not in first["pdf"][0].read_bytes()


def test_report_command_exports_and_rejects_unknown_formats(study_dir):
    result = CliRunner().invoke(app, ["report", str(study_dir), "--export", "svg,latex"])
    assert result.exit_code == 0, result.output
    assert (study_dir / "report" / "export" / "figures" / "curves.svg").is_file()
    assert (study_dir / "report" / "export" / "tables" / "summary.tex").is_file()
    bad = CliRunner().invoke(app, ["report", str(study_dir), "--export", "bmp"])
    assert bad.exit_code == 2 and "unknown format 'bmp'" in bad.output
    assert parse_formats(" SVG , latex") == ["svg", "latex"]
