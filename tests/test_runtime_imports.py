"""What ``archiver/`` and ``replayer/`` import at run time, a user's ``pip install .`` provides.

A user installs the package without extras, so every third-party module the code imports must
come from a ``[project.dependencies]`` entry or from what those require in turn (their own
requirements, markers evaluated, no extras of theirs unless asked for). The test extra does
not count: it is exactly how sqlglot, imported by ``replayer/engines/athena_sql.py`` but listed only
under ``test``, made every ``ddb-replayer`` command fail at start-up for users while every test
passed.

How the imports are found: each file's syntax tree, at any depth (an import inside a function
runs when the function does), plus ``importlib.import_module("…")`` with a literal name.
Imports under ``if TYPE_CHECKING:`` never run and are skipped; one guarded by ``try/except
ImportError`` is checked like any other (an optional feature's module is still a dependency).
Each top-level module name outside the standard library and the project is mapped to the
distributions installed here that provide it (``importlib.metadata.packages_distributions``),
one of which must be in the closure. ``demo.py`` is checked the same way against the runtime
dependencies plus the ``demo`` extra, which is all ``make demo`` installs.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from tests.distributions import closure, normalise

ROOT = Path(__file__).resolve().parents[1]
OURS = {"archiver", "replayer"}


def _project() -> dict[str, Any]:
    return dict(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"])


def runtime_requirements() -> list[str]:
    """``[project.dependencies]`` as written in pyproject.toml (not the installed metadata,
    which is as old as the last ``pip install``)."""
    return list(_project()["dependencies"])


def extra_requirements(extra: str) -> list[str]:
    extras = _project()["optional-dependencies"]
    return list(extras[extra])


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped |= {id(n) for n in ast.walk(child)}
    return skipped


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(top-level module, line) of every absolute import in ``path`` that can run, by line."""
    return sorted(_imports(path), key=lambda found: found[1])


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _type_checking_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in {"importlib.import_module", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        for name in names:
            yield name.split(".")[0], node.lineno


def undeclared_imports(files: Iterable[Path], requirements: Iterable[str]) -> list[str]:
    """One line per import in ``files`` that no distribution in the closure of
    ``requirements`` provides."""
    reachable = closure(requirements)
    providers = md.packages_distributions()
    problems = []
    for path in sorted(files):
        for top, line in imported_modules(path):
            if top in sys.stdlib_module_names or top in OURS or top == "__future__":
                continue
            owners = {normalise(d) for d in providers.get(top, [])}
            if owners & reachable:
                continue
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            given_by = f" (installed here by {', '.join(sorted(owners))})" if owners else ""
            problems.append(
                f"{where}:{line} imports {top!r}, which no runtime dependency provides{given_by}"
            )
    return problems


def package_files(root: Path = ROOT) -> list[Path]:
    return [path for package in sorted(OURS) for path in (root / package).rglob("*.py")]


def test_every_runtime_import_is_a_declared_dependency() -> None:
    assert undeclared_imports(package_files(), runtime_requirements()) == []


def test_the_demo_needs_only_the_runtime_dependencies_and_the_demo_extra() -> None:
    requirements = [*runtime_requirements(), *extra_requirements("demo")]
    assert undeclared_imports([ROOT / "demo.py"], requirements) == []


def test_the_check_would_have_caught_sqlglot_in_the_test_extra_only() -> None:
    """The bug this test exists for: sqlglot imported by the replayer, declared only for tests.
    The import now sits inside a function; it is still found."""
    without = [r for r in runtime_requirements() if Requirement(r).name != "sqlglot"]
    problems = undeclared_imports(package_files(), without)
    assert problems, "sqlglot's import was not found"
    assert all("'sqlglot'" in line for line in problems), problems
    assert any(line.startswith("replayer/engines/athena_sql.py:") for line in problems), problems


PLANTED = '''\
"""A module with every kind of import."""
from __future__ import annotations

import json
import typing
from typing import TYPE_CHECKING

import boto3
import yaml

if TYPE_CHECKING:
    import hypothesis

if typing.TYPE_CHECKING:
    from pytest import MonkeyPatch


def later() -> None:
    import pytest
    from tomllib import loads


def by_name() -> None:
    import importlib

    importlib.import_module("moto.server")
'''


def test_a_planted_violation_is_reported(tmp_path: Path) -> None:
    """PyYAML is installed here (moto needs it) but is no runtime dependency; pytest is
    imported only inside a function; moto only by name. hypothesis and MonkeyPatch are for
    the type checker only; json, tomllib and boto3 are fine."""
    planted = tmp_path / "archiver" / "planted.py"
    planted.parent.mkdir()
    planted.write_text(PLANTED)
    problems = undeclared_imports(package_files(tmp_path), runtime_requirements())
    found = [re.search(r"imports '(\w+)'", line).group(1) for line in problems]  # type: ignore[union-attr]
    assert found == ["yaml", "pytest", "moto"], problems
    assert "(installed here by pyyaml)" in problems[0]
    assert problems[1].startswith(f"{planted}:19 imports 'pytest'")


def test_a_module_nothing_provides_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "replayer" / "m.py"
    source.parent.mkdir()
    source.write_text("def f() -> None:\n    import notinstalled_xyz\n")
    assert undeclared_imports(package_files(tmp_path), runtime_requirements()) == [
        f"{source}:2 imports 'notinstalled_xyz', which no runtime dependency provides"
    ]


@pytest.mark.parametrize("tool", ["archiver", "replayer"])
def test_help_loads_no_sqlglot(tool: str) -> None:
    """Every command's ``--help`` imports that command's module (it adds its arguments): none
    of them may load sqlglot, which only a query calling ``state_at`` / ``history_of`` needs."""
    code = (
        "import sys\n"
        f"from {tool}.cli import COMMANDS, main\n"
        "for command in COMMANDS:\n"
        "    try:\n        main([command.name, '--help'])\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlglot'), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    assert done.stderr.strip() == "[]"


@pytest.mark.parametrize("tool", ["archiver", "replayer"])
def test_a_command_loads_no_other_command(tool: str) -> None:
    """``--help`` lists the commands without importing them, and a command imports only its
    own module: starting one does not pay for every other's libraries (DuckDB among them)."""
    code = (
        "import sys\n"
        f"from {tool}.cli import main\n"
        "for argv in (['--help'], ['compact' if 'archiver' == sys.argv[1] else 'status', '-h']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "    print(sorted(m for m in sys.modules if '.commands.' in m), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, tool], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "COMMAND" in done.stdout
    only_help, one_command = done.stderr.strip().splitlines()[-2:]
    assert only_help == "[]"
    chosen = "compact" if tool == "archiver" else "status"
    assert one_command == repr([f"{tool}.commands.{chosen}"])
