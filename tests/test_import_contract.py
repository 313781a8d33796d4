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
        (
            "archiver/format/codec.py",
            "from archiver.aws.clients import AwsSettings",
            "archiver.aws.clients",
        ),
        ("archiver/format/layout.py", "from ..capture import reader", "archiver.capture.reader"),
        ("archiver/capture/reader.py", "import replayer.engines.fold", "replayer.engines.fold"),
        (
            "archiver/format/coverage.py",
            "from replayer.planning.plan import Plan",
            "replayer.planning.plan",
        ),
        (
            "replayer/engines/fold.py",
            "from archiver.snapshots.base_snapshot import SCAN_MARGIN",
            "archiver.snapshots.base_snapshot",
        ),
        (
            "replayer/planning/plan.py",
            "    from archiver.lambda_mode import handler",
            "archiver.lambda_mode.handler",
        ),
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
