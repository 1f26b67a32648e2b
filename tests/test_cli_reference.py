"""docs/cli-reference.md is generated from the argparse definitions: a changed command without
regenerating the page fails here."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_cli_reference_matches_the_argparse_definitions():
    result = subprocess.run(
        [sys.executable, str(REPO / "docs" / "gen_cli_reference.py"), "--check"],
        cwd=REPO,
        env={"COLUMNS": "40", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, "run: python docs/gen_cli_reference.py"


def test_every_command_is_in_the_reference():
    from mailsuite.cli import build_parser

    text = (REPO / "docs" / "cli-reference.md").read_text()
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    for name in sub.choices:
        assert f"## mailsuite {name}\n" in text, name
    assert "## mailsuite import imap\n" in text and "`--user-to ADDR`" in text
