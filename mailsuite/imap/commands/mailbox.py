"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS
(RFC 3501 §6.3), with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE and
CREATE-SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348) and STATUS=SIZE (RFC 8438)."""

from __future__ import annotations

from twisted.internet import defer, reactor, task

from mailsuite.imap import response as R
from mailsuite.imap.commands.list_pattern import MailboxPattern
from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.store import BadFolderName, FolderExists, NoSuchFolder, QuotaExceeded

SEP = "/"
SPECIAL_USES = {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}


# -- shared helpers (also used by select, append, copy) --------------------------------------


def mailbox_arg(session, value) -> str:
    """A mailbox argument decoded (modified UTF-7 or UTF-8) and checked by the store."""
    if isinstance(value, list) or value is None:
        raise ImapBad("Invalid mailbox name")
    name = R.decode_mailbox(value, session.utf8)
    if name.endswith(SEP) and len(name) > 1:
        name = name.rstrip(SEP)  # RFC 3501 §6.3.3: a trailing separator names the same folder
    return name


def open_folder(session, name: str, create_hint: bool = False):
    """The shared Folder for `name`, synced with disk; ImapNo when it does not exist."""
    try:
        folder = session.mailbox.folder(name)
    except NoSuchFolder:
        if create_hint:
            # RFC 3501 §6.3.11: TRYCREATE tells the client a CREATE could make it work.
            raise ImapNo("TRYCREATE", "Mailbox does not exist") from None
        raise ImapNo("NONEXISTENT", "Mailbox does not exist") from None
    except BadFolderName as e:
        raise ImapNo("CANNOT", f"Invalid mailbox name: {e}") from None
    # SELECT, EXAMINE and STATUS show the folder as it is now, whatever other programs
    # (a `mailsuite deliver` from the MTA, rsync) did a moment ago.
    session.imap_state.refresh(folder, force=True)
    return folder


# A folder whose directories are bigger than this (some thousands of files) is first loaded
# in the durable pool; a smaller one loads faster than the hand-over to a thread.
LOAD_IN_POOL_BYTES = 256 * 1024


def loads_slowly(session, name: str) -> bool:
    """Whether opening `name` first builds a big index: a folder other programs filled
    (each file without its sizes in its name is read) takes a second for 50,000 messages,
    which the other clients must not wait for (`open_folder_in_pool`)."""
    mailbox = session.mailbox
    try:
        return not mailbox.is_loaded(name) and mailbox.listing_bytes(name) >= LOAD_IN_POOL_BYTES
    except BadFolderName:
        return False  # open_folder answers it


def open_folder_in_pool(session, name: str) -> defer.Deferred:
    """Deferred[Folder]: open_folder, the folder's first load done in the durable pool."""
    d = session.services.store.io.submit(_load, session.mailbox, name)
    d.addCallback(lambda _: open_folder(session, name))
    return d


def _load(mailbox, name: str) -> None:
    try:
        mailbox.folder(name)
    except (NoSuchFolder, BadFolderName, OSError):
        pass  # open_folder tries again and says what is wrong, on the reactor


def folder_exists(session, name: str) -> bool:
    try:
        return session.mailbox.exists(name)
    except BadFolderName:
        return False


def store_error(e: Exception) -> ImapNo:
    """Store exceptions as IMAP replies (RFC 5530 response codes)."""
    if isinstance(e, NoSuchFolder):
        return ImapNo("NONEXISTENT", "Mailbox does not exist")
    if isinstance(e, FolderExists):
        return ImapNo("ALREADYEXISTS", "Mailbox already exists")
    if isinstance(e, BadFolderName):
        return ImapNo("CANNOT", f"Invalid mailbox name: {e}")
    if isinstance(e, QuotaExceeded):
        return ImapNo("OVERQUOTA", "Quota exceeded")
    if isinstance(e, OSError):
        return ImapNo("SERVERBUG", "Storage error")
    raise e


