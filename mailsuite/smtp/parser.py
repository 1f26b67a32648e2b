"""Pure SMTP wire parser and formatter: bytes in, typed values or a typed reply out, no I/O.

Everything a client can send is turned here into a `Command`, a `MailFrom`/`RcptTo`, or a
message body; anything malformed raises `SmtpReply`, which the protocol class writes as-is.
Keeping this free of sockets lets hypothesis throw arbitrary bytes at it (tests/smtp).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mailsuite.limits import RUNAWAY_LINE

# RFC 4954 §4: the AUTH command line, and each SASL response line, may be up to 12288 octets.
AUTH_LINE_LIMIT = 12288


class SmtpReply(Exception):
    """A protocol reply to send instead of carrying on: `SmtpReply(550, "5.1.1", "no such user")`.

    `close` asks the protocol to drop the connection after writing it (421 replies).
    """

    def __init__(
        self, code: int, enhanced: str | None, text: str | list[str], close: bool = False
    ) -> None:
        self.code = code
        self.enhanced = enhanced
        self.lines = [text] if isinstance(text, str) else list(text)
        self.close = close
        super().__init__(f"{code} {enhanced or ''} {' / '.join(self.lines)}".strip())

    def to_bytes(self) -> bytes:
        return format_reply(self.code, self.enhanced, self.lines)


def format_reply(code: int, enhanced: str | None, lines: str | list[str]) -> bytes:
    """One reply, multi-line with `code-` continuation (RFC 5321 §4.2.1).

    RFC 2034 §4: the enhanced code starts every line's text when given.
    """
    if isinstance(lines, str):
        # The common case, one line: no list, one encode.
        if "\r" in lines or "\n" in lines:
            lines = lines.replace("\r", " ").replace("\n", " ")
        if enhanced:
            lines = f"{enhanced} {lines}" if lines else enhanced
        return f"{code} {lines}\r\n".encode("utf-8", "replace")
    if not lines:
        lines = [""]
    out = []
    last = len(lines) - 1
    for i, text in enumerate(lines):
        # A reply line must never contain a line break of its own (reply injection).
        text = text.replace("\r", " ").replace("\n", " ")
        sep = " " if i == last else "-"
        if enhanced:
            text = f"{enhanced} {text}" if text else enhanced
        out.append(f"{code}{sep}{text}\r\n")
    return "".join(out).encode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Command lines


class LineTooLong:
    """Marker returned by `LineBuffer.next_line` for a line over the limit (already discarded)."""

    __slots__ = ()


LINE_TOO_LONG = LineTooLong()
# Returned instead when the line being skipped has gone on past limits.RUNAWAY_LINE octets.
LINE_RUNAWAY = LineTooLong()


class LineBuffer:
    """Splits the command stream into lines without ever holding more than `limit` bytes of one.

    A line ends at LF; a preceding CR is dropped.  Bare-LF command lines are accepted (as
    Postfix does by default): only DATA content is subject to the bare-newline policy, because
    that is where SMTP smuggling happens.  A line longer than the limit is discarded up to its
    end and reported once as `LINE_TOO_LONG` (RFC 5321 §4.5.3.1.4: 512 octets with CRLF);
    one that runs on past `RUNAWAY_LINE` octets without an end, as `LINE_RUNAWAY`.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # A bytearray, emptied from the front by `del`: taking each line off a bytes buffer
        # copied the rest of it, so a buffer of n pipelined lines cost n times its size.
        self._buf = bytearray()
        self._discarding = False
        self._discarded = 0  # octets of the line being skipped so far

    def feed(self, data: bytes) -> None:
        self._buf += data

    def take_rest(self) -> bytes:
        """Everything buffered that is not yet a line (for DATA/BDAT and STARTTLS discard)."""
        rest = bytes(self._buf)
        self._buf.clear()
        self._discarding = False
        return rest

    def pending(self) -> int:
        return len(self._buf)

    def next_line(self, limit: int | None = None) -> bytes | LineTooLong | None:
        """The next complete line without its line end, LINE_TOO_LONG, LINE_RUNAWAY, or None
        (need more)."""
        limit = self.limit if limit is None else limit
        while True:
            nl = self._buf.find(b"\n")
            if self._discarding:
                if nl < 0:
                    self._discarded += len(self._buf)
                    self._buf.clear()
                    return LINE_RUNAWAY if self._discarded > RUNAWAY_LINE else None
                del self._buf[: nl + 1]
                self._discarding = False
                return LINE_TOO_LONG
            if nl < 0:
                if len(self._buf) > limit:
                    self._discarded = 0
                    self._discarding = True
                    continue
                return None
            if nl + 1 > limit:
                del self._buf[: nl + 1]
                return LINE_TOO_LONG
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            return line


