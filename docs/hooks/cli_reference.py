"""MkDocs hook: the command-line reference, generated from the argparse parsers at build time.

Every console script in ``pyproject.toml``'s ``[project.scripts]`` whose module has a
``COMMANDS`` list (``archiver.cli``, ``replayer.cli``) is built with the same
:func:`archiver.cliutil.build_parser` the tools run, and each subcommand becomes one section
of ``reference/cli.md``: its description (the command module's docstring), its usage, and a
table of every argument — flags, metavar, help, default, choices — read from the parser's
actions, never from ``--help`` text. A command added to ``COMMANDS`` appears without any
change here, so the page cannot drift from the code. Building the parsers imports the command
modules but calls no AWS.

``render_reference()`` is what ``tests/test_docs.py`` checks: every subcommand and every flag
of every parser is on the page.
"""

from __future__ import annotations

import argparse
import html
import importlib
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"
ROOT = Path(__file__).resolve().parents[2]
USAGE_WIDTH = 92

_INTRO = """\
# Command reference

Generated from the commands' own argument parsers when the site is built, so it says what the
commands of this version take; `--help` on any command prints the same. Times are ISO 8601
with a zone or epoch seconds; the archive is `s3://bucket/prefix`, `file:///path` or a folder
(see [Getting started](../getting-started.md#conventions)). Exit codes are listed under
[Errors and exit codes](../operations/errors.md).
"""


def tools() -> list[tuple[str, Any]]:
    """``(program name, cli module)`` for every console script that has subcommands."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    out = []
    for prog, target in scripts.items():
        module = importlib.import_module(target.split(":")[0])
        if hasattr(module, "COMMANDS"):
            out.append((prog, module))
    return out


def tool_parser(prog: str, module: Any) -> argparse.ArgumentParser:
    """The parser ``prog`` runs with."""
    from archiver.cliutil import build_parser

    description = getattr(module, "DESCRIPTION", None) or (module.__doc__ or prog).strip()
    return build_parser(prog, description, module.COMMANDS)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name, in the order they were added."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.update(action.choices)
    return out


def documented_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every argument a user can give (help suppressed or ``-h`` excluded)."""
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        yield action


# -- Markdown ---------------------------------------------------------------------------------


def _text(value: str) -> str:
    """Plain text for a Markdown table cell: HTML and Markdown specials escaped."""
    value = html.escape(value, quote=False)
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", value)


def _code(value: str) -> str:
    """Inline code; a cell's pipes stay escaped (the table is split before code is parsed)."""
    return "`" + value.replace("|", "\\|") + "`"


def _prose(text: str) -> str:
    """A docstring paragraph as Markdown: ``code`` spans kept, everything else escaped except
    ``**bold**``, which the docstrings use for emphasis."""
    parts = re.split(r"(``[^`]+``|`[^`]+`)", text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append("`" + part.strip("`") + "`")
        else:
            escaped = html.escape(part, quote=False)
            escaped = re.sub(r"([\\`_\[\]|#])", r"\\\1", escaped)
            escaped = re.sub(r"(?<!\*)\*(?!\*)", r"\\*", escaped)  # a lone * is not emphasis
            out.append(escaped)
    return "".join(out)


def description_markdown(text: str) -> str:
    """A command's description (written for a terminal) as Markdown.

    Paragraphs become prose; indented lines (examples, aligned lists) stay as they are, in a
    code block.
    """
    blocks: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip("\n")):
        lines = paragraph.split("\n")
        run: list[str] = []
        indented = False
        for line in [*lines, None]:
            is_indented = line is not None and line.startswith((" ", "\t"))
            if line is None or (run and is_indented != indented):
                if run and indented:
                    blocks.append("```text\n" + _dedent(run) + "\n```")
                elif run:
                    blocks.append(_prose(" ".join(r.strip() for r in run)))
                run = []
            if line is not None:
                run.append(line)
                indented = is_indented
    return "\n\n".join(blocks)


def _dedent(lines: list[str]) -> str:
    margin = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[margin:] for line in lines)


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        name = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.choices is not None:
        name = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        name = action.dest.upper() if action.option_strings else action.dest
    return {
        "?": f"[{name}]",
        "*": f"[{name} ...]",
        "+": f"{name} [{name} ...]",
    }.get(str(action.nargs), name)


def flag(action: argparse.Action) -> str:
    """How the argument is written: ``--table-name T``, ``-`` for a positional's name."""
    metavar = _metavar(action)
    if not action.option_strings:
        return metavar
    return ", ".join(f"{o} {metavar}".strip() for o in action.option_strings)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = prog
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % params
    return text


