"""ID (RFC 2971): the client says who it is, the server answers with its name and version."""

from __future__ import annotations

from importlib import metadata

from mailsuite.imap import response as R
from mailsuite.imap.parser import ImapBad


def _version() -> str:
    try:
        return metadata.version("mailsuite")
    except metadata.PackageNotFoundError:
        return "0"


VERSION = _version()


def id_command(session, cmd):
    # RFC 2971 §3.3: the client's parameter list is (key value ...) or NIL; answer ours.
    if len(cmd.args) != 1 or not (isinstance(cmd.args[0], list) or cmd.args[0] == "NIL"):
        raise ImapBad("ID needs a parameter list or NIL")
    params = cmd.args[0]
    if isinstance(params, list) and (len(params) % 2 or len(params) > 60):
        raise ImapBad("ID parameter list must hold key/value pairs")
    session.client_id = params if isinstance(params, list) else None
    session.send(
        b"* ID " + R.format_value([b"name", b"mailsuite", b"version", VERSION.encode()]) + b"\r\n"
    )
