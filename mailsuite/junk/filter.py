"""The built-in junk filter as delivery and IMAP use it: a verdict per local recipient at
delivery, and lessons from the user's moves and flags.

`JunkFilter.judge` blocks (it reads the recipient's word counts from SQLite): delivery calls
it inside its durable-I/O job, before anything is stored.  The training entry points
(`after_copy`, `after_store`, `learn_messages`) run on the reactor and only hand the work to
the durable-I/O service, so an IMAP command never waits for the filter.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.config import Config
from mailsuite.junk import classifier
from mailsuite.junk.dnslists import DnsListChecker
from mailsuite.junk.greylist import GREYLIST_FILE, Greylist
from mailsuite.junk.model import (
    HAM,
    JUNK,
    MODEL_FILE,
    RECHECK_AFTER,
    FilterData,
    message_identity,
    stat_key,
)
from mailsuite.junk.rspamd import RspamdClient
from mailsuite.junk.screen import ClientScreen
from mailsuite.junk.tokens import MAX_HEADER, message_head, message_tokens
from mailsuite.junk.verdict import Signal, Verdict, decide
from mailsuite.logtext import visible
from mailsuite.message.addresses import parse_addresses
from mailsuite.message.headers import parse_fields
from mailsuite.message.lines import header_block
from mailsuite.store import Mailbox, NoSuchMailbox, Store
from mailsuite.store.maildir import SPECIAL_USE_FILE
from mailsuite.trust.inbound import skipped_client
from mailsuite.trust.resolver import DnsLookup, build_lookup

log = Logger(namespace="mailsuite.junk")

GLOBAL_LISTS_FILE = "junk-lists.sqlite"
JUNK_FOLDER = "Junk"
# Keywords clients set for their junk buttons (RFC 5788's registry has $Junk and $NotJunk;
# Thunderbird also sets Junk and NonJunk), compared case-insensitively as IMAP does.
JUNK_KEYWORDS = frozenset({"$junk", "junk"})
NOT_JUNK_KEYWORDS = frozenset({"$notjunk", "notjunk", "nonjunk"})
# Open per-account files kept (each holds a descriptor).
MODEL_CACHE = 128
# An account found without a Maildir (so without filter data to note its correspondents in)
# is looked for again after this long, in seconds, not at each message it sends: the look
# (a stat) lets a delivery thread go of the GIL and wait to get it back.  Mail sent in that
# time after the Maildir is made is not noted.
NO_MAILDIR_RECHECK = 5.0
_DMARC = re.compile(rb"(?i)\bdmarc=(\w+)")
# RFC 8601 §2.7: "spf=pass ... smtp.mailfrom=user@domain", "dkim=pass ... header.d=domain",
# the property after its result in the same clause (up to ";").  See passed_domains.
_PASS_START = re.compile(rb"(?i)\b(spf|dkim)=pass")
_PASS_PROPERTY = {
    b"spf": re.compile(rb"(?i)smtp\.mailfrom=[^@\s;]*+@([\w.-]+)"),
    b"dkim": re.compile(rb"(?i)header\.d=([\w.-]+)"),
}

# A From value that is one address in dot-atom form (RFC 5322 §3.4.1), bare or in angle
# brackets after a name of letters, digits, spaces, "_" and "-": its address, group 2.
_ATOM = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(
    rb"[ \t]*(?:[A-Za-z0-9 _-]*(<))?(" + _ATOM + rb"(?:\." + _ATOM + rb")*@"
    rb"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?(1)>)[ \t]*\r?\n?"
)


class JunkRefused(Exception):
    """Every local recipient's verdict is above the refusal mark: SMTP 550 5.7.1 at DATA."""

    def __init__(self, verdict: Verdict):
        super().__init__(f"message refused as junk (score {verdict.score:.1f})")
        self.verdict = verdict


def junk_folder_of(mbox: Mailbox) -> str:
    """The folder with special-use \\Junk (RFC 6154), else "Junk"."""
    for name, role in mbox.special_use().items():
        if role.lower() == "\\junk":
            return name
    return JUNK_FOLDER


