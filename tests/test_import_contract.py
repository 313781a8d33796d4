"""The import rule (``tests/import_contract.py``) holds for the tree and catches a violation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.import_contract import violations

ROOT = Path(__file__).resolve().parent.parent


def test_the_tree_keeps_the_import_rule() -> None:
    assert [str(v) for v in violations(ROOT)] == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of both packages, to plant violations in."""
    for package in ("archiver", "replayer"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    return tmp_path


@pytest.mark.parametrize(
    ("module", "planted", "imported"),
    [
        ("archiver/format/codec.py", "from archiver import aws", "archiver.aws"),
        ("archiver/format/layout.py", "from .. import stream", "archiver.stream"),
        ("archiver/stream.py", "import replayer.fold", "replayer.fold"),
        ("archiver/format/coverage.py", "from replayer.plan import Plan", "replayer.plan"),
        ("replayer/fold.py", "from archiver.snapshot import SCAN_MARGIN", "archiver.snapshot"),
        ("replayer/plan.py", "    from archiver import lambda_handler", "archiver.lambda_handler"),
    ],
)
def test_a_planted_import_is_reported(tree: Path, module: str, planted: str, imported: str) -> None:
    path = tree / module
    text = path.read_text()
    if planted.startswith(" "):  # inside a function, where imports also count
        text += f"\n\ndef _planted() -> None:\n{planted}\n"
    else:
        text += f"\n{planted}\n"
    path.write_text(text)
    found = violations(tree)
    assert [(str(v.path), v.imported) for v in found] == [(module, imported)]
