"""The import rules (``tests/import_contract.py``) hold for the tree, which has no import cycle;
a planted violation of each rule, and a planted cycle, are reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.import_contract import cycles, violations

ROOT = Path(__file__).resolve().parent.parent


def test_the_tree_keeps_the_import_rules() -> None:
    assert [str(v) for v in violations(ROOT)] == []


def test_the_tree_has_no_import_cycle() -> None:
    assert cycles(ROOT) == []


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of both packages, to plant violations in."""
    for package in ("archiver", "replayer"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    return tmp_path


@pytest.mark.parametrize(
    ("module", "planted", "imported"),
    [
        # archiver.format imports nothing else of the project (absolute or relative)
        (
            "archiver/format/codec.py",
            "from archiver.aws.clients import AwsSettings",
            "archiver.aws.clients",
        ),
        ("archiver/format/layout.py", "from ..capture import reader", "archiver.capture.reader"),
        (
            "archiver/format/coverage.py",
            "from replayer.planning.plan import Plan",
            "replayer.planning.plan",
        ),
        # archiver/aws/ imports only the format; archiver/native/ only those two
        (
            "archiver/aws/scan.py",
            "from archiver.integrity import compaction",
            "archiver.integrity.compaction",
        ),
        (
            "archiver/native/pitr.py",
            "from archiver.capture import runner",
            "archiver.capture.runner",
        ),
        # a command is imported by its tool's cli.py alone
        (
            "archiver/capture/many.py",
            "from archiver.commands import check",
            "archiver.commands.check",
        ),
        (
            "replayer/read/status.py",
            "    from replayer.commands import query",
            "replayer.commands.query",
        ),
        # archiver never imports replayer
        ("archiver/capture/reader.py", "import replayer.engines.fold", "replayer.engines.fold"),
        # replayer imports of archiver only the format, aws, native and the listed modules
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


def test_a_planted_cycle_is_reported(tree: Path) -> None:
    """An import inside a function closes a cycle as well as one at the top."""
    path = tree / "replayer/planning/model.py"
    path.write_text(
        path.read_text() + "\n\ndef _planted() -> None:\n    from replayer.planning import plan\n"
    )
    assert violations(tree) == []
    # plan -> model -> plan, and plan -> windows -> model -> plan: one knot
    assert cycles(tree) == [
        ["replayer.planning.model", "replayer.planning.plan", "replayer.planning.windows"]
    ]