def trash_folders_of(mbox: Mailbox) -> set[str]:
    return {n for n, r in mbox.special_use().items() if r.lower() == "\\trash"} | {"Trash"}


class JunkFilter:
    """One per server (Services.junk); the admin command makes its own."""

    def __init__(self, config: Config, store: Store):
        self.config = config
        self.junk_config = config.junk
        self.store = store
        self.global_lists = FilterData(config.data_dir / GLOBAL_LISTS_FILE)
        self._models: OrderedDict[str, FilterData] = OrderedDict()
        self._lock = threading.Lock()
        # {(folder, judgement): verdict} of messages with nothing to go by
        self._neutral: dict = {}
        # {account: (special-use file's stat, its junk folder, when to look again)}
        self._junk_folders: dict[str, tuple[tuple, str, float]] = {}
        # {account: when (time.monotonic) to look for its Maildir again}
        self._no_maildir: dict[str, float] = {}
        # Called on the reactor with (raw message, JUNK or HAM) after each lesson: rspamd.
        self.learn_listeners: list = []
        self.dns_lists = DnsListChecker(config)
        cfg = config.junk
        self.greylist = (
            Greylist(config.data_dir / GREYLIST_FILE, cfg.greylist_delay, cfg.greylist_expire)
            if cfg.greylist
            else None
        )
        self.rspamd = RspamdClient(config) if cfg.rspamd else None
        if self.rspamd is not None:
            self.learn_listeners.append(self.rspamd.learn)
        self._lookup: DnsLookup | None = None

    def lookup(self) -> DnsLookup:
        """The trust checks' DNS lookup (SPF for greylisting), built on first use."""
        if self._lookup is None:
            self._lookup = build_lookup(self.config)
        return self._lookup

    def screen(self, client_ip: str) -> ClientScreen | None:
        """The checks for an inbound SMTP connection (None when there are none to run)."""
        if not (self.dns_lists.active or self.greylist or self.rspamd):
            return None
        return ClientScreen(self, client_ip, skipped_client(self.config, client_ip))

    # -- per-account data ----------------------------------------------------------------

    def model(self, mbox: Mailbox) -> FilterData:
        """The account's filter data (blocking to use); a few stay open."""
        key = mbox.address.lower()
        with self._lock:
            data = self._models.get(key)
            if data is not None:
                self._models.move_to_end(key)
                return data
            data = FilterData(mbox.path / MODEL_FILE)
            self._models[key] = data
            while len(self._models) > MODEL_CACHE:
                _, old = self._models.popitem(last=False)
                old.close()
            return data

    def close(self) -> None:
        """Close the open files (server stop); they reopen on next use."""
        with self._lock:
            models, self._models = list(self._models.values()), OrderedDict()
        for data in models:
            data.close()
        self.global_lists.close()
        if self.greylist is not None:
            self.greylist.close()
        if self.rspamd is not None:
            self.rspamd.close()

    # -- delivery ------------------------------------------------------------------------

    def judge(self, envelope, data: bytes, mailboxes: Iterable[str], remote=()) -> dict:
        """{mailbox: Verdict} for the local recipients of one message (blocking).

        Raises JunkRefused when the message came from outside and every local recipient's
        verdict says refuse (and nobody remote shares the message)."""
        mailboxes = list(mailboxes)
        try:
            return self._judge(envelope, data, mailboxes, remote)
        except JunkRefused:
            raise
        except Exception:
            # A broken filter file must not cost mail: deliver as if there were no filter.
            log.failure("junk: filter failed; delivering without a verdict")
            return {m: Verdict(envelope.folder) for m in mailboxes}

    def _judge(self, envelope, data: bytes, mailboxes: list[str], remote) -> dict:
        folder = envelope.folder
        if envelope.authenticated_user:
            # The user's own mail: who they write to is never junk for them.
            self._note_correspondents(envelope.authenticated_user, envelope.recipients)
            return {m: Verdict(folder) for m in mailboxes}
        if not self.junk_config.enabled or not mailboxes:
            return {m: Verdict(folder) for m in mailboxes}
        signals = list(getattr(envelope, "junk_signals", ()) or ())
        # Made once, and only when asked: the header parsed (for our Authentication-Results,
        # the authors, the words), the senders by an account (or the server) with lists or
        # correspondents, the words by an account trained enough to use them, whether the
        # client may be refused by a score that high.  An untrained account with no lists
        # costs no parse of the message.
        head = _Once(lambda: message_head(data))
        if _may_have_results(data):
            signals.extend(self._message_signals(head()[1].fields))
        senders = _Once(lambda: _senders(envelope.mail_from, head()[1].fields))
        tokens = _Once(lambda: message_tokens(data, head()))
        may_refuse = _Once(
            lambda: bool(envelope.client_ip) and not skipped_client(self.config, envelope.client_ip)
        )
        words_needed = not any(s.replaces_words for s in signals)
        global_match = self.global_lists.list_match(senders)
        verdicts = {}
        for mailbox in mailboxes:
            verdicts[mailbox] = self._judge_one(
                mailbox, folder, tokens, words_needed, signals, senders, global_match, may_refuse
            )
        if not remote and all(v.refuse for v in verdicts.values()):
            raise JunkRefused(max(verdicts.values(), key=lambda v: v.score))
        return verdicts

    def _judge_one(
        self, mailbox, folder, tokens, words_needed, signals, senders, global_match, may_refuse
    ) -> Verdict:
        cfg = self.junk_config
        try:
            mbox = self.store.mailbox(mailbox)
        except NoSuchMailbox:
            return Verdict(folder)  # created by delivery in a moment: nothing learned yet
        model = self.model(mbox)
        judgement = None
        n_junk, n_ham, listed, correspondent = model.evidence(senders)
        if words_needed:
            if min(n_junk, n_ham) >= cfg.min_trained:
                judgement = model.judge(tokens())
            else:
                judgement = classifier.UNTRAINED
        listed = listed or global_match
        neutral = (
            not signals
            and listed is None
            and correspondent is None
            and judgement in (None, classifier.UNTRAINED)
        )
        if neutral:
            # the same verdict for every message (an untrained filter, nothing else to go
            # by): made once
            verdict = self._neutral.get((folder, judgement))
            if verdict is not None:
                return verdict
        verdict = decide(
            junk_folder=lambda: self._junk_folder(mbox),
            default_folder=folder,
            judgement=judgement,
            signals=signals,
            listed=listed,
            correspondent=correspondent,
            junk_score=cfg.junk_score,
            reject_score=cfg.reject_score,
            bayes_weight=cfg.bayes_weight,
            may_refuse=may_refuse,
        )
        if neutral and not verdict.junk:
            self._neutral[folder, judgement] = verdict
        return verdict

    def _junk_folder(self, mbox: Mailbox) -> str:
        """junk_folder_of(mbox), read again only when the special-use file changed (a stat
        at most every RECHECK_AFTER seconds instead of reading it for every message filed as
        junk)."""
        key = mbox.address.lower()
        now = time.monotonic()
        known = self._junk_folders.get(key)
        if known is not None and now < known[2]:
            return known[1]
        state = stat_key(mbox.path / SPECIAL_USE_FILE)
        name = known[1] if known is not None and known[0] == state else junk_folder_of(mbox)
        if len(self._junk_folders) >= MODEL_CACHE:
            self._junk_folders.clear()
        self._junk_folders[key] = (state, name, now + RECHECK_AFTER)
        return name

    def _message_signals(self, fields: list[tuple[bytes, bytes]]) -> list[Signal]:
        """DMARC's verdict from our own Authentication-Results field (trust added it on
        top); the domains that passed SPF or DKIM there are remembered for greylisting."""
        value = self._our_results(fields)
        if value is None:
            return []
        if self.greylist is not None:
            self.greylist.note_domains(d.decode("ascii", "replace") for d in passed_domains(value))
        m = _DMARC.search(value)
        if m and m.group(1).lower() == b"fail":
            return [Signal("DMARC fail", 3.0)]
        return []

    def _our_results(self, fields: list[tuple[bytes, bytes]]) -> bytes | None:
        for name, raw in fields:
            if name != b"authentication-results":
                continue
            value = raw.partition(b":")[2].strip()
            if value.split(b";", 1)[0].strip().decode("ascii", "replace") == self.config.hostname:
                return value
        return None

    def _note_correspondents(self, user: str, recipients) -> None:
        mine = user.lower()
        now = time.monotonic()
        if self._no_maildir.get(mine, 0.0) > now:
            return
        try:
            mbox = self.store.mailbox(user)
        except NoSuchMailbox:
            if len(self._no_maildir) > MODEL_CACHE * 64:
                self._no_maildir.clear()
            self._no_maildir[mine] = now + NO_MAILDIR_RECHECK
            return
        self._no_maildir.pop(mine, None)
        self.model(mbox).add_correspondents(
            r.address for r in recipients if r.address.lower() != mine
        )

    def after_append(self, mbox: Mailbox, folder, uids) -> None:
        """IMAP APPEND done: the recipients of messages put in Sent become correspondents."""
        sent = {n for n, r in mbox.special_use().items() if r.lower() == "\\sent"} | {"Sent"}
        if folder.name not in sent or not uids:
            return
        msgs = [m for m in (folder.by_uid(u) for u in uids) if m is not None]
        d = self.store.io.submit(self._note_sent, mbox, folder, msgs)
        d.addErrback(log.failure, "junk: correspondents not recorded", user=visible(mbox.address))

    def _note_sent(self, mbox: Mailbox, folder, msgs) -> None:
        """Blocking: the To/Cc/Bcc addresses of the messages are correspondents."""
        addresses = []
        for msg in msgs:
            data = folder.read_present(msg)
            for name, raw in parse_fields(header_block((data or b"")[:65536])):
                if name in (b"to", b"cc", b"bcc"):
                    addresses.extend(_addresses(raw))
        mine = mbox.address.lower()
        self.model(mbox).add_correspondents(a for a in addresses if a.lower() != mine)

    # -- training (reactor side) ----------------------------------------------------------

    def after_copy(self, mbox: Mailbox, source, dest, pairs) -> None:
        """IMAP COPY/MOVE done: into Junk teaches junk, out of Junk (not to Trash) not junk,
        into Sent records correspondents."""
        junk = junk_folder_of(mbox)
        if dest.name == junk and source.name != junk:
            kind = JUNK
        elif source.name == junk and dest.name != junk and dest.name not in trash_folders_of(mbox):
            kind = HAM
        else:
            return
        msgs = [m for m in (dest.by_uid(d) for _, d in pairs) if m is not None]
        self.learn_messages(mbox, dest, msgs, kind)

    def after_store(self, mbox: Mailbox, folder, msgs, flags, mode: str) -> None:
        """IMAP STORE done: $Junk (or Junk) set teaches junk, $NotJunk (or NonJunk) not
        junk."""
        if mode == "remove" or not msgs:
            return
        names = {f.lower() for f in flags}
        if names & JUNK_KEYWORDS:
            self.learn_messages(mbox, folder, msgs, JUNK)
        elif names & NOT_JUNK_KEYWORDS:
            self.learn_messages(mbox, folder, msgs, HAM)

    def learn_messages(self, mbox: Mailbox, folder, msgs, kind: str) -> defer.Deferred:
        """Queue lessons for the durable-I/O service; Deferred[int] (messages learned), which
        never errbacks: a lesson lost to an error is logged, the user's command unaffected."""
        if not self.junk_config.enabled and not self.learn_listeners:
            return defer.succeed(0)
        d = self.store.io.submit(self.learn_blocking, mbox, folder, list(msgs), kind)

        def done(learned):
            for raw in learned:
                for listener in self.learn_listeners:
                    listener(raw, kind)
            if learned:
                log.info(
                    "junk: {user} taught {n} message(s) as {kind}",
                    user=visible(mbox.address),
                    n=len(learned),
                    kind=kind,
                )
            return len(learned)

        def failed(failure):
            log.failure("junk: learning failed for {user}", failure, user=visible(mbox.address))
            return 0

        return d.addCallbacks(done, failed)

    def learn_blocking(self, mbox: Mailbox, folder, msgs, kind: str) -> list[bytes]:
        """Read and learn each message (blocking); the raw messages newly learned."""
        model = self.model(mbox)
        learned = []
        for msg in msgs:
            raw = folder.read_present(msg)
            if raw is None:
                continue
            if model.learn(message_identity(raw), message_tokens(raw), kind):
                learned.append(raw if self.learn_listeners else b"")
        return learned


