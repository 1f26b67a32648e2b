"""The `metrics` listener of a real server: Prometheus text after real SMTP, IMAP and POP3
sessions, parsed with prometheus_client's own parser, and /healthz's 200 and 503 answers."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import imaplib
import os
import poplib
import smtplib
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from mailsuite.config import ConfigError, config_from_dict
from tests.conftest import DEFAULT_PASSWORD, base_config, client_tls_context

METRICS_ON = {"listen": {"metrics": ["127.0.0.1:0"]}}
ALICE = "alice@example.test"


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def scrape(server) -> dict[tuple[str, tuple], float]:
    """Every sample of a real scrape: (name, sorted labels) -> value."""
    status, body = get(server.port("metrics"), "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def message(n: int) -> bytes:
    return (
        f"From: bob@example.test\r\nTo: {ALICE}\r\nSubject: m{n}\r\n"
        f"Message-ID: <m{n}@example.test>\r\n\r\nbody {n}\r\n"
    ).encode()


def test_metrics_count_real_smtp_imap_and_pop3_sessions(server_factory):
    srv = server_factory(**METRICS_ON)
    srv.add_user(ALICE)
    ctx = client_tls_context()
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=15) as s:
        for n in range(3):
            s.sendmail("bob@example.test", [ALICE], message(n))
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            s.sendmail("bob@example.test", ["nobody@example.test"], message(9))
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=15) as s:
        s.starttls(context=ctx)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login(ALICE, "wrong")
        s.login(ALICE, DEFAULT_PASSWORD)  # smtplib tries CRAM-MD5, then PLAIN
    imap = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=ctx)
    imap.login(ALICE, DEFAULT_PASSWORD)
    imap.select("INBOX")
    imap.fetch("1:*", "(FLAGS)")
    imap.logout()
    pop = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=15)
    pop.stls(context=ctx)
    pop.user(ALICE)
    pop.pass_(DEFAULT_PASSWORD)
    assert pop.stat()[0] == 3
    pop.quit()

    deadline = time.monotonic() + 10
    while True:  # connection-lost events reach the server a moment after the clients close
        m = scrape(srv)
        if value(m, "mailsuite_sessions", protocol="imaps") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert value(m, "mailsuite_connections_total", protocol="smtp", tls="no") == 1
    assert value(m, "mailsuite_connections_total", protocol="imaps", tls="yes") == 1
    assert value(m, "mailsuite_connections_total", protocol="pop3", tls="no") == 1
    assert value(m, "mailsuite_starttls_total", protocol="submission") == 1
    assert value(m, "mailsuite_starttls_total", protocol="pop3") == 1
    assert value(m, "mailsuite_sessions", protocol="imaps") == 0
    assert value(m, "mailsuite_messages_received_total", protocol="smtp") == 3
    assert value(m, "mailsuite_messages_delivered_total", destination="local") == 3
    assert value(m, "mailsuite_logins_total", mechanism="PLAIN", result="failed") == 1
    assert value(m, "mailsuite_logins_total", mechanism="PLAIN", result="ok") == 1
    assert value(m, "mailsuite_logins_total", mechanism="command", result="ok") == 2
    assert value(m, "mailsuite_delivery_seconds_count") == 3
    assert value(m, "mailsuite_imap_command_seconds_count", command="FETCH") == 1
    assert value(m, "mailsuite_imap_command_seconds_count", command="LOGIN") == 1
    assert value(m, "mailsuite_queue_messages") == 0
    assert value(m, "mailsuite_queue_oldest_seconds") == 0
    expiry = value(m, "mailsuite_tls_certificate_expiry_timestamp_seconds")
    assert expiry > time.time() + 3000 * 86400  # the self-signed one is made for ten years
    assert value(m, "mailsuite_listener_up", kind="imaps", address="127.0.0.1:0") == 1


def test_queue_length_and_age_are_read_from_the_spool(server_factory):
    # Remote mail to a route that refuses connections stays queued.
    srv = server_factory(**METRICS_ON, relay={"routes": {"remote.test": "127.0.0.1:9"}})
    srv.add_user(ALICE)
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=15) as s:
        s.starttls(context=client_tls_context())
        s.login(ALICE, DEFAULT_PASSWORD)
        s.sendmail(ALICE, ["carol@remote.test"], message(1).replace(b"bob@", b"alice@"))
    entries = list((srv.config.queue_dir / "entries").iterdir())
    assert len(entries) == 1
    old = time.time() - 3600
    os.utime(entries[0], (old, old))
    m = scrape(srv)
    assert value(m, "mailsuite_queue_messages") == 1
    assert 3590 < value(m, "mailsuite_queue_oldest_seconds") < 3700
    assert value(m, "mailsuite_messages_delivered_total", destination="queued") == 1
    deadline = time.monotonic() + 10
    while value(m, "mailsuite_relay_attempts_total", result="temporary") < 1:
        assert time.monotonic() < deadline, "no relay attempt counted"
        time.sleep(0.1)
        m = scrape(srv)


def test_metrics_listener_is_off_by_default_and_loopback_only(tmp_path):
    cfg = config_from_dict(base_config(tmp_path), base=tmp_path)
    assert cfg.listen.metrics == []
    with pytest.raises(ConfigError, match=r"listen.metrics\[0\]"):
        config_from_dict(base_config(tmp_path, listen={"metrics": ["0.0.0.0:9100"]}), tmp_path)
    remote = base_config(
        tmp_path, listen={"metrics": ["0.0.0.0:9100"]}, metrics={"allow_remote": True}
    )
    assert config_from_dict(remote, base=tmp_path).listen.metrics == ["0.0.0.0:9100"]


def test_unknown_paths_are_404(server_factory):
    srv = server_factory(**METRICS_ON)
    assert get(srv.port("metrics"), "/")[0] == 404
    assert get(srv.port("metrics"), "/metrics/../../etc/passwd")[0] == 404


def test_healthz_is_200_while_everything_is_fine(server_factory):
    srv = server_factory(**METRICS_ON)
    assert get(srv.port("metrics"), "/healthz") == (200, b"ok\n")


def write_certificate(cert_path, key_path, days_left: float) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=80))
        .not_valid_after(now + datetime.timedelta(days=days_left))
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_healthz_is_503_when_the_certificate_expires_within_a_week(server_factory, tmp_path):
    root = tmp_path / "server0"
    write_certificate(root / "certs" / "mail.pem", root / "certs" / "mail.key", days_left=3)
    srv = server_factory(**METRICS_ON)
    assert srv.root == root
    status, body = get(srv.port("metrics"), "/healthz")
    assert status == 503
    assert b"certificate expires in 3.0 days" in body


@contextlib.contextmanager
def read_only(folder):
    """The folder refuses new files: chmod for an ordinary user; root passes chmod, so there
    the immutable attribute (chattr +i) does it."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not possible here: {done.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_healthz_is_503_when_the_data_folder_is_read_only(server_factory):
    srv = server_factory(**METRICS_ON)
    with read_only(srv.config.data_dir):
        status, body = get(srv.port("metrics"), "/healthz")
    assert status == 503
    assert b"not writable" in body and str(srv.config.data_dir).encode() in body
    assert get(srv.port("metrics"), "/healthz")[0] == 200


def test_healthz_is_503_when_a_listener_is_down(server_factory):
    srv = server_factory(**METRICS_ON)
    imap = next(li for li in srv.server.listeners if li.kind == "imap")
    srv.call(imap.stopService)
    status, body = get(srv.port("metrics"), "/healthz")
    assert status == 503
    assert body == b"listener down: imap 127.0.0.1:0\n"
