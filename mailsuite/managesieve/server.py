"""The Twisted side of a ManageSieve session (RFC 5804): `mailsuite.line_adapter.LineProtocol`
carrying out what the `ManageSieveSession` state machine (`session.py`) asks.
"""

from __future__ import annotations

from mailsuite.line_adapter import LineProtocol
from mailsuite.listener import SessionFactory
from mailsuite.managesieve.session import ManageSieveSession


class ManageSieveProtocol(LineProtocol):
    """One ManageSieve connection; the `SieveConnection` its session talks to."""

    session_class = ManageSieveSession

    def logged_out(self) -> None:
        self.start_login_deadline()


def build_factory(services, kind: str) -> SessionFactory:
    """The factory for listener "managesieve" (4190, STARTTLS; RFC 5804 defines no implicit
    TLS port)."""
    if kind != "managesieve":
        raise ValueError(f"managesieve cannot serve listener kind {kind!r}")
    return SessionFactory(ManageSieveProtocol, services, kind)