def _may_have_results(data: bytes) -> bool:
    """Whether the header may hold an Authentication-Results field (False only when it
    certainly does not: trust adds one for mail from outside, none for loopback or
    submission)."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEADER)
    return end < 0 or b"authentication-results" in data[:end].lower()


class _Once:
    """A value made by the first call and given back by the others (functools.cache's
    wrapper costs more to make than the value it saves, for a few calls per message)."""

    __slots__ = ("_make", "_value")

    def __init__(self, make):
        self._make = make
        self._value = _UNMADE

    def __call__(self):
        if self._value is _UNMADE:
            self._value = self._make()
        return self._value


_UNMADE = object()


def _senders(mail_from: str, fields: list[tuple[bytes, bytes]]) -> list[str]:
    """The envelope sender and the From: addresses, lower case, each once."""
    senders = [mail_from, *author_addresses(fields)]
    return [s for s in dict.fromkeys(a.lower() for a in senders) if s]


def passed_domains(value: bytes) -> list[bytes]:
    """The domains an Authentication-Results value says passed SPF (its smtp.mailfrom's) or
    DKIM (its header.d), left to right.

    The value holds text from the message (a signature's d= is copied into it), so it is read
    in one pass: once a "dkim=pass" finds no header.d after it in its clause, no later one
    in that clause can, and it is not looked for again (a lazy `dkim=pass[^;]*?header.d=`
    read the rest of the clause from each of thousands of them)."""
    found: list[bytes] = []
    taken = 0  # the end of the last property read: results inside it are its text
    clause_end = -1  # the ";" (or the end) after the current result
    barren: dict[bytes, int] = {}  # kind -> end of the clause where it found no property
    for m in _PASS_START.finditer(value):
        if m.start() < taken:
            continue
        if m.start() > clause_end:
            clause_end = value.find(b";", m.start())
            clause_end = len(value) if clause_end < 0 else clause_end
        kind = m.group(1).lower()
        if m.start() < barren.get(kind, -1):
            continue
        prop = _PASS_PROPERTY[kind].search(value, m.end(), clause_end)
        if prop is None:
            barren[kind] = clause_end
            continue
        found.append(prop.group(1))
        taken = prop.end()
    return found


def author_addresses(fields: list[tuple[bytes, bytes]]) -> list[str]:
    """The From: addresses of a message, from its parsed header fields."""
    out: list[str] = []
    for name, raw in fields:
        if name == b"from":
            out.extend(_addresses(raw))
    return out


def _addresses(raw_field: bytes) -> list[str]:
    value = raw_field.partition(b":")[2]
    plain = _PLAIN_ADDRESS.fullmatch(value)
    if plain is not None:
        # one address in dot-atom form, with a plain name or none (most mail): what the
        # address parser would find, without its token list and structures
        return [plain[2].decode("ascii")]
    parsed = parse_addresses(value) or []
    out = []
    for item in parsed:
        for addr in _flatten(item):
            out.append(addr)
    return out


def _flatten(item) -> list[str]:
    """Addresses from parse_addresses' items (mailboxes and groups)."""
    if isinstance(item, (list, tuple)):
        if len(item) == 4 and all(isinstance(x, (bytes, str, type(None))) for x in item):
            _name, _adl, local, domain = item
            if local and domain:
                loc = local.decode("utf-8", "replace") if isinstance(local, bytes) else local
                dom = domain.decode("utf-8", "replace") if isinstance(domain, bytes) else domain
                return [f"{loc}@{dom}"]
            return []
        out = []
        for x in item:
            out.extend(_flatten(x))
        return out
    return []
