"""The top-level API a notebook reaches for: `reglab.load_spec`, `run_study`, `load_study`.

Their docstring examples are run here as doctests (tiny MNIST-1D studies on CPU), and `import reglab`
must stay light: the study and training modules (torch, pandas) are imported on first use.
"""

import doctest
import subprocess
import sys

import pytest

import reglab

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_top_level_names_are_the_study_functions():
    from reglab.study import load_spec, load_study, run_study

    assert (reglab.load_spec, reglab.run_study, reglab.load_study) == (load_spec, run_study, load_study)
    assert {"load_spec", "run_study", "load_study"} <= set(reglab.__all__) <= set(dir(reglab))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = reglab.nope


@pytest.mark.parametrize("module", ["reglab", "reglab.cli"])
def test_importing_reglab_or_its_cli_does_not_import_torch_or_pandas(module):
    code = f"import sys, {module}; print(sorted({{'torch', 'pandas'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # `reglab --help` stays fast


@pytest.mark.parametrize("name", ["load_spec", "run_study", "load_study"])
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    function = getattr(reglab, name)
    tests = doctest.DocTestFinder().find(function, name, globs=dict(vars(sys.modules[function.__module__])))
    assert tests and tests[0].examples, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("module", ["reglab.config", "reglab.study.spec", "reglab.study"])
def test_module_docstring_examples_run(module, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(importlib.import_module(module), optionflags=flags)
    assert result.attempted and not result.failed
