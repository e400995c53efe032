"""The code version a result records: the checkout's full commit and whether its sources had changes
(tracked edits and new files under src/, not files elsewhere), no commit for a tree that is not reglab's
own checkout, and the one-line description of it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reglab import provenance

SCRIPT = "import json, reglab.provenance as p; print(json.dumps(p.code_version()))"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=x", "-c", "user.email=x@x", *args],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def checkout(root: Path, *, pyproject: bool) -> Path:
    """A git repository holding a copy of reglab at <root>/src/reglab, committed; `pyproject`: with the
    pyproject.toml that makes it reglab's own checkout."""
    shutil.copytree(Path(provenance.__file__).parent, root / "src" / "reglab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".gitignore").write_text("__pycache__/\n")
    (root / "README.md").write_text("readme\n")
    if pyproject:
        (root / "pyproject.toml").write_text('[project]\nname = "reglab"\n')
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "start")
    return root


def code_version(root: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONDONTWRITEBYTECODE": "1"})
    return json.loads(done.stdout)


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    return checkout(tmp_path / "repo", pyproject=True)


def test_an_own_checkout_records_its_full_commit_and_whether_its_sources_changed(repo):
    head = git(repo, "rev-parse", "HEAD")
    assert len(head) == 40
    assert code_version(repo)["git_commit"] == head and code_version(repo)["git_dirty"] is False

    module = repo / "src" / "reglab" / "errors.py"
    original = module.read_text()
    module.write_text(original + "\n# a local edit\n")  # a tracked source edited
    edited = code_version(repo)
    assert edited["git_commit"] == head and edited["git_dirty"] is True
    module.write_text(original)

    (repo / "src" / "reglab" / "new_module.py").write_text("X = 1\n")  # a new, untracked source
    assert code_version(repo)["git_dirty"] is True
    (repo / "src" / "reglab" / "new_module.py").unlink()

    (repo / "README.md").write_text("edited\n")  # outside src, bench and pyproject.toml: not the code
    assert code_version(repo)["git_dirty"] is False


def test_a_repository_without_reglabs_pyproject_is_not_its_checkout(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    root = checkout(tmp_path / "other", pyproject=False)  # the same layout, but some other project's tree
    code = code_version(root)
    assert code["git_commit"] is None and code["git_dirty"] is None
    assert len(code["sources_sha256"]) == 64


def test_describe_code_names_the_short_commit_local_changes_and_the_hash():
    code = {"reglab": "9.9", "git_commit": "0123456789abcdef" * 2 + "01234567", "git_dirty": True,
            "sources_sha256": "fedcba9876543210" * 4}
    assert provenance.describe_code(code) == (
        "reglab 9.9, commit 0123456789ab + local changes, sources sha256 fedcba9876543210…")
    assert provenance.describe_code({**code, "git_dirty": False}) == (
        "reglab 9.9, commit 0123456789ab, sources sha256 fedcba9876543210…")
    assert provenance.describe_code({**code, "git_commit": None, "git_dirty": None}) == (
        "reglab 9.9, no git checkout, sources sha256 fedcba9876543210…")
