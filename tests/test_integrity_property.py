"""Property: random damage to a random archive is repaired exactly or refused — never a
restore that differs from the truth without an error.

The archive is one chained shard (``tests.integrity_helpers``) behind the Streams test double;
the damage is a deleted, truncated or replaced file (replaced by a file without the chain
footer: a forged footer is what ``check --deep`` and the bucket's versioning are for); the
stream either still holds every record or has trimmed them all; the repair runs or not. The
truth is computed from the records themselves: per key, the image of its latest record at or
before T.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.aws.clients import AwsSettings
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from archiver.integrity.check import run_checks
from archiver.integrity.repair import repair
from replayer.engines.fold import Fold
from replayer.exceptions import DamagedFile, Refused
from replayer.planning.plan import plan_restore
from tests.integrity_helpers import build_archive, delete, replace_rows, truncate
from tests.replay_helpers import T0, TABLE

DAMAGE = {"delete": delete, "truncate": truncate, "replace": replace_rows}


def truth(records: list[dict[str, Any]], at: Any) -> dict[str, str]:
    state: dict[str, str] = {}
    for record in records:
        ddb = record["dynamodb"]
        if ddb["ApproximateCreationDateTime"] > at:
            break
        key = canonical_json(ddb["Keys"])
        if "NewImage" in ddb:
            state[key] = canonical_json(ddb["NewImage"])
        else:
            state.pop(key, None)
    return state


def replayed(archive: Archive, at: Any) -> dict[str, str]:
    plan = plan_restore(archive, TABLE, at, convert=False)
    with Fold(archive) as fold:
        result = fold.state_at(plan)
        return {str(r["keys"]): str(r["item"]) for b in result.batches() for r in b.to_pylist()}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    damage=st.sampled_from(sorted(DAMAGE)),
    victim=st.integers(0, 20),
    retained=st.booleans(),
    repaired=st.booleans(),
    second=st.integers(0, 18),
)
def test_random_damage_is_repaired_exactly_or_refused(
    tmp_path: Path,
    sizes: list[int],
    damage: str,
    victim: int,
    retained: bool,
    repaired: bool,
    second: int,
) -> None:
    root = tmp_path / f"a-{abs(hash((tuple(sizes), damage, victim, retained, repaired, second)))}"
    archive = Archive.open(str(root))
    built = build_archive(archive, sizes)
    at = T0 + timedelta(seconds=second)
    DAMAGE[damage](archive, built.files[victim % len(built.files)])
    if not retained:
        built.shard.trim(len(built.records))
    if repaired:
        result = run_checks(archive, TABLE)
        report = asyncio.run(
            repair(archive, TABLE, result, AwsSettings(), streams_client=built.double)
        )
        if retained:
            assert not report.gaps
    try:
        state = replayed(archive, at)
    except (Refused, DamagedFile):
        assert not (repaired and retained), "a repair within retention must leave it restorable"
        return
    assert state == truth(built.records, at)