def _default(action: argparse.Action) -> str:
    """The default worth showing (as ``--help`` shows it), else ``""``."""
    default = action.default
    if (
        default in (None, False, argparse.SUPPRESS)
        or isinstance(action, argparse._StoreFalseAction | argparse._VersionAction)
        or not action.option_strings
    ):
        return ""
    if isinstance(default, list | tuple) and not default:
        return ""
    return _code(str(default))


def _signature(action: argparse.Action) -> tuple[tuple[str, ...], str | None]:
    return tuple(action.option_strings), action.help


def shared_options(parsers: list[argparse.ArgumentParser]) -> list[argparse.Action]:
    """The options every one of ``parsers`` takes, with the same help: listed once."""
    if not parsers:
        return []
    common = set.intersection(
        *({_signature(a) for a in documented_actions(p) if a.option_strings} for p in parsers)
    )
    return [a for a in documented_actions(parsers[0]) if _signature(a) in common]


def arguments_table(
    parser: argparse.ArgumentParser, actions: list[argparse.Action] | None = None
) -> str:
    rows = ["| argument | meaning | default |", "|---|---|---|"]
    for action in documented_actions(parser) if actions is None else actions:
        meaning = _text(_help(action, parser.prog))
        notes = []
        if action.required and action.option_strings:
            notes.append("required")
        if isinstance(action, argparse._AppendAction | argparse._AppendConstAction):
            notes.append("repeatable")
        if action.choices is not None and action.metavar is not None:
            notes.append("one of " + ", ".join(_code(str(c)) for c in action.choices))
        if notes:
            meaning = f"{meaning} ({'; '.join(notes)})" if meaning else "; ".join(notes)
        rows.append(f"| {_code(flag(action))} | {meaning} | {_default(action)} |")
    return "\n".join(rows)


def exclusive_groups(parser: argparse.ArgumentParser) -> str:
    lines = []
    for group in parser._mutually_exclusive_groups:
        names = ", ".join(
            _code(a.option_strings[0] if a.option_strings else a.dest) for a in group._group_actions
        )
        lines.append(f"{'Exactly' if group.required else 'At most'} one of {names}.")
    return "\n\n".join(lines)


def usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def anchor(prog: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prog.lower()).strip("-")


def command_section(
    parser: argparse.ArgumentParser, level: int, shared: set[tuple[tuple[str, ...], str | None]]
) -> list[str]:
    """One subcommand (and, recursively, its own subcommands), without the shared options."""
    own = [a for a in documented_actions(parser) if _signature(a) not in shared]
    out = [
        f"{'#' * level} {parser.prog} {{#{anchor(parser.prog)}}}",
        description_markdown(parser.description or ""),
        "```text\n" + usage(parser) + "\n```",
    ]
    if own:
        out.append(arguments_table(parser, own))
    if shared:
        out.append("And the [options every command takes](#options-every-command-takes).")
    exclusive = exclusive_groups(parser)
    if exclusive:
        out.append(exclusive)
    for sub in subcommands(parser).values():
        out.extend(command_section(sub, level + 1, shared))
    return out


def render_reference() -> str:
    """The whole page: the options every command takes, then per tool its commands and one
    section per command."""
    out = [_INTRO]
    parsers = [tool_parser(prog, module) for prog, module in tools()]
    every = [sub for parser in parsers for sub in subcommands(parser).values()]
    common = shared_options(every)
    shared = {_signature(a) for a in common}
    if common:
        out.append("## Options every command takes {#options-every-command-takes}")
        out.append(arguments_table(every[0], common))
    for parser in parsers:
        prog = parser.prog
        commands = subcommands(parser)
        out.append(f"## {prog} {{#{anchor(prog)}}}")
        out.append(description_markdown(parser.description or ""))
        rows = ["| command | what it does |", "|---|---|"]
        for choice in _choice_actions(parser):
            link = f"[{choice.dest}](#{anchor(commands[choice.dest].prog)})"
            rows.append(f"| {link} | {_text(choice.help or '')} |")
        out.append("\n".join(rows))
        tool_args = list(documented_actions(parser))
        if tool_args:
            out.append(f"Options of `{prog}` itself:\n\n{arguments_table(parser)}")
        for sub in commands.values():
            out.extend(command_section(sub, 3, shared))
    return "\n\n".join(out) + "\n"


def _choice_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    out: list[argparse.Action] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            out.extend(action._choices_actions)
    return out


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated page to the site (it exists only in the build)."""
    files.append(File.generated(config, PAGE, content=render_reference()))
    return files
