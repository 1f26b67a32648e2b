"""Outbound DKIM end to end: a queued message leaves through the real relay runner signed
(ed25519 + RSA), and dkimpy verifies what the receiving server got."""

from __future__ import annotations

import dkim as dkimpy

from mailsuite.trust import dkim
from tests.relay.relay_support import (  # noqa: F401
    Sender,
    relay_config,
    sink,
    sink_tls,
    tls_options,
    wait_for,
)

MSG = (
    b"From: Sender <sender@example.test>\r\n"
    b"To: a@remote.test\r\n"
    b"Subject: signed on the way out\r\n"
    b"\r\n"
    b"Hello there.\r\n"
)


def test_relay_signs_with_both_keys(tmp_path, sink):  # noqa: F811 (relay_support fixture)
    config = relay_config(tmp_path, routes={"remote.test": f"127.0.0.1:{sink.port}"})
    keys = [
        dkim.generate_key(config, "example.test", "ed", "ed25519"),
        dkim.generate_key(config, "example.test", "rsa", "rsa"),
    ]
    records = {f"{k.dns_name}.": k.dns_value.encode() for k in keys}
    sender = Sender(config)
    sender.start()
    try:
        sender.submit("sender@example.test", ["a@remote.test"], MSG)
        wait_for(lambda: sink.transactions)
    finally:
        sender.stop()
    received = sink.transactions[0].data
    assert received.startswith(b"DKIM-Signature:")

    def dnsfunc(name, timeout=5):
        return records.get(name.decode())

    assert [dkimpy.DKIM(received).verify(idx=i, dnsfunc=dnsfunc) for i in range(2)] == [True, True]
    assert b"a=ed25519-sha256" in received and b"a=rsa-sha256" in received
