"""Fixtures for the relay tests live in relay_support.py (importable by the tests too)."""

from tests.relay.relay_support import (  # noqa: F401
    sink,
    sink6,
    sink_tls,
    stub_dns,
    tls_options,
)
