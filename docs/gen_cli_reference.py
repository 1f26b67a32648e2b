"""Write docs/cli-reference.md from the argparse definitions, so the reference cannot drift.

Every subcommand (including those that packages add, such as `queue`, `dns`, `import`) is
walked from `mailsuite.cli.build_parser()`: its usage line, help text and arguments; the exit
statuses come from `mailsuite.sysexits.MEANINGS`, the table the command itself uses. Run
`python docs/gen_cli_reference.py` after changing a command; `--check` exits 1 when the
committed file differs (a test runs it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailsuite.cli import build_parser
from mailsuite.sysexits import MEANINGS

OUT = Path(__file__).resolve().parent / "cli-reference.md"
WIDTH = 100

HEADER = """# Admin command reference

`mailsuite [--config PATH] COMMAND ...` manages a mailsuite installation. The config file comes
from `--config`, else `$MAILSUITE_CONFIG`, else `conf/mailsuite.toml`. Every command works while
the server runs. Errors are one line on stderr with a non-zero exit status, the same for every
command (BSD sysexits, listed [at the end](#exit-status)). Run as root, a command becomes the
account that owns the data: `user` of the config, else the owner of `data_dir`.

This page is generated from the argparse definitions by `docs/gen_cli_reference.py`.
"""


def _fixed_width(parser: argparse.ArgumentParser) -> None:
    # The usage layout must not depend on the terminal the generator runs in.
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=WIDTH)


def _subparsers(parser: argparse.ArgumentParser):
    """(name, help, subparser) for each subcommand, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name) or "", sub


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + (action.metavar or action.dest.upper())
        else:
            name = action.metavar or action.dest
        notes = []
        if action.choices:
            notes.append("one of " + ", ".join(f"`{c}`" for c in action.choices))
        if action.required and action.option_strings:
            notes.append("required")
        if action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction):
            notes.append("repeatable" if action.option_strings else "one or more")
        if action.default not in (None, False, argparse.SUPPRESS, 0, "") and action.nargs != 0:
            notes.append(f"default `{action.default}`")
        help_text = (action.help or "") % {"default": action.default} if action.help else ""
        extra = f" ({'; '.join(notes)})" if notes else ""
        rows.append(f"| `{name}` | {_cell(help_text)}{extra} |")
    return rows


def _section(path: list[str], help_text: str, parser: argparse.ArgumentParser) -> list[str]:
    _fixed_width(parser)
    out = [f"## {' '.join(path)}", ""]
    if help_text:
        out += [_cell(help_text)[:1].upper() + _cell(help_text)[1:] + ".", ""]
    usage = parser.format_usage().strip().removeprefix("usage: ")
    out += ["```", usage, "```", ""]
    rows = _argument_rows(parser)
    if rows:
        out += ["| argument | meaning |", "|---|---|", *rows, ""]
    subs = list(_subparsers(parser))
    if subs:
        out += ["Subcommands: " + ", ".join(f"`{n}`" for n, _, _ in subs) + ".", ""]
    for name, sub_help, sub in subs:
        out += _section([*path, name], sub_help, sub)
    return out


def render() -> str:
    parser = build_parser()
    _fixed_width(parser)
    lines = [
        HEADER,
        "## Global options",
        "",
        "```",
        parser.format_usage().strip().removeprefix("usage: "),
        "```",
        "",
    ]
    lines += ["| argument | meaning |", "|---|---|", *_argument_rows(parser), ""]
    lines += ["| command | what it does |", "|---|---|"]
    lines += [f"| [`{n}`](#mailsuite-{n}) | {_cell(h)} |" for n, h, _ in _subparsers(parser)]
    lines.append("")
    for name, help_text, sub in _subparsers(parser):
        lines += _section(["mailsuite", name], help_text, sub)
    lines += _exit_statuses()
    return "\n".join(lines).rstrip() + "\n"


def _exit_statuses() -> list[str]:
    lines = [
        "## Exit status",
        "",
        "| status | name | meaning |",
        "|---|---|---|",
    ]
    for code, name, meaning in MEANINGS:
        lines.append(f"| {code} | {f'`{name}`' if name else ''} | {_cell(meaning)} |")
    return [*lines, ""]


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
