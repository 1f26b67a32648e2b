"""CAPABILITY, NOOP, CHECK, LOGOUT, ID, NAMESPACE, ENABLE, UNSELECT, QUOTA and COMPRESS."""

from __future__ import annotations

import functools
from importlib import metadata

from mailsuite.imap import response as R
from mailsuite.imap.commands import (
    ALREADY_ANSWERED,
    ANY,
    AUTH,
    NOT_AUTHENTICATED,
    SEL,
    command,
)
from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.imap.session import refresh_folder

# Extensions offered once logged in, in the order clients look for them.  Each one is
# implemented and tested; nothing is advertised that does not work.
_AUTHENTICATED_CAPS = [
    "IMAP4rev1",
    "LITERAL+",
    "SASL-IR",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "CONDSTORE",
    "QRESYNC",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "MULTIAPPEND",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "BINARY",
    "UTF8=ACCEPT",
    "STATUS=SIZE",
]

# Capabilities that depend on the message engineer's modules being importable.
_OPTIONAL = {
    "SORT": "mailsuite.imap.sort",
    "THREAD=ORDEREDSUBJECT": "mailsuite.imap.thread",
    "THREAD=REFERENCES": "mailsuite.imap.thread",
    "ESEARCH": "mailsuite.imap.search",
    "SEARCHRES": "mailsuite.imap.search",
    "BINARY": "mailsuite.imap.fetch",
}


@functools.cache
def _available(cap: str) -> bool:
    module = _OPTIONAL.get(cap)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


def capabilities(session) -> list[str]:
    """The CAPABILITY list for the session's current state (RFC 3501 §7.2.1)."""
    caps = [c for c in _AUTHENTICATED_CAPS if _available(c)]
    caps.insert(caps.index("CHILDREN"), f"APPENDLIMIT={session.config.imap.append_limit}")
    if session.state == NOT_AUTHENTICATED:
        if not session.secure and session.services.tls is not None:
            caps.append("STARTTLS")
        if session.plaintext_allowed():
            caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
        else:
            caps.append("LOGINDISABLED")
    if not session.compressed:
        caps.append("COMPRESS=DEFLATE")
    return caps


@command("CAPABILITY", states=ANY)
def capability(session, cmd):
    if cmd.args:
        raise ImapBad("CAPABILITY takes no arguments")
    session.send(R.untagged("CAPABILITY " + " ".join(session.capabilities())))


@command("NOOP", states=ANY)
def noop(session, cmd):
    # RFC 3501 §6.1.2: NOOP is the polite way to poll for updates; send_updates does that.
    if session.view is not None:
        refresh_folder(session.view.folder)


@command("CHECK", states=SEL)
def check(session, cmd):
    refresh_folder(session.view.folder, force=True)
    session.view.folder.save_index()


@command("LOGOUT", states=ANY)
def logout(session, cmd):
    session.send(R.untagged("BYE mailsuite logging out"))
    session.send(R.tagged(cmd.tag, "OK", "LOGOUT completed"))
    session.flush()
    session.close()
    session.state = "logout"
    session.protocol.close()


@command("ID", states=ANY)
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


@command("NAMESPACE", states=AUTH)
def namespace(session, cmd):
    # RFC 2342: personal namespace with an empty prefix and "/" (Outlook ignores NAMESPACE,
    # so folders sit at the top level); no other users' or shared namespaces.
    session.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')


def _version() -> str:
    try:
        return metadata.version("mailsuite")
    except metadata.PackageNotFoundError:
        return "0"


VERSION = _version()

_ENABLEABLE = {"CONDSTORE", "QRESYNC", "UTF8=ACCEPT"}


@command("ENABLE", states=AUTH)
def enable(session, cmd):
    if not cmd.args or not all(isinstance(a, Atom) for a in cmd.args):
        raise ImapBad("ENABLE needs capability names")
    newly = []
    for arg in cmd.args:
        name = arg.upper()
        if name not in _ENABLEABLE or name in session.enabled:
            continue
        if name == "UTF8=ACCEPT" and session.state != "authenticated":
            # RFC 6855 §3: UTF8=ACCEPT only before a mailbox is selected.
            raise ImapBad("ENABLE UTF8=ACCEPT must come before SELECT")
        session.enabled.add(name)
        newly.append(name)
        if name == "QRESYNC" and "CONDSTORE" not in session.enabled:
            # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
            session.enabled.add("CONDSTORE")
            newly.append("CONDSTORE")
    session.send(R.untagged("ENABLED" + "".join(" " + n for n in newly)))
    if "CONDSTORE" in newly and session.view is not None:
        # RFC 7162 §3.1: enabling CONDSTORE while selected reports the HIGHESTMODSEQ.
        hms = session.view.folder.highestmodseq
        session.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % hms)


@command("UNSELECT", states=SEL)
def unselect(session, cmd):
    # RFC 3691: like CLOSE, without the expunge.
    if cmd.args:
        raise ImapBad("UNSELECT takes no arguments")
    session.deselect()


# -- QUOTA (RFC 9208) ------------------------------------------------------------------------


def _quota_response(session) -> bytes:
    q = session.mailbox.quota()
    items = []
    # RFC 9208 §5.1: STORAGE in units of 1024 octets; only limited resources are listed.
    if q.limit_bytes:
        items.append(b"STORAGE %d %d" % ((q.used_bytes + 1023) // 1024, q.limit_bytes // 1024))
    if q.limit_messages:
        items.append(b"MESSAGE %d %d" % (q.used_messages, q.limit_messages))
    return b'* QUOTA "" (' + b" ".join(items) + b")\r\n"


@command("GETQUOTAROOT", states=AUTH)
def getquotaroot(session, cmd):
    if len(cmd.args) != 1 or isinstance(cmd.args[0], list):
        raise ImapBad("GETQUOTAROOT needs a mailbox name")
    name = R.decode_mailbox(cmd.args[0], session.utf8)
    from mailsuite.imap.commands.mailbox import folder_exists

    if not folder_exists(session, name):
        raise ImapNo("NONEXISTENT", "No such mailbox")
    session.send(b"* QUOTAROOT " + R.encode_mailbox(name, session.utf8) + b' ""\r\n')
    session.send(_quota_response(session))


@command("GETQUOTA", states=AUTH)
def getquota(session, cmd):
    if len(cmd.args) != 1 or isinstance(cmd.args[0], list):
        raise ImapBad("GETQUOTA needs a quota root")
    if bytes(cmd.args[0] if isinstance(cmd.args[0], bytes) else cmd.args[0].encode()) != b"":
        raise ImapNo("NONEXISTENT", "No such quota root")
    session.send(_quota_response(session))


@command("SETQUOTA", states=AUTH)
def setquota(session, cmd):
    # RFC 9208 §4.3: limits are the administrator's (mailsuite CLI), not the user's.
    raise ImapNo("NOPERM", "Quota limits are set by the administrator")


# -- COMPRESS (RFC 4978) ----------------------------------------------------------------------


@command("COMPRESS", states=AUTH)
def compress(session, cmd):
    if len(cmd.args) != 1 or not isinstance(cmd.args[0], Atom):
        raise ImapBad("COMPRESS needs a mechanism")
    if cmd.args[0].upper() != "DEFLATE":
        raise ImapBad("Unsupported compression mechanism")
    if session.compressed:
        raise ImapNo("COMPRESSIONACTIVE", "DEFLATE active via COMPRESS")
    session.send(R.tagged(cmd.tag, "OK", "DEFLATE active"))
    session.flush()
    session.compressed = True
    session.protocol.start_compression()
    return ALREADY_ANSWERED