# -- CREATE / DELETE / RENAME ----------------------------------------------------------------


def create(session, cmd):
    if not cmd.args or len(cmd.args) > 2:
        raise ImapBad("CREATE needs a mailbox name")
    name = mailbox_arg(session, cmd.args[0])
    use = None
    if len(cmd.args) == 2:
        use = _create_use(cmd.args[1])
    if name.upper() == "INBOX":
        raise ImapNo("ALREADYEXISTS", "INBOX always exists")
    mbox = session.mailbox
    try:
        if mbox.exists(name):
            raise ImapNo("ALREADYEXISTS", "Mailbox already exists")
        # RFC 3501 §6.3.3: create superior names that do not exist yet.
        parts = name.split(SEP)
        for i in range(1, len(parts)):
            parent = SEP.join(parts[:i])
            if parent.upper() != "INBOX" and not mbox.exists(parent):
                mbox.create_folder(parent)
        mbox.create_folder(name, special_use=use)
    except (FolderExists, BadFolderName, OSError) as e:
        raise store_error(e) from None
    # RFC 8474 §4.1: the new mailbox's MAILBOXID in the tagged OK
    return (f"MAILBOXID ({open_folder(session, name).mailbox_id})", "CREATE completed")


def _create_use(opts) -> str | None:
    # RFC 6154 §3: CREATE name (USE (\Sent)).
    if not isinstance(opts, list) or len(opts) != 2 or str(opts[0]).upper() != "USE":
        raise ImapBad("Invalid CREATE parameters")
    uses = opts[1]
    if not isinstance(uses, list) or len(uses) > 1:
        raise ImapNo("USEATTR", "One special-use attribute per mailbox")
    if not uses:
        return None
    want = str(uses[0])
    for known in SPECIAL_USES:
        if known.lower() == want.lower():
            return known
    raise ImapNo("USEATTR", "Unsupported special-use attribute")


def delete(session, cmd):
    if len(cmd.args) != 1:
        raise ImapBad("DELETE needs a mailbox name")
    name = mailbox_arg(session, cmd.args[0])
    if name.upper() == "INBOX":
        raise ImapNo("CANNOT", "INBOX cannot be deleted")
    if session.view is not None and session.view.folder.name == name:
        session.deselect()
    try:
        session.mailbox.delete_folder(name)
    except (NoSuchFolder, BadFolderName, OSError) as e:
        raise store_error(e) from None
    # RFC 3501 §6.3.6: the subscription outlives the mailbox (LIST shows it \NonExistent).


def rename(session, cmd):
    if len(cmd.args) != 2:
        raise ImapBad("RENAME needs two mailbox names")
    old = mailbox_arg(session, cmd.args[0])
    new = mailbox_arg(session, cmd.args[1])
    if new.upper() == "INBOX":
        raise ImapNo("ALREADYEXISTS", "INBOX already exists")
    if new == old or new.startswith(old + SEP):
        raise ImapNo("CANNOT", "Cannot rename a mailbox into itself")
    mbox = session.mailbox
    if session.view is not None:
        sel = session.view.folder.name
        if sel == old or sel.startswith(old + SEP):
            session.deselect()
    try:
        parts = new.split(SEP)
        for i in range(1, len(parts)):
            parent = SEP.join(parts[:i])
            if not mbox.exists(parent) and parent != old:
                mbox.create_folder(parent)
        mbox.rename_folder(old, new)
    except (NoSuchFolder, FolderExists, BadFolderName, OSError) as e:
        raise store_error(e) from None
    subs = mbox.subscriptions()
    for s in subs:
        if s == old or s.startswith(old + SEP):
            mbox.unsubscribe(s)
            try:
                mbox.subscribe(new + s[len(old) :])
            except BadFolderName:
                pass


