"""The stack's incremental-export function: the chain without waiting, one invocation at a
time (over moto and the export double)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from archiver.format.exports.incremental import list_windows
from archiver.format.storage import Archive
from archiver.format.tables import table_id_of
from archiver.format.timefmt import as_utc, iso_ms
from tests.incremental_helpers import put, restored, setup, truth
from tests.replay_helpers import write_snapshot

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = ROOT / "deploy" / "functions" / "incremental_export.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("incremental_export", FUNCTION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_invocation_converts_what_completed_and_requests_what_is_due(
    ddb: Any, s3: Any, s3_archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = setup(ddb, s3, s3_archive)
    created = as_utc(env.created)
    writes = [put(created + timedelta(minutes=m), "k", m) for m in (1, 20, 35)]
    env.double.add_writes(env.table, writes)
    env.double.enable_pitr(env.table, created - timedelta(hours=1))
    env.clock.advance(timedelta(minutes=50))
    monkeypatch.setenv("ARCHIVE_URL", s3_archive.url)
    monkeypatch.setenv("TABLE_NAME", env.table)
    monkeypatch.setenv("EVERY", "15m")
    handler = _load().handler

    # Nothing to start from yet: the function refuses, as the command does.
    with pytest.raises(Exception, match="--from TIME"):
        handler({}, None, ddb=env.double)
    # A base (empty: the table was just created) from which the chain starts.
    start = created - timedelta(minutes=1)
    write_snapshot(
        s3_archive,
        [],
        valid_from=start,
        log_from=start,
        table=env.table,
        table_id=table_id_of(env.description),
    )
    results = [handler({}, None, ddb=env.double) for _ in range(6)]
    windows = list_windows(s3_archive, env.table)
    # The first invocation finds its export running; each later one converts one and
    # requests the next, found again by its client token: one export per window.
    assert results[0]["steps"] == 0
    assert len(windows) == 3 and results[-1]["reaches"] == iso_ms(windows[-1].end)
    assert len(env.double._exports) == len(windows)
    at = windows[-1].last_exact
    assert restored(s3_archive, env.table, at) == truth(writes, at)


def test_the_function_imports_neither_duckdb_nor_the_replayer() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('f', {str(FUNCTION)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'duckdb', 'replayer'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == ""
