"""The integrity chain of change files: every file checkable on its own and against its neighbours.

A change file's name says which records it holds (``<label>_<shard>_<first>_<last>``), but a
name proves nothing about the content, and a missing file leaves no trace in the names of the
others. So every change file carries a **footer** in its Parquet key-value metadata
(:mod:`archiver.format.footers`; docs/format.md "Integrity chain").

* On its own, a file must be readable (a truncated file has no footer), its footer must agree
  with its name and partition, its Parquet row count and ``sequence_number`` statistics with
  the footer, and (``deep``) its rows with ``content_sha256`` (:func:`content_sha256`).
* Against its neighbours: the files of one shard form a chain — each footer's
  ``prev_last_seq`` is the ``last_seq`` of the shard's previous file (``null``: no known
  predecessor, the shard's first file), and ``prev_chained`` says whether that predecessor
  carried a footer itself. A file missing in the middle leaves its successor
  pointing at nothing; the missing *tail* is caught by the checkpoint, whose
  ``sequence_number`` (and ``chain_head``) name the last file's ``last_seq``.
* Links are by sequence number, not by hash, so compaction can merge a run of files into one
  (linking to what the first input linked to) without rewriting any successor.
* Lambda-written files (shard ``lambda``) cannot be chained (a batch's predecessor is unknown
  to the function): their footer carries ``prev_last_seq: null``, and each is checked on its
  own (row count, content hash).
* An erasure (``ddb-archiver forget``) rewrites a file without some of its rows, keeping its
  name and links and recording its id in the footer (``erasures``): such a file's rows may
  start after its name's first or end before its last sequence number, and only such a file's.
* Files written before footers existed (no :data:`FOOTER_KEY`) are read as before; they are
  *unchained*: name and statistics are still checked, links cannot be. Successors link to
  them by their name's ``last_seq``. An unchained file *after* a chained one in the same
  shard, or one whose successor says its predecessor was chained, is a problem (a replaced
  file).

This module only reads footers (one small ranged read per file, in parallel) and reasons
about them; ``archiver.integrity.check`` reports and repairs, the archiver and the replayer refuse.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from archiver.format import layout
from archiver.format.errors import EXIT_REFUSED, ArchiverError, CorruptArchive
from archiver.format.footers import (
    DEFAULT_WORKERS,
    FileState,
    content_sha256,
    one_line,
    parse_change_path,
    read_states,
)
from archiver.format.storage import Archive

# Problem kinds (stable: ``check --json`` prints them).
UNREADABLE = "unreadable"
FOOTER_MISMATCH = "footer-mismatch"
CONTENT_MISMATCH = "content-mismatch"
UNCHAINED_AFTER_CHAINED = "footer-missing"
MISSING_FILE = "missing-file"
MISSING_TAIL = "missing-tail"
OVERLAP = "overlapping-range"


class ChainBroken(ArchiverError):
    """A shard's chain of change files is broken: refused like a gap (exit 4)."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


def check_command(table: str, archive: Archive, *, repair: bool = False) -> str:
    """The ``ddb-archiver check`` command line for this table and archive."""
    return f"ddb-archiver check --table-name {table} --archive {archive.url}" + (
        " --repair" if repair else ""
    )


def corrupt_file(archive: Archive, table: str, rel: str, exc: BaseException) -> CorruptArchive:
    """The one-line error (exit 2) for a change or snapshot file that cannot be read."""
    return CorruptArchive(
        f"{archive.uri(rel)} cannot be read as Parquet ({one_line(exc)[:200]}): the archive "
        f"is damaged; run `{check_command(table, archive)}` to list every damaged file"
    )


# -- problems --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the archive, about one file (``path``)."""

    kind: str
    path: str
    detail: str
    # For chain problems: the shard and the range of sequence numbers that may be missing,
    # (after_seq, until_seq]: what a repair must re-read.
    label: str | None = None
    shard_id: str | None = None
    after_seq: str | None = None
    until_seq: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "path": self.path, "detail": self.detail}
        if self.shard_id is not None:
            out.update(
                label=self.label,
                shard_id=self.shard_id,
                after_seq=self.after_seq,
                until_seq=self.until_seq,
            )
        return out

    def line(self) -> str:
        return f"{self.kind}: {self.path}: {self.detail}"


