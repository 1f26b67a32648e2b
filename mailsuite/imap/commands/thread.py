"""THREAD and UID THREAD (RFC 5256 §3): ORDEREDSUBJECT and REFERENCES, the `* THREAD`
response, and the command handlers.

Usage:

    algorithm, prog = parse_thread_command(args)      # `REFERENCES UTF-8 ALL`
    hits = search.evaluate_seqs(prog, view, ctx)
    line = thread_response(algorithm, hits, content_loader, uid=is_uid_command)
    # -> b"* THREAD (2)(3 6 (4 23)(44 7 96))\\r\\n"
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted.internet import threads

from mailsuite.imap import search as search_mod
from mailsuite.imap.commands.sort import loader_cache_flush, sent_date, subject_form
from mailsuite.imap.parser import Atom, ImapBad
from mailsuite.imap.search import SearchProgram, parse_search
from mailsuite.message.headers import first_value

__all__ = ["THREAD_ALGORITHMS", "parse_thread_command", "thread_messages", "thread_response"]

THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES", "REFS")


def parse_thread_command(args: list) -> tuple[str, SearchProgram]:
    """`algorithm charset search-key...` (RFC 5256 §3)."""
    if len(args) < 3 or not isinstance(args[0], Atom):
        raise ImapBad("THREAD needs an algorithm, a charset and search keys")
    algorithm = args[0].upper()
    if algorithm not in THREAD_ALGORITHMS:
        raise ImapBad(f"Unknown THREAD algorithm {args[0][:30]}")
    charset = args[1]
    if not isinstance(charset, (str, bytes)):
        raise ImapBad("Invalid charset")
    return algorithm, parse_search(list(args[2:]), charset=charset)


class _Info:
    """One message as threading sees it; `subject` is its base subject in i;unicode-casemap
    form (compared, never sent)."""

    __slots__ = ("num", "seq", "date", "subject", "reply", "msgid", "refs")


class _Node:
    __slots__ = ("info", "parent", "children", "id")

    def __init__(self, id_: str | None = None, info: _Info | None = None):
        self.id = id_
        self.info = info
        self.parent: _Node | None = None
        self.children: list[_Node] = []

    def has_ancestor(self, other: _Node) -> bool:
        n = self
        while n is not None:
            if n is other:
                return True
            n = n.parent
        return False


_MSGID_RE = re.compile(rb"<([^<>\s]+)>")


def _infos(pairs: list[tuple], loader: Callable, uid: bool) -> list[_Info]:
    out = []
    for seq, msg in pairs:
        fields = loader(msg).fields()
        i = _Info()
        i.num = msg.uid if uid else seq
        i.seq = seq
        i.date = sent_date(fields, msg.internaldate)
        # RFC 5255 §4.2: base subjects are grouped and ordered by i;unicode-casemap.
        i.subject, i.reply = subject_form(first_value(fields, b"subject"))
        mid = first_value(fields, b"message-id")
        m = _MSGID_RE.search(mid) if mid else None
        i.msgid = m.group(1).decode("latin-1") if m else None
        refs = first_value(fields, b"references")
        ids = [x.decode("latin-1") for x in _MSGID_RE.findall(refs)] if refs else []
        if not ids:
            irt = first_value(fields, b"in-reply-to")
            ids = [x.decode("latin-1") for x in _MSGID_RE.findall(irt)][:1] if irt else []
        i.refs = ids
        out.append(i)
    return out


def _key(node: _Node) -> tuple:
    """Sort key of a container: its message's sent date, or its first child's (RFC 5256)."""
    n = node
    while n.info is None and n.children:
        n = n.children[0]
    if n.info is None:
        return (0.0, 0)
    return (n.info.date, n.info.seq)


def _bottom_up(nodes: list[_Node]) -> list[_Node]:
    """Every node under `nodes`, each after all of its descendants: the trees are walked
    without recursion, since a reply chain can be thousands of messages deep."""
    order: list[_Node] = []
    stack = list(nodes)
    while stack:
        n = stack.pop()
        order.append(n)
        stack.extend(n.children)
    order.reverse()
    return order


def _sort_tree(nodes: list[_Node]) -> None:
    # Children first: a dummy's key is its first child's after that child list is sorted.
    for n in _bottom_up(nodes):
        if len(n.children) > 1:
            n.children.sort(key=_key)
    nodes.sort(key=_key)


def ordered_subject(infos: list[_Info]) -> list[_Node]:
    """RFC 5256 §3.1: group by base subject, each group a flat thread under its first message."""
    ordered = sorted(infos, key=lambda i: (i.subject, i.date, i.seq))
    roots: list[_Node] = []
    current: _Node | None = None
    for info in ordered:
        node = _Node(info=info)
        if current is not None and current.info.subject == info.subject:
            node.parent = current
            current.children.append(node)
        else:
            current = node
            roots.append(node)
    roots.sort(key=_key)
    return roots


def _latest(node: _Node) -> tuple:
    """Sort key of a REFS thread: its newest message (sent date, then sequence)."""
    best = (0.0, 0)
    stack = [node]
    while stack:
        n = stack.pop()
        if n.info is not None:
            best = max(best, (n.info.date, n.info.seq))
        stack.extend(n.children)
    return best


def references(infos: list[_Info], by_subject: bool = True) -> list[_Node]:
    """RFC 5256 §3.2 REFERENCES threading (after Jamie Zawinski's algorithm).

    `by_subject=False` is REFS (draft-ietf-morg-inthread): threads come from the reference
    links alone, never merged by subject, and are ordered by their newest message, so the
    thread that just had a reply sorts last, as a client's list shows it."""
    table: dict[str, _Node] = {}
    unique = 0

    def container(mid: str) -> _Node:
        n = table.get(mid)
        if n is None:
            n = table[mid] = _Node(mid)
        return n

    def link(parent: _Node, child: _Node) -> None:
        # Never create a loop. Only a node with children can be above another one, so the
        # walk up from the parent is needed only then: a thread read in order links each
        # reply while it has none, and a chain of n replies costs n steps, not n * n / 2.
        if child.parent is parent or parent is child:
            return
        if child.children and parent.has_ancestor(child):
            return
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = parent
        parent.children.append(child)

    for info in infos:
        mid = info.msgid
        if mid is None or (mid in table and table[mid].info is not None):
            # (1)(A): no or duplicate Message-ID: a unique one of our own
            unique += 1
            mid = f"\x00unique{unique}"
        node = container(mid)
        node.info = info
        # (1)(B): link the references in order, each a child of the one before
        prev: _Node | None = None
        for ref in info.refs:
            r = container(ref)
            if prev is not None and r.parent is None:
                link(prev, r)
            prev = r
        # (1)(C): the message's parent is the last reference.  Its own References outrank a
        # parent guessed from other messages', so that link is broken first; the new one is
        # then added unless it would make a loop (the message stays a root).
        if node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
        if (
            prev is not None
            and prev is not node
            and not (node.children and prev.has_ancestor(node))
        ):
            link(prev, node)
    # (2) root set
    roots = [n for n in table.values() if n.parent is None]
    # (4) prune dummies
    roots = _prune(roots)
    for r in roots:
        r.parent = None
    # (5) sort
    _sort_tree(roots)
    if not by_subject:
        roots.sort(key=_latest)
        return roots
    # (6) group the root set by base subject
    roots = _group_by_subject(roots)
    # (7) sort again (grouping adds children and dummies)
    _sort_tree(roots)
    return roots


def _prune(roots: list[_Node]) -> list[_Node]:
    # What each node leaves in its parent's child list once its own children are pruned:
    # itself, or for a dummy its children (4)(B), or nothing for an empty dummy (4)(A).
    kept: dict[int, list[_Node]] = {}
    for n in _bottom_up(roots):
        children: list[_Node] = []
        for c in n.children:
            children.extend(kept.pop(id(c)))
        n.children = children
        for c in children:
            c.parent = n
        kept[id(n)] = [n] if n.info is not None else children
    out: list[_Node] = []
    for n in roots:
        if n.info is None and len(n.children) != 1:
            if n.children:
                out.append(n)  # a dummy with several children stays at the root (4)(B)
            continue
        out.extend(kept[id(n)])
    return out


def _subject_of(n: _Node) -> tuple[str, bool]:
    info = n.info if n.info is not None else (n.children[0].info if n.children else None)
    if info is None:
        return "", False
    return info.subject, info.reply


def _group_by_subject(roots: list[_Node]) -> list[_Node]:
    table: dict[str, _Node] = {}
    for n in roots:
        subj, reply = _subject_of(n)
        if not subj:
            continue
        key = subj
        old = table.get(key)
        if (
            old is None
            or (n.info is None and old.info is not None)
            or (old.info is not None and _subject_of(old)[1] and not reply)
        ):
            table[key] = n
    out: list[_Node] = []
    consumed: set[int] = set()  # roots already moved under another container
    for n in roots:
        if id(n) in consumed:
            continue
        subj, reply = _subject_of(n)
        key = subj
        other = table.get(key) if subj else None
        if other is None or other is n:
            out.append(n)
            continue
        if other.info is None and n.info is None:
            for c in n.children:
                c.parent = other
            other.children.extend(n.children)
        elif other.info is None:
            n.parent = other
            other.children.append(n)
        elif n.info is None or (_subject_of(other)[1] and not reply):
            # the table's message goes under this one (a dummy, or the non-reply original)
            _replace(out, other, n)
            consumed.add(id(other))
            other.parent = n
            n.children.append(other)
            table[key] = n
        elif not _subject_of(other)[1] and reply:
            n.parent = other
            other.children.append(n)
        else:
            # both replies or neither: siblings under a new dummy (RFC 5256 §3.2 (6)(C))
            dummy = _Node()
            _replace(out, other, dummy)
            consumed.add(id(other))
            for c in (other, n):
                c.parent = dummy
                dummy.children.append(c)
            table[key] = dummy
    return out


def _replace(out: list[_Node], old: _Node, new: _Node) -> None:
    for i, x in enumerate(out):
        if x is old:
            out[i] = new
            return
    out.append(new)


def _chain(root: _Node) -> str:
    """One thread's text, `3 6 (4 23)(44 7 96)`, written from a stack of nodes and the
    parentheses still owed (no recursion: a chain can be thousands of messages deep)."""
    out: list[str] = []
    stack: list = [root]
    while stack:
        item = stack.pop()
        if type(item) is str:
            out.append(item)
            continue
        kids = item.children
        if item.info is not None:
            out.append(str(item.info.num))
            if kids:
                out.append(" ")
            if len(kids) == 1:
                stack.append(kids[0])  # a lone reply follows on the same level
                continue
        for c in reversed(kids):
            stack.extend((")", c, "("))
    return "".join(out)


def thread_messages(algorithm: str, pairs: list[tuple], loader: Callable, uid: bool) -> str:
    """The thread-list text `(2)(3 6 (4 23)(44 7 96))` for the matching messages."""
    infos = _infos(pairs, loader, uid)
    if algorithm == "ORDEREDSUBJECT":
        roots = ordered_subject(infos)
    else:
        roots = references(infos, by_subject=algorithm == "REFERENCES")
    text = "".join("(" + _chain(r) + ")" for r in roots)
    # Parent and child point at each other: without this the tree (a few objects a message)
    # would wait as cyclic garbage for a full collection, which a server holding big indexes
    # runs seldom (heap.tune_collector).
    for n in _bottom_up(roots):
        n.parent = None
    return text


def thread_response(algorithm: str, pairs: list[tuple], loader: Callable, uid: bool) -> bytes:
    """`* THREAD ...` (RFC 5256 §4); an empty result is `* THREAD`."""
    text = thread_messages(algorithm, pairs, loader, uid)
    return b"* THREAD" + (b" " + text.encode("ascii") if text else b"") + b"\r\n"


def run_command(session, view, cmd, uid: bool):
    """THREAD / UID THREAD over a selected view (the command module's entry point); the
    search and threading run in the thread pool since they read header fields."""
    algorithm, prog = parse_thread_command(cmd.args)
    ctx = search_mod.context_for(session, view)
    messages = list(view.messages)

    def work():
        hits = [(s, m) for s, m in search_mod.evaluate_seqs(prog, messages, ctx) if view.is_live(m)]
        text = thread_response(algorithm, hits, ctx.content_loader, uid)
        loader_cache_flush(view.folder)
        return text

    d = threads.deferToThread(work)
    d.addCallback(session.send)
    return d


def thread(session, cmd):
    return run_command(session, session.view, cmd, uid=False)


def uid_thread(session, cmd):
    return run_command(session, session.view, cmd, uid=True)
