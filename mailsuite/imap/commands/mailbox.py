"""Mailbox commands: CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS
(RFC 3501 §6.3), with LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE and
CREATE-SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348) and STATUS=SIZE (RFC 8438)."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer, reactor, task

from mailsuite.imap import response as R
from mailsuite.imap.commands.list_pattern import MailboxPattern
from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.store import BadFolderName, FolderExists, NoSuchFolder, QuotaExceeded
from mailsuite.store.tree import FolderTree

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
    """The shared Folder for `name`, synced with disk; ImapNo when it does not exist.  A
    Deferred[Folder] instead when syncing takes a listing (made in the durable pool)."""
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
    listed = session.imap_state.refresh(folder, force=True)
    if listed is not None:
        return listed.addCallback(lambda _: folder)
    return folder


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


def open_loaded_folder(session, name: str):
    """open_folder for SELECT, EXAMINE and STATUS: a folder not in memory yet is loaded in
    the durable pool first (its first load lists it, and writes its uidlist when it has
    none); a Deferred then, else the Folder."""
    try:
        loaded = session.mailbox.is_loaded(name)
    except BadFolderName:
        loaded = True  # open_folder answers it
    if loaded:
        return open_folder(session, name)
    return open_folder_in_pool(session, name)


def folder_exists(session, name: str) -> bool:
    try:
        return session.mailbox.exists(name)
    except BadFolderName:
        return False


def store_failure(failure):
    """An errback: a store exception from the durable pool as its IMAP reply."""
    e = failure.value
    if isinstance(e, (NoSuchFolder, FolderExists, BadFolderName, QuotaExceeded, OSError)):
        raise store_error(e)
    return failure


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
# Their disk work (directories made, renamed and removed, the subscription and special-use
# files rewritten, a new folder's uidlist) is one job of the durable pool each; the tagged
# reply is written when it is done, and the session runs nothing more meanwhile.


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
    except BadFolderName as e:
        raise store_error(e) from None
    d = session.services.store.io.submit(_create_folders, mbox, name, use)
    # RFC 8474 §4.1: the new mailbox's MAILBOXID in the tagged OK
    d.addCallbacks(
        lambda mailbox_id: (f"MAILBOXID ({mailbox_id})", "CREATE completed"), store_failure
    )
    return d


def _create_folders(mbox, name: str, use: str | None) -> str:
    """CREATE's disk work (the durable pool): the folder, loaded so that it has its
    UIDVALIDITY; its MAILBOXID."""
    # RFC 3501 §6.3.3: create superior names that do not exist yet.
    parts = name.split(SEP)
    for i in range(1, len(parts)):
        parent = SEP.join(parts[:i])
        if parent.upper() != "INBOX" and not mbox.exists(parent):
            mbox.create_folder(parent)
    mbox.create_folder(name, special_use=use)
    return mbox.folder(name).mailbox_id


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
    d = session.services.store.io.submit(session.mailbox.delete_folder, name)
    d.addCallbacks(_deleted, store_failure)
    # RFC 3501 §6.3.6: the subscription outlives the mailbox (LIST shows it \NonExistent).
    return d


def _deleted(folder) -> None:
    if folder is not None:
        folder.removed()  # on the reactor: the sessions that had it open hear it emptied


def rename(session, cmd):
    if len(cmd.args) != 2:
        raise ImapBad("RENAME needs two mailbox names")
    old = mailbox_arg(session, cmd.args[0])
    new = mailbox_arg(session, cmd.args[1])
    if new.upper() == "INBOX":
        raise ImapNo("ALREADYEXISTS", "INBOX already exists")
    if new == old or new.startswith(old + SEP):
        raise ImapNo("CANNOT", "Cannot rename a mailbox into itself")
    if session.view is not None:
        sel = session.view.folder.name
        if sel == old or sel.startswith(old + SEP):
            session.deselect()
    d = session.services.store.io.submit(_rename_folder, session.mailbox, old, new)
    d.addErrback(store_failure)
    return d


def _rename_folder(mbox, old: str, new: str) -> None:
    """RENAME's disk work (the durable pool); the subscriptions follow the names."""
    parts = new.split(SEP)
    for i in range(1, len(parts)):
        parent = SEP.join(parts[:i])
        if not mbox.exists(parent) and parent != old:
            mbox.create_folder(parent)
    mbox.rename_folder(old, new)
    mbox.move_subscriptions(old, new)


def subscribe(session, cmd):
    if len(cmd.args) != 1:
        raise ImapBad("SUBSCRIBE needs a mailbox name")
    name = mailbox_arg(session, cmd.args[0])
    d = session.services.store.io.submit(session.mailbox.subscribe, name)
    d.addErrback(store_failure)
    return d


