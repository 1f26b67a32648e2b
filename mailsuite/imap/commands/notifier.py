"""One session's NOTIFY (RFC 5465): what it hears of the user's mailboxes and when it says it.

The store's `Mailbox` tells its watchers of every change made in this process: messages in
any open folder (other sessions, POP3, APPEND, COPY), a delivery into a folder nobody has
open (SMTP, Sieve `fileinto`), mailboxes created, deleted, renamed, subscribed.  A notifier
turns those into `* STATUS` and `* LIST` responses for the mailboxes its filters cover, and
pushes the selected mailbox's EXISTS/EXPUNGE/FETCH as they happen.  Changes made behind the
process's back (`mailsuite deliver`, a file dropped into `new/`) are caught by the server's
one poll of the folders sessions wait on (`ImapState.idle_poll`), never a poll per session.

Responses go out at once when no command is running (RFC 5465 §5: at any time), otherwise
before the running command's tagged reply.  What waits for a client that does not read is
bounded: past `QUEUE_LIMIT` the session gets `[NOTIFICATIONOVERFLOW]` and NOTIFY is off
(§5.8), so a slow or hostile client costs only itself.
"""

from __future__ import annotations

import bisect

from twisted.internet import defer, reactor, task
from twisted.logger import Logger
from twisted.python import threadable

from mailsuite.imap import response as R
from mailsuite.imap.commands.mailbox import status_line
from mailsuite.imap.commands.notify_spec import (
    FLAG_CHANGE,
    INBOX_ONLY,
    MAILBOX_NAME,
    MESSAGE_EXPUNGE,
    MESSAGE_NEW,
    SUBSCRIPTION_CHANGE,
    NotifySpec,
)
from mailsuite.imap.fetch import FetchRenderer
from mailsuite.sieve import SieveError
from mailsuite.sieve.targets import fileinto_folders
from mailsuite.store import NoSuchFolder
from mailsuite.store.tree import FolderTree

log = Logger(namespace="mailsuite.imap")

# Notifications waiting for one session (a STATUS per mailbox, a LIST per name change).
QUEUE_LIMIT = 1000

# Watched folders one session has the server's poll look at (INBOX first): enough for every
# folder of a normal account, bounded for a hostile one with thousands.
POLL_LIMIT = 200

# New messages whose files total at most this are rendered for MessageNew's attributes on
# the reactor (as FETCH reads small batches inline); bigger arrivals get EXISTS only and
# the client fetches them itself.
INLINE_FETCH_BYTES = 1536 * 1024

# How often a session whose NOTIFY covers `inboxes` looks whether the user's Sieve script
# now files into other folders (a stat while it has not changed): what another program
# delivers there (`mailsuite deliver`) is then heard too.  A change this process makes into
# such a folder is checked for at once.
INBOXES_CHECK_SECONDS = 5.0

_FOLDER_EVENTS = {"exists": MESSAGE_NEW, "expunge": MESSAGE_EXPUNGE, "flags": FLAG_CHANGE}

OVERFLOW = b"* OK [NOTIFICATIONOVERFLOW] Too many notifications waiting; NOTIFY is off\r\n"


def inbox_names(session) -> defer.Deferred:
    """Deferred[frozenset[str]]: RFC 5465 §6 `inboxes`, the mailboxes mail is delivered to:
    INBOX, and each folder the user's active Sieve script files into (read in the durable-I/O
    pool; the script store keeps the parse until the script changes)."""
    services = session.services
    sieve = services.delivery.sieve
    if sieve is None or not services.config.sieve.enabled:
        return defer.succeed(INBOX_ONLY)
    maildir = services.store.path_for(session.user)
    return services.store.io.submit(_inbox_names, sieve, maildir)


def _inbox_names(sieve, maildir) -> frozenset[str]:
    try:
        script = sieve.scripts(maildir).active()
    except (SieveError, OSError, KeyError, ValueError):
        script = None  # a script that cannot run files nothing: its mail stays in INBOX
    return INBOX_ONLY | fileinto_folders(script)


def watched_tree(session, spec: NotifySpec) -> defer.Deferred:
    """Deferred[FolderTree]: what NOTIFY SET reads before it answers, in the durable pool:
    the user's folder tree, and the folders the notifier polls or reports at once loaded
    (a folder's first load lists it, and writes its uidlist when it has none)."""
    return session.services.store.io.submit(_read_watched, session.mailbox, spec)


