"""Every refused transaction or recipient and every delivered message leaves one log line, in
the style of Postfix's smtpd: client address, HELO, sender, recipient, size, the reply code and
reason, the queue id or Maildir key. Read from the log file of a real `mailsuite serve`, driven
by smtplib; Twisted's own start and stop chatter is not there."""

from __future__ import annotations

import re
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import DEFAULT_PASSWORD, base_config, run_cli, toml_dumps
from tests.test_log_lines import LISTENING, log_lines


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("refusals")
    log_file = root / "log" / "mailsuite.log"
    raw = base_config(root, auth={"plaintext": "loopback"}, log={"file": "log/mailsuite.log"})
    conf = root / "mailsuite.toml"
    conf.write_text(toml_dumps(raw))
    for address, quota in (("alice@example.test", "0"), ("tiny@example.test", "2K")):
        made = run_cli(
            "--config",
            str(conf),
            "user",
            "add",
            address,
            "--password-stdin",
            "--quota",
            quota,
            input=f"{DEFAULT_PASSWORD}\n".encode(),
        )
        assert made.returncode == 0, made.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    while not {"smtp", "submission"} <= ports.keys() and time.monotonic() < deadline:
        if log_file.exists():
            ports = {m[0]: int(m[1]) for m in LISTENING.findall(log_file.read_text())}
        time.sleep(0.1)
    assert {"smtp", "submission"} <= ports.keys()
    yield ports, log_file
    proc.terminate()
    proc.wait(timeout=30)


def refusal_line(log_file, marker: str) -> str:
    lines = [line for line in log_lines(log_file, marker) if marker in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_unknown_user_and_relay_refusals_are_logged(server):
    ports, log_file = server
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
        s.ehlo("helo-unknown.example")
        s.mail("sender1@remote.example")
        assert s.rcpt("nobody@example.test")[0] == 550
        assert s.rcpt("someone@elsewhere.example")[0] == 554
    line = refusal_line(log_file, "to=<nobody@example.test>")
    assert re.search(
        r"smtp 127\.0\.0\.1: reject RCPT: 550 5\.1\.1 <nobody@example\.test>: Recipient address "
        r"rejected: User unknown; from=<sender1@remote\.example> to=<nobody@example\.test> "
        r"size=- helo=<helo-unknown\.example>",
        line,
    ), line
    line = refusal_line(log_file, "to=<someone@elsewhere.example>")
    assert "reject RCPT: 554 5.7.1" in line and "Relay access denied" in line


def test_mailbox_full_is_logged(server):
    ports, log_file = server
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
        s.ehlo("helo-full.example")
        s.mail("sender2@remote.example", ["SIZE=50000"])
        assert s.rcpt("tiny@example.test")[0] == 552
    line = refusal_line(log_file, "from=<sender2@remote.example>")
    assert "reject RCPT: 552 5.2.2 <tiny@example.test>: Mailbox full" in line
    assert "helo=<helo-full.example>" in line


def test_submission_refusals_are_logged(server):
    ports, log_file = server
    with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as s:
        s.ehlo("helo-noauth.example")
        code, _ = s.mail("sender3@example.test")
        assert code == 530
    line = refusal_line(log_file, "from=<sender3@example.test>")
    assert "reject MAIL: 530 5.7.0 Authentication required" in line and "user=-" in line
    with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=10) as s:
        s.ehlo("helo-auth.example")
        s.login("alice@example.test", DEFAULT_PASSWORD)
        code, _ = s.mail("boss@example.test")
        assert code == 553
    line = refusal_line(log_file, "from=<boss@example.test>")
    assert "reject MAIL: 553 5.7.1 Sender address <boss@example.test> not owned" in line
    assert "user=alice@example.test" in line and "helo=<helo-auth.example>" in line


def test_a_delivered_message_names_client_helo_sender_size_and_key(server):
    ports, log_file = server
    message = b"Message-ID: <logged-1@remote.example>\r\nSubject: x\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
        s.ehlo("helo-ok.example")
        s.sendmail("sender4@remote.example", ["alice@example.test"], message)
    line = refusal_line(log_file, "delivered <logged-1@remote.example>")
    m = re.search(
        r"delivered <logged-1@remote\.example> to alice@example\.test from "
        r"<sender4@remote\.example> size (\d+) key (\S+) client 127\.0\.0\.1 "
        r"helo <helo-ok\.example>",
        line,
    )
    assert m, line
    accepted = refusal_line(log_file, "accepted from=<sender4@remote.example>")
    assert re.search(
        r"smtp 127\.0\.0\.1: [0-9A-F]{12} accepted from=<sender4@remote\.example> "
        r"to=<alice@example\.test> nrcpt=1 size=\d+ helo=<helo-ok\.example>",
        accepted,
    ), accepted


def test_client_text_in_a_refusal_is_escaped(server):
    """A HELO carrying a line separator and a forged line stays inside the refusal's line."""
    ports, log_file = server
    forged = "info\tmailsuite.smtp:\tsmtp\t198.51.100.7:\treject\tRCPT"
    with socket.create_connection(("127.0.0.1", ports["smtp"]), timeout=10) as sock:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"220")
        sock.sendall(f"EHLO escape\u2028{forged}\r\n".encode())
        while not reader.readline().startswith(b"250 "):
            pass
        sock.sendall(b"MAIL FROM:<forger@remote.example>\r\nRCPT TO:<nobody2@example.test>\r\n")
        assert reader.readline().startswith(b"250")
        assert reader.readline().startswith(b"550")
    line = refusal_line(log_file, "from=<forger@remote.example>")
    assert "helo=<escape\\u2028" + forged.replace("\t", "\\t") + ">" in line
    lines = log_lines(log_file, "forger@remote.example")
    assert not any(line.startswith(forged) for line in lines)


def test_twisted_start_chatter_is_not_logged(server):
    _, log_file = server
    text = log_file.read_text()
    assert "starting on" not in text and "Starting factory" not in text
