"""The shell blocks of docs/production.md's certificate section marked ```sh test-acme run as
written against a local server that has its certificate from a real ACME CA (pebble)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.acme.pebble_support import wait_for_issuer

REPO = Path(__file__).resolve().parent.parent.parent
DOC = REPO / "docs" / "production.md"


def certificate_section_blocks() -> list[str]:
    text = DOC.read_text()
    start = text.index("## 3. Certificates")
    end = text.index("\n## ", start + 1)
    return re.findall(r"^```sh test-acme\n(.*?)^```", text[start:end], re.S | re.M)


def test_certificate_section_sh_test_blocks_run_against_a_local_server(acme_pair, tmp_path):
    blocks = certificate_section_blocks()
    assert blocks, "the certificate section has no ```sh test-acme block"
    pebble, server = acme_pair("http-01")
    wait_for_issuer(server.https, "Pebble", timeout=60)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "mailsuite"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mailsuite.cli "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ)
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        MAILSUITE_CONFIG=str(server.config),
        PYTHONPATH=str(REPO),
    )
    for block in blocks:
        result = subprocess.run(
            ["sh", "-e", "-c", block], capture_output=True, text=True, env=env, timeout=180
        )
        assert result.returncode == 0, (block, result.stdout, result.stderr)
    assert "renewed" in result.stdout
