"""The message as a Sieve run sees it: the envelope, the header fields (which editheader may
change, RFC 5293 §5: later tests see the changes), decoded values, addresses and body text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import Header

from mailsuite.message.addresses import parse_addresses
from mailsuite.message.content import MessageContent
from mailsuite.message.decode import decode_header_value
from mailsuite.message.headers import field_value, parse_fields
from mailsuite.message.lines import header_end
from mailsuite.message.structure import MimePart
from mailsuite.message.text import part_text

# The body test looks at this much decoded text at most (RFC 5173 leaves it to us).
MAX_BODY_TEXT = 1024 * 1024
SUBADDRESS_SEPARATOR = "+"


@dataclass
class MessageInput:
    raw: bytes  # the message as it would be stored (without Return-Path/Delivered-To)
    mail_from: str  # envelope sender; "" is the null sender
    recipient: str  # envelope recipient as the sender wrote it (user+detail@domain)
    mailbox: str = ""  # the account's address
    folder: str = "INBOX"  # where the implicit keep goes (Junk when the junk filter said so)
    now: datetime | None = None  # aware; its zone is the "local" zone of RFC 5260
    # The account's folders -> special use, or a function that lists them (called only when
    # the script asks: fileinto, mailboxexists, specialuse_exists).
    folders: dict[str, str | None] | Callable[[], dict[str, str | None]] = field(
        default_factory=dict
    )
    # duplicate (RFC 7352): when an id key was last recorded (seconds since the epoch)
    seen: Callable[[str], float | None] | None = None
    # Whether the account has one folder, asked without listing them all (fileinto without
    # :specialuse, mailboxexists); None: looked up in `folders`.
    exists: Callable[[str], bool] | None = None


class MessageView:
    def __init__(self, msg: MessageInput):
        self.input = msg
        end = header_end(msg.raw)
        head = msg.raw[:end]
        self.body = msg.raw[end:]
        # The blank line that ends the header, put back when an edited message is rebuilt.
        if head.endswith(b"\n\r\n") or head == b"\r\n":
            self.blank = b"\r\n"
        elif head.endswith(b"\n\n") or head == b"\n":
            self.blank = b"\n"
        else:
            self.blank = b""
        self.fields: list[tuple[bytes, bytes]] = parse_fields(head)
        self.edited = False
        self.crlf = b"\r\n" in head[:200] or b"\r\n" in self.body[:2]
        self._content: MessageContent | None = None
        self._decoded: dict[str, list[str]] = {}
        self._addresses: dict[str, list[list[str]]] = {}
        self._parts: dict[tuple, list[str]] = {}
        self._by_name: dict[bytes, list[bytes]] | None = None
        # What compiled tests derive from the fields (fastpath: folded values), by their key;
        # forgotten, like the rest, when editheader changes the fields.
        self.memo: dict[tuple, list[str]] = {}

    def folders(self) -> dict[str, str | None]:
        if callable(self.input.folders):
            self.input.folders = self.input.folders()
        return self.input.folders

    def folder_exists(self, name: str) -> bool:
        """Whether the account has the folder `name` (INBOX always): one question to the
        store while the folders are not listed (filing into a folder is common, and listing
        them costs a look at each), else from the list."""
        if name.upper() == "INBOX":
            return True
        if self.input.exists is not None and callable(self.input.folders):
            return self.input.exists(name)
        return name in self.folders()

    @property
    def size(self) -> int:
        return len(self.input.raw)

    def values(self, name: str) -> list[str]:
        """Each occurrence's unfolded value, RFC 2047 words decoded (RFC 5228 §5.7);
        remembered per name until editheader changes the fields."""
        found = self._decoded.get(name)
        if found is None:
            lname = name.lower()
            found = [decode_header_value(v) for v in self.raw_values(lname)]
            self._decoded[name] = found
        return found

    def raw_values(self, name: str) -> list[bytes]:
        lname = name.lower().encode("utf-8", "replace")
        by_name = self._by_name
        if by_name is None:
            # One pass over the header for every name a script asks about.
            by_name = self._by_name = {}
            for n, raw in self.fields:
                by_name.setdefault(n, []).append(raw)
        return [field_value(raw) for raw in by_name.get(lname, ())]

    def address_parts(self, name: str, part: Callable[[str], str | None]) -> list[str]:
        """One part (`part(address)`, None: none) of every address in a header, remembered
        per (name, part) like values."""
        key = (name, part)
        found = self._parts.get(key)
        if found is None:
            found = []
            for group in self.header_addresses(name):
                for address in group:
                    value = part(address)
                    if value is not None:
                        found.append(value)
            self._parts[key] = found
        return found

    def header_addresses(self, name: str) -> list[list[str]]:
        """The addresses of each occurrence of an address header, remembered like values."""
        found = self._addresses.get(name)
        if found is None:
            found = [self.addresses(v) for v in self.raw_values(name)]
            self._addresses[name] = found
        return found

    def exists(self, name: str) -> bool:
        return bool(self.values(name))

    def addresses(self, value: bytes) -> list[str]:
        """The addr-specs of one address header value (group names left out)."""
        out = []
        for item in parse_addresses(value) or ():
            if item[2] is None or item[3] is None:
                continue  # group start/end markers
            local = item[2].decode("utf-8", "replace")
            host = item[3].decode("utf-8", "replace")
            out.append(f"{local}@{host}")
        return out

    def content(self) -> MessageContent:
        if self._content is None:
            self._content = MessageContent(self.input.raw)
        return self._content

    def body_texts(self, transform: str, types: list[str]) -> list[str]:
        """RFC 5173: :raw the undecoded body; :text the text parts decoded; :content the
        parts of the listed types (decoded when they are text)."""
        if transform == "raw":
            return [self.body[:MAX_BODY_TEXT].decode("utf-8", "replace")]
        content = self.content()
        wire = content.wire()
        out: list[str] = []
        budget = [MAX_BODY_TEXT]

        def visit(part: MimePart) -> None:
            if budget[0] <= 0:
                return
            ctype = f"{part.ctype}/{part.csubtype}"
            wanted = (
                part.ctype == "text"
                if transform == "text"
                else any(_type_matches(t, part.ctype, ctype) for t in types)
            )
            if part.is_multipart:
                if transform == "content" and wanted:
                    # §5.2: a multipart's own text is its prologue and epilogue; we give the
                    # whole raw body, which contains them.
                    out.append(
                        wire[part.body_start : part.end][: budget[0]].decode("utf-8", "replace")
                    )
                for child in part.children:
                    visit(child)
                return
            if part.is_message and part.message is not None:
                if wanted and transform == "content":
                    out.append(
                        wire[part.body_start : part.end][: budget[0]].decode("utf-8", "replace")
                    )
                visit(part.message)
                return
            if not wanted:
                return
            if part.ctype == "text":
                text = part_text(wire, part)
            else:
                text = wire[part.body_start : part.end].decode("utf-8", "replace")
            text = text[: budget[0]]
            budget[0] -= len(text)
            out.append(text)

        visit(content.tree())
        return out

    # -- editheader (RFC 5293) -----------------------------------------------------------

    def add_field(self, name: str, value: str, last: bool) -> None:
        line = _encode_field(name, value, b"\r\n" if self.crlf else b"\n")
        entry = (name.lower().encode(), line)
        if last:
            self.fields.append(entry)
        else:
            self.fields.insert(0, entry)
        self._changed()

    def delete_fields(self, name: str, keep: Callable[[int, str], bool]) -> None:
        """Remove the occurrences of `name` for which keep(occurrence index, value) is False."""
        lname = name.lower().encode("utf-8", "replace")
        out = []
        count = 0
        removed = False
        for entry in self.fields:
            if entry[0] == lname:
                value = decode_header_value(field_value(entry[1]))
                index, count = count, count + 1
                if not keep(index, value):
                    removed = True
                    continue
            out.append(entry)
        if removed:
            self.fields = out
            self._changed()

    def _changed(self) -> None:
        self.edited = True
        self._decoded.clear()
        self._addresses.clear()
        self._parts.clear()
        self.memo.clear()
        self._by_name = None

    def count(self, name: str) -> int:
        lname = name.lower().encode("utf-8", "replace")
        return sum(1 for n, _ in self.fields if n == lname)

    def message_bytes(self) -> bytes:
        return b"".join(raw for _, raw in self.fields) + self.blank + self.body


def _type_matches(want: str, ctype: str, full: str) -> bool:
    """RFC 5173 §5.2: "" any type, "text" any text/*, "text/plain" exactly."""
    want = want.lower().strip()
    if not want:
        return True
    return want == full if "/" in want else want == ctype


def _encode_field(name: str, value: str, eol: bytes) -> bytes:
    """A header field line; RFC 5293 §4: non-ASCII values as RFC 2047 words, long lines
    folded."""
    value = value.replace("\r", " ").replace("\n", " ")
    if value.isascii():
        text = f"{name}: {value}"
        encoded = _fold_ascii(text)
    else:
        encoded = f"{name}: " + Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return (
        encoded.replace("\r\n", "\n").replace("\n", eol.decode()).encode("ascii", "replace") + eol
    )


def _fold_ascii(text: str) -> str:
    if len(text) <= 78:
        return text
    words = text.split(" ")
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def now_utc() -> datetime:
    return datetime.now(UTC)