def subscribe(session, cmd):
    if len(cmd.args) != 1:
        raise ImapBad("SUBSCRIBE needs a mailbox name")
    name = mailbox_arg(session, cmd.args[0])
    try:
        session.mailbox.subscribe(name)
    except (BadFolderName, OSError) as e:
        raise store_error(e) from None


def unsubscribe(session, cmd):
    if len(cmd.args) != 1:
        raise ImapBad("UNSUBSCRIBE needs a mailbox name")
    name = mailbox_arg(session, cmd.args[0])
    session.mailbox.unsubscribe(name)


# -- LIST / LSUB -----------------------------------------------------------------------------


def mailbox_pattern(pattern: str) -> MailboxPattern:
    """RFC 3501 §6.3.8: `*` matches anything, `%` anything but the separator; INBOX in any
    case names INBOX (§5.1)."""
    head, sep, rest = pattern.partition(SEP)
    if head.upper() == "INBOX":
        pattern = "INBOX" + sep + rest
    return MailboxPattern(pattern)


class _Tree:
    """The user's folder names with implied parents, children and roles, built once per LIST."""

    def __init__(self, session):
        mbox = session.mailbox
        self.names = mbox.list_folders()
        self.existing = set(self.names)
        self.subscribed = set(mbox.subscriptions())
        self.uses = mbox.special_use()
        self.parents: set[str] = set()
        for name in list(self.existing) + list(self.subscribed):
            parts = name.split(SEP)
            for i in range(1, len(parts)):
                self.parents.add(SEP.join(parts[:i]))
        self.has_children = {
            p for p in self.parents if any(n.startswith(p + SEP) for n in self.existing)
        }
        self.sub_children = {
            p for p in self.parents if any(n.startswith(p + SEP) for n in self.subscribed)
        }

    def all_names(self) -> list[str]:
        implied = self.parents - self.existing
        return self.names + sorted(n for n in implied if n not in self.existing)


def _list_args(cmd):
    """(selection options, reference, patterns, return options) of LIST (RFC 5258 §6)."""
    args = list(cmd.args)
    select_opts: list[str] = []
    extended = False
    if args and isinstance(args[0], list):
        select_opts = [str(a).upper() for a in args.pop(0)]
        extended = True
    if len(args) < 2:
        raise ImapBad("LIST needs a reference and a mailbox pattern")
    ref, pats = args[0], args[1]
    rest = args[2:]
    return_opts: list = []
    if isinstance(pats, list):
        extended = True
        patterns = pats
    else:
        patterns = [pats]
    if rest:
        if len(rest) != 2 or str(rest[0]).upper() != "RETURN" or not isinstance(rest[1], list):
            raise ImapBad("Invalid LIST return options")
        return_opts = rest[1]
        extended = True
    if isinstance(ref, list) or any(isinstance(p, list) for p in patterns):
        raise ImapBad("Invalid LIST arguments")
    for opt in select_opts:
        if opt not in ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"):
            raise ImapBad(f"Unknown LIST selection option {opt[:20]}")
    if "RECURSIVEMATCH" in select_opts and not set(select_opts) - {"RECURSIVEMATCH", "REMOTE"}:
        # RFC 5258 §3.1: never alone, nor with REMOTE only
        raise ImapBad("RECURSIVEMATCH needs another selection option")
    return select_opts, ref, patterns, return_opts, extended


def _return_options(return_opts: list) -> tuple[set[str], list[str] | None]:
    opts: set[str] = set()
    status_items = None
    i = 0
    while i < len(return_opts):
        opt = str(return_opts[i]).upper()
        if opt == "STATUS":
            # RFC 5819: RETURN (STATUS (MESSAGES UNSEEN ...)).
            if i + 1 >= len(return_opts) or not isinstance(return_opts[i + 1], list):
                raise ImapBad("STATUS return option needs a list")
            status_items = _status_items(return_opts[i + 1])
            i += 2
            continue
        if opt not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"):
            raise ImapBad(f"Unknown LIST return option {opt[:20]}")
        opts.add(opt)
        i += 1
    return opts, status_items


