"""A real ACME server for the tests: Debian's pebble (Let's Encrypt's test CA) on loopback, its
HTTPS certificate from a CA made here, its DNS pointed at the tests' stub DNS server, and
mailsuite serving as a `mailsuite serve` subprocess whose http/https ports are the ones pebble
validates on."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import LISTEN_KINDS, toml_dumps

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
HOSTNAME = "mail.example.test"
DOMAIN = "example.test"
NAMES = [HOSTNAME] + [f"{p}.{DOMAIN}" for p in ("mta-sts", "autoconfig", "autodiscover")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_https_ca(folder: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for pebble's own HTTPS on 127.0.0.1."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailsuite test ACME HTTPS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem_key(key))
    return paths


class Pebble:
    """One pebble process; `directory` is its ACME directory URL, `ca_file` trusts its HTTPS."""

    def __init__(
        self,
        folder: Path,
        dns: str,
        http_port: int,
        tls_port: int,
        validity: int | None = None,
    ):
        self.folder = folder
        self.ca_file, cert, key = make_https_ca(folder / "https")
        self.port = free_port()
        self.management_port = free_port()
        settings = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if validity is not None:
            settings["certificateValidityPeriod"] = validity
        config = folder / "pebble-config.json"
        config.write_text(json.dumps({"pebble": settings}))
        env = dict(os.environ)
        env.update(
            PEBBLE_VA_NOSLEEP="1",  # validate at once
            PEBBLE_WFE_NONCEREJECT="0",  # no deliberately refused nonces
            PEBBLE_AUTHZREUSE="0",  # every order validates again (renewals too)
        )
        self.log = open(folder / "pebble.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [PEBBLE, "-config", str(config), "-dnsserver", dns],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self._wait_ready()

    def _wait_ready(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw:
                    with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                        return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pebble did not start: {self.log_text()}") from None
                time.sleep(0.05)

    def log_text(self) -> str:
        self.log.flush()
        return (self.folder / "pebble.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class MailsuiteProcess:
    """`mailsuite serve` with [acme] pointed at a pebble; only the web and IMAP listeners."""

    def __init__(self, folder: Path, pebble: Pebble, challenge: str, http: int, https: int):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.imaps = free_port()
        self.http, self.https = http, https
        listen = {k: [] for k in LISTEN_KINDS}
        listen.update(
            http=[f"127.0.0.1:{http}"],
            https=[f"127.0.0.1:{https}"],
            imaps=[f"127.0.0.1:{self.imaps}"],
        )
        self.config = folder / "mailsuite.toml"
        self.log_file = folder / "mailsuite.log"
        self.config.write_text(
            toml_dumps(
                {
                    "hostname": HOSTNAME,
                    "domains": [DOMAIN],
                    "data_dir": str(folder / "data"),
                    "allow_root": True,
                    "listen": listen,
                    "log": {"file": str(self.log_file)},
                    "acme": {
                        "email": f"postmaster@{DOMAIN}",
                        "directory": pebble.directory,
                        "ca_file": str(pebble.ca_file),
                        "challenge": challenge,
                    },
                }
            )
        )
        self.data = folder / "data"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailsuite.cli", "--config", str(self.config), "serve"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "mailsuite.cli", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def served_certificate(port: int, timeout: float = 10) -> x509.Certificate:
    """The leaf certificate a TLS listener on 127.0.0.1:`port` serves now (retried until the
    listener is up)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
                with ctx.wrap_socket(raw, server_hostname=HOSTNAME) as tls:
                    return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def issuer_cn(cert: x509.Certificate) -> str:
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def wait_for_issuer(port: int, prefix: str, timeout: float, not_serial: int | None = None):
    """Wait until the listener serves a certificate whose issuer CN starts with `prefix` (and
    whose serial is not `not_serial`); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        cert = served_certificate(port)
        if issuer_cn(cert).startswith(prefix) and cert.serial_number != not_serial:
            return cert
        if time.monotonic() > deadline:
            raise AssertionError(f"still serving {issuer_cn(cert)} serial {cert.serial_number}")
        time.sleep(0.2)
