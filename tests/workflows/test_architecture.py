"""The layers of docs/architecture.md: each pfld package imports only packages below it (so the imports
form a DAG), pfld never imports the deploy side, and modules stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: pfld's packages (and its three foundation modules) from the bottom up; a unit may import units of
#: lower layers only. Mirrors the picture in docs/architecture.md.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("io", "metrics", "cpu_budget"),  # foundations: import nothing from pfld
    ("data", "models"),
    ("losses",),
    ("inference",),
    ("evaluation",),
    ("training", "teacher", "predict"),
    ("cli",),  # command-line front ends: nothing imports them
)
LAYER_OF = {unit: level for level, units in enumerate(LAYERS) for unit in units}
#: The longest module allowed (lines); the longest today is losses/weighted.py (one class, 277 lines).
MAX_MODULE_LINES = 360


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(module, line) of every absolute import in a file, lazy ones inside functions included; imports
    under ``if TYPE_CHECKING:`` are for annotations only and are left out."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def unit_of(module: str) -> str | None:
    """The pfld unit of a dotted module name (``pfld.data.cache`` -> ``data``), or None outside pfld."""
    parts = module.split(".")
    return parts[1] if parts[0] == "pfld" and len(parts) > 1 else None


def layer_violations(package: Path) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        unit = path.relative_to(package).parts[0].removesuffix(".py")
        if unit == "__init__":
            continue
        if unit not in LAYER_OF:
            problems.append(f"{path}: pfld.{unit} is in no layer of LAYERS (add it, and to the picture)")
            continue
        for module, line in imported_modules(path):
            target = unit_of(module)
            if module.split(".")[0] == "export":
                problems.append(f"{path}:{line}: pfld imports the deploy side ({module})")
            elif target is not None and target != unit and LAYER_OF.get(target, -1) >= LAYER_OF[unit]:
                problems.append(f"{path}:{line}: pfld.{unit} (layer {LAYER_OF[unit]}) imports {module}")
    return problems


def test_packages_import_only_lower_layers() -> None:
    assert layer_violations(ROOT / "pfld") == []


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The check itself: a data module importing evaluation (lazily, inside a function) is caught, an
    annotation-only import is not."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pfld.training.module import PFLDModule\n"
        "def f():\n    from pfld.evaluation import predict\n    return predict\n"
    )
    assert layer_violations(tmp_path) == [
        f"{tmp_path / 'data' / 'bad.py'}:5: pfld.data (layer 1) imports pfld.evaluation"
    ]


@pytest.mark.parametrize("folder", ["pfld", "export"])
def test_modules_stay_short(folder: str) -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / folder).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}
