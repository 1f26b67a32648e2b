"""NAMESPACE (RFC 2342)."""

from __future__ import annotations


def namespace(session, cmd):
    # RFC 2342: personal namespace with an empty prefix and "/" (Outlook ignores NAMESPACE,
    # so folders sit at the top level); no other users' or shared namespaces.
    session.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
