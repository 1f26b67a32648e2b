"""A script uploaded over ManageSieve by a real client decides where a message delivered over
real SMTP lands: the whole path a user's filter takes."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.managesieve.conftest import sievelib_client

SORT = """require ["fileinto", "mailbox", "imap4flags", "subaddress", "envelope"];
if header :contains "List-Id" "<dev.lists.example>" {
  fileinto :create "Lists/dev";
  stop;
}
if envelope :detail "to" "shop" {
  addflag "\\\\Seen";
  fileinto :create "Shopping";
  stop;
}
"""


def send(srv, rcpt: str, headers: str) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
        s.sendmail(
            "sender@remote.example",
            [rcpt],
            f"From: sender@remote.example\r\nTo: {rcpt}\r\n{headers}\r\n\r\nbody\r\n".encode(),
        )


def wait_for(srv, address: str, folder: str, n: int = 1) -> list:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        files = srv.message_files(address, folder)
        if len(files) >= n:
            return files
        time.sleep(0.02)
    raise AssertionError(f"no message in {folder} of {address}")


@pytest.fixture
def client(sieve_server, trusted_cert, alice):
    c = sievelib_client(sieve_server, alice)
    yield c
    c.logout()


def test_uploaded_and_activated_script_files_smtp_deliveries(sieve_server, client, alice, bob):
    assert client.putscript("sort", SORT), client.errmsg
    assert client.setactive("sort")
    send(sieve_server, alice, "Subject: dev\r\nList-Id: Dev <dev.lists.example>")
    send(sieve_server, alice.replace("@", "+shop@"), "Subject: your order")
    send(sieve_server, alice, "Subject: hello")
    assert b"Subject: dev" in wait_for(sieve_server, alice, "Lists/dev")[0].read_bytes()
    (shop,) = wait_for(sieve_server, alice, "Shopping")
    assert shop.name.rpartition(":2,")[2] == "S"  # \\Seen from addflag, in cur/
    inbox = wait_for(sieve_server, alice, "INBOX")
    assert [b"Subject: hello" in p.read_bytes() for p in inbox] == [True]
    # Bob has no script: his mail stays in INBOX.
    send(sieve_server, bob, "Subject: dev\r\nList-Id: Dev <dev.lists.example>")
    assert len(wait_for(sieve_server, bob, "INBOX")) == 1


def test_deactivating_over_managesieve_stops_the_filtering(sieve_server, client, alice):
    assert client.putscript("sort", SORT)
    assert client.setactive("sort")
    assert client.setactive("")
    send(sieve_server, alice, "Subject: dev\r\nList-Id: Dev <dev.lists.example>")
    assert len(wait_for(sieve_server, alice, "INBOX")) == 1
    assert not sieve_server.message_files(alice, "Lists/dev")