def unsubscribe(session, cmd):
    if len(cmd.args) != 1:
        raise ImapBad("UNSUBSCRIBE needs a mailbox name")
    name = mailbox_arg(session, cmd.args[0])
    d = session.services.store.io.submit(session.mailbox.unsubscribe, name)
    d.addErrback(store_failure)
    return d


# -- LIST / LSUB -----------------------------------------------------------------------------


def mailbox_pattern(pattern: str) -> MailboxPattern:
    """RFC 3501 §6.3.8: `*` matches anything, `%` anything but the separator; INBOX in any
    case names INBOX (§5.1)."""
    head, sep, rest = pattern.partition(SEP)
    if head.upper() == "INBOX":
        pattern = "INBOX" + sep + rest
    return MailboxPattern(pattern)


class _Tree:
    """The user's folder names with implied parents, children and roles, built once per LIST
    from the store's snapshot."""

    def __init__(self, snapshot: FolderTree):
        self.names = list(snapshot.names)
        self.existing = set(self.names)
        self.subscribed = set(snapshot.subscribed)
        self.uses = snapshot.uses
        # a name with a name below it: every superior level of every name (linear in the
        # names, not names times parents)
        self.has_children = _superiors(self.existing)
        self.sub_children = _superiors(self.subscribed)
        self.parents = self.has_children | self.sub_children

    def all_names(self) -> list[str]:
        implied = self.parents - self.existing
        return self.names + sorted(implied)


def _superiors(names) -> set[str]:
    out: set[str] = set()
    for name in names:
        cut = name.rfind(SEP)
        while cut > 0:
            head = name[:cut]
            if head in out:
                break  # its own superiors are in already
            out.add(head)
            cut = name.rfind(SEP, 0, cut)
    return out


def with_tree(session, then):
    """`then(_Tree)` with the user's folder tree: at once when the store's snapshot still
    holds, else read in the durable pool first (a listing of the Maildir root and a look
    at each folder in it, thousands for some accounts)."""
    mbox = session.mailbox
    snapshot = mbox.known_tree()
    if snapshot is not None:
        return then(_Tree(snapshot))
    d = session.services.store.io.submit(mbox.folder_tree)
    d.addCallback(lambda snap: then(_Tree(snap)))
    return d


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


@dataclass
class _ListRequest:
    """What one LIST asks for (RFC 5258), worked out once for all its mailboxes."""

    tree: _Tree
    matchers: list
    extended: bool
    subscribed_only: bool
    special_only: bool
    recursive: bool
    show_subscribed: bool
    children: bool
    status_items: list[str] | None


def list_command(session, cmd):
    select_opts, ref, patterns, return_opts, extended = _list_args(cmd)
    ret, status_items = _return_options(return_opts)
    reference = _decode_text(session, ref)
    pats = [_decode_text(session, p) for p in patterns]
    if not extended and pats == [""]:
        # RFC 3501 §6.3.8: an empty pattern asks for the hierarchy delimiter.
        session.send(b'* LIST (\\Noselect) "/" ""\r\n')
        return
    matchers = [mailbox_pattern(reference + p) for p in pats if p != ""]

    def answer(tree: _Tree):
        subscribed_only = "SUBSCRIBED" in select_opts
        request = _ListRequest(
            tree,
            matchers,
            extended,
            subscribed_only,
            "SPECIAL-USE" in select_opts,
            "RECURSIVEMATCH" in select_opts,
            subscribed_only or "SUBSCRIBED" in ret,
            "CHILDREN" in ret,
            status_items,
        )
        candidates = tree.all_names()
        if subscribed_only:
            listed = set(candidates)
            candidates += sorted(n for n in tree.subscribed if n not in listed)
        return _answer_list(session, request, candidates, 0)

    return with_tree(session, answer)


# LIST answers this many candidate names a reactor turn (matched and rendered): an account of
# thousands of folders keeps nobody waiting.
LIST_PER_TURN = 250


def _answer_list(session, request: _ListRequest, candidates: list[str], start: int):
    """Send the LIST lines of `candidates` from `start`, LIST_PER_TURN names a turn; a
    Deferred when it takes more than one."""
    if session.protocol.closed:
        return None
    end = start + LIST_PER_TURN
    lines = _list_lines(session, request, candidates[start:end])
    if request.status_items is None:
        session.send_many(lines)
        d = None
    else:
        d = _send_with_status(session, lines, request.status_items)
    if end >= len(candidates):
        return d
    if d is None:
        session.flush()
        return task.deferLater(reactor, 0, _answer_list, session, request, candidates, end)
    return d.addCallback(lambda _: _answer_list(session, request, candidates, end))


