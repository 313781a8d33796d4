"""The import rules of DESIGN.md "Packages", per subpackage, checked over the source tree
(``make lint`` runs it), and the proof that no module imports itself back through others.

- ``archiver.format`` imports nothing else of the project: it is the format, readable alone.
- ``archiver/aws/`` (clients, error table, retries, Scan, describe, prices) imports only the
  format: the shared mechanisms sit under everything else. ``archiver/native/`` (PITR,
  backups) imports only those two: the replayer drives it.
- ``<tool>.commands`` modules (a command's arguments and its run) are imported by nothing but
  the tool's ``cli.py``: a library never depends on a command.
- ``archiver`` never imports ``replayer``: protecting a table never depends on recovering it.
- ``replayer`` imports of ``archiver`` only the format, ``archiver/aws/`` and
  ``archiver/native/``, and the few modules of :data:`REPLAYER_MAY_IMPORT`, each with its
  reason.
- No import cycle: the graph of modules (an edge for every ``import``, including those inside
  functions and under ``TYPE_CHECKING``) has no cycle.

Run ``python -m tests.import_contract`` from the repository root; it prints each violation as
``path:line: importer -> imported`` and each cycle as ``cycle: a -> b -> a``, and exits 1 when
there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("archiver", "replayer")


def _package(folder: str) -> str:
    """A subpackage by its folder (``archiver/aws``): its dotted name is also the name of a
    module of the flat layout, which the layout's import rewriting maps."""
    return folder.replace("/", ".")


FORMAT = "archiver.format"
AWS = _package("archiver/aws")
NATIVE = _package("archiver/native")
# What the replayer may import of ``archiver`` (besides the package itself), by prefix.
REPLAYER_MAY_IMPORT_PACKAGES = (FORMAT, AWS, NATIVE)
# Beyond those packages, what the replayer genuinely needs of the archiver, and why.
REPLAYER_MAY_IMPORT = {
    "archiver.cliutil": "the shared CLI helper: both tools parse, run and report alike",
    "archiver.capture.runner": "rollback drains the stream into the archive before it reads",
    "archiver.lambda_mode.failures": "planning reads failed Lambda batches as gaps",
    "archiver.lambda_mode.stall": "planning reads a stalled Lambda function as a gap",
    "archiver.erasure.keys": "--key/--keys-file on restore, undo …: forget's one key parser",
    "archiver.erasure.where": "--where on restore, undo …: forget's one read-only evaluation",
}
# Subpackages that sit under the rest: what each may import of the project besides itself.
LEAVES = {AWS: (FORMAT,), NATIVE: (FORMAT, AWS)}


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
                if alias.name.split(".")[0] in PACKAGES:
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                # ``from archiver.format import layout`` imports the submodule when there is one.
                candidate = f"{base}.{alias.name}"
                as_path = root.joinpath(*candidate.split("."))
                is_module = (
                    as_path.with_suffix(".py").exists() or as_path.joinpath("__init__.py").exists()
                )
                yield node.lineno, candidate if is_module else base


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _is_command(name: str) -> bool:
    return any(_inside(name, f"{tool}.commands") for tool in PACKAGES)


def _allowed(importer: str, imported: str) -> bool:
    if imported.split(".")[0] not in PACKAGES:
        return True
    if _is_command(imported) and not _is_command(importer):
        return importer == f"{imported.split('.')[0]}.cli"
    if _inside(importer, FORMAT):
        return _inside(imported, FORMAT)
    for leaf, may in LEAVES.items():
        if _inside(importer, leaf):
            return any(_inside(imported, p) for p in (leaf, *may))
    if _inside(importer, "archiver"):
        return not _inside(imported, "replayer")
    if _inside(importer, "replayer") and _inside(imported, "archiver"):
        return (
            imported == "archiver"
            or any(_inside(imported, p) for p in REPLAYER_MAY_IMPORT_PACKAGES)
            or imported in REPLAYER_MAY_IMPORT
        )
    return True


def _modules(root: Path) -> Iterator[tuple[Path, str]]:
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            yield path, _module_name(root, path)


def violations(root: Path) -> list[Violation]:
    """Every import under ``root``'s packages that breaks a rule."""
    found: list[Violation] = []
    for path, module in _modules(root):
        for line, imported in sorted(set(_imports(root, path, module))):
            if not _allowed(module, imported):
                found.append(Violation(path.relative_to(root), line, module, imported))
    return found


def graph(root: Path) -> dict[str, set[str]]:
    """Module → the project modules it imports (anywhere in it)."""
    return {
        module: {imported for _, imported in _imports(root, path, module)} - {module}
        for path, module in _modules(root)
    }


def cycles(root: Path) -> list[list[str]]:
    """Every import cycle, as the modules of one strongly connected component, sorted."""
    edges = graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in edges:
                continue
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for node in sorted(edges):
        if node not in index:
            connect(node)
    return sorted(found)


def _path_through(edges: dict[str, set[str]], component: list[str]) -> list[str]:
    """One cycle through the component's first module, for the message."""
    start = component[0]
    members = set(component)
    trail = [start]
    seen = {start}
    while True:
        nexts = sorted(edges[trail[-1]] & members)
        if start in nexts and len(trail) > 1:
            return [*trail, start]
        step = next((n for n in nexts if n not in seen), None)
        if step is None:
            return [*trail, start]
        trail.append(step)
        seen.add(step)


def main() -> int:
    root = Path.cwd()
    found = violations(root)
    for violation in found:
        print(violation, file=sys.stderr)
    loops = cycles(root)
    edges = graph(root)
    for component in loops:
        print("cycle: " + " -> ".join(_path_through(edges, component)), file=sys.stderr)
    if found or loops:
        print(
            f"{len(found)} import(s) break the rules and {len(loops)} import cycle(s) exist "
            "(see the docstring of tests/import_contract.py)",
            file=sys.stderr,
        )
        return 1
    modules = len(edges)
    imports = sum(len(targets) for targets in edges.values())
    print(f"import contract: kept; no import cycle among {modules} modules ({imports} imports)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
