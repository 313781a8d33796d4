"""Property: random keys erased at a random moment of a random history — every restore equals
the truth without those keys' earlier records, and no byte of their erased values remains.

Histories are written as change files (the replay property test's generator), some before the
erasure and the rest after it (records of an erased key that arrive later are archived, by
rule). A base snapshot may hold the keys too. The truth is a model that applies the records in
stream order, skipping the erased keys' records written before the erasure.
"""

from __future__ import annotations

import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.erasure.forget import forget
from archiver.format.codec import canonical_json
from archiver.format.storage import Archive
from replayer.engines.fold import Fold
from replayer.planning import plan as planning
from tests.replay_helpers import TABLE, at, write_coverage, write_snapshot
from tests.test_forget import decoded
from tests.test_replay_property import Record, _item, alive, histories, model, write


def _needles(key: str) -> list[bytes]:
    """What only the erased key's rows hold: its key attribute and its items' key text."""
    return [f'{{"S":"{key}"}}'.encode()]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=histories(),
    erased=st.sets(st.sampled_from("abcd"), min_size=1, max_size=2),
    cut=st.integers(0, 40),
    splits=st.lists(st.integers(1, 7), min_size=1, max_size=2),
    with_base=st.booleans(),
    instants=st.lists(st.integers(0, 200_000), min_size=1, max_size=3),
)
def test_restores_after_an_erasure_are_the_truth_without_the_keys(
    records: list[Record],
    erased: set[str],
    cut: int,
    splits: list[int],
    with_base: bool,
    instants: list[int],
) -> None:
    earlier, later = records[:cut], records[cut:]
    with tempfile.TemporaryDirectory() as folder:
        archive = Archive.open(folder)
        write_coverage(archive, watermark=at(300))
        write(archive, earlier, splits, duplicated=False)
        base: dict[str, str] = {}
        if with_base:
            # A snapshot taken before the history starts (log from the table's creation).
            base = {k: canonical_json(_item(k, 1000 + ord(k))) for k in "abcd"}
            write_snapshot(
                archive, [_item(k, 1000 + ord(k)) for k in "abcd"], valid_from=at(0), log_from=at(0)
            )
        keys = [canonical_json({"pk": {"S": k}}) for k in sorted(erased)]
        forget(archive, TABLE, keys, names=["pk"])
        for rel in archive.find(""):
            text = decoded(archive, rel)
            for key in erased:
                assert not any(n in text for n in _needles(key)), (rel, key)
        # Later records (e.g. still in the stream at the erasure) are archived as usual.
        if later:
            write(archive, later, splits, duplicated=False)
        truth_base = {k: v for k, v in base.items() if k not in erased}
        for t_ms in instants:
            kept = [r for r in earlier if r.key not in erased] + later
            expected = alive(model(kept, t_ms, start=truth_base))
            plan = planning.plan_restore(archive, TABLE, at(t_ms / 1000), convert=False)
            with Fold(archive) as fold:
                result = fold.state_at(plan)
                got = {r["keys"]: r["item"] for b in result.batches() for r in b.to_pylist()}
            assert got == expected
