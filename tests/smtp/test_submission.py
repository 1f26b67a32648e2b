"""Submission (587 STARTTLS, 465 TLS): AUTH PLAIN/LOGIN (RFC 4954), sender rules (RFC 6409)."""

import base64
import shutil
import smtplib
import subprocess

import pytest

from tests.smtp.conftest import PASSWORD, Wire


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def authed(server, kind="submission") -> smtplib.SMTP:
    if kind == "submissions":
        s = smtplib.SMTP_SSL("127.0.0.1", server.ports[kind], context=Wire.context(), timeout=10)
    else:
        s = smtplib.SMTP("127.0.0.1", server.ports[kind], timeout=10)
        s.starttls(context=Wire.context())
    s.login("alice@example.test", PASSWORD)
    return s


def tls_wire(wire, kind="submission") -> Wire:
    w = wire(kind)
    w.cmd("EHLO c")
    w.starttls()
    w.cmd("EHLO c")
    return w


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtplib_login_with_each_mechanism(server, mechanism):
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=10) as s:
        s.starttls(context=Wire.context())
        s.ehlo()
        s.esmtp_features["auth"] = mechanism  # make smtplib use just this one
        assert s.login("alice@example.test", PASSWORD)[0] == 235


def test_auth_plain_initial_response_and_windows_mail_two_spaces(wire):
    w = tls_wire(wire)
    token = b64(f"\0alice@example.test\0{PASSWORD}")
    assert w.cmd(f"AUTH PLAIN  {token}") == (235, "2.7.0 Authentication successful")
    assert w.cmd(f"AUTH PLAIN {token}")[0] == 503  # already authenticated


def test_auth_plain_without_initial_response_gets_empty_challenge(wire):
    w = tls_wire(wire)
    assert w.cmd("AUTH PLAIN") == (334, "")
    assert w.cmd(b64(f"\0alice@example.test\0{PASSWORD}"))[0] == 235


def test_outlook_auth_login_with_username_as_initial_response(wire):
    w = tls_wire(wire)
    code, text = w.cmd("AUTH LOGIN " + b64("alice@example.test"))
    assert (code, base64.b64decode(text)) == (334, b"Password:")
    assert w.cmd(b64(PASSWORD))[0] == 235


def test_auth_login_step_by_step(wire):
    w = tls_wire(wire)
    code, text = w.cmd("AUTH LOGIN")
    assert (code, base64.b64decode(text)) == (334, b"Username:")
    assert w.cmd(b64("alice@example.test"))[0] == 334
    assert w.cmd(b64(PASSWORD))[0] == 235


def test_wrong_password_535_5_7_8_and_cancel_501(wire):
    w = tls_wire(wire)
    code, text = w.cmd("AUTH PLAIN " + b64("\0alice@example.test\0wrong"))
    assert (code, text[:5]) == (535, "5.7.8")
    w.cmd("AUTH LOGIN")
    assert w.cmd("*")[0:1] == (501,)
    assert w.cmd("AUTH PLAIN !!notbase64")[0] == 501
    assert w.cmd("AUTH CRAM-MD5")[0] == 504
    assert w.cmd("NOOP")[0] == 250


def test_authzid_for_another_user_is_refused(wire):
    w = tls_wire(wire)
    assert w.cmd("AUTH PLAIN " + b64(f"bob@example.test\0alice@example.test\0{PASSWORD}"))[0] == 535


def test_failed_logins_go_through_the_common_throttle_454_4_7_0(smtp_server):
    server = smtp_server(auth={"free_failures": 1, "base_delay": 30.0})
    w = Wire(server.ports["submission"])
    w.cmd("EHLO c")
    w.starttls()
    w.cmd("EHLO c")
    assert w.cmd("AUTH PLAIN " + b64("\0bob@example.test\0nope"))[0] == 535
    code, text = w.cmd("AUTH PLAIN " + b64(f"\0bob@example.test\0{PASSWORD}"))
    assert (code, text[:5]) == (454, "4.7.0")
    w.close()


def test_auth_in_clear_is_refused_538_unless_loopback_allowed(smtp_server):
    server = smtp_server()
    w = Wire(server.ports["submission"])
    w.cmd("EHLO c")
    assert w.cmd("AUTH PLAIN " + b64(f"\0alice@example.test\0{PASSWORD}"))[:1] == (538,)
    w.close()


def test_loopback_plaintext_exception(smtp_server):
    server = smtp_server(auth={"plaintext": "loopback"})
    w = Wire(server.ports["submission"])
    w.send(b"EHLO c\r\n")
    assert "AUTH PLAIN LOGIN SCRAM-SHA-256" in w.reply()[1]
    assert w.cmd("AUTH PLAIN " + b64(f"\0alice@example.test\0{PASSWORD}"))[0] == 235
    w.close()


