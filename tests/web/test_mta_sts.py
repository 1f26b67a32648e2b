"""RFC 8461 §3.3: the MTA-STS policy at https://mta-sts.<domain>/.well-known/mta-sts.txt."""

from __future__ import annotations

from mailsuite.trust.mtasts import mta_sts_policy


def test_policy_served_for_a_local_domain(web, web_config):
    status, headers, body = web.request(
        "GET", "/.well-known/mta-sts.txt", host="mta-sts.example.test"
    )
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    assert body == mta_sts_policy(web_config, "example.test").encode()
    assert body.startswith(b"version: STSv1\r\n")


def test_policy_for_a_foreign_domain_is_404(web):
    status, _, body = web.request("GET", "/.well-known/mta-sts.txt", host="mta-sts.evil.test")
    assert (status, body) == (404, b"Not Found\n")