def _read_watched(mailbox, spec: NotifySpec) -> FolderTree:
    tree = mailbox.folder_tree()
    subscribed = set(tree.subscribed)
    loaded = 0
    for name in tree.names:
        if not spec.status and loaded >= POLL_LIMIT:
            break
        if covers(spec, name, subscribed):
            loaded += 1
            try:
                mailbox.folder(name)
            except (NoSuchFolder, ValueError, OSError):
                continue  # the notifier finds it gone, on the reactor
    return tree


def covers(spec: NotifySpec, name: str, subscribed: set[str]) -> bool:
    """Whether `spec` asks for message events of `name` (a folder to poll and report)."""
    f = spec.filter_for(name, subscribed)
    return f is not None and bool(f.events & {MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE})


class Notifier:
    """A session's active NOTIFY SET: listens to the user's Mailbox until `stop`; `tree` is
    the folder tree as `watched_tree` read it."""

    def __init__(self, session, spec: NotifySpec, tree: FolderTree, clock=reactor):
        self.session = session
        self.spec = spec
        self.mailbox = session.mailbox
        self._clock = clock
        self._status: dict[str, None] = {}  # mailboxes owing a STATUS, in order
        self._lines: list[bytes] = []  # LIST responses owed, in order
        self._overflowed = False
        self._push_call = None
        self._waiting_output = False
        self._subscribed = set(tree.subscribed)
        self._names = tree.names
        self._polled: list = []
        # (view, highest UID) the client had been told of when MessageNew's FETCH last ran.
        self._told_uid: tuple | None = None
        # Mailboxes that changed outside `inboxes` as last known, and the event: covered if
        # the Sieve script now files into them (`_check_inboxes`).
        self._unsure: dict[str, str] = {}
        self._checking = False
        self._check_loop: task.LoopingCall | None = None
        self.stopped = False
        self.mailbox.add_listener(self._heard)
        self._poll_watched()
        if spec.has_inboxes:
            self._check_loop = task.LoopingCall(self._check_inboxes)
            self._check_loop.clock = clock
            self._check_loop.start(INBOXES_CHECK_SECONDS, now=False)

    # -- lifetime -----------------------------------------------------------------------------
    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.mailbox.remove_listener(self._heard)
        poll = self.session.imap_state.idle_poll
        for folder in self._polled:
            poll.remove(folder)
        self._polled = []
        if self._push_call is not None and self._push_call.active():
            self._push_call.cancel()
        self._push_call = None
        if self._check_loop is not None and self._check_loop.running:
            self._check_loop.stop()
        self._check_loop = None

    def _poll_watched(self) -> None:
        """Have the server's one poll look at the watched folders (opened as STATUS opens
        them), so that what other programs write into them (`mailsuite deliver`) is heard."""
        for name in self._names:
            if len(self._polled) >= POLL_LIMIT:
                break
            if self._covers(name):
                try:
                    self._poll(self.mailbox.folder(name))
                except (NoSuchFolder, ValueError):
                    continue

    def _poll(self, folder) -> None:
        if folder not in self._polled and len(self._polled) < POLL_LIMIT:
            self.session.imap_state.idle_poll.add(folder)
            self._polled.append(folder)

    def _unpoll(self, name: str) -> None:
        """A deleted or renamed folder's old object is polled no more."""
        for folder in [f for f in self._polled if f.name == name]:
            self.session.imap_state.idle_poll.remove(folder)
            self._polled.remove(folder)

    def _covers(self, name: str) -> bool:
        return covers(self.spec, name, self._subscribed)

    # -- what NOTIFY SET STATUS sends ---------------------------------------------------------
    def initial_status(self) -> list[bytes]:
        """RFC 5465 §3: with STATUS, a STATUS of every covered mailbox except the selected."""
        out = []
        for name in self._names:
            if self._covers(name) and not self._is_selected(name):
                line = self._status_line(name)
                if line is not None:
                    out.append(line)
        return out

    # -- events in ----------------------------------------------------------------------------
    def _heard(self, event) -> None:
        # A Sieve `fileinto :create` creates its folder in a delivery worker thread.
        if threadable.isInIOThread():
            self._on_event(event)
        else:
            reactor.callFromThread(self._on_event, event)

    def _on_event(self, event) -> None:
        if self.stopped:
            return
        kind, name = event.kind, event.name
        if kind == "messages":
            fe = event.folder_event
            what = MESSAGE_NEW if fe is None else _FOLDER_EVENTS.get(fe.kind)
            if self._is_selected(name):
                return  # the view has it (and the selected filter says when it goes out)
            if what and self.spec.wants(name, what, self._subscribed):
                self._status[name] = None
            elif what and self._may_be_inbox(name, what):
                self._unsure[name] = what
                self._check_inboxes()
        elif kind in ("subscribed", "unsubscribed"):
            if kind == "subscribed":
                self._subscribed.add(name)
            else:
                self._subscribed.discard(name)
            if self.spec.wants(name, SUBSCRIPTION_CHANGE, self._subscribed | {name}):
                attrs = "\\Subscribed" if kind == "subscribed" else ""
                self._lines.append(self._list_line(attrs, name))
        elif kind in ("created", "deleted", "renamed"):
            self._name_changed(kind, name, event.old_name)
        if len(self._status) + len(self._lines) > QUEUE_LIMIT:
            self._overflow()
        self.wake()

    def _name_changed(self, kind: str, name: str, old: str | None) -> None:
        subs = self._subscribed
        wanted = self.spec.wants(name, MAILBOX_NAME, subs) or (
            old is not None and self.spec.wants(old, MAILBOX_NAME, subs)
        )
        if kind == "deleted":
            self._status.pop(name, None)
            self._unpoll(name)
        if old is not None:
            self._status.pop(old, None)
            self._unpoll(old)
        if not wanted:
            return
        if kind == "deleted":
            self._lines.append(self._list_line("\\NonExistent", name))
            return
        attrs = "\\Subscribed" if name in subs else ""
        if kind == "created":
            self._lines.append(self._list_line(attrs, name))
        else:
            # RFC 5465 §5.4: a rename is a LIST of the new name with its OLDNAME.
            old_wire = R.encode_mailbox(old, self.session.utf8)
            self._lines.append(self._list_line(attrs, name, b' ("OLDNAME" (' + old_wire + b"))"))

    # -- inboxes (RFC 5465 §6) ----------------------------------------------------------------
    def _may_be_inbox(self, name: str, what: str) -> bool:
        """Whether `name` would be told of under `inboxes` if the Sieve script files into it."""
        spec = self.spec
        if name in spec.inboxes or len(self._unsure) >= QUEUE_LIMIT:
            return False
        return any(f.kind == "INBOXES" and what in f.events for f in spec.filters)

    def _check_inboxes(self) -> None:
        """Read `inboxes` again (one read at a time); the mailboxes that changed meanwhile
        are told of if they are inboxes now."""
        if self._checking or self.stopped:
            return
        self._checking = True
        inbox_names(self.session).addCallbacks(self._inboxes_known, self._inboxes_unknown)

    def _inboxes_known(self, names: frozenset[str]) -> None:
        self._checking = False
        if self.stopped:
            return
        unsure, self._unsure = self._unsure, {}
        old, self.spec.inboxes = self.spec.inboxes, names
        for name in old - names:
            if not self._covers(name):
                self._unpoll(name)
        polled = {f.name for f in self._polled}
        for name in sorted(names - polled):
            if len(self._polled) >= POLL_LIMIT:
                break
            if self._covers(name) and self.mailbox.exists(name):
                try:
                    self._poll(self.mailbox.folder(name))
                except (NoSuchFolder, ValueError):
                    continue
                # What another program delivered before the folder was watched is in it
                # already, unannounced: its STATUS says so.
                unsure.setdefault(name, MESSAGE_NEW)
        for name, what in unsure.items():
            if not self._is_selected(name) and self.spec.wants(name, what, self._subscribed):
                self._status[name] = None
        if self._status:
            if len(self._status) + len(self._lines) > QUEUE_LIMIT:
                self._overflow()
            self.wake()

    def _inboxes_unknown(self, failure) -> None:
        self._checking = False
        self._unsure.clear()
        log.failure("imap: reading the Sieve script for NOTIFY inboxes failed", failure)

    def _overflow(self) -> None:
        """RFC 5465 §5.8: too far behind; say so once and act as after NOTIFY NONE."""
        self._status.clear()
        self._lines = [OVERFLOW]
        self._overflowed = True
        self.stop()

    # -- responses out ------------------------------------------------------------------------
    def drain(self) -> list[bytes]:
        """What is owed after the view's own updates: MessageNew's FETCH of arrivals, then
        the LIST and STATUS responses, the latter computed now (a STATUS shows the mailbox as
        it is when it goes out, so many changes to one mailbox make one response)."""
        f, view = self.spec.selected, self.session.view
        if f is not None and view is not None and MESSAGE_NEW in f.events:
            self._poll(view.folder)  # another program's delivery is pushed too
        out = self._fetch_arrivals()
        out.extend(self._lines)
        self._lines = []
        names, self._status = list(self._status), {}
        for name in names:
            if not self._is_selected(name):
                line = self._status_line(name)
                if line is not None:
                    out.append(line)
        if self._overflowed and self.session.notifier is self:
            self.session.notifier = None
        return out

    def wake(self) -> None:
        """Something is owed: push it on the next reactor turn (one write for a burst)."""
        if self._push_call is None:
            self._push_call = self._clock.callLater(0, self._push)

    def _push(self) -> None:
        self._push_call = None
        s = self.session
        if s.protocol.closed or s.notifier is not self:
            return
        if s.idling is not None:
            # IDLE sends every update at once, with a mailbox selected or not (RFC 2177).
            s.send_updates(expunge_ok=True)
            s.flush()
            return
        if s.busy or s.line_handler is not None:
            return  # the running command sends them before its tagged reply
        if not self._writable():
            return
        s.send_many(self.selected_lines())
        s.send_many(self.drain())
        s.flush()

    def _writable(self) -> bool:
        """False while the client has not read what it was sent; pushed again once it has."""
        d = self.session.protocol.wait_writable()
        if d.called:
            return True
        if not self._waiting_output:
            self._waiting_output = True

            def writable(_):
                self._waiting_output = False
                self.wake()

            d.addCallback(writable)
        return False

    def selected_lines(self) -> list[bytes]:
        """The selected mailbox's updates, unsolicited (RFC 5465 §5.2-5.3): EXISTS with a
        FETCH of MessageNew's attributes, EXPUNGE (not for selected-delayed: RFC 3501's rules
        stay), FETCH FLAGS when FlagChange was asked for."""
        f = self.spec.selected
        view = self.session.view
        if f is None or view is None or MESSAGE_NEW not in f.events:
            return []
        held = set()
        if FLAG_CHANGE not in f.events:
            held, view.pending_flags = view.pending_flags, set()
        out = view.drain_updates(expunge_ok=f.kind == "SELECTED")
        view.pending_flags |= held
        out.extend(self._fetch_arrivals())
        return out

    def _fetch_arrivals(self) -> list[bytes]:
        """RFC 5465 §5.2: a FETCH of MessageNew's attributes for each message the client
        has been told of (EXISTS) since the last time, whoever sent the EXISTS (this push or
        the end of a command)."""
        f = self.spec.selected
        view = self.session.view
        if f is None or f.fetch is None or view is None or MESSAGE_NEW not in f.events:
            return []
        told = self._told_uid
        self._told_uid = (view, view.messages[-1].uid if view.messages else 0)
        if told is None or told[0] is not view:
            return []  # a mailbox just selected: its messages are not arrivals
        i = bisect.bisect_right(view.messages, told[1], key=lambda m: m.uid)
        fresh = view.messages[i:]
        if not fresh:
            return []
        req = f.fetch
        if req.needs_content and sum(m.size for m in fresh) > INLINE_FETCH_BYTES:
            return []
        folder = view.folder
        renderer = FetchRenderer(req, self.session.imap_state.rendered, str(folder.path))
        loader = folder.parsed_loader() if req.needs_content else None
        out: list[bytes] = view.new_keyword_lines(fresh)
        for seq, m in enumerate(fresh, start=i + 1):
            try:
                renderer.render(seq, m, view.flags_of(m), loader, out)
            except OSError:
                pass  # expunged meanwhile: its EXPUNGE follows
        return out

    # -- formatting ---------------------------------------------------------------------------
    def _is_selected(self, name: str) -> bool:
        view = self.session.view
        return view is not None and view.folder.name == name

    def _status_line(self, name: str) -> bytes | None:
        try:
            folder = self.mailbox.folder(name)
        except (NoSuchFolder, ValueError):
            return None  # gone meanwhile (its LIST says so when MailboxName is asked for)
        # A listing it takes is made in the durable pool; what it finds is reported as
        # the folder's events, after this line.
        listed = self.session.imap_state.refresh(folder)
        if listed is not None:
            listed.addErrback(lambda f: log.failure("NOTIFY: listing {n} failed", f, n=name))
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"]
        if self.session.condstore:
            items.append("HIGHESTMODSEQ")  # RFC 5465 §5.2 with RFC 7162
        if self._covers(name):
            self._poll(folder)
        return status_line(self.session, name, folder, items)

    def _list_line(self, attrs: str, name: str, extra: bytes = b"") -> bytes:
        wire = R.encode_mailbox(name, self.session.utf8)
        return b"* LIST (" + attrs.encode() + b') "/" ' + wire + extra + b"\r\n"
