"""The arguments both command-line tools share (``archiver.cliutil``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from archiver import cli as archiver_cli
from archiver.cliutil import (
    ALLOW_GAPS_HELP,
    ALLOW_INEXACT_HELP,
    ARCHIVE_HELP,
    LAMBDA_FAILURES_HELP,
    LATEST_HELP,
    SEGMENTS_HELP,
    TIME_FORMS,
    build_parser,
    number_type,
    positive_float,
    positive_int,
)
from replayer import cli as replayer_cli

# Neither the format, the codec nor planning talks to AWS (see tests/conftest.py).
pytestmark = pytest.mark.no_aws


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def _flag(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_every_archive_flag_is_the_same_flag() -> None:
    seen = []
    for prog, commands in (
        ("ddb-archiver", archiver_cli.COMMANDS),
        ("ddb-replayer", replayer_cli.COMMANDS),
    ):
        for name, sub in _subcommands(build_parser(prog, "", commands)).items():
            action = _flag(sub, "--archive")
            if action is None:
                continue
            seen.append(f"{prog} {name}")
            assert action.required, name
            assert action.metavar == "URL", name
            assert action.help == ARCHIVE_HELP, name
    assert len(seen) >= 10  # run, snapshot, compact, status, restore, export, verify, …


def _every_subcommand() -> dict[str, argparse.ArgumentParser]:
    return {
        f"{prog} {name}": sub
        for prog, commands in (
            ("ddb-archiver", archiver_cli.COMMANDS),
            ("ddb-replayer", replayer_cli.COMMANDS),
        )
        for name, sub in _subcommands(build_parser(prog, "", commands)).items()
    }


_PLANNERS = {"ddb-replayer restore", "ddb-replayer export", "ddb-replayer verify"}
_WRITERS = {
    *(f"ddb-archiver {name}" for name in ("run", "snapshot", "compact", "forget", "expire")),
    *(f"ddb-archiver {name}" for name in ("check", "redrive", "incremental", "backfill")),
    "ddb-replayer export",  # its --output
    "ddb-replayer rollback",  # it drains the stream into the archive first
}
# Each flag several commands take: (the commands that must take it, how its help must read).
SHARED_FLAGS: dict[str, tuple[set[str], Callable[[str], bool]]] = {
    "--restore-date-time": (
        {*_PLANNERS, "ddb-replayer rollback"},
        lambda help: help.endswith(": " + TIME_FORMS),
    ),
    "--use-latest-restorable-time": (
        {"ddb-replayer restore", "ddb-replayer export"},
        lambda help: help.startswith(LATEST_HELP),
    ),
    "--allow-gaps": (_PLANNERS, lambda help: help == ALLOW_GAPS_HELP),
    "--allow-inexact": (_PLANNERS, lambda help: help == ALLOW_INEXACT_HELP),
    "--lambda-failures": (
        {*_PLANNERS, "ddb-replayer rollback", "ddb-replayer status"},
        lambda help: help == LAMBDA_FAILURES_HELP,
    ),
    "--segments": (
        {"ddb-archiver snapshot", "ddb-replayer verify", "ddb-replayer diff"},
        lambda help: help.startswith(SEGMENTS_HELP),
    ),
    "--file-mode": (
        _WRITERS,
        lambda help: help.startswith("permissions (octal) of the files a local "),
    ),
}


@pytest.mark.parametrize("flag", sorted(SHARED_FLAGS))
def test_every_shared_flag_is_the_same_flag(flag: str) -> None:
    """Declared once (archiver.cliutil) and used everywhere: the same type, metavar, kind of
    action and help, on every command that needs it."""
    must, reads_right = SHARED_FLAGS[flag]
    found = {name: a for name, sub in _every_subcommand().items() if (a := _flag(sub, flag))}
    assert must <= set(found), f"{flag} missing from {sorted(must - set(found))}"
    first = next(iter(found.values()))
    for name, action in found.items():
        shape = (type(action), action.type, action.metavar, action.nargs, action.const)
        assert shape == (type(first), first.type, first.metavar, first.nargs, first.const), name
        assert reads_right(action.help or ""), f"{name} {flag}: {action.help}"
    if flag == "--file-mode":
        assert {a.default for a in found.values()} == {first.default}


def test_no_flag_takes_a_bare_number() -> None:
    """Numbers go through ``number_type`` (bounds checked, named in the error), never a bare
    ``int``/``float``."""
    for name, sub in _every_subcommand().items():
        for action in sub._actions:
            assert action.type not in (int, float), f"{name} {action.option_strings}"


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (positive_int, "0", "'0' must be > 0"),
        (positive_int, "1.5", "'1.5' is not a whole number"),
        (positive_float, "-0.5", "'-0.5' must be > 0"),
        (positive_float, "soon", "'soon' is not a number"),
        (number_type(float, at_least=0), "-1", "'-1' must be >= 0"),
        (
            number_type(int, at_least=1, at_most=35, unit="days", why="AWS's limits"),
            "36",
            "36 is outside 1..35 days (AWS's limits)",
        ),
        (number_type(int, at_least=1, unit="days"), "x", "'x' is not a whole number of days"),
    ],
)
def test_out_of_range_numbers_are_refused_with_their_bounds(
    parse: Callable[[str], float], text: str, message: str
) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        parse(text)
    assert str(exc.value) == message


def test_numbers_in_range_are_parsed_as_their_kind() -> None:
    assert positive_int("3") == 3 and isinstance(positive_int("3"), int)
    assert positive_float("0.25") == 0.25
    assert number_type(float, at_least=0)("0") == 0.0
    assert number_type(int, at_least=1, at_most=35)("35") == 35