def _list_lines(session, request: _ListRequest, names: list[str]) -> list:
    """The `* LIST` lines of the names that match; with LIST-STATUS, each existing name
    follows its line (for `_send_with_status`)."""
    tree = request.tree
    matchers = request.matchers
    extended = request.extended
    show_special = True  # RFC 6154 §2: attributes returned by plain LIST too
    lines: list = []
    for name in names:
        if not any(m.matches(name) for m in matchers):
            continue
        exists = name in tree.existing
        childinfo = False
        if request.subscribed_only and name not in tree.subscribed:
            if not (request.recursive and name in tree.sub_children):
                continue
            childinfo = True
        if request.special_only and name not in tree.uses:
            continue
        if not exists and not request.subscribed_only and not extended and name not in tree.parents:
            continue
        attrs = []
        if not exists:
            attrs.append("\\NonExistent" if extended else "\\Noselect")
        if name in tree.has_children:
            attrs.append("\\HasChildren")
        elif exists or request.children:
            # a \NonExistent name (a subscription outliving its mailbox) says only that,
            # unless the client asked for CHILDREN (RFC 5258 §4)
            attrs.append("\\HasNoChildren")
        if request.show_subscribed and name in tree.subscribed:
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
        if request.status_items is not None and exists:
            lines.append(name)
    return lines


# LIST-STATUS answers this many mailboxes' STATUS a reactor turn (each refreshed from disk,
# the ones not loaded yet loaded first in the durable pool), so that an account of thousands
# of folders keeps nobody waiting.
STATUS_PER_TURN = 100


def _send_with_status(session, lines: list, status_items: list[str]) -> defer.Deferred | None:
    """Send LIST's lines, each mailbox name among them replaced by its STATUS line (RFC 5819
    §2), STATUS_PER_TURN mailboxes a reactor turn, their folders that are not in memory yet
    loaded in the durable pool first; a Deferred when it takes more than one turn."""
    if session.protocol.closed:
        return None
    mbox = session.mailbox
    cold = []
    for item in lines:
        if type(item) is bytes:
            continue
        try:
            if not mbox.is_loaded(item):
                cold.append(item)
        except BadFolderName:
            pass
        if len(cold) == STATUS_PER_TURN:
            break
    if not cold:
        return _status_slice(session, lines, status_items)
    d = session.services.store.io.submit(_load_all, mbox, cold)
    d.addCallback(lambda _: _status_slice(session, lines, status_items))
    return d


def _load_all(mailbox, names: list[str]) -> None:
    for name in names:
        _load(mailbox, name)


def _status_slice(session, lines: list, status_items: list[str]) -> defer.Deferred | None:
    if session.protocol.closed:
        return None
    out: list[bytes] = []
    opened = 0
    for i, item in enumerate(lines):
        if type(item) is bytes:
            out.append(item)
            continue
        if opened == STATUS_PER_TURN:
            session.send_many(out)
            session.flush()
            return task.deferLater(reactor, 0, _send_with_status, session, lines[i:], status_items)
        opened += 1
        try:
            folder = open_folder(session, item)
        except ImapNo:
            continue
        if type(folder) is defer.Deferred:  # listed in the pool first: the rest after it
            session.send_many(out)
            rest = lines[i + 1 :]

            def listed(folder, name=item, rest=rest):
                session.send(status_line(session, name, folder, status_items))
                return _send_with_status(session, rest, status_items)

            return folder.addCallback(listed)
        out.append(status_line(session, item, folder, status_items))
    session.send_many(out)
    return None


def lsub(session, cmd):
    if len(cmd.args) != 2 or any(isinstance(a, list) for a in cmd.args):
        raise ImapBad("LSUB needs a reference and a mailbox pattern")
    reference = _decode_text(session, cmd.args[0])
    pattern = _decode_text(session, cmd.args[1])
    if pattern == "":
        session.send(b'* LSUB (\\Noselect) "/" ""\r\n')
        return
    matcher = mailbox_pattern(reference + pattern)
    return with_tree(session, lambda tree: _answer_lsub(session, tree, matcher, pattern))


def _answer_lsub(session, tree: _Tree, matcher, pattern: str) -> None:
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
    folder = open_loaded_folder(session, name)
    if type(folder) is defer.Deferred:
        return folder.addCallback(lambda f: _send_status(session, name, f, items))
    _send_status(session, name, folder, items)
    return None


def _send_status(session, name: str, folder, items: list[str]) -> None:
    if "HIGHESTMODSEQ" in items:
        session.enable_condstore()  # RFC 7162 §3.1: STATUS HIGHESTMODSEQ is CONDSTORE-enabling
    session.send(status_line(session, name, folder, items))
