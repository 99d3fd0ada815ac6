"""The house rules of DESIGN.md, checked on the import graph (read with ast, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "faasopt"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(LIBRARY), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_never_imports_its_doors_or_kopf(path):
    forbidden = {"kopf", "operator_handlers", "functions"}
    assert not {name.split(".")[0] for name in _imports(path)} & forbidden


@pytest.mark.parametrize(
    "path", _modules(LIBRARY / "solvers"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_solvers_are_pure_math(path):
    allowed_roots = {"__future__", "collections", "dataclasses", "enum", "math", "typing"}
    allowed_roots |= {"numpy", "scipy", "faasopt"}
    for name in _imports(path):
        assert name.split(".")[0] in allowed_roots, f"{path.name} imports {name}"
        if name.startswith("faasopt."):
            assert name.startswith("faasopt.solvers"), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(LIBRARY / "data"), ids=lambda p: str(p.relative_to(ROOT)))
def test_data_does_not_know_the_network_or_the_spec(path):
    for name in _imports(path):
        assert name.split(".")[0] not in {"nats", "pydantic", "yaml"}, f"{path.name}: {name}"
        assert not name.startswith(("faasopt.spec", "faasopt.protocol", "faasopt.coordinator"))


@pytest.mark.parametrize(
    ("modules", "heavy"),
    [
        (
            "faasopt.worker",
            ("pydantic", "yaml", "rich", "typer", "matplotlib", "prometheus_client"),
        ),
        ("faasopt.runner", ("matplotlib", "prometheus_client")),  # plots and metrics on demand
    ],
)
def test_start_up_imports_stay_light(modules, heavy):
    """Workers and the coordinator start fast: nothing they do not use is on their import path."""
    import subprocess
    import sys

    code = f"import sys, {modules}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
