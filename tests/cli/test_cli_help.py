"""Every subcommand's --help says in a line what it does, and every argument what it is for:
the whole parser (the families that packages add included) is walked."""

from __future__ import annotations

import argparse

from mailsuite.cli import build_parser
from tests.conftest import run_cli


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("mailsuite",)):
    """(command path, parser, the help its parent lists it with) for every parser."""
    yield path, parser, None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                for found in walk(sub, (*path, name)):
                    yield found if found[0] != (*path, name) else (*found[:2], listed.get(name))


def test_every_subcommand_and_argument_has_help():
    missing = []
    parsers = list(walk(build_parser()))
    assert len(parsers) > 30
    for path, parser, listed in parsers:
        name = " ".join(path)
        if len(path) > 1:
            if not (listed or "").strip():
                missing.append(f"{name}: no help line in its parent's list")
            if not (parser.description or "").strip():
                missing.append(f"{name}: no description in its own --help")
            elif "\n" in parser.description.strip():
                missing.append(f"{name}: the description is more than one line")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{name}: {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_a_subcommands_help_shows_its_description_and_arguments():
    result = run_cli("user", "add", "--help")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "Add a user and create its mailbox." in out
    assert "the new user's address, in a local domain" in out
    result = run_cli("queue", "flush", "--help")
    assert "exit 69 when no server takes it" in " ".join(result.stdout.decode().split())


def test_the_reference_lists_every_exit_status():
    from mailsuite import sysexits
    from tests.conftest import REPO

    listed = {code for code, _, _ in sysexits.MEANINGS}
    constants = {v for k, v in vars(sysexits).items() if k.startswith("EX_")}
    assert constants <= listed
    text = (REPO / "docs" / "cli-reference.md").read_text()
    for code, name, _ in sysexits.MEANINGS:
        assert f"| {code} | {f'`{name}`' if name else ''} |" in text, code
