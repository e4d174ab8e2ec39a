"""The import floors of docs/DESIGN.md: nothing imports a module on its own floor or above it."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "celltrack"

#: floor of every top-level module; a module may import only modules on lower floors (and itself)
FLOORS = {
    "graph": 0,
    "synthetic": 0,
    "io": 1,
    "cf": 2,
    "models": 2,
    "features": 3,
    "segment": 3,
    "metrics": 3,
    "link": 4,
    "cftrack": 4,
    "viz": 5,
    "report": 5,
    "pipeline": 5,
    "batch": 6,
    "napari_plugin": 6,
    "cli": 7,
}


def top_module(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("celltrack."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("celltrack.")}
    return found


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.name not in ("__init__.py",))


def test_every_module_has_a_floor():
    assert {top_module(p) for p in SOURCES} <= set(FLOORS)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path):
    here = top_module(path)
    upward = {m for m in imported_modules(path) if m != here and FLOORS.get(m, 99) >= FLOORS[here]}
    assert not upward, f"{path.relative_to(PACKAGE)} (floor {FLOORS[here]}) imports {sorted(upward)}"


@pytest.mark.parametrize(
    "module", ["graph", "synthetic", "io", "cf", "features", "link", "metrics", "segment"]
)
def test_core_algorithms_do_not_configure_logging_or_print(module):
    paths = (
        [PACKAGE / f"{module}.py"]
        if (PACKAGE / f"{module}.py").exists()
        else list((PACKAGE / module).rglob("*.py"))
    )
    for path in paths:
        text = path.read_text(encoding="utf-8")
        assert "logging.basicConfig" not in text and not re.search(r"(?<![\w.])print\(", text), path
