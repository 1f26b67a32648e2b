"""docs/configuration.md is generated from config.py: a key added without regenerating fails."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_configuration_reference_matches_config_py():
    result = subprocess.run(
        [sys.executable, str(REPO / "docs" / "gen_config_reference.py"), "--check"], cwd=REPO
    )
    assert result.returncode == 0, "run: python docs/gen_config_reference.py"


def test_every_config_key_is_documented():
    text = (REPO / "docs" / "configuration.md").read_text()
    undocumented = [
        line for line in text.splitlines() if line.startswith("| `") and line.endswith("|  |")
    ]
    assert undocumented == []


def test_no_two_keys_of_a_section_share_one_description():
    """Each key says what it itself does: a comment meant for one key must not be repeated for
    its neighbours (as `trust.dns_timeout` once showed the text of `trust.resolvers`)."""
    text = (REPO / "docs" / "configuration.md").read_text()
    for section in text.split("\n## ")[1:]:
        rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
        meanings = [row[2] for row in rows]
        repeated = {m for m in meanings if meanings.count(m) > 1}
        assert not repeated, (section.splitlines()[0], repeated)


def test_path_keys_say_what_they_are_relative_to():
    text = (REPO / "docs" / "configuration.md").read_text()
    assert "Every path in the file, given or left at its default" in text
    assert "$XDG_DATA_HOME/mailsuite" in text
