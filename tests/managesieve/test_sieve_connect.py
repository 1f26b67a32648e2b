"""sieve-connect (Debian's `sieve-connect`, the command-line client admins reach for) against
the server: STARTTLS with the certificate verified, its NOOP "STARTTLS-RESYNC-CAPA" tag after
the handshake, PLAIN and LOGIN (its SASL library has no SCRAM), and each of its actions."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import DEFAULT_PASSWORD
from tests.managesieve.conftest import HOSTNAME

pytestmark = pytest.mark.skipif(
    shutil.which("sieve-connect") is None, reason="Debian package sieve-connect (.ci/run)"
)

RULES = 'require "fileinto";\nif header :contains "subject" "[dev]" { fileinto "Dev"; }\n'


def sieve_connect(srv, user: str, *args: str, mech: str = "PLAIN") -> subprocess.CompletedProcess:
    read, write = os.pipe()
    os.write(write, DEFAULT_PASSWORD.encode() + b"\n")
    os.close(write)
    try:
        return subprocess.run(
            [
                "sieve-connect",
                "--server",
                "127.0.0.1",
                "--port",
                str(srv.port("managesieve")),
                "--user",
                user,
                "--passwordfd",
                str(read),
                "--tlscafile",
                str(srv.config.tls.cert),
                "--tlshostname",
                HOSTNAME,
                "--authmech",
                mech,
                *args,
            ],
            pass_fds=(read,),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.close(read)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_upload_list_activate_download_delete(sieve_server, alice, tmp_path, mech):
    local = tmp_path / "rules.sieve"
    local.write_text(RULES)
    ok(
        sieve_connect(
            sieve_server,
            alice,
            "--localsieve",
            str(local),
            "--remotesieve",
            "rules",
            "--upload",
            mech=mech,
        )
    )
    ok(sieve_connect(sieve_server, alice, "--remotesieve", "rules", "--activate", mech=mech))
    listing = ok(sieve_connect(sieve_server, alice, "--list", mech=mech))
    assert listing == '"rules" ACTIVE\n'
    fetched = tmp_path / "fetched.sieve"
    ok(
        sieve_connect(
            sieve_server,
            alice,
            "--localsieve",
            str(fetched),
            "--remotesieve",
            "rules",
            "--download",
            mech=mech,
        )
    )
    assert fetched.read_text().replace("\r\n", "\n") == RULES
    ok(sieve_connect(sieve_server, alice, "--deactivate", mech=mech))
    ok(sieve_connect(sieve_server, alice, "--remotesieve", "rules", "--delete", mech=mech))
    assert ok(sieve_connect(sieve_server, alice, "--list", mech=mech)) == ""


def test_checkscript_reports_the_line(sieve_server, alice, tmp_path):
    local = tmp_path / "bad.sieve"
    local.write_text('require "fileinto";\nfileinto;\n')
    result = sieve_connect(sieve_server, alice, "--localsieve", str(local), "--checkscript")
    assert result.returncode != 0
    assert "line 2: " in result.stdout + result.stderr
