"""conf/certbot-deploy-hook.sh against a real `mailsuite serve` process: the renewed certificate
is installed and, after the hook's SIGHUP, served on new connections (https and imaps)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from mailsuite.tls import make_self_signed
from tests.conftest import toml_dumps

REPO = Path(__file__).resolve().parent.parent.parent
HOOK = REPO / "conf" / "certbot-deploy-hook.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_name(port: int, deadline: float) -> str | None:
    """The CN of the certificate served on `port`, retrying until `deadline`."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                with ctx.wrap_socket(raw) as tls:
                    der = tls.getpeercert(binary_form=True)
            cert = x509.load_der_x509_certificate(der)
            return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        except OSError:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def test_hook_installs_and_server_reloads_on_sighup(tmp_path):
    tls_dir = tmp_path / "tls"
    make_self_signed(tls_dir / "fullchain.pem", tls_dir / "privkey.pem", "old.example.test")
    https, imaps = free_port(), free_port()
    conf = tmp_path / "mailsuite.toml"
    listen = {
        k: []
        for k in (
            "smtp",
            "submission",
            "submissions",
            "pop3",
            "pop3s",
            "imap",
            "http",
            "managesieve",
        )
    }
    listen.update(https=[f"127.0.0.1:{https}"], imaps=[f"127.0.0.1:{imaps}"])
    conf.write_text(
        toml_dumps(
            {
                "hostname": "mail.example.test",
                "domains": ["example.test"],
                "data_dir": str(tmp_path / "data"),
                "allow_root": True,
                "tls": {
                    "cert": str(tls_dir / "fullchain.pem"),
                    "key": str(tls_dir / "privkey.pem"),
                },
                "listen": listen,
                "log": {"file": str(tmp_path / "mailsuite.log")},
            }
        )
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert served_name(https, time.monotonic() + 15) == "old.example.test"
        lineage = tmp_path / "letsencrypt" / "live" / "mail.example.test"
        make_self_signed(lineage / "fullchain.pem", lineage / "privkey.pem", "new.example.test")
        result = subprocess.run(
            ["sh", str(HOOK)],
            capture_output=True,
            timeout=30,
            env={
                "PATH": "/usr/bin:/bin",
                "RENEWED_LINEAGE": str(lineage),
                "MAILSUITE_TLS_DIR": str(tls_dir),
                "MAILSUITE_GROUP": "root",
                "MAILSUITE_RELOAD": f"kill -HUP {server.pid}",
            },
        )
        assert result.returncode == 0, result.stderr
        assert (tls_dir / "fullchain.pem").read_bytes() == (lineage / "fullchain.pem").read_bytes()
        assert oct((tls_dir / "privkey.pem").stat().st_mode & 0o777) == "0o640"
        deadline = time.monotonic() + 10
        while served_name(https, deadline) != "new.example.test":
            assert time.monotonic() < deadline, "certificate not reloaded after SIGHUP"
            time.sleep(0.1)
        assert served_name(imaps, deadline) == "new.example.test"
        assert server.poll() is None
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_hook_refuses_to_run_outside_certbot(tmp_path):
    result = subprocess.run(
        ["sh", str(HOOK)], capture_output=True, timeout=10, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode != 0
    assert b"RENEWED_LINEAGE" in result.stderr
