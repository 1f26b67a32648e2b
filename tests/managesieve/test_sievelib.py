"""Every ManageSieve command through sievelib's client (RFC 5804), after STARTTLS with the
certificate verified, as a user's tool does it."""

from __future__ import annotations

import warnings

import pytest
from sievelib.managesieve import Client

from mailsuite import sieve
from mailsuite.sieve.scripts import ScriptStore, account_folder
from tests.conftest import DEFAULT_PASSWORD
from tests.managesieve.conftest import ALICE, HOSTNAME, sievelib_client

SORT = 'require ["fileinto"];\nif header :contains "list-id" "lists.example" {\n  fileinto "Lists";\n}\n'
VACATION = 'require "vacation";\nvacation :days 7 "I am away.";\n'


def store_of(srv, address: str) -> ScriptStore:
    return ScriptStore(account_folder(srv.services.store.path_for(address)))


@pytest.fixture
def client(sieve_server, trusted_cert, alice):
    c = sievelib_client(sieve_server, alice)
    yield c
    c.logout()


def test_capabilities_after_starttls_list_every_sieve_extension(client, alice):
    assert client.get_implementation() == "mailsuite"
    assert client.get_sieve_capabilities() == list(sieve.EXTENSIONS)
    assert set(client.get_sasl_mechanisms()) >= {"PLAIN", "LOGIN", "SCRAM-SHA-256"}
    # RFC 5804 §2.2: after TLS the capabilities come again, without STARTTLS.
    assert not client.has_tls_support()
    caps = client.capability()
    assert b'"OWNER" "%s"' % alice.encode() in caps
    assert b'"VERSION" "1.0"' in caps
    assert b'"MAXREDIRECTS" "4"' in caps  # [sieve] max_redirects


def test_putscript_listscripts_getscript_setactive(sieve_server, client, alice):
    assert client.putscript("sort", SORT)
    assert client.putscript("away", VACATION)
    assert client.listscripts() == (None, ["away", "sort"])
    assert client.setactive("sort")
    assert client.listscripts() == ("sort", ["away"])
    # sievelib gives the script back with LF line ends; the server keeps what was sent.
    assert client.getscript("sort") == SORT.rstrip("\n")
    store = store_of(sieve_server, alice)
    assert store.active_name() == "sort"
    assert store.get("sort") == SORT.replace("\n", "\r\n")


def test_setactive_with_the_empty_name_deactivates(client):
    assert client.putscript("sort", SORT)
    assert client.setactive("sort")
    assert client.setactive("")
    assert client.listscripts() == (None, ["sort"])


def test_putscript_with_an_error_names_its_line(sieve_server, client):
    assert not client.putscript(
        "bad", 'require "fileinto";\n\nif header :is "x" "y" {\n  kep;\n}\n'
    )
    assert client.errcode == b""
    assert client.errmsg.startswith(b"line 4: ")
    assert client.listscripts() == (None, [])


def test_checkscript_validates_without_storing(client):
    assert client.checkscript(VACATION)
    assert not client.checkscript("if true { stop }\n")
    assert client.errmsg.startswith(b"line ")
    assert client.listscripts() == (None, [])


def test_havespace_answers_by_the_quota(client):
    assert client.havespace("sort", 1000)
    assert not client.havespace("sort", 10_000_000)
    assert client.errcode == b"QUOTA/MAXSIZE"


def test_renamescript_keeps_the_active_mark_and_refuses_an_existing_name(client):
    assert client.putscript("a", SORT)
    assert client.putscript("b", VACATION)
    assert client.setactive("a")
    assert client.renamescript("a", "c")
    assert client.listscripts() == ("c", ["b"])
    assert not client.renamescript("c", "b")
    assert client.errcode == b"ALREADYEXISTS"
    assert not client.renamescript("nothing", "d")
    assert client.errcode == b"NONEXISTENT"


def test_deletescript_refuses_the_active_one(client):
    assert client.putscript("a", SORT)
    assert client.setactive("a")
    assert not client.deletescript("a")
    assert client.errcode == b"ACTIVE"
    assert client.setactive("")
    assert client.deletescript("a")
    assert client.listscripts() == (None, [])
    assert not client.deletescript("a")
    assert client.errcode == b"NONEXISTENT"


def test_getscript_and_setactive_of_a_missing_script_say_nonexistent(client):
    assert client.getscript("nothing") is None
    assert client.errcode == b"NONEXISTENT"
    assert not client.setactive("nothing")
    assert client.errcode == b"NONEXISTENT"


def test_utf8_script_names_and_content(client):
    text = 'require "fileinto";\nif header :contains "subject" "Grüße" { fileinto "Privé"; }\n'
    assert client.putscript("Règles", text)
    assert client.listscripts() == (None, ["Règles"])
    assert client.getscript("Règles") == text.rstrip("\n")


def test_login_mechanism_with_pipelined_responses(sieve_server, trusted_cert, alice):
    # sievelib sends both LOGIN responses right after the command, without waiting for the
    # challenges: the session answers them in order.
    c = sievelib_client(sieve_server, alice, authmech="LOGIN")
    assert c.listscripts() == (None, [])
    c.logout()


def test_wrong_password_is_refused(sieve_server, trusted_cert, alice):
    c = Client("127.0.0.1", sieve_server.port("managesieve"), srvhostname=HOSTNAME)
    assert not c.connect(alice, "wrong", starttls=True)
    assert c.errmsg == b"Authentication failed."


def test_plaintext_login_from_loopback_when_allowed(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    c = Client("127.0.0.1", srv.port("managesieve"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sievelib warns about the clear connection
        assert c.connect(ALICE, DEFAULT_PASSWORD, authmech="PLAIN")
    assert c.putscript("a", SORT)
    c.logout()
