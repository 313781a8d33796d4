"""Which items a command works on: ``--key``, ``--keys-file`` or ``--where``, resolved once.

``restore``, ``export``, ``verify``, ``rollback`` and ``undo`` take the selectors that
``ddb-archiver forget`` takes, and read them with forget's own code — one parser of keys, one
restricted evaluation of ``--where``:

* ``--key JSON`` (repeatable): a key as DynamoDB JSON, as the AWS CLI takes it;
* ``--keys-file F``: one such key per line (``-``: standard input);
* ``--where SQL``: every key with an archived row for which one DuckDB expression over a
  change row is true (snapshot items count too, as ``new_image``), evaluated with DuckDB's
  file, network and extension access off. ``undo`` evaluates it over its window's change rows
  only.

:func:`select_keys` resolves them against the table's archived key schema (exit 2 for a key
that is not the table's) into a :class:`KeySelection` and keeps it on the parsed arguments,
where :meth:`replayer.engines.fold.FoldSettings.from_args` finds it: every fold the command runs
then reads only the selected keys' rows, from the row groups whose key statistics can hold them
(:mod:`replayer.engines.key_rows`), and says how many rows it read. That is the whole change a
command needs: one call to :func:`add_key_selection_arguments`, one to :func:`select_keys`.

A selection restores by replay (``--strategy auto`` becomes ``replay``; a native or import
strategy restores whole tables and is refused), folds in DuckDB (``--engine athena`` scans
whole partitions and is refused), and selects items of one table.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from archiver.format.storage import Archive
from replayer.exceptions import BadInput

SELECTORS = ("--key", "--keys-file", "--where")


@dataclass(frozen=True)
class KeySelection:
    """The selected keys (canonical DynamoDB JSON, sorted, distinct) and how they were chosen.

    ``say`` is where folds over the selection report the rows they read (stdout by default).
    """

    keys: tuple[str, ...]
    selector: str
    say: Callable[[str], None] = field(default=print, compare=False, hash=False, repr=False)
    flags: str = ""  # the selecting flags as a shell would take them (for printed commands)

    @classmethod
    def of(
        cls,
        keys: Iterable[str],
        selector: str,
        say: Callable[[str], None] = print,
        flags: str = "",
    ) -> KeySelection:
        return cls(tuple(sorted(set(keys))), selector, say, flags)

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        i = bisect.bisect_left(self.keys, key)
        return i < len(self.keys) and self.keys[i] == key

    def may_hold(self, low: str | None, high: str | None) -> bool:
        """Whether keys running from ``low`` to ``high`` (a row group's statistics) can
        include a selected one; without statistics, they can."""
        if low is None or high is None:
            return True
        i = bisect.bisect_left(self.keys, low)
        return i < len(self.keys) and self.keys[i] <= high

    @property
    def digest(self) -> str:
        """A short digest of the keys: part of a resumable restore's or export's plan."""
        return hashlib.sha256("\n".join(self.keys).encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{len(self.keys):,} key(s) selected by {self.selector}"


def add_key_selection_arguments(parser: argparse.ArgumentParser) -> None:
    """``--key`` (repeatable), ``--keys-file`` or ``--where``: only these items (optional)."""
    group = parser.add_argument_group(
        "only some items",
        "work on these items only; the fold reads only the row groups that can hold them",
    )
    what = group.add_mutually_exclusive_group()
    what.add_argument(
        "--key",
        action="append",
        metavar="JSON",
        help='an item\'s key as DynamoDB JSON, like the AWS CLI\'s: \'{"pk": {"S": "a"}}\' '
        "(repeatable)",
    )
    what.add_argument(
        "--keys-file",
        metavar="FILE",
        help="keys, one DynamoDB JSON key per line ('-': standard input)",
    )
    what.add_argument(
        "--where",
        metavar="SQL",
        help="every key with an archived change row (or snapshot item, as new_image) matching "
        "this DuckDB expression, e.g. \"new_image->>'$.status.S' = 'corrupt'\" (read-only: "
        "no file or network access)",
    )


def _check_combination(args: argparse.Namespace) -> None:
    """Refuse (exit 2) what cannot work on some items only; ``auto`` becomes ``replay``."""
    if getattr(args, "engine", None) == "athena":
        raise BadInput(
            "--key/--keys-file/--where fold in DuckDB, reading only the row groups that can "
            "hold the keys: leave out --engine athena"
        )
    strategy = getattr(args, "strategy", None)
    if strategy == "auto":
        args.strategy = "replay"
    elif strategy not in (None, "replay"):
        raise BadInput(
            f"--strategy {strategy} restores whole tables: some items are restored by replay "
            "(--strategy replay, or auto)"
        )


def select_keys(
    args: argparse.Namespace,
    archive: Archive,
    table: str,
    *,
    after: datetime | None = None,
    until: datetime | None = None,
    say: Callable[[str], None] = print,
) -> KeySelection | None:
    """The items ``--key``/``--keys-file``/``--where`` select in ``table`` (None: all of them).

    Also kept as ``args.key_selection``, for :meth:`replayer.engines.fold.FoldSettings.from_args`.
    ``after``/``until`` limit ``--where`` to the change rows of that window (``undo``).

    Raises:
        BadInput, UsageError: a key that is not DynamoDB JSON or not the table's key, an
            expression that is not one, a selection that selects nothing, or a flag a
            selection cannot go with (exit 2).
    """
    texts, keys_file, where = (getattr(args, name, None) for name in ("key", "keys_file", "where"))
    if not (texts or keys_file or where):
        args.key_selection = None
        return None
    _check_combination(args)
    # forget's own parsing and --where evaluation: one of each in the project.
    from archiver.erasure.keys import parse_key, read_keys_file
    from archiver.format.tables import archived_key_names

    names = archived_key_names(archive, table)
    if texts:
        keys, selector = [parse_key(text, names) for text in texts], "--key"
        flags = " ".join(f"--key {shlex.quote(text)}" for text in texts)
    elif keys_file:
        keys, selector = read_keys_file(keys_file, names), f"--keys-file {keys_file}"
        flags = f"--keys-file {shlex.quote(keys_file)}"
    else:
        from archiver.erasure.where import keys_where

        keys = keys_where(archive, table, str(where), after=after, until=until)
        selector, flags = f"--where {where}", f"--where {shlex.quote(str(where))}"
    selection = KeySelection.of(keys, selector, say, flags)
    if not selection.keys:
        where_rows = "in the window" if after is not None else "in the archive"
        raise BadInput(f"{selector} selects no key of table {table!r} {where_rows}")
    args.key_selection = selection
    return selection
