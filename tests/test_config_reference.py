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
