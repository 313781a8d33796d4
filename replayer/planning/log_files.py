"""The change files a replay reads: the files of a time range, their chain checked.

``check_chain`` reads the footers of the files in range and the checkpoints, and refuses a
damaged log (exit 4) before anything is written; ``drop_later_streams`` leaves out streams
created after the range (a recreated table's newer generations) and incremental-export files,
which are planned per window.
"""

from __future__ import annotations

from datetime import datetime

from archiver.format import chain, footers, gap_log, layout, statefiles
from archiver.format.changefiles import checkpointed_streams, read_checkpoints
from archiver.format.storage import Archive
from archiver.format.timefmt import as_utc, iso_ms, parse_iso, parse_stamp
from replayer.engines import dataset
from replayer.exceptions import BrokenChain


def check_chain(archive: Archive, table: str, start: datetime, end: datetime) -> list[str]:
    """The change files a replay of ``[start, end]`` reads, once their chain is checked.

    Reads the footers of those files (in parallel) and the checkpoints; files outside the
    range count by their names, as the predecessors files link to. Ranges on record as lost
    (gaps.jsonl, reason ``archive-file-lost``) are left to the gap check.

    Raises:
        BrokenChain: a file in the range is unreadable, disagrees with its name, or links to
            a missing file, or a checkpoint's last file in the range is missing (exit 4).
    """
    lo, hi = str(as_utc(start).date()), str(as_utc(end).date())
    every = dataset.change_files(archive, table)
    in_range = [rel for rel in every if lo <= (_dt_of(rel) or "") <= hi]
    files = drop_later_streams(in_range, start, end)
    pending = statefiles.read_json(
        archive,
        layout.compaction_pending(table),
        statefiles.COMPACTION_PENDING,
        "compaction-pending.json",
        missing_ok=True,
    )
    superseded = {str(e["path"]) for e in (pending or {}).get("pending", [])}
    problems = chain.verify_files(
        archive,
        files,
        heads=_heads(archive, table, lo, hi),
        superseded=superseded,
        context=every,
    )
    holes = chain.holes_of(gap_log.read_gaps(archive, table))
    broken = [p for p in problems if p.kind != chain.OVERLAP and not chain.on_record(p, holes)]
    if broken:
        shown = "; ".join(p.line() for p in broken[:3])
        more = f" (and {len(broken) - 3} more)" if len(broken) > 3 else ""
        raise BrokenChain(
            f"the log of table {table!r} in [{iso_ms(start)}, {iso_ms(end)}] is damaged: "
            f"{shown}{more}; nothing was written: run `"
            f"{chain.check_command(table, archive, repair=True)}`"
        )
    return files


def _dt_of(rel: str) -> str | None:
    parsed = footers.parse_change_path(rel)
    return parsed[1] if parsed else None


def _heads(archive: Archive, table: str, lo: str, hi: str) -> list[chain.Head]:
    """Checkpoints whose last file lies in the ``dt`` range ``[lo, hi]``."""
    heads = []
    for stamp in checkpointed_streams(archive, table):
        for shard_id, doc in read_checkpoints(archive, table, stamp).items():
            if not doc.get("sequence_number"):
                continue
            head_dt = (doc.get("chain_head") or {}).get("dt")
            if head_dt is None and doc.get("event_time"):
                head_dt = layout.dt_of(parse_iso(str(doc["event_time"])))
            if head_dt is not None and not lo <= head_dt <= hi:
                continue
            rel = f"{layout.checkpoints_dir(table)}/{stamp}/{shard_id}.json"
            seq = layout.pad_seq(str(doc["sequence_number"]))
            chained = bool(doc.get("chain_head"))
            heads.append(chain.Head(stamp, shard_id, seq, rel, head_dt, chained=chained))
    return heads


def drop_later_streams(files: list[str], start: datetime, end: datetime) -> list[str]:
    """Drop files of streams created after ``end``: their records are all later.

    A change file's name starts with its stream label (the stream's creation time), so a
    table deleted and recreated under the same name costs no reads of the newer streams
    when restoring the older generation. Files converted from incremental exports are
    dropped too: those are planned per window, from the windows' commit records.
    """
    out = []
    for rel in files:
        parsed = layout.ChangeFileName.parse(rel)
        if parsed is not None:
            if layout.is_incremental_file(rel):
                continue
            try:
                if parse_stamp(parsed.label) > end:
                    continue
            except ValueError:
                pass
        out.append(rel)
    return out
