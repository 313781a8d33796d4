"""The import rule of DESIGN.md "Packages", checked over the source tree (``make lint`` runs it).

- ``archiver.format`` imports nothing else of the project: it is the format, readable alone.
- ``archiver`` never imports ``replayer``: protecting a table never depends on recovering it.
- ``replayer`` imports ``archiver.format`` and, of the rest of ``archiver``, only the shared
  mechanisms (AWS clients, errors, retries, CLI helpers) and the native-management modules it
  drives (PITR, backups, live table descriptions, the drain that rollback runs).

Every ``import`` counts, including those inside functions. Run ``python -m tests.import_contract``
from the repository root; it prints each violation as ``path:line: importer -> imported`` and
exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("archiver", "replayer")
FORMAT = "archiver.format"
# What of ``archiver`` outside its format the replayer may import, and why.
REPLAYER_MAY_IMPORT = frozenset(
    {
        "archiver",  # __version__
        "archiver.aws",  # clients, configured once
        "archiver.errors",  # the error table from AWS codes to exceptions
        "archiver.retry",  # retry policy, rate limiting, waiting with deadlines
        "archiver.scan",  # the one parallel Scan, which verify reads tables with
        "archiver.cliutil",  # the shared CLI argument helpers
        "archiver.pricing",  # the one table of DynamoDB list prices
        "archiver.pitr",  # native PITR, driven by restore strategies
        "archiver.backups",  # on-demand backups, driven by restore strategies
        "archiver.describe",  # live table descriptions, read by settings copy
        "archiver.runner",  # the drain that rollback runs
        "archiver.lambda_failures",  # failed Lambda batches, which planning treats as gaps
        "archiver.lambda_stall",  # the Lambda function's IteratorAge, which planning checks
        "archiver.native.export_requests",  # requesting and finding a native export (drills)
        "archiver.metrics",  # the one metrics module (restore rates, drill results)
    }
)


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    importer: str
    imported: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} -> {self.imported}"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(root: Path, path: Path, module: str) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every project module ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # ``from archiver import layout`` imports the submodule when there is one.
                candidate = f"{base}.{alias.name}"
                as_path = root.joinpath(*candidate.split("."))
                is_module = (
                    as_path.with_suffix(".py").exists() or as_path.joinpath("__init__.py").exists()
                )
                yield node.lineno, candidate if is_module else base


def _allowed(importer: str, imported: str) -> bool:
    top = imported.split(".")[0]
    if top not in PACKAGES:
        return True
    inside = lambda name, pkg: name == pkg or name.startswith(pkg + ".")  # noqa: E731
    if inside(importer, FORMAT):
        return inside(imported, FORMAT)
    if inside(importer, "archiver"):
        return not inside(imported, "replayer")
    if inside(importer, "replayer") and inside(imported, "archiver"):
        return inside(imported, FORMAT) or imported in REPLAYER_MAY_IMPORT
    return True


def violations(root: Path) -> list[Violation]:
    """Every import under ``root``'s packages that breaks the rule."""
    found: list[Violation] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = _module_name(root, path)
            for line, imported in _imports(root, path, module):
                if not _allowed(module, imported):
                    found.append(Violation(path.relative_to(root), line, module, imported))
    return found


def main() -> int:
    found = violations(Path.cwd())
    for violation in found:
        print(violation, file=sys.stderr)
    if found:
        print(f"{len(found)} import(s) break the rule in {__name__}'s docstring", file=sys.stderr)
        return 1
    print("import contract: kept")
    return 0


if __name__ == "__main__":
    sys.exit(main())