def file_problems(state: FileState) -> list[Problem]:
    """What is wrong with one file on its own (footer and metadata only)."""
    rel, name = state.rel, state.name
    if state.error is not None:
        return [_ranged(UNREADABLE, state, f"cannot be read as Parquet ({state.error})")]
    out: list[Problem] = []
    if state.seq_min is not None and not _range_ok(state):
        out.append(
            _ranged(
                FOOTER_MISMATCH,
                state,
                f"holds sequence numbers {state.seq_min}..{state.seq_max}, its "
                + (
                    f"footer says {'..'.join(state.footer.sequence_range)}"
                    if state.footer is not None and state.footer.sequence_range
                    else f"name says {name.first_seq}..{name.last_seq}"
                ),
            )
        )
    footer = state.footer
    if footer is None:
        return out
    expected = {
        "table": state.table,
        "dt": state.dt,
        "shard_id": name.shard_id,
        "first_seq": name.first_seq,
        "last_seq": name.last_seq,
    }
    for key, value in expected.items():
        found = getattr(footer, key)
        if found != value:
            out.append(
                _ranged(FOOTER_MISMATCH, state, f"footer says {key} {found!r}, its path {value!r}")
            )
    try:
        label = layout.label_stamp(layout.stream_label_of(footer.stream_arn))
    except ValueError:
        label = footer.stream_arn
    if label != name.label:
        out.append(
            _ranged(
                FOOTER_MISMATCH,
                state,
                f"footer names stream {footer.stream_arn}, its name label {name.label}",
            )
        )
    if state.num_rows != footer.row_count:
        out.append(
            _ranged(
                FOOTER_MISMATCH,
                state,
                f"holds {state.num_rows} rows, its footer says {footer.row_count}",
            )
        )
    if rel and footer.prev_last_seq is not None and footer.prev_last_seq >= name.first_seq:
        out.append(
            _ranged(
                FOOTER_MISMATCH,
                state,
                f"links to a predecessor ending at {footer.prev_last_seq}, not before its own "
                f"first record {name.first_seq}",
            )
        )
    return out


def _range_ok(state: FileState) -> bool:
    """Whether the file's sequence numbers fit its name: exactly its first and last, or —
    once an erasure removed rows (recorded in the file) — within them. A Kinesis file's name
    counts its shard's records; its footer says its ``sequence_number`` range instead."""
    assert state.seq_min is not None and state.seq_max is not None
    first, last = state.name.first_seq, state.name.last_seq
    recorded = state.footer.sequence_range if state.footer is not None else None
    if recorded is not None:
        first, last = recorded
    if state.erasures:
        return first <= state.seq_min and state.seq_max <= last
    return state.seq_min == first and state.seq_max == last


def content_problems(state: FileState, rows: pa.Table) -> list[Problem]:
    """What ``deep`` reading of one file's rows finds against its footer."""
    footer = state.footer
    if footer is None:
        return []
    if rows.num_rows != footer.row_count:
        return [
            _ranged(
                CONTENT_MISMATCH,
                state,
                f"{rows.num_rows} rows read, its footer says {footer.row_count}",
            )
        ]
    if content_sha256(rows) != footer.content_sha256:
        return [_ranged(CONTENT_MISMATCH, state, "its rows do not match its footer's content hash")]
    return []


def _ranged(kind: str, state: FileState, detail: str) -> Problem:
    """A problem with one file: repairing it means re-reading the file's whole range."""
    prev = state.footer.prev_last_seq if state.footer is not None else None
    after = prev if prev is not None else _before(state.name.first_seq)
    return Problem(
        kind,
        state.rel,
        detail,
        label=state.name.label,
        shard_id=state.name.shard_id,
        after_seq=after,
        until_seq=state.name.last_seq,
    )


