"""Fixtures for the relay tests live in relay_support.py (importable by the tests too)."""

from tests.relay.relay_support import sink, sink6, stub_dns, tls_options  # noqa: F401