def test_submission_requires_auth_530_5_7_0(server, wire):
    clear = wire("submission")
    clear.cmd("EHLO c")
    assert clear.cmd("MAIL FROM:<alice@example.test>") == (
        530,
        "5.7.0 Must issue a STARTTLS command first",
    )
    w = tls_wire(wire)
    code, text = w.cmd("MAIL FROM:<alice@example.test>")
    assert (code, text) == (530, "5.7.0 Authentication required")


def test_envelope_sender_must_belong_to_the_account_553_5_7_1(wire):
    w = tls_wire(wire)
    w.cmd("AUTH PLAIN " + b64(f"\0alice@example.test\0{PASSWORD}"))
    code, text = w.cmd("MAIL FROM:<bob@example.test>")
    assert (code, text[:5]) == (553, "5.7.1")
    assert w.cmd("MAIL FROM:<>")[0] == 553
    assert w.cmd("MAIL FROM:<ali@example.test>")[0] == 250  # her alias


def test_from_header_must_belong_to_the_account_553_5_7_1(server):
    with authed(server) as s:
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(
                "alice@example.test",
                ["bob@example.test"],
                b"From: Boss <bob@example.test>\r\nSubject: fake\r\n\r\nx\r\n",
            )
        assert e.value.smtp_code == 553 and e.value.smtp_error.startswith(b"5.7.1")
    assert server.maildir_files("bob@example.test") == []


def test_submission_adds_date_and_message_id_and_esmtpsa(server):
    with authed(server, "submissions") as s:
        s.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            b"From: Alice <ALICE@example.test>\r\nSubject: hi\r\n\r\nx\r\n",
        )
    msg = server.message("bob@example.test")
    head = msg.split(b"\n\n")[0]
    assert b"\nDate: " in head and b"\nMessage-ID: <" in head
    assert b"with ESMTPSA id" in head


def test_submission_keeps_existing_date_and_message_id(server):
    original = (
        b"From: alice@example.test\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        b"Message-ID: <keep@example.test>\r\nSubject: k\r\n\r\nx\r\n"
    )
    with authed(server) as s:
        s.sendmail("alice@example.test", ["bob@example.test"], original)
    msg = server.message("bob@example.test")
    assert msg.count(b"Message-ID:") == 1 and msg.count(b"\nDate:") == 1
    assert msg.endswith(original.replace(b"\r\n", b"\n"))


def test_remote_recipient_is_queued_local_one_delivered(server):
    with authed(server) as s:
        s.sendmail(
            "alice@example.test",
            ["friend@remote.test", "bob@example.test"],
            b"From: alice@example.test\r\nSubject: out\r\n\r\nx\r\n",
        )
    assert len(server.queue_entries()) == 1
    assert len(server.maildir_files("bob@example.test")) == 1


def test_authenticated_relay_over_port_25_is_allowed_but_sender_checked(server, wire):
    w = tls_wire(wire, "smtp")
    w.cmd("AUTH PLAIN " + b64(f"\0alice@example.test\0{PASSWORD}"))
    assert w.cmd("MAIL FROM:<mallory@remote.test>")[0] == 553
    assert w.cmd("MAIL FROM:<alice@example.test>")[0] == 250
    assert w.cmd("RCPT TO:<friend@remote.test>")[0] == 250


def _write_msg(tmp_path):
    path = tmp_path / "msg.eml"
    path.write_bytes(b"From: alice@example.test\nTo: bob@example.test\nSubject: cli\n\nhello\n")
    return path


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_swaks_submits_with_auth(server, tmp_path, mode):
    port = server.ports["submission" if mode == "starttls" else "submissions"]
    tls_flag = "--tls" if mode == "starttls" else "--tls-on-connect"
    swaks = shutil.which("swaks")
    result = subprocess.run(
        [swaks, "--server", "127.0.0.1", "--port", str(port), tls_flag,
         "--auth", "LOGIN", "--auth-user", "alice@example.test", "--auth-password", PASSWORD,
         "--from", "alice@example.test", "--to", "bob@example.test",
         "--data", str(_write_msg(tmp_path)), "--timeout", "10"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"Subject: cli" in server.message("bob@example.test")


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_msmtp_submits_with_auth(server, tmp_path, mode):
    port = server.ports["submission" if mode == "starttls" else "submissions"]
    msmtp = shutil.which("msmtp")
    args = [msmtp, "--host=127.0.0.1", f"--port={port}", "--tls=on", "--tls-certcheck=off",
            f"--tls-starttls={'on' if mode == 'starttls' else 'off'}", "--auth=plain",
            "--user=alice@example.test", "--passwordeval=echo " + PASSWORD,
            "--from=alice@example.test", "--timeout=10", "bob@example.test"]  # fmt: skip
    result = subprocess.run(
        args, input=_write_msg(tmp_path).read_bytes(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"Subject: cli" in server.message("bob@example.test")