def _before(seq: str) -> str:
    """The sequence number just before ``seq`` (reading "after" it starts at ``seq``)."""
    return layout.pad_seq(max(int(seq) - 1, 0))


@dataclass(frozen=True)
class Head:
    """What a checkpoint says the last durable file of a shard ends at."""

    label: str
    shard_id: str
    last_seq: str  # 40 digits
    path: str  # the checkpoint's path, for messages
    dt: str | None = None
    chained: bool = False  # written with a chain head: the file it names has a footer


@dataclass
class ChainReport:
    """Problems found, and files that are unchained (no footer; not a problem by itself)."""

    problems: list[Problem] = field(default_factory=list)
    unchained: list[str] = field(default_factory=list)


def chain_problems(
    states: Sequence[FileState],
    *,
    heads: Iterable[Head] = (),
    superseded: Iterable[str] = (),
) -> ChainReport:
    """What is wrong with the chains of these files (every file of each shard concerned).

    Args:
        states: the files, footers read (:func:`read_states`).
        heads: checkpoints: a file of that shard must end at each head's ``last_seq``.
        superseded: compaction inputs in their grace period: their merged file covers them,
            so they are neither linked to nor checked for overlap.

    States that are ``listed_only`` (outside the range a restore reads) count by their names
    only: as the predecessors files link to, never as problems themselves.
    """
    report = ChainReport()
    skip = set(superseded)
    groups: dict[tuple[str, str], list[FileState]] = {}
    for state in states:
        if state.rel in skip:
            continue
        if state.footer is None and state.error is None and not state.listed_only:
            report.unchained.append(state.rel)
        if state.name.shard_id == layout.LAMBDA_SHARD:
            continue
        groups.setdefault(state.group, []).append(state)
    for files in groups.values():
        report.problems.extend(_group_problems(files))
    by_group_last: dict[tuple[str, str], set[str]] = {}
    by_end: dict[tuple[str, str, str], FileState] = {}
    for state in states:
        by_group_last.setdefault(state.group, set()).add(state.name.last_seq)
        if state.rel not in skip:
            by_end[(*state.group, state.name.last_seq)] = state
    for head in heads:
        key = (head.label, head.shard_id)
        ends = by_group_last.get(key, set())
        if head.last_seq in ends:
            last = by_end.get((*key, head.last_seq))
            if (
                head.chained
                and last is not None
                and last.footer is None
                and last.error is None
                and not last.listed_only
            ):
                report.problems.append(
                    _ranged(
                        UNCHAINED_AFTER_CHAINED,
                        last,
                        f"has no chain footer although its checkpoint {head.path} was written "
                        "after a file with one (replaced by another file?)",
                    )
                )
            continue
        later = sorted(s for s in ends if s > head.last_seq)
        detail = (
            f"its checkpoint says the shard is archived up to {head.last_seq}, but no file "
            "ends there"
        )
        if later:
            detail += f" (files end at {later[0]} and later)"
        below = [s for s in ends if s < head.last_seq]
        report.problems.append(
            Problem(
                MISSING_TAIL,
                head.path,
                detail,
                label=head.label,
                shard_id=head.shard_id,
                after_seq=max(below) if below else None,
                until_seq=head.last_seq,
            )
        )
    return report