@dataclass(frozen=True)
class Command:
    verb: str  # upper case
    arg: str  # text after the verb and one space, as sent


_VERB = re.compile(r"[A-Za-z]{1,16}\Z")


def parse_command(line: bytes) -> Command:
    """Split a command line into verb and argument.

    The line is UTF-8 (RFC 6531 allows it in addresses); anything else is a syntax error.
    """
    return Command(*split_command(line))


def split_command(line: bytes) -> tuple[str, str]:
    """parse_command's (verb, argument) as a plain pair, for the session's every command."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise SmtpReply(500, "5.5.2", "Error: invalid characters in command") from None
    if "\0" in text or "\r" in text or "\n" in text:
        raise SmtpReply(500, "5.5.2", "Error: invalid characters in command")
    verb, _, arg = text.partition(" ")
    if not _VERB.match(verb):
        raise SmtpReply(500, "5.5.2", "Error: command not recognized")
    # "MAIL FROM:" is two words; keep the rest intact and let the verb handler parse it.
    return verb.upper(), arg


# ---------------------------------------------------------------------------------------------
# Paths and mailboxes (RFC 5321 §4.1.2, extended by RFC 6531 §3.3 for UTF-8)


@dataclass(frozen=True)
class Mailbox:
    """A parsed mailbox. `local` is unquoted when quoting was unnecessary (RFC 5321 §4.1.2)."""

    local: str
    domain: str  # lower case; "[...]" for address literals; "" only for bare <Postmaster>
    quoted: bool = False  # the local part needs quotes (contains specials or spaces)
    source_route: tuple[str, ...] = ()  # RFC 5321 §4.1.1.3: accepted, then ignored

    @property
    def address(self) -> str:
        local = quote_local(self.local) if self.quoted else self.local
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def is_ip_literal(self) -> bool:
        return self.domain.startswith("[")

    @property
    def has_routing(self) -> bool:
        """Sender-specified routing hidden in the local part: `u%remote`, `remote!u`, `"u@r"`.

        Such addresses are the classic open-relay tricks; like Postfix with
        allow_untrusted_routing=no we refuse them from unauthenticated clients.
        """
        return any(c in self.local for c in "%!@")


_ATEXT = "!#$%&'*+-/=?^_`{|}~"


def _is_atext(c: str, utf8: bool) -> bool:
    return c.isascii() and (c.isalnum() or c in _ATEXT) or (utf8 and ord(c) >= 0x80)


# An ASCII Dot-string (RFC 5321 §4.1.2), matched at once instead of a character at a time.
_ASCII_DOT_STRING = re.compile(
    r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*\Z"
)


def _is_dot_string(s: str, utf8: bool) -> bool:
    if not s:
        return False
    if s.isascii():
        return _ASCII_DOT_STRING.match(s) is not None
    for atom in s.split("."):
        if not atom or not all(_is_atext(c, utf8) for c in atom):
            return False
    return True


def quote_local(local: str) -> str:
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _parse_quoted(text: str, utf8: bool) -> tuple[str, int]:
    """A Quoted-string at the start of text; returns (content, index after closing quote)."""
    out = []
    i = 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            # quoted-pairSMTP = %d92 %d32-126
            if not (32 <= ord(nxt) <= 126 or (utf8 and ord(nxt) >= 0x80)):
                break
            out.append(nxt)
            i += 2
            continue
        # qtextSMTP = %d32-33 / %d35-91 / %d93-126 (plus UTF-8 with SMTPUTF8)
        if not (32 <= ord(c) <= 126 or (utf8 and ord(c) >= 0x80)):
            break
        out.append(c)
        i += 1
    raise ValueError("bad quoted string")


_LDH = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


def parse_domain(text: str, utf8: bool = False) -> str:
    """A Domain (RFC 5321 §4.1.2) in lower case; U-labels are kept as UTF-8 (RFC 6531).

    No trailing dot: `user@local.` is a classic relay trick and is not valid syntax.
    """
    if not text or len(text.encode("utf-8")) > 255:
        raise ValueError("bad domain")
    for label in text.split("."):
        if _LDH.match(label):
            continue
        if utf8 and not label.isascii() and label and len(label.encode()) <= 252:
            if all(c.isalnum() or c == "-" or ord(c) >= 0x80 for c in label):
                if not label.startswith("-") and not label.endswith("-"):
                    continue
        raise ValueError("bad domain")
    return text.lower()


def domain_forms(domain: str) -> list[str]:
    """The domain as given, then its other IDNA form (U-label <-> A-label), if it has one.

    RFC 6531 lets a client name a domain with U-labels; the accounts may list it either way.
    """
    forms = [domain]
    try:
        if not domain.isascii():
            forms.append(domain.encode("idna").decode("ascii").lower())
        elif "xn--" in domain:
            forms.append(domain.encode("ascii").decode("idna").lower())
    except (UnicodeError, ValueError):
        pass
    return forms


def parse_address_literal(text: str) -> str:
    """`[1.2.3.4]`, `[IPv6:...]` or a General-address-literal; returned normalised."""
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError("bad literal")
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        addr = ipaddress.IPv6Address(inner[5:])
        return f"[IPv6:{addr.compressed}]"
    if ":" in inner:
        tag, _, content = inner.partition(":")
        # General-address-literal: Standardized-tag ":" 1*dcontent (%d33-90 / %d94-126)
        if not _LDH.match(tag) or not content:
            raise ValueError("bad literal")
        if not all(33 <= ord(c) <= 126 and c not in "[\\]" for c in content):
            raise ValueError("bad literal")
        return f"[{tag}:{content}]"
    if not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", inner):
        raise ValueError("bad literal")
    return f"[{ipaddress.IPv4Address(inner)}]"


def parse_mailbox(text: str, utf8: bool = False) -> Mailbox:
    """`Local-part "@" (Domain / address-literal)`; raises ValueError."""
    if text.startswith('"'):
        local, end = _parse_quoted(text, utf8)
        rest = text[end:]
        if not rest.startswith("@"):
            raise ValueError("no domain")
        domain_text = rest[1:]
        # RFC 5321 §4.1.2: quoting that is not needed does not change the address.
        quoted = not _is_dot_string(local, utf8)
    else:
        local, at, domain_text = text.rpartition("@")
        if not at or not _is_dot_string(local, utf8):
            raise ValueError("bad local part")
        quoted = False
    if domain_text.startswith("["):
        domain = parse_address_literal(domain_text)
    else:
        domain = parse_domain(domain_text, utf8)
    if not local and not quoted:
        raise ValueError("empty local part")
    return Mailbox(local, domain, quoted)


def parse_path(text: str, utf8: bool = False, allow_null: bool = False) -> Mailbox | None:
    """A Reverse-path or Forward-path; None for `<>`.  Raises ValueError.

    Accepted leniently as Postfix does: a missing pair of angle brackets, and the bare
    `<Postmaster>` of RFC 5321 §4.1.1.3.
    """
    if text.startswith("<"):
        if not text.endswith(">"):
            raise ValueError("unbalanced brackets")
        inner = text[1:-1]
    elif ">" in text or not text:
        raise ValueError("bad path")
    else:
        inner = text
    if inner == "":
        if allow_null:
            return None
        raise ValueError("null path")
    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        # A-d-l ":" Mailbox; RFC 5321 §4.1.1.3 says accept and ignore the route.
        adl, colon, inner = inner.partition(":")
        if not colon:
            raise ValueError("bad source route")
        hops = []
        for hop in adl.split(","):
            if not hop.startswith("@"):
                raise ValueError("bad source route")
            h = hop[1:]
            hops.append(parse_address_literal(h) if h.startswith("[") else parse_domain(h, utf8))
        route = tuple(hops)
    if inner.lower() == "postmaster" and not route:
        return Mailbox(inner, "")
    mbox = parse_mailbox(inner, utf8)
    if route:
        mbox = Mailbox(mbox.local, mbox.domain, mbox.quoted, route)
    return mbox


def _split_path_and_params(arg: str, prefix: str) -> tuple[str, list[str]]:
    """`FROM:<path> params`: the keyword, an optional space (Outlook 365), the path, params."""
    if arg[: len(prefix)].upper() != prefix:
        raise SmtpReply(
            501, "5.5.4", f"Syntax: {'MAIL FROM' if prefix == 'FROM:' else 'RCPT TO'}:<address>"
        )
    rest = arg[len(prefix) :].lstrip(" ")
    if rest.startswith("<"):
        # The path ends at the first '>' outside a quoted string.
        i = _path_end(rest) if '"' in rest else rest.find(">")
        if i < 0:
            i = len(rest)
        path, params = rest[: i + 1], rest[i + 1 :]
        if params and not params.startswith(" "):
            raise SmtpReply(501, "5.5.4", "Syntax error in parameters")
    else:
        path, _, params = rest.partition(" ")
    return path, [p for p in params.split(" ") if p]


def _path_end(rest: str) -> int:
    """Index of the '>' closing a path that contains a quoted local part, or -1."""
    i, in_quote = 1, False
    while i < len(rest):
        c = rest[i]
        if in_quote and c == "\\":
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == ">" and not in_quote:
            return i
        i += 1
    return -1


_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")


def parse_params(words: list[str]) -> dict[str, str | None]:
    """esmtp-param *(SP esmtp-param), keywords upper-cased (RFC 5321 §4.1.2)."""
    params: dict[str, str | None] = {}
    for word in words:
        key, eq, value = word.partition("=")
        if not _KEYWORD.match(key) or (eq and not value):
            raise SmtpReply(501, "5.5.4", "Syntax error in parameters")
        # esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 under RFC 6531
        if any(ord(c) < 33 or c == "=" or ord(c) == 127 for c in value):
            raise SmtpReply(501, "5.5.4", "Syntax error in parameters")
        key = key.upper()
        if key in params:
            raise SmtpReply(501, "5.5.4", f"Duplicate parameter {key}")
        params[key] = value if eq else None
    return params


_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")


def is_xtext(value: str) -> bool:
    """RFC 3461 §4: xtext = *( xchar / hexchar ), hexchar = "+" 2 upper-case hex digits."""
    return bool(_XTEXT.match(value))


def decode_xtext(value: str) -> str:
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


@dataclass(frozen=True)
class MailFrom:
    sender: Mailbox | None  # None: the null reverse-path of bounces
    size: int | None = None  # RFC 1870 SIZE=
    body: str | None = None  # RFC 6152 BODY=7BIT / 8BITMIME
    smtputf8: bool = False  # RFC 6531
    ret: str | None = None  # RFC 3461 §4.3 FULL / HDRS
    envid: str | None = None  # RFC 3461 §4.4, xtext as sent
    auth: str | None = None  # RFC 4954 §5, xtext as sent (kept for the log only)


@dataclass(frozen=True)
class RcptTo:
    recipient: Mailbox
    notify: tuple[str, ...] | None = None  # RFC 3461 §4.1
    orcpt: str | None = None  # RFC 3461 §4.2, "addr-type;xtext" as sent


def _address_error(code: str, utf8: bool, text: str) -> SmtpReply:
    if not utf8 and not text.isascii():
        # RFC 6531 §3.5 / RFC 6533: non-ASCII address without SMTPUTF8.
        return SmtpReply(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
    what = "sender" if code == "5.1.7" else "recipient"
    return SmtpReply(501, code, f"Bad {what} address syntax")


_MAIL_PARAMETERS = frozenset(("SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH"))


def parse_mail_from(arg: str) -> MailFrom:
    path_text, words = _split_path_and_params(arg, "FROM:")
    params = parse_params(words)
    for key in params:
        if key not in _MAIL_PARAMETERS:
            raise SmtpReply(555, "5.5.4", f"Unsupported parameter {key}")
    utf8 = "SMTPUTF8" in params
    if utf8 and params["SMTPUTF8"] is not None:
        raise SmtpReply(501, "5.5.4", "SMTPUTF8 takes no value")
    try:
        sender = parse_path(path_text, utf8=utf8, allow_null=True)
    except ValueError:
        raise _address_error("5.1.7", utf8, path_text) from None
    size = None
    if "SIZE" in params:
        v = params["SIZE"]
        if v is None or not v.isascii() or not v.isdigit() or len(v) > 20:
            raise SmtpReply(501, "5.5.4", "Bad SIZE parameter")
        size = int(v)
    body = params.get("BODY")
    if "BODY" in params:
        body = (body or "").upper()
        if body not in ("7BIT", "8BITMIME"):
            raise SmtpReply(555, "5.5.4", "Unsupported BODY type")
    ret = params.get("RET")
    if "RET" in params:
        ret = (ret or "").upper()
        if ret not in ("FULL", "HDRS"):
            raise SmtpReply(501, "5.5.4", "Bad RET parameter")
    envid = params.get("ENVID")
    if "ENVID" in params and (envid is None or not is_xtext(envid) or len(envid) > 100):
        # RFC 3461 §4.4: at most 100 characters.
        raise SmtpReply(501, "5.5.4", "Bad ENVID parameter")
    auth = params.get("AUTH")
    if "AUTH" in params and (auth is None or (auth != "<>" and not is_xtext(auth))):
        raise SmtpReply(501, "5.5.4", "Bad AUTH parameter")
    return MailFrom(sender, size, body, utf8, ret, envid, auth)


def parse_rcpt_to(arg: str, utf8: bool = False) -> RcptTo:
    path_text, words = _split_path_and_params(arg, "TO:")
    params = parse_params(words)
    for key in params:
        if key not in ("NOTIFY", "ORCPT"):
            raise SmtpReply(555, "5.5.4", f"Unsupported parameter {key}")
    try:
        rcpt = parse_path(path_text, utf8=utf8)
    except ValueError:
        raise _address_error("5.1.3", utf8, path_text) from None
    assert rcpt is not None
    notify = None
    if "NOTIFY" in params:
        items = tuple((params["NOTIFY"] or "").upper().split(","))
        ok = items == ("NEVER",) or (
            items and all(i in ("SUCCESS", "FAILURE", "DELAY") for i in items)
        )
        if not ok or len(set(items)) != len(items):
            raise SmtpReply(501, "5.5.4", "Bad NOTIFY parameter")
        notify = items
    orcpt = params.get("ORCPT")
    if "ORCPT" in params:
        addr_type, semi, xtext = (orcpt or "").partition(";")
        # RFC 3461 §4.2: addr-type ";" xtext, at most 500 characters.
        if not semi or not _KEYWORD.match(addr_type) or len(orcpt or "") > 500:
            raise SmtpReply(501, "5.5.4", "Bad ORCPT parameter")
        if addr_type.lower() == "rfc822" and not is_xtext(xtext):
            raise SmtpReply(501, "5.5.4", "Bad ORCPT parameter")
    return RcptTo(rcpt, notify, orcpt)


def parse_bdat(arg: str) -> tuple[int, bool]:
    """RFC 3030 §2: `BDAT chunk-size [SP end-marker]`."""
    words = arg.split(" ")
    if not 1 <= len(words) <= 2 or not words[0].isascii() or not words[0].isdigit():
        raise SmtpReply(501, "5.5.4", "Syntax: BDAT size [LAST]")
    if len(words[0]) > 20:
        raise SmtpReply(501, "5.5.4", "Syntax: BDAT size [LAST]")
    last = False
    if len(words) == 2:
        if words[1].upper() != "LAST":
            raise SmtpReply(501, "5.5.4", "Syntax: BDAT size [LAST]")
        last = True
    return int(words[0]), last


def parse_auth(arg: str) -> tuple[str, bytes | None]:
    """`AUTH mechanism [initial-response]` (RFC 4954 §4).

    Windows Mail sends two spaces before the initial response, so runs of spaces count as one.
    """
    words = arg.split()
    if not 1 <= len(words) <= 2 or not _KEYWORD.match(words[0]):
        raise SmtpReply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
    initial = words[1].encode("ascii", "replace") if len(words) == 2 else None
    return words[0].upper(), initial


def parse_helo(arg: str) -> str:
    """The EHLO/HELO argument: a domain or address literal, checked loosely like Postfix."""
    name = arg.strip(" ")
    if not name or " " in name:
        raise SmtpReply(501, "5.5.4", "Syntax: EHLO hostname")
    return name


# ---------------------------------------------------------------------------------------------
# Message content


@dataclass
class BodyReader:
    """Accumulates a message from DATA (dot-stuffed) or BDAT chunks (`dot_stuffed=False`).

    RFC 5321 §4.1.1.4: the only end of DATA is `<CRLF>.<CRLF>` (the first line counts as
    following a CRLF).  A bare LF or CR never ends the message, whatever follows it: that is
    SMTP smuggling.  Bare newlines are recorded and, with policy "reject", make the message
    fail with 554 5.5.2 once the real end arrives; with "normalize" they become CRLF.  Lines
    over `max_line` octets (RFC 5321 §4.5.3.1.6: 1000 with CRLF) and messages over `max_size`
    are consumed to the end without being kept, then refused.  Output uses CRLF line ends.
    """

    max_size: int
    max_line: int
    bare_newline: str = "reject"
    dot_stuffed: bool = True
    fast: bool = True  # bulk path for clean chunks (tests compare it with the line loop)
    size: int = 0  # octets of the (unstuffed) message so far
    bare_newline_seen: bool = False
    line_too_long: bool = False
    too_big: bool = False
    done: bool = False
    # Why the content is no longer kept (the server's memory for messages is full): the rest
    # is still read to its end, then this is the reply.
    refusal: SmtpReply | None = None
    _parts: list[bytes] = field(default_factory=list)
    _kept: int = 0  # octets in _parts
    _pending: bytes = b""
    _pending_dropped: int = 0  # octets of the current line not kept in _pending
    _line_after_crlf: bool = True

    def feed(self, data: bytes) -> bytes | None:
        """Consume content; returns None until the DATA terminator, then the bytes after it."""
        buf = self._pending + data if self._pending else data
        if self.fast and self._line_after_crlf and not self._pending_dropped:
            fast = self._feed_clean_lines(buf)
            if fast is not None:
                return fast if self.done else None
            # Not clean: fall through and look at every line.
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            line = buf[start : nl + 1]
            start = nl + 1
            if self._line(line):
                self._pending = b""
                self.done = True
                return buf[start:]
        self._hold(buf[start:])
        return None

    def _feed_clean_lines(self, buf: bytes) -> bytes | None:
        """Bulk path for the common case, equivalent to the per-line loop: when every complete
        line up to the end of data (or of the buffer) ends in CRLF, has no other CR or LF, no
        leading dot and fits the line limit, keep them all in one piece.  Returns the bytes
        left over (after the end of data when `done`), or None when the slow path is needed.
        """
        term = -1
        if self.dot_stuffed:
            if buf.startswith(b".\r\n"):
                term = 0
            else:
                t = buf.find(b"\r\n.\r\n")
                term = t + 2 if t >= 0 else -1
        end = term if term >= 0 else buf.rfind(b"\n") + 1
        region = buf[:end]
        if region:
            n = region.count(b"\n")
            if region.count(b"\r\n") != n or region.count(b"\r") != n:
                return None
            if self.dot_stuffed and (region[:1] == b"." or b"\n." in region):
                return None
            if len(region) > self.max_line and (
                max(map(len, region.split(b"\n"))) + 1 > self.max_line
            ):
                return None
            self._keep(region)
        if term >= 0:
            self._pending = b""
            self.done = True
            return buf[term + 3 :]
        return self._hold(buf[end:])

    def _hold(self, rest: bytes) -> bytes:
        """Keep an unfinished line, bounded by the line limit."""
        if self.size + len(rest) + self._pending_dropped > self.max_size:
            # An unfinished line already takes the message over the limit (BDAT chunks).
            self.too_big = True
            self._drop()
        if len(rest) + self._pending_dropped > self.max_line:
            # Keep only the last octet: enough to see a CR before the next LF.
            self._pending_dropped += len(rest) - 1
            rest = rest[-1:]
        self._pending = rest
        return b""

    def finish(self) -> None:
        """BDAT LAST: the final line may lack a line end (RFC 3030 keeps the octets exact)."""
        if self._pending:
            tail = self._pending
            self._pending = b""
            self._check_cr(tail, len(tail))
            if self._pending_dropped + len(tail) > self.max_line:
                self.line_too_long = True
            self._keep(self._normalize(tail))
        self.done = True

    def _line(self, line: bytes) -> bool:
        dropped, self._pending_dropped = self._pending_dropped, 0
        after_crlf = self._line_after_crlf
        crlf = line.endswith(b"\r\n")
        self._line_after_crlf = crlf
        if self.dot_stuffed and after_crlf and not dropped and line == b".\r\n":
            return True
        if dropped + len(line) > self.max_line:
            self.line_too_long = True
        if not crlf:
            self.bare_newline_seen = True
        content = line[:-2] if crlf else line[:-1]
        self._check_cr(content, len(content))
        if self.dot_stuffed and after_crlf and not dropped and content.startswith(b"."):
            # RFC 5321 §4.5.2: remove the first of a line's leading dots.
            content = content[1:]
        self._keep(self._normalize(content) + b"\r\n")
        return False

    def _check_cr(self, content: bytes, n: int) -> None:
        if b"\r" in content[:n]:
            self.bare_newline_seen = True

    def _normalize(self, content: bytes) -> bytes:
        if b"\r" in content:
            return content.replace(b"\r", b"\r\n")
        return content

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_size:
            self.too_big = True
            self._drop()
        if self.too_big or self.line_too_long or self.refusal is not None:
            return
        if self.bare_newline_seen and self.bare_newline == "reject":
            return
        self._parts.append(data)
        self._kept += len(data)

    def _drop(self) -> None:
        self._parts.clear()
        self._kept = 0

    @property
    def held(self) -> int:
        """Octets of content this reader holds in memory now."""
        return self._kept + len(self._pending)

    def refuse(self, reply: SmtpReply) -> None:
        """Keep nothing more (and drop what is kept); `result()` will be `reply`."""
        self.refusal = reply
        self._drop()

    def result(self) -> bytes:
        """The message, or the SmtpReply refusing it (RFC 1870 §6, RFC 5321 §4.5.3.1.6)."""
        if self.too_big:
            raise SmtpReply(552, "5.3.4", "Error: message file too big")
        if self.bare_newline_seen and self.bare_newline == "reject":
            # Postfix smtpd_forbid_bare_newline: refuse, never guess where lines end.
            raise SmtpReply(554, "5.5.2", "Error: bare <CR> or <LF> received in message")
        if self.line_too_long:
            raise SmtpReply(554, "5.6.0", "Error: message line too long")
        if self.refusal is not None:
            # A permanent fault above wins: retrying such a message later would not help.
            raise self.refusal
        return b"".join(self._parts)
