"""Every command the docs show as runnable is run, so the docs cannot drift from the code.

A fenced block whose info string is `sh test` (or `python test`) in README.md or docs/*.md is
runnable: the blocks of one page run in order, each as its own `bash -e -o pipefail` script
(or Python program), against a real `mailsuite serve` that this test starts first. Blocks that
cannot run here (root, real DNS, systemd, a second foreground server) stay plain `sh`; blocks
that need a harness of their own name it (`sh test-acme`: tests/acme, against pebble).

How the docs and the test meet, without any substitution in the text:
- The docs use the embedded default: `mailsuite` with no `--config`, the default loopback ports
  (SMTP 2525, submission 2587/2465, POP3 2110/2995, IMAP 2143/2993, HTTP 8080) and data under
  ~/.local/share/mailsuite. The test runs the server and every block in a network namespace of
  their own (tests/private_network.py), so those ports are free whatever else runs here, with
  HOME set to a fresh folder.
- `mailsuite` on the PATH is this checkout's; the blocks run in a folder that stands for the
  clone, whose `.venv/bin/activate` puts that `mailsuite` on the PATH.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import private_network
from tests.conftest import REPO

FENCE = re.compile(r"^```(\S*)(?: (test))?\n(.*?)^```\s*$", re.M | re.S)
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def runnable_blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line number, language, text) of each block marked runnable, in page order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        if m[2] == "test":
            assert m[1] in ("sh", "python"), f"{page.name}: runnable blocks are sh or python"
            blocks.append((text.count("\n", 0, m.start()) + 1, m[1], m[3]))
    return blocks


PAGES_WITH_BLOCKS = [p for p in PAGES if runnable_blocks(p)]

DRIVER = r"""
set -u
mailsuite serve > "$DOCS_OUT/serve.out" 2>&1 &
server=$!
for i in $(seq 600); do
  grep -q "add the first user" "$DOCS_OUT/serve.out" && break
  kill -0 $server 2>/dev/null || break
  sleep 0.1
done
grep -q "add the first user" "$DOCS_OUT/serve.out" || { kill $server; exit 99; }
for block in "$DOCS_OUT"/block-*; do
  case "$block" in *.out|*.rc) continue ;; esac
  case "$block" in
    *.py) (cd "$DOCS_CLONE" && python3 "$block") > "$block.out" 2>&1 ;;
    *) (cd "$DOCS_CLONE" && bash -e -o pipefail "$block") > "$block.out" 2>&1 ;;
  esac
  rc=$?
  echo $rc > "$block.rc"
  [ $rc = 0 ] || break
done
kill $server
wait $server
"""


def clone_folder(root: Path) -> tuple[Path, Path]:
    """(a folder standing for the clone, the bin folder with `mailsuite` and `python3`)."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "mailsuite").write_text(
        f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m mailsuite.cli "$@"\n'
    )
    (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    for name in ("mailsuite", "python3"):
        (bin_dir / name).chmod(0o755)
    clone = root / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    (clone / ".venv" / "bin" / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    return clone, bin_dir


@pytest.mark.parametrize("page", PAGES_WITH_BLOCKS, ids=lambda p: p.name)
def test_runnable_commands_of_the_page_work(tmp_path, page):
    netns = private_network.prefix()
    if netns is None:
        pytest.skip("no network namespace for the default ports (unshare)")
    blocks = runnable_blocks(page)
    out = tmp_path / "out"
    out.mkdir()
    for i, (_line, language, text) in enumerate(blocks):
        suffix = ".py" if language == "python" else ".sh"
        (out / f"block-{i:03d}{suffix}").write_text(text)
    clone, bin_dir = clone_folder(tmp_path / "site")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "DOCS_OUT": str(out),
        "DOCS_CLONE": str(clone),
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [*netns, "bash", "-c", DRIVER], env=env, capture_output=True, timeout=300
    )
    serve_out = (out / "serve.out").read_text() if (out / "serve.out").exists() else ""
    assert result.returncode == 0, (result.stderr.decode(), serve_out)
    for i, (line, language, text) in enumerate(blocks):
        suffix = ".py" if language == "python" else ".sh"
        rc_file = out / f"block-{i:03d}{suffix}.rc"
        output = (out / f"block-{i:03d}{suffix}.out").read_text() if rc_file.exists() else ""
        assert rc_file.exists() and rc_file.read_text().strip() == "0", (
            f"{page.name}:{line}: this block failed\n{text}\n--- its output ---\n{output}"
            f"\n--- server ---\n{serve_out[-3000:]}"
        )


def test_the_readme_and_getting_started_have_runnable_commands():
    names = {p.name for p in PAGES_WITH_BLOCKS}
    assert {"README.md", "getting-started.md"} <= names


def test_the_readme_starts_with_its_two_commands():
    text = (REPO / "README.md").read_text()
    first = [m[3].strip() for m in FENCE.finditer(text)][:2]
    assert first == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/mailsuite serve",
        "bash .ci/run",
    ]
