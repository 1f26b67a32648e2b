"""`mailsuite cert status|renew` without a running server, and with ACME off."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from mailsuite.acme.files import AcmeFiles
from mailsuite.cli import main
from mailsuite.tls import make_self_signed
from tests.conftest import toml_dumps


def write_config(root: Path, acme: dict | None) -> Path:
    data = {
        "hostname": "mail.example.test",
        "domains": ["example.test"],
        "data_dir": str(root / "data"),
        "allow_root": True,
        "tls": {"cert": str(root / "tls" / "cert.pem"), "key": str(root / "tls" / "key.pem")},
    }
    if acme is not None:
        data["acme"] = acme
    path = root / "mailsuite.toml"
    path.write_text(toml_dumps(data))
    return path


def test_status_with_acme_off_describes_the_tls_certificate(tmp_path, capsys):
    config = write_config(tmp_path, None)
    make_self_signed(
        tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem", "mail.example.test"
    )
    assert main(["--config", str(config), "cert", "status"]) == 0
    out = capsys.readouterr().out
    assert "acme: off" in out
    assert "names: mail.example.test" in out
    assert "not after:" in out


def test_renew_with_acme_off_is_refused(tmp_path, capsys):
    config = write_config(tmp_path, None)
    assert main(["--config", str(config), "cert", "renew"]) == 1
    assert "ACME is off" in capsys.readouterr().err


def test_renew_without_a_server_leaves_the_request_for_the_next_start(tmp_path, capsys):
    config = write_config(tmp_path, {"directory": "https://ca.invalid/directory"})
    assert main(["--config", str(config), "cert", "renew"]) == 75
    assert "no server is running" in capsys.readouterr().err
    files = AcmeFiles(tmp_path / "data")
    assert files.renew_request.exists()
    assert (files.renew_request.stat().st_mode & 0o777) == 0o600
    assert main(["--config", str(config), "cert", "status"]) == 0
    out = capsys.readouterr().out
    assert "certificate: none" in out
    assert "temporary self-signed" in out
    assert "last attempt: none yet" in out
    assert "server: not running" in out


def test_status_reports_a_stored_certificate_and_the_last_error(tmp_path, capsys):
    config = write_config(tmp_path, {"directory": "letsencrypt-staging"})
    files = AcmeFiles(tmp_path / "data")
    make_self_signed(files.cert, files.key, "mail.example.test")
    state = files.load_state()
    state.attempts, state.last_attempt, state.failures = 3, 1_800_000_000.0, 1
    state.last_error = "validation of mail.example.test failed: connection: refused"
    state.next_attempt = 1_800_000_600.0
    files.save_state(state)
    assert main(["--config", str(config), "cert", "status"]) == 0
    out = capsys.readouterr().out
    assert "acme-staging-v02.api.letsencrypt.org" in out
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert f"issuer: {cert.issuer.rfc4514_string()}" in out
    assert "renewal due:" in out
    assert (
        "last attempt: 2027-01-15 08:00:00 UTC: failed: validation of mail.example.test failed"
        in out
    )
    assert "next attempt: 2027-01-15 08:10:00 UTC" in out
