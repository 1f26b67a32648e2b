"""Addresses and domains are checked once, before anything is written: RFC 5321 Dot-strings
that are safe as folder names, domains stored as A-labels."""

from __future__ import annotations

import pytest

from mailsuite.accounts.addresses import BadAddress, parse_address, parse_domain
from mailsuite.accounts.db import AccountError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Alice@Example.TEST", "alice@example.test"),
        ("first.last+tag@example.test", "first.last+tag@example.test"),
        ("o'neil_x-y=z@example.test", "o'neil_x-y=z@example.test"),
        ("j\u00f6rg@example.test", "j\u00f6rg@example.test"),  # RFC 6531 UTF-8 local part
        ("info@B\u00fccher.test", "info@xn--bcher-kva.test"),  # stored as the A-label
        ("info@xn--bcher-kva.test.", "info@xn--bcher-kva.test"),
    ],
)
def test_valid_addresses_are_normalized(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text, why",
    [
        ("a b@example.test", "white space"),
        ("a\tb@example.test", "white space"),
        ("a\x01b@example.test", "control"),
        ("a\u200bb@example.test", "control"),  # zero-width space (format character)
        ("x@@example.test", "more than one @"),
        ("a/b@example.test", "'/'"),
        ("a\\b@example.test", "are not allowed"),
        ("..@example.test", "dot"),
        (".@example.test", "dot"),
        (".a@example.test", "dot"),
        ("a.@example.test", "dot"),
        ("a..b@example.test", "dot"),
        ("a(b)@example.test", "'('"),
        ('a"b@example.test', "'\"'"),
        ("@example.test", "empty"),
        ("no-at-sign", "no @"),
        ("x" * 65 + "@example.test", "64 octets"),
        ("a@", "empty"),
        ("a@exa mple.test", "white space"),
        ("a@exa_mple.test", "label"),
        ("a@-x.test", "label"),
        ("a@x..test", "label"),
        ("a@[127.0.0.1]", "label"),
        ("a@xn--zz.test", "a-label"),
    ],
)
def test_malformed_addresses_are_refused_with_the_reason(text, why):
    with pytest.raises(BadAddress, match="is not an address") as e:
        parse_address(text)
    assert why.lower() in str(e.value).lower(), str(e.value)
    assert isinstance(e.value, AccountError) and e.value.code == 65


def test_domains():
    assert parse_domain("New.Test.") == "new.test"
    assert parse_domain("b\u00fccher.test") == "xn--bcher-kva.test"
    for bad in ("", "a@b", "has space.test", ".lead.test", "a/b", "x" * 64 + ".test", "a..b"):
        with pytest.raises(BadAddress, match="is not a domain name"):
            parse_domain(bad)


def test_every_write_validates_and_stores_a_labels(accounts):
    assert accounts.add_domain("B\u00fccher.Test") == "xn--bcher-kva.test"
    user = accounts.add_user("Info@b\u00fccher.test", "pw-123456")
    assert user.address == "info@xn--bcher-kva.test"
    assert accounts.is_local_domain("b\u00fccher.test")
    assert accounts.resolve("info@B\u00fcCHER.test").local == ("info@xn--bcher-kva.test",)
    for bad in ("a b@example.test", "a/b@example.test", "..@example.test", ".@example.test"):
        with pytest.raises(BadAddress):
            accounts.add_user(bad, "pw-123456")
        with pytest.raises(BadAddress):
            accounts.add_alias(bad, ["info@b\u00fccher.test"])
        with pytest.raises(BadAddress):
            accounts.add_alias("sales@example.test", [bad])
    assert [u.address for u in accounts.list_users()] == ["info@xn--bcher-kva.test"]
    assert accounts.list_aliases() == {}


def test_alias_loops_are_refused_at_alias_add(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    accounts.add_user("bob@example.test", "pw-123456")
    accounts.add_alias("a@example.test", ["b@example.test"])
    accounts.add_alias("b@example.test", ["c@example.test"])
    with pytest.raises(AccountError, match="alias loop: c@example.test -> a@example.test"):
        accounts.add_alias("c@example.test", ["a@example.test"])
    # Through the base of a +address, and through a catch-all that takes an unknown address.
    with pytest.raises(AccountError, match="alias loop"):
        accounts.add_alias("c@example.test", ["a+tag@example.test"])
    with pytest.raises(AccountError, match="alias loop"):
        accounts.add_alias("@example.test", ["nobody@example.test"])
    # Users forwarding to each other would run round too.
    accounts.add_alias("alice@example.test", ["bob@example.test"])
    with pytest.raises(AccountError, match="alias loop"):
        accounts.add_alias("bob@example.test", ["alice@example.test"])
    # Not loops: a user keeping its own copy, a catch-all to a user, a chain that ends.
    accounts.add_alias("bob@example.test", ["bob@example.test", "x@remote.test"])
    accounts.add_alias("@example.test", ["alice@example.test"])
    accounts.add_alias("c@example.test", ["alice@example.test"])
    assert set(accounts.resolve("a@example.test").local) == {
        "alice@example.test",
        "bob@example.test",
    }
