"""Debian's fetchmail against our POP3 server: STLS on the plain port and implicit TLS, keep/delete.

fetchmail probes CAPA, uses UIDL to remember what it has fetched when mail is left on the
server, peeks with TOP/RETR and deletes with DELE before QUIT (CLIENT-QUIRKS.md).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_PASSWORD
from tests.pop3.test_pop3_server import ALICE, MESSAGES, deliver

FETCHMAIL = shutil.which("fetchmail")


def run_fetchmail(home: Path, port: int, implicit_tls: bool, keep: bool, sink: Path):
    """One fetchmail poll; each message goes to its own file in `sink` through the MDA."""
    home.mkdir(exist_ok=True)
    sink.mkdir(exist_ok=True)
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll 127.0.0.1 service {port} protocol POP3 uidl auth password timeout 20\n"
        f'  user "{ALICE}" there with password "{DEFAULT_PASSWORD}" is "root" here\n'
        # The test certificate is self-signed; TLS itself is still required ("TLS1.2+").
        f'  {"ssl " if implicit_tls else ""}sslproto "TLS1.2+" no sslcertck\n'
        f"  {'keep' if keep else 'nokeep'}\n"
        f'  mda "cat > {sink}/msg.$$"\n'
    )
    rc.chmod(0o600)
    return subprocess.run(
        [FETCHMAIL, "-f", str(rc), "-i", str(home / "fetchids"), "-v", "--nodetach"],
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        capture_output=True,
        timeout=60,
    )


def fetched_bodies(sink: Path) -> list[bytes]:
    bodies = []
    for f in sink.glob("msg.*"):
        data = f.read_bytes().replace(b"\r\n", b"\n")
        # fetchmail adds its own Received: header; keep what came from the server.
        bodies.append(data[data.index(b"From: ") :])
    return sorted(bodies)


@pytest.mark.parametrize("kind", ["pop3", "pop3s"])
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "delete"])
def test_fetchmail_over_stls_and_995(mail_server, tmp_path, kind, keep):
    assert FETCHMAIL, "fetchmail missing: .ci/run installs it from Debian"
    deliver(mail_server, ALICE, *MESSAGES)
    home, sink = tmp_path / "home", tmp_path / "sink"
    r = run_fetchmail(home, mail_server.port(kind), kind == "pop3s", keep, sink)
    log = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, log
    if kind == "pop3":
        assert "STLS" in log
    expected = sorted(m if m.endswith(b"\n") else m + b"\n" for m in MESSAGES)
    assert fetched_bodies(sink) == expected
    left = len(mail_server.message_files(ALICE))
    if keep:
        assert left == 3
        # UIDL remembered: a second poll finds nothing new (exit code 1 = no mail).
        again = run_fetchmail(home, mail_server.port(kind), kind == "pop3s", keep, sink)
        assert again.returncode == 1, again.stdout.decode(errors="replace")
        assert len(list(sink.glob("msg.*"))) == 3
        # ... until something new arrives: only that one is fetched.
        deliver(mail_server, ALICE, b"From: d@example.net\nSubject: four\n\nnew\n")
        third = run_fetchmail(home, mail_server.port(kind), kind == "pop3s", keep, sink)
        assert third.returncode == 0
        assert len(list(sink.glob("msg.*"))) == 4
    else:
        assert left == 0
