"""The one factory shape every protocol listener uses: a session per connection, built with
the shared services and the listener kind ("smtp", "imaps", ...)."""

from __future__ import annotations

from twisted.internet import protocol


class SessionFactory(protocol.ServerFactory):
    def __init__(self, session_class, services, kind: str):
        self.session_class = session_class
        self.services = services
        self.kind = kind

    def buildProtocol(self, addr):
        session = self.session_class(self.services, self.kind)
        session.factory = self
        return session