def _group_problems(files: list[FileState]) -> list[Problem]:
    ordered = sorted(files, key=lambda s: (s.name.first_seq, s.name.last_seq, s.rel))
    out: list[Problem] = []
    seen_chained = False
    previous: FileState | None = None
    reach = ""
    for state in ordered:
        name = state.name
        if state.listed_only:
            previous = state
            reach = max(reach, name.last_seq)
            continue
        if previous is not None and name.first_seq <= reach:
            out.append(
                Problem(
                    OVERLAP,
                    state.rel,
                    f"its range {name.first_seq}..{name.last_seq} overlaps {previous.rel}",
                    label=name.label,
                    shard_id=name.shard_id,
                )
            )
        footer = state.footer
        if footer is None:
            if seen_chained and state.error is None:
                out.append(
                    _ranged(
                        UNCHAINED_AFTER_CHAINED,
                        state,
                        "has no chain footer although earlier files of its shard do "
                        "(replaced by another file?)",
                    )
                )
        else:
            seen_chained = True
            prev = footer.prev_last_seq
            if (
                footer.prev_chained
                and previous is not None
                and previous.name.last_seq == prev
                and previous.footer is None
                and previous.error is None
                and not previous.listed_only
            ):
                out.append(
                    _ranged(
                        UNCHAINED_AFTER_CHAINED,
                        previous,
                        f"has no chain footer although {state.rel}, which links to it, says "
                        "it had one (replaced by another file?)",
                    )
                )
            if prev is not None:
                found = previous.name.last_seq if previous is not None else None
                if found is None or found < prev:
                    after = found
                    missing = f"after {found} " if found is not None else "before its first listed "
                    out.append(
                        Problem(
                            MISSING_FILE,
                            state.rel,
                            f"links to a file ending at {prev}, which is missing: records "
                            f"{missing}up to {prev} are not in the archive",
                            label=name.label,
                            shard_id=name.shard_id,
                            after_seq=after,
                            until_seq=prev,
                        )
                    )
        previous = state
        reach = max(reach, name.last_seq)
    return out


@dataclass(frozen=True)
class Hole:
    """A range of a shard known lost (a gap ``archive-file-lost`` in gaps.jsonl): problems
    inside it are on record, no longer problems."""

    label: str
    shard_id: str
    after_seq: str | None
    until_seq: str


def holes_of(gaps: Iterable[Mapping[str, Any]]) -> list[Hole]:
    """The known-lost ranges among recorded gaps."""
    out = []
    for gap in gaps:
        until = gap.get("until_seq")
        if gap.get("reason") != "archive-file-lost" or not until or not gap.get("shard_id"):
            continue
        try:
            label = layout.label_stamp(layout.stream_label_of(str(gap.get("stream_arn"))))
        except ValueError:
            continue
        after = gap.get("after_seq")
        out.append(Hole(label, str(gap["shard_id"]), str(after) if after else None, str(until)))
    return out


def on_record(problem: Problem, holes: Iterable[Hole]) -> bool:
    """Whether ``problem``'s missing range lies inside a known-lost range."""
    if problem.shard_id is None or problem.until_seq is None or problem.kind == OVERLAP:
        return False
    for hole in holes:
        if (hole.label, hole.shard_id) != (problem.label, problem.shard_id):
            continue
        starts_inside = hole.after_seq is None or (
            problem.after_seq is not None and hole.after_seq <= problem.after_seq
        )
        if starts_inside and problem.until_seq <= hole.until_seq:
            return True
    return False


def verify_files(
    archive: Archive,
    rels: Sequence[str],
    *,
    heads: Iterable[Head] = (),
    superseded: Iterable[str] = (),
    context: Iterable[str] = (),
    workers: int = DEFAULT_WORKERS,
) -> list[Problem]:
    """Footer reads of ``rels`` and every check that needs no rows; the problems found.

    ``context``: other change files of the same table, known by name only (not read), that
    files of ``rels`` may link to.
    """
    states = read_states(archive, rels, workers=workers)
    wanted = set(rels)
    for rel in context:
        parsed = parse_change_path(rel)
        if rel not in wanted and parsed is not None:
            states.append(FileState(rel, *parsed, listed_only=True))
    problems = [p for state in states if not state.listed_only for p in file_problems(state)]
    report = chain_problems(states, heads=heads, superseded=superseded)
    return problems + report.problems


def refuse_if_broken(problems: Sequence[Problem], what: str, repair_hint: str) -> None:
    """Raise :class:`ChainBroken` naming the files, when there are problems.

    Raises:
        ChainBroken: exit 4.
    """
    if not problems:
        return
    shown = "; ".join(p.line() for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    raise ChainBroken(f"{what}: the archive's change files are damaged: {shown}{more}; "
                      f"{repair_hint}", problems)  # fmt: skip
