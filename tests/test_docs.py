"""The documentation site: the generated command reference is complete, and the README's links
lead somewhere.

The reference (``docs/hooks/cli_reference.py``, run by ``mkdocs build``) must list every
subcommand of every console script and every flag of each parser, so that it cannot drift from
the code; the expectations here are read from the parsers the tools run, not from the hook. The
strict site build (``make docs``, part of ``make test``) checks the site's own links and nav.
"""

from __future__ import annotations

import argparse
import html
import importlib
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from archiver import cli as archiver_cli
from archiver.cliutil import Command, build_parser

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "cli_reference.py"


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference_hook", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_parsers() -> dict[str, argparse.ArgumentParser]:
    """Every console script with subcommands, built as the tool builds it."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    out = {}
    for prog, target in scripts.items():
        module = importlib.import_module(target.split(":")[0])
        out[prog] = build_parser(prog, "", module.COMMANDS)
    assert {"ddb-archiver", "ddb-replayer"} <= set(out)
    return out


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand, nested ones included, by its full name (``ddb-archiver run``)."""
    out = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out[sub.prog] = sub
                out.update(commands(sub))
    return out


def section(page: str, prog: str) -> str:
    """The text of ``prog``'s section: from its heading to the next heading of its level."""
    anchor = re.sub(r"[^a-z0-9]+", "-", prog.lower()).strip("-")
    match = re.search(rf"^(#+) {re.escape(prog)} \{{#{anchor}\}}$", page, re.MULTILINE)
    assert match, f"no section for {prog}"
    level = len(match.group(1))
    rest = page[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    return {
        option
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
    }


def plain(markdown: str) -> str:
    """Text without code marks, escapes and entities, to compare prose."""
    return html.unescape(re.sub(r"[`\\]", "", markdown))


def positional_name(action: argparse.Action) -> str:
    """How argparse names a positional argument in usage."""
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest


def test_the_reference_lists_every_subcommand_and_every_flag() -> None:
    page = load_hook().render_reference()
    every = {
        prog: sub for parser in tool_parsers().values() for prog, sub in commands(parser).items()
    }
    assert len(every) >= 20
    shared = section(page, "Options every command takes") if "{#options-every" in page else ""
    for prog, parser in every.items():
        text = section(page, prog)
        summary = (parser.description or "").split("\n")[0].strip()
        assert plain(summary) in plain(text), f"{prog}: its description is missing"
        for option in flags_of(parser):
            # a row of an arguments table: | `-x X, --option X` | help | default |
            row = re.compile(rf"^\| `(?:[^`|]*, )?{re.escape(option)}[ `]", re.MULTILINE)
            assert row.search(text) or row.search(shared), f"{prog} {option}"
        for action in parser._actions:
            if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
                name = re.escape(positional_name(action))
                assert re.search(rf"^\| `{name}`", text, re.MULTILINE), f"{prog} {action.dest}"


def test_the_reference_shows_defaults_and_choices() -> None:
    page = load_hook().render_reference()
    run = section(page, "ddb-archiver run")
    assert re.search(r"\| `--flush-records N` \| [^|]+ \| `50000` \|", run)
    restore = section(page, "ddb-replayer restore")
    assert re.search(
        r"\| `--strategy \{auto,replay,import,pitr,backup\}` \| [^|]+ \| `auto` \|", restore
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a command that exists only in the test below."""
    parser.add_argument("--only-in-this-test", metavar="N", type=int, default=7, help="a knob")


def main(args: argparse.Namespace) -> int:
    return 0


def test_a_new_command_appears_without_touching_the_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    added = Command("fake-command", __name__, "a command registered only for this test")
    monkeypatch.setattr(archiver_cli, "COMMANDS", [*archiver_cli.COMMANDS, added])
    page = load_hook().render_reference()
    text = section(page, "ddb-archiver fake-command")
    assert "| `--only-in-this-test N` | a knob | `7` |" in text
    assert "[fake-command](#ddb-archiver-fake-command)" in page


def test_the_readme_links_lead_to_files_and_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    head = readme.split("\n## ")[0]
    assert "make demo" in head and "make test" in head
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if "://" not in t]
    assert local
    for target in local:
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