def _decode_text(session, value) -> str:
    if isinstance(value, bytes):
        try:
            raw = value.decode("utf-8")
        except UnicodeDecodeError:
            raise ImapBad("Invalid mailbox pattern") from None
    else:
        raw = str(value)
    if "&" in raw:
        return R.decode_mailbox(raw, session.utf8) if raw else ""
    return raw


def list_command(session, cmd):
    select_opts, ref, patterns, return_opts, extended = _list_args(cmd)
    ret, status_items = _return_options(return_opts)
    reference = _decode_text(session, ref)
    pats = [_decode_text(session, p) for p in patterns]
    if not extended and pats == [""]:
        # RFC 3501 §6.3.8: an empty pattern asks for the hierarchy delimiter.
        session.send(b'* LIST (\\Noselect) "/" ""\r\n')
        return
    tree = _Tree(session)
    matchers = [mailbox_pattern(reference + p) for p in pats if p != ""]
    subscribed_only = "SUBSCRIBED" in select_opts
    special_only = "SPECIAL-USE" in select_opts
    recursive = "RECURSIVEMATCH" in select_opts
    show_subscribed = subscribed_only or "SUBSCRIBED" in ret
    show_special = True  # RFC 6154 §2: attributes returned by plain LIST too
    candidates = tree.all_names()
    if subscribed_only:
        candidates += sorted(n for n in tree.subscribed if n not in set(candidates))
    lines: list[bytes] = []
    for name in candidates:
        if not any(m.matches(name) for m in matchers):
            continue
        exists = name in tree.existing
        childinfo = False
        if subscribed_only and name not in tree.subscribed:
            if not (recursive and name in tree.sub_children):
                continue
            childinfo = True
        if special_only and name not in tree.uses:
            continue
        if not exists and not subscribed_only and not extended and name not in tree.parents:
            continue
        attrs = []
        if not exists:
            attrs.append("\\NonExistent" if extended else "\\Noselect")
        if name in tree.has_children:
            attrs.append("\\HasChildren")
        elif exists or "CHILDREN" in ret:
            # a \NonExistent name (a subscription outliving its mailbox) says only that,
            # unless the client asked for CHILDREN (RFC 5258 §4)
            attrs.append("\\HasNoChildren")
        if show_subscribed and name in tree.subscribed:
            attrs.append("\\Subscribed")
        if show_special and name in tree.uses:
            attrs.append(tree.uses[name])
        line = (
            b"* LIST ("
            + " ".join(attrs).encode()
            + b') "/" '
            + R.encode_mailbox(name, session.utf8)
        )
        if childinfo:
            line += b' ("CHILDINFO" ("SUBSCRIBED"))'
        lines.append(line + b"\r\n")
        if status_items is not None and exists:
            lines.append(name)
    if status_items is None:
        session.send_many(lines)
        return None
    return _send_with_status(session, lines, status_items)


# LIST-STATUS answers this many mailboxes' STATUS a reactor turn (each opens and refreshes
# its folder from disk), so that an account of thousands of folders keeps nobody waiting.
STATUS_PER_TURN = 100


def _send_with_status(session, lines: list, status_items: list[str]) -> defer.Deferred | None:
    """Send LIST's lines, each mailbox name among them replaced by its STATUS line (RFC 5819
    §2), STATUS_PER_TURN mailboxes a reactor turn; a Deferred when it takes more than one."""
    out: list[bytes] = []
    opened = 0
    for i, item in enumerate(lines):
        if type(item) is bytes:
            out.append(item)
            continue
        if opened == STATUS_PER_TURN:
            session.send_many(out)
            return task.deferLater(reactor, 0, _rest_with_status, session, lines[i:], status_items)
        opened += 1
        try:
            folder = open_folder(session, item)
        except ImapNo:
            continue
        out.append(status_line(session, item, folder, status_items))
    session.send_many(out)
    return None


