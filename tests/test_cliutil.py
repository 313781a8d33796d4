"""The arguments both command-line tools share (``archiver.cliutil``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from archiver import cli as archiver_cli
from archiver.cliutil import ARCHIVE_HELP, build_parser, number_type, positive_float, positive_int
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
