"""Every third-party module the packages import is declared in pyproject.toml.

A module imported when a package module loads must be a core dependency: the README's first command installs
only those. A module imported lazily (inside a function) may belong to an optional extra instead, and then
the importing file names the extra (``pip install 'rankrl[extra]'``) in the one-line error it raises.
Imports under ``if TYPE_CHECKING:`` never run and are not counted.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = [pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]


@dataclass(frozen=True)
class ImportSite:
    module: str
    path: Path
    line: int
    lazy: bool


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and getattr(test, "id", getattr(test, "attr", None)) == "TYPE_CHECKING"


def _imports(node: ast.AST, path: Path, lazy: bool):
    if _is_type_checking(node):
        return
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    else:
        names = []
    for name in names:
        yield ImportSite(name.split(".")[0], path, node.lineno, lazy)
    inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
    for child in ast.iter_child_nodes(node):
        yield from _imports(child, path, inner)


def third_party_imports() -> list[ImportSite]:
    """Every import of a module that is neither the standard library nor one of the project's packages."""
    sites = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            sites += [
                site
                for site in _imports(tree, path, lazy=False)
                if site.module not in sys.stdlib_module_names and site.module not in PACKAGES
            ]
    return sites


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(spec).name) for spec in requirements}


@cache
def distribution_of(module: str) -> str:
    """The distribution that provides ``module`` in this environment, else the module's own name."""
    return canonicalize_name(_installed_distributions().get(module, [module])[0])


@cache
def _installed_distributions() -> dict[str, list[str]]:
    return packages_distributions()


def test_the_scan_sees_the_packages_imports():
    modules = {site.module for site in third_party_imports()}
    assert {"torch", "transformers", "trl", "numpy", "yaml"} <= modules


def test_modules_imported_at_load_time_are_core_dependencies():
    core = _names(PYPROJECT["project"]["dependencies"])
    undeclared = [
        f"{site.path.relative_to(ROOT)}:{site.line} imports {site.module} "
        f"(distribution {distribution_of(site.module)})"
        for site in third_party_imports()
        if not site.lazy and distribution_of(site.module) not in core
    ]
    assert not undeclared, "not in pyproject.toml [project] dependencies:\n" + "\n".join(undeclared)


def test_lazy_imports_are_core_or_an_extra_the_file_names():
    core = _names(PYPROJECT["project"]["dependencies"])
    extras = {name: _names(specs) for name, specs in PYPROJECT["project"]["optional-dependencies"].items()}
    problems = []
    for site in third_party_imports():
        distribution = distribution_of(site.module)
        if not site.lazy or distribution in core:
            continue
        owners = [extra for extra, names in extras.items() if distribution in names and extra != "dev"]
        where = f"{site.path.relative_to(ROOT)}:{site.line} imports {site.module}"
        if not owners:
            problems.append(f"{where}: {distribution} is in no extra")
        elif not any(f"rankrl[{extra}]" in site.path.read_text() for extra in owners):
            problems.append(f"{where}: no error message names pip install 'rankrl[{owners[0]}]'")
    assert not problems, "\n".join(problems)