def _rest_with_status(session, lines: list, status_items: list[str]):
    if session.protocol.closed:
        return None
    return _send_with_status(session, lines, status_items)


def lsub(session, cmd):
    if len(cmd.args) != 2 or any(isinstance(a, list) for a in cmd.args):
        raise ImapBad("LSUB needs a reference and a mailbox pattern")
    reference = _decode_text(session, cmd.args[0])
    pattern = _decode_text(session, cmd.args[1])
    if pattern == "":
        session.send(b'* LSUB (\\Noselect) "/" ""\r\n')
        return
    tree = _Tree(session)
    matcher = mailbox_pattern(reference + pattern)
    lines = []
    seen = set()
    for name in sorted(tree.subscribed, key=lambda n: (n != "INBOX", n)):
        if matcher.matches(name):
            attrs = [] if name in tree.existing else ["\\Noselect"]
            lines.append(_lsub_line(session, name, attrs))
            seen.add(name)
    if "%" in pattern:
        # RFC 3501 §6.3.9: "%" matching a parent of subscribed names lists it \Noselect.
        for name in sorted(tree.sub_children - seen):
            if matcher.matches(name) and name not in tree.subscribed:
                lines.append(_lsub_line(session, name, ["\\Noselect"]))
    session.send_many(lines)


def _lsub_line(session, name: str, attrs: list[str]) -> bytes:
    return (
        b"* LSUB (" + " ".join(attrs).encode() + b') "/" ' + R.encode_mailbox(name, session.utf8)
    ) + b"\r\n"


# -- STATUS ----------------------------------------------------------------------------------

_STATUS_ITEMS = (
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "HIGHESTMODSEQ",
    "SIZE",
    "DELETED",
    "APPENDLIMIT",
    "MAILBOXID",  # RFC 8474 §4
)


def _status_items(items) -> list[str]:
    if not isinstance(items, list) or not items:
        raise ImapBad("STATUS needs a list of items")
    out = []
    for item in items:
        name = str(item).upper() if isinstance(item, Atom) else ""
        if name not in _STATUS_ITEMS:
            raise ImapBad("Unknown STATUS item")
        out.append(name)
    return out


def status_line(session, name: str, folder, items: list[str]) -> bytes:
    values = []
    msgs = folder.messages
    for item in items:
        if item == "MESSAGES":
            v = len(msgs)
        elif item == "RECENT":
            v = session.imap_state.recent_count(folder)
        elif item == "UIDNEXT":
            v = folder.uidnext
        elif item == "UIDVALIDITY":
            v = folder.uidvalidity
        elif item == "UNSEEN":
            v = session.imap_state.status_counts(folder)[0]
        elif item == "HIGHESTMODSEQ":
            v = folder.highestmodseq
        elif item == "SIZE":
            # RFC 8438: the total of the messages' RFC822.SIZE.
            v = session.imap_state.status_counts(folder)[2]
        elif item == "DELETED":
            v = session.imap_state.status_counts(folder)[1]
        elif item == "MAILBOXID":
            v = f"({folder.mailbox_id})"
        else:
            v = session.config.imap.append_limit
        values.append(f"{item} {v}".encode())
    return (
        b"* STATUS " + R.encode_mailbox(name, session.utf8) + b" (" + b" ".join(values) + b")\r\n"
    )


def status(session, cmd):
    if len(cmd.args) != 2:
        raise ImapBad("STATUS needs a mailbox name and items")
    name = mailbox_arg(session, cmd.args[0])
    items = _status_items(cmd.args[1])
    folder = open_folder(session, name)
    if "HIGHESTMODSEQ" in items:
        session.enable_condstore()  # RFC 7162 §3.1: STATUS HIGHESTMODSEQ is CONDSTORE-enabling
    session.send(status_line(session, name, folder, items))
