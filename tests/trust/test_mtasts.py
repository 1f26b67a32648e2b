"""MTA-STS (RFC 8461) policy text and its id."""

from __future__ import annotations

import re
from pathlib import Path

from mailsuite.config import config_from_dict
from mailsuite.trust import mtasts


def cfg(**trust):
    return config_from_dict({"hostname": "mx.example.test", "trust": trust}, base=Path("/tmp"))


def test_policy_format():
    text = mtasts.mta_sts_policy(cfg(mta_sts_mode="enforce"), "example.test")
    assert text == "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n"


def test_policy_lists_configured_mx_hosts():
    text = mtasts.mta_sts_policy(cfg(mta_sts_mx=["mx1.example.test", "*.example.net"]), "d")
    assert "mx: mx1.example.test\r\nmx: *.example.net\r\n" in text
    assert "mode: testing" in text


def test_id_changes_with_policy():
    a = mtasts.policy_id(cfg(mta_sts_mode="testing"), "example.test")
    b = mtasts.policy_id(cfg(mta_sts_mode="enforce"), "example.test")
    assert a != b
    # §3.1: id = 1*32(ALPHA / DIGIT)
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", a)
    assert mtasts.txt_record(cfg(), "example.test") == f"v=STSv1; id={a}"
