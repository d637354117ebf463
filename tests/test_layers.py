"""The package layers: dependencies run one way and no private name crosses a package.

core (schema, recipes, I/O, model loading, generation) -> tasks -> rewards -> data_synth | evaluation |
trainers (side by side) -> rankrl (the command line). A module may import its own package and the packages
of lower layers only, at any place in the file (lazy imports included), and never a name with a leading
underscore from another package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"core": 0, "tasks": 1, "rewards": 2, "data_synth": 3, "evaluation": 3, "trainers": 3, "rankrl": 4}


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
    return found


def violations(package: str) -> list[str]:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module, names in imports(path):
            target = module.split(".")[0]
            if target not in LAYERS or target == package:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if LAYERS[target] >= LAYERS[package]:
                problems.append(f"{where} (layer {LAYERS[target]} from layer {LAYERS[package]})")
            private = [n for n in [*module.split(".")[1:], *names] if n.startswith("_") and n != "__init__"]
            if private:
                problems.append(f"{where}: private {', '.join(private)}")
    return problems


@pytest.mark.parametrize("package", list(LAYERS))
def test_a_package_imports_only_lower_layers_and_public_names(package):
    assert violations(package) == []


def test_the_check_sees_a_violation(tmp_path, monkeypatch):
    fake = tmp_path / "core"
    fake.mkdir()
    (fake / "bad.py").write_text("from trainers.pipeline import _private\n")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    problems = violations("core")
    assert len(problems) == 2 and "layer 3 from layer 0" in problems[0] and "private _private" in problems[1]
