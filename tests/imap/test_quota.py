"""QUOTA (RFC 9208) as a client reads it: GETQUOTAROOT with and without limits."""

from __future__ import annotations

import re

from tests.imap.conftest import USER, Raw

# RFC 9208 §5: quotaroot-response = "QUOTAROOT" SP mailbox *(SP quota-root-name);
# quota-response = "QUOTA" SP quota-root-name SP quota-list, and a quota-list holds at least
# one "name SP usage SP limit" resource.
QUOTAROOT = re.compile(rb'^\* QUOTAROOT (?:INBOX|"[^"]*")(?: "[^"]*")*$')
QUOTA = re.compile(rb'^\* QUOTA "[^"]*" \([A-Z]+ \d+ \d+(?: [A-Z]+ \d+ \d+)*\)$')


def untagged(lines: list[bytes]) -> list[bytes]:
    return [line for line in lines if line.startswith(b"* ")]


def test_getquotaroot_without_limits_names_no_root_and_sends_no_quota(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"GETQUOTAROOT INBOX")
    assert out[-1].startswith(b"t OK")
    assert untagged(out) == [b"* QUOTAROOT INBOX"]
    assert all(QUOTAROOT.match(line) for line in untagged(out))
    out = r.cmd(b'GETQUOTA ""')
    assert out[-1].startswith(b"t NO [NONEXISTENT]") and untagged(out) == []
    r.close()


def test_getquotaroot_with_limits_names_the_root_and_its_resources(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(USER, quota_bytes=10 * 1024 * 1024, quota_messages=100)
    r = Raw(srv.port("imap"))
    r.login()
    out = r.cmd(b"GETQUOTAROOT INBOX")
    assert out[-1].startswith(b"t OK")
    lines = untagged(out)
    assert lines[0] == b'* QUOTAROOT INBOX ""'
    assert lines[1] == b'* QUOTA "" (STORAGE 0 10240 MESSAGE 0 100)'
    assert QUOTAROOT.match(lines[0]) and QUOTA.match(lines[1])
    r.close()
