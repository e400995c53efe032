"""The packages import downward only (cli → reproduce → report → study / theory → train → …): no module of
`train` or `study` imports a package above it, not even lazily inside a function."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

ABOVE = {
    "train": ("reglab.theory", "reglab.study", "reglab.report", "reglab.cli", "reglab.reproduce"),
    "study": ("reglab.report", "reglab.cli", "reglab.reproduce"),
}


def imported(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (relative imports resolved)."""
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, (base, node.module)))
            names.update([module, *(f"{module}.{alias.name}" for alias in node.names)])
    return names


@pytest.mark.parametrize("layer", sorted(ABOVE))
def test_no_module_imports_a_package_above_its_own(layer):
    climbing = {
        f"{path.relative_to(SRC)}: {name}"
        for path in sorted((SRC / "reglab" / layer).rglob("*.py"))
        for name in imported(path)
        if any(name == above or name.startswith(f"{above}.") for above in ABOVE[layer])
    }
    assert not climbing
