"""Every IMAP command the server has: its handler, the session states it may run in, whether
EXPUNGE responses may go out while it runs, and the capability that announces it; and the
CAPABILITY list built from the same table.

A handler is ``handler(session, cmd) -> None | str | (code, text) | Deferred``: it writes
untagged responses through `session.send(...)` and either returns (tagged OK with a default
text), returns the OK text (optionally with a response code), returns
`response.ALREADY_ANSWERED` after writing its own tagged reply, or raises `ImapBad` / `ImapNo`.
The session turns all of those into the tagged reply in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailsuite import sasl
from mailsuite.imap.commands import (
    append,
    auth,
    capability,
    client_id,
    compress,
    copy,
    enable,
    expunge,
    fetch,
    idle,
    logout,
    mailbox,
    namespace,
    noop,
    notify,
    quota,
    search,
    select,
    sort,
    store,
    thread,
    urlauth,
    urlfetch,
)
from mailsuite.imap.states import ANY, AUTH, NOAUTH, NOT_AUTHENTICATED, SEL


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Callable
    states: frozenset[str]
    # RFC 3501 §7.4.1: no EXPUNGE responses while answering FETCH, STORE or SEARCH (the UID
    # forms may carry them: sequence numbers are not used there).
    expunge_ok: bool = True
    # The capability that announces the command (None: part of IMAP4rev1).
    capability: str | None = None


def _table(*specs: CommandSpec) -> dict[str, CommandSpec]:
    return {spec.name: spec for spec in specs}


C = CommandSpec

COMMANDS: dict[str, CommandSpec] = _table(
    # RFC 3501 §6.1: any state.
    C("CAPABILITY", capability.capability, ANY),
    C("NOOP", noop.noop, ANY),
    C("LOGOUT", logout.logout, ANY),
    C("ID", client_id.id_command, ANY, capability="ID"),  # RFC 2971
    # RFC 3501 §6.2: not authenticated.
    C("STARTTLS", auth.starttls, NOAUTH, capability="STARTTLS"),
    C("LOGIN", auth.login, NOAUTH),
    C("AUTHENTICATE", auth.authenticate, NOAUTH),
    # RFC 3501 §6.3: authenticated (and selected).
    C("SELECT", select.select, AUTH),
    C("EXAMINE", select.select, AUTH),
    C("CREATE", mailbox.create, AUTH),
    C("DELETE", mailbox.delete, AUTH),
    C("RENAME", mailbox.rename, AUTH),
    C("SUBSCRIBE", mailbox.subscribe, AUTH),
    C("UNSUBSCRIBE", mailbox.unsubscribe, AUTH),
    C("LIST", mailbox.list_command, AUTH),
    C("LSUB", mailbox.lsub, AUTH),
    C("STATUS", mailbox.status, AUTH),
    C("APPEND", append.append, AUTH),
    C("NAMESPACE", namespace.namespace, AUTH, capability="NAMESPACE"),  # RFC 2342
    C("ENABLE", enable.enable, AUTH, capability="ENABLE"),  # RFC 5161
    C("IDLE", idle.idle, AUTH, capability="IDLE"),  # RFC 2177
    C("NOTIFY", notify.notify, AUTH, capability="NOTIFY"),  # RFC 5465
    C("GETQUOTAROOT", quota.getquotaroot, AUTH, capability="QUOTA"),  # RFC 9208
    C("GETQUOTA", quota.getquota, AUTH, capability="QUOTA"),
    C("SETQUOTA", quota.setquota, AUTH, capability="QUOTA"),
    C("COMPRESS", compress.compress, AUTH, capability="COMPRESS=DEFLATE"),  # RFC 4978
    C("GENURLAUTH", urlauth.genurlauth, AUTH, capability="URLAUTH"),  # RFC 4467
    C("RESETKEY", urlauth.resetkey, AUTH, capability="URLAUTH"),
    C("URLFETCH", urlfetch.urlfetch, AUTH, capability="URLAUTH"),  # and RFC 5524
    # RFC 3501 §6.4: selected.
    C("CHECK", noop.check, SEL),
    C("CLOSE", select.close, SEL),
    C("UNSELECT", select.unselect, SEL, capability="UNSELECT"),  # RFC 3691
    C("EXPUNGE", expunge.expunge, SEL),
    C("UID EXPUNGE", expunge.uid_expunge, SEL, capability="UIDPLUS"),  # RFC 4315
    C("SEARCH", search.search, SEL, expunge_ok=False),
    C("UID SEARCH", search.uid_search, SEL),
    C("FETCH", fetch.fetch, SEL, expunge_ok=False),
    C("UID FETCH", fetch.uid_fetch, SEL),
    C("STORE", store.store, SEL, expunge_ok=False),
    C("UID STORE", store.uid_store, SEL),
    C("COPY", copy.copy, SEL, expunge_ok=False),
    C("UID COPY", copy.uid_copy, SEL),
    C("MOVE", copy.move, SEL, capability="MOVE"),  # RFC 6851
    C("UID MOVE", copy.uid_move, SEL, capability="MOVE"),
    C("REPLACE", append.replace, SEL, capability="REPLACE"),  # RFC 8508
    C("UID REPLACE", append.uid_replace, SEL, capability="REPLACE"),
    C("SORT", sort.sort, SEL, expunge_ok=False, capability="SORT"),  # RFC 5256
    C("UID SORT", sort.uid_sort, SEL, capability="SORT"),
    C("CANCELUPDATE", search.cancelupdate, SEL, capability="CONTEXT=SEARCH"),  # RFC 5267
    C("THREAD", thread.thread, SEL, expunge_ok=False, capability="THREAD=REFERENCES"),
    C("UID THREAD", thread.uid_thread, SEL, capability="THREAD=REFERENCES"),
)

# Everything advertised once logged in, in the order clients look for it: the capabilities
# of the commands above and the extensions of existing commands.  Each one is implemented
# and tested; nothing is advertised that does not work.
ADVERTISED = (
    "IMAP4rev1",
    "IMAP4rev2",  # RFC 9051, after ENABLE IMAP4rev2
    "LITERAL+",  # RFC 7888 (the parser)
    "SASL-IR",  # RFC 4959 (AUTHENTICATE)
    "ID",
    "ENABLE",
    "IDLE",
    "NOTIFY",  # RFC 5465
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "REPLACE",
    "UNSELECT",
    "APPENDLIMIT",  # RFC 7889 (APPEND, STATUS); sent with its value
    "CHILDREN",  # RFC 3348 (LIST)
    "LIST-EXTENDED",  # RFC 5258
    "LIST-STATUS",  # RFC 5819
    "SPECIAL-USE",  # RFC 6154
    "CREATE-SPECIAL-USE",
    "CONDSTORE",  # RFC 7162 (FETCH, STORE, SEARCH, SELECT)
    "QRESYNC",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "MULTIAPPEND",  # RFC 3502 (APPEND)
    "CATENATE",  # RFC 4469 (APPEND CATENATE)
    "URLAUTH",  # RFC 4467 (GENURLAUTH, RESETKEY, URLFETCH; BURL on submission)
    "URL-PARTIAL",  # RFC 5550 (;PARTIAL= in URLFETCH and CATENATE URLs)
    "URLAUTH=BINARY",  # RFC 5524 (URLFETCH (url BINARY BODYPARTSTRUCTURE))
    "ESEARCH",  # RFC 4731 (SEARCH)
    "SEARCHRES",  # RFC 5182
    "WITHIN",  # RFC 5032 (SEARCH OLDER/YOUNGER)
    "SAVEDATE",  # RFC 8514 (FETCH SAVEDATE, SEARCH SAVED*)
    "PREVIEW",  # RFC 8970 (FETCH PREVIEW)
    "OBJECTID",  # RFC 8474 (MAILBOXID, EMAILID, THREADID)
    "SORT",
    "SORT=DISPLAY",  # RFC 5957
    "ESORT",  # RFC 5267 (SORT RETURN)
    "CONTEXT=SEARCH",  # RFC 5267 §4 (SEARCH RETURN (UPDATE CONTEXT), CANCELUPDATE)
    "CONTEXT=SORT",  # RFC 5267 §4 (SORT RETURN (UPDATE CONTEXT))
    "PARTIAL",  # RFC 9394 (SEARCH/SORT RETURN (PARTIAL range))
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "THREAD=REFS",  # draft-ietf-morg-inthread (THREAD REFS)
    "I18NLEVEL=1",  # RFC 5255 §4.3 (SEARCH, SORT, THREAD compare with i;unicode-casemap)
    "BINARY",  # RFC 3516 (FETCH)
    "UTF8=ACCEPT",  # RFC 6855 (ENABLE)
    "STATUS=SIZE",  # RFC 8438
)

# Capabilities advertised only in some sessions (see `capabilities`).
# RFC 3501 §6.2.2, RFC 7677: AUTH=<mechanism>, for the SASL mechanisms of AUTHENTICATE.
AUTH_CAPABILITIES = tuple(f"AUTH={m}" for m in sasl.MECHANISMS)
CONDITIONAL = ("STARTTLS", "COMPRESS=DEFLATE", *AUTH_CAPABILITIES, "LOGINDISABLED")


def capabilities(session) -> list[str]:
    """The CAPABILITY list for the session's current state (RFC 3501 §7.2.1)."""
    limit = f"APPENDLIMIT={session.config.imap.append_limit}"
    caps = [limit if c == "APPENDLIMIT" else c for c in ADVERTISED]
    if session.state == NOT_AUTHENTICATED:
        if not session.secure and session.services.tls is not None:
            caps.append("STARTTLS")
        if session.plaintext_allowed():
            # SCRAM keeps the password off the wire, but one policy for every mechanism is
            # simpler to reason about: all of them, or LOGINDISABLED.
            caps += AUTH_CAPABILITIES
        else:
            caps.append("LOGINDISABLED")
    if not session.compressed:
        caps.append("COMPRESS=DEFLATE")
    return caps
